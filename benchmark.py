"""Speed figures: python benchmark.py [lstm|train|infer|profile|engine] [--device cuda] [--variants ...].

The benchmarks live in tools/benchmark.py (its docstring lists them); this file is the documented command, and
hands MyLSTM_np in to them so that tools/ never imports it back.
"""
import sys

import MyLSTM_np
from tools import benchmark

if __name__ == "__main__":
    sys.exit(benchmark.main(sys.argv[1:], MyLSTM_np))
