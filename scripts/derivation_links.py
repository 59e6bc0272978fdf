"""Rewrite docs/derivation.md's line links to the code: the `model.py (eq. n):` and `lstm_cell.cpp (eq. n):`
rows, from the `eq. (n)` comments of model.py's layer functions and of kernels/lstm_cell.cpp. Run it after
editing either file; tests/test_docs.py fails while a link misses its equation.

    python scripts/derivation_links.py
"""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_FUNCS = ("layer_forward", "input_gates", "layer_backward", "weight_grads")


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read().splitlines()


def tagged(lines, eq, start=0, end=None):
    """1-based numbers of the lines in [start, end) whose comment names eq. (eq)."""
    return [i + 1 for i in range(start, len(lines) if end is None else end)
            if re.search(r"eqs?\. \(%d\)" % eq, lines[i])]


def runs(numbers):
    """[a, b] spans of consecutive line numbers."""
    out = []
    for n in numbers:
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return out


def func_span(lines, name):
    """[start, end) of a top-level Python function."""
    s = next(i for i, l in enumerate(lines) if l.startswith(f"def {name}("))
    e = next((i for i in range(s + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), len(lines))
    return s, e


def label(a, b):
    return f"L{a}" + (f"-L{b}" if b != a else "")


def model_rows(code):
    rows = []
    for eq in (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14):
        parts = [f"[`{name}` {label(a, b)}](../model.py#L{a}-L{b})" for name in MODEL_FUNCS
                 for a, b in runs(tagged(code, eq, *func_span(code, name)))]
        rows.append(f"model.py (eq. {eq}): " + " and ".join(parts) + ".")
    return rows


def cpp_rows(cpp):
    rows = []
    for eq in (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 13):
        parts = [f"[{label(a, b)}](../kernels/lstm_cell.cpp#L{a}-L{b})" for a, b in runs(tagged(cpp, eq))]
        rows.append(f"lstm_cell.cpp (eq. {eq}): " + " and ".join(parts) + ".")
    return rows


def main():
    doc = read("docs/derivation.md")
    rows = {"model.py": model_rows(read("model.py")), "lstm_cell.cpp": cpp_rows(read("kernels/lstm_cell.cpp"))}
    out = []
    for line in doc:
        m = re.match(r"(model\.py|lstm_cell\.cpp) \(eq\. \d+\):", line)
        if m:
            out.extend(rows.pop(m.group(1), []))        # each block's rows, once, where the block was
        else:
            out.append(line)
    with open(os.path.join(ROOT, "docs", "derivation.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
