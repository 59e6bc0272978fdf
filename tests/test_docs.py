"""docs/derivation.md points at the lines of MyLSTM_np.py and model.py that compute each equation, and those
lines say so."""
import os
import re

from conftest import ROOT

LINK = re.compile(r"\(\.\./MyLSTM_np\.py#L(\d+)-L(\d+)\)")
MODEL_LINK = re.compile(r"\(\.\./model\.py#L(\d+)-L(\d+)\)")
CPP_LINK = re.compile(r"\(\.\./kernels/lstm_cell\.cpp#L(\d+)-L(\d+)\)")
TAG = re.compile(r"eqs?\. \((\d+)\)(?:-\((\d+)\))?")


def tagged_equations(lines):
    """Equation numbers named by `eq. (n)` / `eqs. (a)-(b)` comments in the given lines."""
    found = set()
    for line in lines:
        for a, b in TAG.findall(line):
            found.update(range(int(a), int(b or a) + 1))
    return found


def linked_equations(code_file, line_start, link):
    """Equations the doc's lines `<line_start> (eq. n): ...` link to in code_file, each link checked to land
    on lines tagged `eq. (n)`; also returns the code's lines."""
    doc = open(os.path.join(ROOT, "docs", "derivation.md"), encoding="utf-8").read().splitlines()
    code = open(os.path.join(ROOT, code_file), encoding="utf-8").read().splitlines()
    checked = set()
    for line in doc:
        m = re.match(line_start + r" \(eq\. (\d+)\):", line)
        if not m:
            continue
        eq = int(m.group(1))
        links = link.findall(line)
        assert links, line
        for a, b in links:
            assert eq in tagged_equations(code[int(a) - 1:int(b)]), f"eq. ({eq}) not at {code_file} lines {a}-{b}"
        checked.add(eq)
    return checked, code


def test_every_code_reference_lands_on_its_equation():
    checked, code = linked_equations("MyLSTM_np.py", "Code", LINK)
    assert checked == set(range(1, 17))
    # and every equation the code names is derived in the document
    assert tagged_equations(code) <= checked


def test_model_py_references_land_on_their_equations():
    checked, code = linked_equations("model.py", r"model\.py", MODEL_LINK)
    assert set(range(1, 15)) - {10} <= checked          # the whole layer; (10) is the one-step form of (14)
    assert tagged_equations(code) == checked


def test_cpp_loop_references_land_on_their_equations():
    checked, code = linked_equations("kernels/lstm_cell.cpp", r"lstm_cell\.cpp", CPP_LINK)
    assert checked == {1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 13}    # the cell and the recurrent product; (12), (14): Python's
    assert tagged_equations(code) == checked


def test_readme_gradient_table_is_what_the_command_prints():
    """The README quotes `python MyLSTM_np.py test` in full: the same rows, and each figure within a factor of
    10 of what it prints now (rounding-error figures move in their last digits from one CPU to another)."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "MyLSTM_np.py", "test"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300).stdout
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()

    def table(text):          # rows named by their first column ("max relative error" by its words alone)
        block = text[text.index("tensor                                     vs autograd"):]
        rows = block[:block.index("failed")].splitlines()[1:-1]
        return [(re.split(r"\s{2,}|: ", r.strip())[0], [float(x) for x in re.findall(r"\d\.\d\de[-+]\d\d", r)])
                for r in rows]
    quoted, printed = table(readme), table(out)
    assert [name for name, _ in quoted] == [name for name, _ in printed]
    for (name, q), (_, p) in zip(quoted, printed):
        assert len(q) == len(p), name
        for a, b in zip(q, p):
            assert (a == b == 0) or (a > 0 and b > 0 and 0.1 <= a / b <= 10) or max(a, b) < 1e-15, (name, a, b)
