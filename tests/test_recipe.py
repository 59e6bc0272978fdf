"""Recipe options: dropout, weight tying, learning-rate schedules; each against a reference or a hand value."""
import math
import os

import numpy as np
import pytest
import torch

import MyLSTM_np as M
from training import loop
from training import checkpoint
from config import Config, ModelConfig, UserError
from model import PoetryLM
from test_model_train import tiny_cfg


def test_dropout_acts_in_training_only():
    base = ModelConfig(vocab_size=30, embed_dim=6, hidden_size=8, num_layers=2)
    torch.manual_seed(0)
    plain = PoetryLM(base)
    dropped = PoetryLM(ModelConfig(**{**base.__dict__, "dropout": 0.5}))
    dropped.load_state_dict(plain.state_dict())
    tokens = torch.randint(0, 30, (5, 3))
    plain.eval(), dropped.eval()
    torch.testing.assert_close(dropped(tokens)[0], plain(tokens)[0], atol=0, rtol=0)
    dropped.train()
    assert not torch.allclose(dropped(tokens)[0], plain(tokens)[0])


@pytest.mark.parametrize("at,differs", [("embed", True), ("layers", True), ("output", True), ("", False)])
def test_dropout_places(at, differs):
    torch.manual_seed(0)
    m = PoetryLM(ModelConfig(vocab_size=30, embed_dim=6, hidden_size=8, num_layers=2, dropout=0.5, dropout_at=at))
    tokens = torch.randint(0, 30, (5, 3))
    with torch.no_grad():
        train_out = m(tokens)[0]
        m.eval()
        eval_out = m(tokens)[0]
    assert (not torch.equal(train_out, eval_out)) == differs


def test_tied_model_shares_the_embedding_and_its_gradients_match_autograd():
    cfg = ModelConfig(vocab_size=30, embed_dim=6, hidden_size=8, num_layers=2, tie_weights=True)
    torch.manual_seed(0)
    fused = PoetryLM(cfg).double()
    assert "proj.down.weight" in fused.state_dict() and "proj.weight" not in fused.state_dict()
    ref = PoetryLM(ModelConfig(**{**cfg.__dict__, "lstm": "autograd"})).double()
    ref.load_state_dict(fused.state_dict())
    tokens = torch.randint(0, 30, (7, 3))
    for m in (fused, ref):
        m(tokens)[0].logsumexp(-1).sum().backward()
    for (name, p), q in zip(fused.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-10, rtol=0, msg=name)
    # the logits are (out W_d^T) E^T + b, by hand
    with torch.no_grad():
        out, _ = fused.lstm(fused.embed(tokens))
        by_hand = out @ fused.proj.down.weight.T @ fused.embed.weight.T + fused.proj.bias
        torch.testing.assert_close(fused(tokens)[0], by_hand)


def test_numpy_twin_reads_a_tied_checkpoint(tmp_path):
    cfg = Config()
    cfg.model = ModelConfig(vocab_size=40, embed_dim=8, hidden_size=12, num_layers=2, tie_weights=True)
    torch.manual_seed(0)
    model = PoetryLM(cfg.model)
    path = str(tmp_path / "tied.pt")
    checkpoint.save_checkpoint(path, model, None, cfg, [str(i) for i in range(40)], {"step": 0})
    np_model, _, _ = M.NumpyLM.from_checkpoint(path)
    tokens = np.random.default_rng(0).integers(0, 40, (6, 2))
    with torch.no_grad():
        ref = model(torch.from_numpy(tokens))[0].numpy()
    np.testing.assert_allclose(np_model.forward(tokens)[0], ref, atol=1e-5)


def test_learning_rate_schedule_by_hand(tmp_path):
    cfg = tiny_cfg(tmp_path, lr=1e-3, warmup_steps=10, lr_schedule="cosine", max_steps=100)
    import dataUtil
    corpus = dataUtil.load_corpus(cfg, verbose=False)
    cfg.model.vocab_size = len(corpus.itos)
    model = PoetryLM(cfg.model)
    tl = loop.TrainLoop(cfg, model, loop.make_optimizer(cfg.train, model.parameters()), corpus,
                          torch.device("cpu"), {})
    ramp4 = 1e-3 * 0.5 * 0.5 * (1 + math.cos(math.pi * 4 / 100))      # warm-up 5/10 times the cosine at 4/100
    expect = {0: 1e-3 * 0.1, 4: ramp4, 50: 1e-3 * 0.5, 25: 1e-3 * 0.5 * (1 + math.cos(math.pi / 4)), 100: 0.0}
    for step, lr in expect.items():
        tl.p["step"] = step
        assert tl.current_lr() == pytest.approx(lr, abs=1e-12), step
    tl.opt.param_groups[0]["lr"] = 123.0
    tl.p["step"] = 4
    tl.advance()                                        # the step sets the optimiser's rate
    assert tl.opt.param_groups[0]["lr"] == pytest.approx(ramp4)


def test_plateau_schedule_halves_the_rate_after_patience_bad_evaluations(tmp_path):
    cfg = tiny_cfg(tmp_path, max_steps=60, pp_every=2, tolerance=100, lr=0.05, lr_schedule="plateau",
                   plateau_patience=2, plateau_factor=0.5)
    cfg.data.limit_poems = 4                              # overfits: dev perplexity soon rises
    out = loop.train(cfg)
    rows = [r for r in map(eval_json, open(os.path.join(cfg.train.ckpt_dir, "metrics.jsonl"))) if "dev_ppl" in r]
    best, bad, scale = math.inf, 0, 1.0
    for r in rows:                                        # replay the rule on the logged perplexities
        if r["dev_ppl"] < best:
            best, bad = r["dev_ppl"], 0
        else:
            bad += 1
            scale *= 0.5 if bad % 2 == 0 else 1.0
        assert r["lr"] == pytest.approx(0.05 * scale)
    assert out["lr_scale"] == scale < 1.0


def eval_json(line):
    import json
    return json.loads(line)


def test_export_writes_a_small_weights_only_checkpoint_that_generates_the_same(tmp_path):
    cfg = tiny_cfg(tmp_path, max_steps=3)
    loop.train(cfg)
    src, dst = os.path.join(cfg.train.ckpt_dir, "best.pt"), str(tmp_path / "pre" / "tang.pt")
    checkpoint.export_weights(src, dst)
    slim, full = checkpoint.load_checkpoint(dst), checkpoint.load_checkpoint(src)
    assert slim["optimizer"] is None and "rng" not in slim and os.path.getsize(dst) < os.path.getsize(src) / 4
    assert all(v.dtype == torch.float16 for v in slim["model"].values())
    a, _, _ = checkpoint.model_from_checkpoint(slim, torch.device("cpu"))
    b, _, _ = checkpoint.model_from_checkpoint(full, torch.device("cpu"))
    tokens = torch.randint(0, cfg.model.vocab_size or 30, (6, 2))
    with torch.no_grad():
        torch.testing.assert_close(a(tokens)[0], b(tokens)[0], atol=2e-2, rtol=0)   # float16 rounding only
    np_model, _, _ = M.NumpyLM.from_checkpoint(dst)                                     # the torch-free reader too
    np.testing.assert_allclose(np_model.forward(tokens.numpy())[0], a(tokens)[0].detach().numpy(), atol=1e-4)
    with pytest.raises(UserError, match="holds weights only"):
        loop.train(tiny_cfg(tmp_path / "r", resume=dst, max_steps=5), slim)
