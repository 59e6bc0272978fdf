"""Probe the command lines with bad input: each case's exit code, how many lines it printed on stderr, and
whether a traceback escaped. A case is BAD when it leaks a traceback, or fails without exactly one line.

    python scripts/probe_cli.py scripts/probe_cases.txt      # one shell command a line; PY means this Python

docs/reliability.md lists what the cases found. The cases only read, or write under /tmp/probe.
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(path):
    os.makedirs("/tmp/probe/t", exist_ok=True)
    bad = 0
    for case in (line.rstrip("\n") for line in open(path, encoding="utf-8")):
        if not case.strip() or case.startswith("#"):
            continue
        r = subprocess.run(["bash", "-c", case.replace("PY ", sys.executable + " ")], cwd=ROOT, capture_output=True,
                           timeout=300, env={**os.environ, "PYTHONWARNINGS": "default"})
        lines = r.stderr.decode("utf-8", "replace").strip().splitlines()
        verdict = "BAD" if any("Traceback" in l for l in lines) or (r.returncode and len(lines) != 1) else "ok"
        bad += verdict == "BAD"
        print(f"{verdict:<4} rc={r.returncode:<3} lines={len(lines):<3} {case[:100]}  | {lines[-1][:120] if lines else ''}",
              flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "scripts", "probe_cases.txt")))
