"""experiments: the zero-init symmetry the derivation predicts, and both studies writing their tables."""
import math

import numpy as np
import pytest

import dataUtil
from studies import experiments
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
    for r in res.values():
        assert r["lr"] == min(r["sweep"], key=lambda lr: experiments.badness(r["sweep"][lr]))
        assert len(r["curves"]) == 2 and len(r["sweep"]) >= 3
        lrs = sorted(r["sweep"])
        assert not r["bracketed"] or lrs[0] < r["lr"] < lrs[-1]
    text = open(out["doc"], encoding="utf-8").read()
    assert "| adam |" in text and "2 seeds" in text
    assert (tmp_path / "fig" / "optim_curves.png").exists() and (tmp_path / "fig" / "optim_sweep.png").exists()
    assert experiments.optim_config(cfg, "adamw", 1e-3).train.weight_decay == experiments.ADAMW_DECAY
    assert experiments.optim_config(cfg, "adam", 1e-3).train.weight_decay == 0.0
    assert experiments.optim_config(cfg, "adam", 1e-3, seed=2).train.seed == 2


def test_lattice_is_one_three_ten():
    assert [experiments.lr_at(k) for k in range(-3, 4)] == [0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
    assert experiments.lattice_index(0.003) == -5 and experiments.lattice_index(30.0) == 3
    with pytest.raises(experiments.UserError):
        experiments.lattice_index(2.0)


def test_bracketing_walks_to_a_minimum_outside_the_start_grid():
    calls = []

    def score(lr):                                   # minimum at lr 300, far above the start grid 0.3, 1, 3
        calls.append(lr)
        return (math.log10(lr) - math.log10(300)) ** 2 + 1.0

    sweep, best, bracketed = experiments.bracket(score, 1.0, max_points=20)
    assert best == 300.0 and bracketed
    assert sorted(sweep) == [0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0]
    assert len(calls) == len(set(calls)) == 8        # every rate trained once


def test_bracketing_downwards_with_divergence_and_the_cap():
    def score(lr):                                   # diverges above 1, best at 0.003
        return math.nan if lr > 1 else abs(math.log10(lr / 0.003)) + 2
    sweep, best, bracketed = experiments.bracket(score, 3.0, max_points=20)
    assert best == 0.003 and bracketed and min(sweep) == 0.001 and math.isnan(sweep[10.0])
    sweep, best, bracketed = experiments.bracket(lambda lr: lr, 1.0, max_points=5)   # always better lower
    assert not bracketed and best == min(sweep) == 0.03 and len(sweep) == 5
    sweep, best, bracketed = experiments.bracket(lambda lr: math.inf, 1.0, max_points=4)  # all diverge
    assert not bracketed and len(sweep) == 4


def test_settling_and_ranking_measures_by_hand():
    assert experiments.settled_at([(10, "a"), (20, "b"), (30, "a"), (40, "a")]) == 30
    assert experiments.settled_at([(10, "a"), (20, "a")]) == 10
    assert experiments.kendall_tau(list("abc"), list("abc")) == 1.0
    assert experiments.kendall_tau(list("abc"), list("cba")) == -1.0
    assert experiments.kendall_tau(list("abc"), list("bac")) == pytest.approx(1 / 3)
    curve = {"eval_step": [10, 20, 25], "dev_ppl": [50.0, 40.0, math.inf]}       # diverged at step 25
    assert experiments.best_so_far(curve, 10) == 50.0 and experiments.best_so_far(curve, 20) == 40.0
    assert experiments.best_so_far(curve, 30) == math.inf and experiments.run_score(curve) == math.inf


def test_smooth_is_a_running_mean_without_edges():
    x, y = experiments.smooth(list(range(12)), [0.0] * 9 + [10.0, 10.0, 10.0], k=10)
    assert x == [9, 10, 11] and y == pytest.approx([1.0, 2.0, 3.0])


def test_form_study_couplet_measures_read_real_and_broken_couplets():
    import argparse
    from studies import form_study
    from verse.tables import pairs_table
    dengao = ("风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。"
              "万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。")
    table = pairs_table()
    half = {"".join(sorted("无不"))}                             # a held-out table of one pair: 颔联's first position
    tuning = {"".join(sorted("万百")), "".join(sorted("里年")), "".join(sorted("无边"))}   # 颈联's 1st, 2nd; never aligned
    real = form_study.couplet_measures([dengao], [dengao], table, tuning, half)
    assert real["poems"] == 1 and real["score"] >= table.thresholds["parallel"] and real["parallel"] == 1.0
    assert real["heldout"] == pytest.approx(1 / 14)                 # of the 颔联's and 颈联's 14 aligned pairs
    assert real["tuning"] == pytest.approx(2 / 14)
    assert real["repeat"] == 0.0 and math.isnan(real["disc"])        # 萧萧 and 滚滚 are doublings, not 重字
    broken = dengao.replace("百年多病独登台", "无边落木独登台")      # the 颈联's second line opens like the 颔联's first
    assert form_study.couplet_measures([broken], [dengao], table, tuning, half)["score"] < real["score"]
    rows = [{"setting": "x", **real, "sample": [dengao, "白日依山尽，黄河入海流。"]}]             # a 绝句 is skipped
    text = "\n".join(form_study.couplet_lines(rows, argparse.Namespace(couplets=1, candidates=8)))
    assert "    无边落木萧萧下，不尽长江滚滚来。" in text and "白日依山尽" not in text


def test_rhyme_acted_by_hand():
    from studies import form_study
    log = [(True, 0.2, 0.1), (False, 0.5, 0.0), (True, 0.4, 0.3)]     # (at a rhyme slot, cut, of it 重韵)
    assert form_study.rhyme_acted(log) == pytest.approx((0.3, 0.2))
    assert all(v != v for v in form_study.rhyme_acted([(False, 0.5, 0.0)]))   # nan: no rhyme slot


def test_real_rhyme_cut_by_hand_with_a_fixed_distribution():
    """A model whose every prediction is the same distribution p: at the rhyme slots (ends of lines 2 and 4) the
    cut outside the group is p's mass off the group's level characters, and the 重韵 part is nothing at the first
    rhyme and p of the first rhyme character at the second."""
    import types
    import torch
    from studies import form_study
    from verse import formats, poetics
    itos = [dataUtil.PAD, dataUtil.UNK, dataUtil.BOS, dataUtil.EOS, "，", "。"] + list("山水光霜乡长月日")
    logits = torch.log(torch.tensor([1e-9] * 4 + [1.0, 1.0] + [1.0, 1.0, 4.0, 2.0, 2.0, 1.0, 1.0, 1.0]))
    p = torch.softmax(logits, -1)

    class Fixed(torch.nn.Module):
        def forward(self, tokens, state=None, feats=None, pair=None):
            return logits.expand(*tokens.shape, -1), state

    book = types.SimpleNamespace(groups=["阳", "月"], entries={ch: [(0, poetics.LEVEL)] for ch in "光霜乡长"})
    book.entries["月"] = [(1, poetics.OBLIQUE)]
    text = "山水日月光，山水月日霜。山水日月长，山水月日乡。"
    fmt = formats.Format(lengths=(5, 5, 5, 5), rhyme_lines={1: 1, 3: 1})
    outside, reuse, slots = form_study.real_rhyme_cut(Fixed(), itos, [text], lambda t: fmt, book)
    off = 1 - float(sum(p[itos.index(ch)] for ch in "光霜乡长"))
    assert slots == 2
    assert outside == pytest.approx(off)
    assert reuse == pytest.approx(float(p[itos.index("霜")]) / 2)          # (0 + p(霜)) / 2 slots
