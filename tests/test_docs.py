"""docs/derivation.md points at the lines of MyLSTM_np.py and model.py that compute each equation, and those
lines say so."""
import os
import re

from conftest import ROOT

LINK = re.compile(r"\(\.\./MyLSTM_np\.py#L(\d+)-L(\d+)\)")
MODEL_LINK = re.compile(r"\(\.\./model\.py#L(\d+)-L(\d+)\)")
TAG = re.compile(r"eqs?\. \((\d+)\)(?:-\((\d+)\))?")


def tagged_equations(lines):
    """Equation numbers named by `eq. (n)` / `eqs. (a)-(b)` comments in the given lines."""
    found = set()
    for line in lines:
        for a, b in TAG.findall(line):
            found.update(range(int(a), int(b or a) + 1))
    return found


def test_every_code_reference_lands_on_its_equation():
    doc = open(os.path.join(ROOT, "docs", "derivation.md"), encoding="utf-8").read().splitlines()
    code = open(os.path.join(ROOT, "MyLSTM_np.py"), encoding="utf-8").read().splitlines()
    checked = set()
    for line in doc:
        m = re.match(r"Code \(eq\. (\d+)\):", line)
        if not m:
            continue
        eq = int(m.group(1))
        links = LINK.findall(line)
        assert links, line
        for a, b in links:
            assert eq in tagged_equations(code[int(a) - 1:int(b)]), f"eq. ({eq}) not at lines {a}-{b}"
        checked.add(eq)
    assert checked == set(range(1, 17))
    # and every equation the code names is derived in the document
    assert tagged_equations(code) <= checked


def test_model_py_references_land_on_their_equations():
    doc = open(os.path.join(ROOT, "docs", "derivation.md"), encoding="utf-8").read().splitlines()
    code = open(os.path.join(ROOT, "model.py"), encoding="utf-8").read().splitlines()
    checked = set()
    for line in doc:
        m = re.match(r"model\.py \(eq\. (\d+)\):", line)
        if not m:
            continue
        eq = int(m.group(1))
        for a, b in MODEL_LINK.findall(line):
            assert eq in tagged_equations(code[int(a) - 1:int(b)]), f"eq. ({eq}) not at model.py lines {a}-{b}"
        checked.add(eq)
    assert set(range(1, 15)) - {10} <= checked          # the whole layer; (10) is the one-step form of (14)
    assert tagged_equations(code) == checked
