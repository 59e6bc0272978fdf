"""Shared fixtures: the small real-poem raw folder, and a Config that prepares it into a temp folder."""
import os
import sys
import warnings

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

import torch  # noqa: E402

from config import Config  # noqa: E402

torch.set_num_threads(1)          # small tensors: one thread is faster, and never oversubscribes the cores

FIXTURE_RAW = os.path.join(ROOT, "tests", "fixtures", "raw")


@pytest.fixture
def data_cfg(tmp_path):
    """Config reading the fixture poems, with a split wide enough that dev and test are not empty."""
    cfg = Config()
    cfg.data.raw_dir = FIXTURE_RAW
    cfg.data.data_dir = str(tmp_path / "data")
    cfg.data.min_freq = 1
    cfg.data.dev_frac = 0.2
    cfg.data.test_frac = 0.2
    return cfg


@pytest.fixture(params=["cpp", "python"])
def time_loop(request, monkeypatch):
    """The hand-written LSTM's two time loops: kernels/lstm_cell.cpp (skipped where it cannot be built) and
    model.py's Python loop (the C++ one switched off)."""
    import kernels
    import model
    if request.param == "python":
        monkeypatch.setattr(model.kernels, "lstm_cell", lambda: None)
    elif kernels.lstm_cell() is None:
        pytest.skip("the C++ LSTM loop cannot be built here (no compiler)")
    return request.param


@pytest.fixture
def python_loop(monkeypatch):
    """The Python time loop alone (the tests that edit its source)."""
    import model
    monkeypatch.setattr(model.kernels, "lstm_cell", lambda: None)
