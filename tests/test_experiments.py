"""experiments: the zero-init symmetry the derivation predicts, and both studies writing their tables."""
import math

import numpy as np
import pytest

import dataUtil
import experiments
from config import Config, ModelConfig
from conftest import FIXTURE_RAW


def fixture_setup(tmp_path):
    cfg = Config()
    cfg.data.raw_dir, cfg.data.data_dir, cfg.data.min_freq = FIXTURE_RAW, str(tmp_path / "data"), 1
    cfg.data.dev_frac = cfg.data.test_frac = 0.2
    cfg.model = ModelConfig(embed_dim=8, hidden_size=12, num_layers=1)
    cfg.train.batch_size, cfg.train.optimizer, cfg.train.lr = 4, "sgd", 1.0
    corpus = dataUtil.load_corpus(cfg, verbose=False)
    cfg.model.vocab_size = len(corpus.itos)
    return cfg, corpus


def test_all_zero_init_never_leaves_zero(tmp_path):
    # with E = 0 and W = 0: x_t = 0, so dW_x = dz^T x = 0 and dE = dz W_x = 0 at every step (eqs. 10, 11, 16)
    cfg, corpus = fixture_setup(tmp_path)
    c = experiments.study_config(cfg, init_embed="zero", init_lstm="zero")
    model, curve = experiments.short_run(c, corpus, 20, 20)
    rep = experiments.symmetry_report(model, np.unique(np.concatenate(corpus.train)))
    assert rep["zero share embed.weight"] == 1.0
    W = model.lstm.layers[0].W.detach().numpy()
    assert not W[:, :8].any()                                         # W_x stays exactly zero
    assert rep["distinct embedding rows"] == "1" and rep["distinct rows W_x[g]"] == "1"
    assert rep["zero share lstm.layers.0.b"] < 1.0                    # ... while the biases do learn
    assert len(curve["loss"]) == 20 and math.isfinite(curve["dev_ppl"][-1])


def test_distinct_rows_and_spread_by_hand():
    m = np.array([[1.0, 0.0], [1.0, 1e-7], [0.0, 2.0]])
    assert experiments.distinct_rows(m) == "2"
    assert abs(experiments.row_spread(m) - np.std([1, 1, 2]) / np.mean([1, 1, 2])) < 1e-12


def test_studies_write_tables_and_figures(tmp_path):
    cfg, corpus = fixture_setup(tmp_path)
    out = {"figures": str(tmp_path / "fig"), "doc": str(tmp_path / "init.md")}
    zero_rows, curves = experiments.run_init(cfg, corpus, 6, out)
    assert len(zero_rows) == 3 and set(curves) == set(experiments.INIT_SCHEMES)
    text = open(out["doc"], encoding="utf-8").read()
    assert "| measure | embedding zero, LSTM zero | embedding zero, LSTM xavier_uniform |" in text
    assert "| distinct embedding rows | 1 |" in text                  # the all-zero case, as derived above
    assert (tmp_path / "fig" / "init_curves.png").exists() and (tmp_path / "fig" / "init_gradnorms.png").exists()
    out["doc"] = str(tmp_path / "optim.md")
    res = experiments.run_optim(cfg, corpus, 4, 2, ["sgd", "adam"], out)
    assert res["adam"]["lr"] in experiments.LR_GRID["adam"] and len(res["sgd"]["sweep"]) == len(experiments.LR_GRID["sgd"])
    assert res["adam"]["lr"] == min(res["adam"]["sweep"], key=res["adam"]["sweep"].get)
    assert "| adam |" in open(out["doc"], encoding="utf-8").read()
    assert (tmp_path / "fig" / "optim_curves.png").exists()
    assert experiments.optim_config(cfg, "adamw", 1e-3).train.weight_decay == experiments.ADAMW_DECAY
    assert experiments.optim_config(cfg, "adam", 1e-3).train.weight_decay == 0.0


def test_smooth_is_a_running_mean_without_edges():
    x, y = experiments.smooth(list(range(12)), [0.0] * 9 + [10.0, 10.0, 10.0], k=10)
    assert x == [9, 10, 11] and y == pytest.approx([1.0, 2.0, 3.0])
