"""model.py and main.py: nn.LSTM equivalence, padding, memorisation, exact resume, checkpoints and error paths."""
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import dataUtil
from verse import formats
from writing import decoding
import main
from training import loop
from training import perplexity
from training import checkpoint
from config import Config, ModelConfig, UserError
from conftest import FIXTURE_RAW, ROOT
from model import PoetryLM, FusedLSTM, to_torch_lstm_params, masked_nll


# ----------------------------------------------------------------------------------------------------------
# the hand-written LSTM against torch.nn.LSTM

def test_fused_lstm_equals_torch_nn_lstm_float64():
    torch.manual_seed(0)
    T, B, D, H, L = 6, 3, 5, 7, 3
    fused = FusedLSTM(D, H, L).double()
    for layer in fused.layers:
        torch.nn.init.uniform_(layer.W, -0.5, 0.5)
        torch.nn.init.uniform_(layer.b, -0.5, 0.5)
    ref = torch.nn.LSTM(D, H, L).double()
    with torch.no_grad():
        for l, layer in enumerate(fused.layers):
            for name, v in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
                               to_torch_lstm_params(layer.W, layer.b, layer.input_size)):
                getattr(ref, f"{name}_l{l}").copy_(v)
    x = torch.randn(T, B, D, dtype=torch.float64)
    h0, c0 = torch.randn(L, B, H, dtype=torch.float64), torch.randn(L, B, H, dtype=torch.float64)
    g = [torch.randn(T, B, H, dtype=torch.float64), torch.randn(L, B, H, dtype=torch.float64),
         torch.randn(L, B, H, dtype=torch.float64)]
    grads = []
    for module in (fused, ref):
        xs = [t.clone().requires_grad_() for t in (x, h0, c0)]
        out, (h, c) = module(xs[0], (xs[1], xs[2]))
        ((out * g[0]).sum() + (h * g[1]).sum() + (c * g[2]).sum()).backward()
        grads.append([out, h, c] + [t.grad for t in xs])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    H4 = 4 * H
    perm = torch.cat([torch.arange(2 * H), torch.arange(3 * H, H4), torch.arange(2 * H, 3 * H)])
    for l, layer in enumerate(fused.layers):
        D_l = layer.input_size
        ref_W = torch.cat([getattr(ref, f"weight_ih_l{l}").grad, getattr(ref, f"weight_hh_l{l}").grad], 1)[perm]
        torch.testing.assert_close(layer.W.grad, ref_W, atol=1e-5, rtol=0)
        torch.testing.assert_close(layer.b.grad, getattr(ref, f"bias_ih_l{l}").grad[perm], atol=1e-5, rtol=0)
        assert layer.W.shape == (H4, D_l + H)


def test_cudnn_backend_gives_the_fused_results():
    torch.manual_seed(1)
    cfg = ModelConfig(vocab_size=30, embed_dim=6, hidden_size=9, num_layers=2)
    fused = PoetryLM(cfg).double()
    other = PoetryLM(ModelConfig(**{**cfg.__dict__, "lstm": "cudnn"})).double()
    other.load_state_dict(fused.state_dict())
    tokens = torch.randint(0, 30, (8, 4))
    for m in (fused, other):
        logits, _ = m(tokens)
        logits.square().sum().backward()
    for (name, p), q in zip(fused.named_parameters(), other.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-10, rtol=0, msg=name)


@pytest.mark.parametrize("scheme", ["zero", "normal", "xavier_normal", "xavier_uniform", "default"])
def test_init_schemes(scheme):
    torch.manual_seed(0)
    m = PoetryLM(ModelConfig(vocab_size=500, embed_dim=64, hidden_size=128, num_layers=1,
                             init_embed=scheme, init_lstm=scheme))
    W, E = m.lstm.layers[0].W, m.embed.weight          # W (512, 192)
    expected_std = {"zero": 0.0, "normal": 1 / np.sqrt(192), "xavier_normal": np.sqrt(2 / (512 + 192)),
                    "xavier_uniform": np.sqrt(2 / (512 + 192)), "default": 1 / np.sqrt(128) / np.sqrt(3)}[scheme]
    assert abs(W.std().item() - expected_std) <= 0.05 * expected_std + 1e-12
    if scheme == "zero":
        assert not E.any() and not m.lstm.layers[0].b.any()
    if scheme == "default":
        assert abs(E.std().item() - 1.0) < 0.05


# ----------------------------------------------------------------------------------------------------------
# padding never matters

def test_perplexity_is_over_real_tokens_whatever_the_batching():
    torch.manual_seed(0)
    m = PoetryLM(ModelConfig(vocab_size=20, embed_dim=5, hidden_size=6, num_layers=1)).double()
    rng = np.random.default_rng(0)
    poems = [np.array([2, *rng.integers(4, 20, n), 3]) for n in (3, 9, 4, 12, 5)]
    total = count = 0.0
    for p in poems:                                   # one poem at a time: no padding at all
        logits, _ = m(torch.from_numpy(p[:-1, None]))
        logp = torch.log_softmax(logits[:, 0], -1)
        total -= sum(logp[t, p[t + 1]].item() for t in range(len(p) - 1))
        count += len(p) - 1
    res = perplexity.evaluate(m, poems, 0, 2, torch.device("cpu"))
    assert res["tokens"] == count == 38
    assert res["ppl"] == pytest.approx(np.exp(total / count), rel=1e-9)
    chunked = perplexity.evaluate(m, poems, 0, 2, torch.device("cpu"), max_cells=50)   # 1-2 steps a chunk
    assert chunked["ppl"] == pytest.approx(res["ppl"], rel=1e-9) and chunked["tokens"] == 38


def test_padding_changes_nothing_for_a_poem():
    torch.manual_seed(0)
    m = PoetryLM(ModelConfig(vocab_size=20, embed_dim=5, hidden_size=6, num_layers=2)).double()
    short, long = np.array([2, 5, 6, 7, 3]), np.array([2, 8, 9, 10, 11, 12, 13, 3])
    inputs, targets = dataUtil.pad_batch([short, long], pad_id=0)
    batched, _ = m(torch.from_numpy(inputs))
    alone, _ = m(torch.from_numpy(short[:-1, None]))
    torch.testing.assert_close(batched[:4, 0], alone[:, 0], atol=1e-12, rtol=0)
    # the loss counts real targets only: 4 + 7 of them, each hand-summed
    nll, n = masked_nll(batched, torch.from_numpy(targets), 0)
    logp = torch.log_softmax(batched, -1)
    by_hand = -sum(logp[t, b, targets[t, b]] for t in range(7) for b in range(2) if targets[t, b] != 0)
    assert n == 11
    torch.testing.assert_close(nll, by_hand)


# ----------------------------------------------------------------------------------------------------------
# training on the fixture

def tiny_cfg(tmp_path, **train):
    cfg = Config()
    cfg.data.raw_dir, cfg.data.data_dir, cfg.data.min_freq = FIXTURE_RAW, str(tmp_path / "data"), 1
    cfg.data.dev_frac = cfg.data.test_frac = 0.2
    cfg.model = ModelConfig(embed_dim=16, hidden_size=48, num_layers=1)
    t = cfg.train
    t.ckpt_dir, t.figures_dir = str(tmp_path / "ckpt"), str(tmp_path / "fig")
    t.batch_size, t.lr, t.pp_every, t.gen_every, t.save_every, t.tolerance, t.epoch = 4, 1e-2, 10, 0, 50, 100, 1000
    for k, v in train.items():
        setattr(t, k, v)
    return cfg


def test_tiny_model_memorises_poems_and_greedy_generation_reproduces_one(tmp_path):
    cfg = tiny_cfg(tmp_path, max_steps=200)
    cfg.data.limit_poems = 4
    loop.train(cfg)
    corpus = dataUtil.load_corpus(cfg, verbose=False)
    ckpt = checkpoint.load_checkpoint(os.path.join(cfg.train.ckpt_dir, "last.pt"))
    model, _, itos = checkpoint.model_from_checkpoint(ckpt, torch.device("cpu"))
    res = perplexity.evaluate(model, corpus.train, 0, 8, torch.device("cpu"))
    assert res["nll"] < 0.05
    poem = corpus.decode(corpus.train[0])
    firsts = [corpus.decode(p)[0] for p in corpus.train]
    assert firsts.count(poem[0]) == 1
    cfg.gen.greedy = True
    out = decoding.sample(model, itos, [[itos.index(poem[0])]], cfg.gen, torch.device("cpu"))
    assert out == [poem]
    for name in ("best.pt", "last.pt", "epoch_50.pt", "metrics.jsonl"):
        assert os.path.exists(os.path.join(cfg.train.ckpt_dir, name))
    assert os.path.exists(os.path.join(cfg.train.figures_dir, "perplexity.png"))


def test_resume_ends_with_the_same_weights(tmp_path):
    plateau = dict(lr_schedule="plateau", plateau_patience=1)     # the rate moves with every evaluation
    straight = tiny_cfg(tmp_path / "a", max_steps=24, pp_every=5, tolerance=100, **plateau)
    loop.train(straight)
    first = tiny_cfg(tmp_path / "b", max_steps=11, pp_every=5, tolerance=100, **plateau)
    loop.train(first)
    last = os.path.join(first.train.ckpt_dir, "last.pt")
    ckpt = checkpoint.load_checkpoint(last)
    assert ckpt["step"] == 11 and ckpt["batch_in_epoch"] > 0      # stopped mid-epoch
    second = tiny_cfg(tmp_path / "b", max_steps=24, pp_every=5, tolerance=100, resume=last, **plateau)
    loop.train(second, ckpt)
    a = checkpoint.load_checkpoint(os.path.join(straight.train.ckpt_dir, "last.pt"))
    b = checkpoint.load_checkpoint(os.path.join(first.train.ckpt_dir, "last.pt"))
    assert a["step"] == b["step"] == 24
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["bad_evals"] == b["bad_evals"] and a["track_ppl"] == b["track_ppl"]   # early stopping unchanged
    # the interrupted run also evaluated at its stop (step 11); every other evaluation is identical
    devs = [{r["step"]: r["dev_ppl"] for r in map(json.loads, open(os.path.join(c.train.ckpt_dir, "metrics.jsonl")))
             if "dev_ppl" in r} for c in (straight, first)]
    assert sorted(devs[1]) == [5, 10, 11, 15, 20, 24] and sorted(devs[0]) == [5, 10, 15, 20, 24]
    assert all(devs[0][s] == devs[1][s] for s in devs[0])


def test_early_stopping_keeps_the_best(tmp_path):
    cfg = tiny_cfg(tmp_path, max_steps=400, pp_every=2, tolerance=3, lr=0.05)
    cfg.data.limit_poems = 4                  # overfits: dev perplexity soon rises
    out = loop.train(cfg)
    assert out["reason"] == "early stop" and out["bad_evals"] == 3
    rows = [json.loads(l) for l in open(os.path.join(cfg.train.ckpt_dir, "metrics.jsonl"))]
    devs = [r["dev_ppl"] for r in rows if "dev_ppl" in r]
    assert min(devs) == out["best_ppl"] and devs[-4] == out["best_ppl"]
    best = checkpoint.load_checkpoint(os.path.join(cfg.train.ckpt_dir, "best.pt"))
    assert best["best_ppl"] == out["best_ppl"]


def test_nan_loss_stops_and_keeps_best(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, max_steps=50, pp_every=2)
    calls = {"n": 0}
    real = loop.masked_nll

    def poisoned(logits, targets, pad_id):
        calls["n"] += 1
        nll, n = real(logits, targets, pad_id)
        return (nll * float("nan"), n) if calls["n"] > 30 else (nll, n)

    monkeypatch.setattr(loop, "masked_nll", poisoned)
    with pytest.raises(loop.Diverged):
        loop.train(cfg)
    assert os.path.exists(os.path.join(cfg.train.ckpt_dir, "best.pt"))
    last = checkpoint.load_checkpoint(os.path.join(cfg.train.ckpt_dir, "last.pt"))    # the last evaluation's
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert last["step"] % 2 == 0 and last["step"] <= 30                             # from before the NaN


# ----------------------------------------------------------------------------------------------------------
# the command line: errors are one line and exit code 2

def run(*args, **kw):
    return subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, **kw)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ck")
    loop.train(tiny_cfg(tmp, max_steps=3))
    return os.path.join(tmp, "ckpt", "last.pt")


def test_generate_cli(tiny_ckpt):
    r = run("generate", "--ckpt", tiny_ckpt, "--start", "秦川", "--num", "3", "--max-gen-len", "12", "--top-k", "5")
    assert r.returncode == 0, r.stderr
    poems = r.stdout.strip().split("\n\n")
    assert len(poems) == 3 and all(p.startswith("秦川") for p in poems)
    assert not any(t in r.stdout for t in dataUtil.SPECIALS)
    trad = run("generate", "--ckpt", tiny_ckpt, "--start", "萬", "--greedy", "--max-gen-len", "5")
    simp = run("generate", "--ckpt", tiny_ckpt, "--start", "万", "--greedy", "--max-gen-len", "5")
    assert trad.returncode == 0 and trad.stdout == simp.stdout and trad.stdout.startswith("万")


def bad_files(tmp_path, good):
    """A missing file, a truncated real checkpoint, a pickle that would run code, and a foreign torch file."""
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(open(good, "rb").read()[:3000])
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump(type("E", (), {"__reduce__": lambda self: (os.system, ("touch pwned",))})(), f)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    return [str(tmp_path / "missing.pt"), str(trunc), str(evil), str(foreign)]


@pytest.mark.parametrize("args", [
    ["generate", "--start", "abc"], ["generate", "--start", "龘"], ["generate", "--start", " "],
    ["generate", "--start", "日", "--temprature", "1"], ["generate", "--start", "日", "--num", "0"],
    ["train", "--optimizer", "sgdd", "--max-steps", "1"], ["train", "--hidden-size", "big"], ["nonsense"],
    ["generate", "--start", "日", "--temperature", "nan"], ["generate", "--start", "日", "--temperature", "inf"],
    ["generate", "--start", "日", "--seed", "1180591620717411303424"], ["generate", "--start", "日", "--top-k", "-3"],
    ["generate", "--start", "日", "--top-p", "nan"], ["generate", "--start", "日", "--device", "cuda:7"],
    ["generate", "--start", "日", "--device", "tpu"], ["generate", "--start", "日", "--max-len", "5"],
    ["generate", "--acrostic", "春夏秋", "--form", "5"], ["generate", "--acrostic", "，春", "--form", "5"],
    ["generate", "--start", "日", "--form", "6"], ["train", "--vocab-size", "10", "--max-steps", "1"],
    ["train", "--lr", "nan", "--max-steps", "1"], ["train", "--dropout", "1.5", "--max-steps", "1"],
    ["train", "--dropout-at", "everywhere", "--max-steps", "1"],
])
def test_user_errors_are_one_line_exit_2(args, tiny_ckpt, tmp_path):
    if args[0] == "generate":
        args = args + ["--ckpt", tiny_ckpt]
    if args[0] == "train":
        args = args + ["--raw-dir", FIXTURE_RAW, "--data-dir", str(tmp_path), "--ckpt-dir", str(tmp_path)]
    r = run(*args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


def test_bad_checkpoints_are_one_line_exit_2(tmp_path, tiny_ckpt):
    good = checkpoint.load_checkpoint(tiny_ckpt)
    odd_config, short_vocab = tmp_path / "config_x.pt", tmp_path / "short_vocab.pt"
    torch.save({**good, "config": "x"}, odd_config)
    torch.save({**good, "itos": good["itos"][:-3]}, short_vocab)
    for path in bad_files(tmp_path, tiny_ckpt) + [str(odd_config), str(short_vocab)]:
        r = run("generate", "--ckpt", path, "--start", "日")
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (path, r.stderr)
        with pytest.raises(UserError):                    # evaluate loads checkpoints the same way (in-process)
            main.main(["evaluate", "--ckpt", path])
    assert not os.path.exists(os.path.join(ROOT, "pwned"))


def test_sigterm_saves_last(tmp_path):
    cfg_args = ["train", "--raw-dir", FIXTURE_RAW, "--data-dir", str(tmp_path / "d"), "--ckpt-dir",
                str(tmp_path / "c"), "--figures-dir", str(tmp_path / "f"), "--embed-dim", "8", "--hidden-size", "16",
                "--batch-size", "2", "--min-freq", "1", "--max-steps", "100000", "--pp-every", "1000"]
    p = subprocess.Popen([sys.executable, "main.py", *cfg_args], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    metrics = tmp_path / "c" / "metrics.jsonl"
    for _ in range(600):                  # wait until it has trained a few steps
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0 and b"stopped: interrupted" in out
    ckpt = checkpoint.load_checkpoint(str(tmp_path / "c" / "last.pt"))
    assert ckpt["step"] >= 3


# ----------------------------------------------------------------------------------------------------------
# --init-from: a new run starting from another model's weights

def test_init_from_starts_as_the_source_with_rows_matched_by_character():
    torch.manual_seed(0)
    src_itos = ["</s>", "<unk>", "，", "。", "<bos>", "<eos>", *"春风明月山水"]
    source = PoetryLM(ModelConfig(vocab_size=len(src_itos), embed_dim=8, hidden_size=12, num_layers=2,
                                  tie_weights=True, dropout=0.0)).eval()
    ckpt = {"model": source.state_dict(), "itos": src_itos}
    itos = src_itos[:6] + list("水山花月风春")              # reordered; 明 gone; 花 new (the source's <unk>)
    model = PoetryLM(ModelConfig(vocab_size=len(itos), embed_dim=8, hidden_size=12, num_layers=2,
                                 tie_weights=True, dropout=0.0, format_inputs=True)).eval()
    zeroed = loop.start_from(model, ckpt, itos, "src.pt", verbose=False)
    assert sorted(zeroed) == ["formats.pair.weight", "formats.table.weight"]
    rows = [src_itos.index(c) if c in src_itos else 1 for c in itos]         # what each new row should hold
    text = "春风花月山水"
    tokens = torch.tensor([[itos.index(c)] for c in text])                    # (T, 1) in the new vocabulary
    src_tokens = torch.tensor([[rows[i]] for i in tokens[:, 0].tolist()])     # the same text as the source reads it
    feats = torch.randint(0, 3, (len(text), 1, len(formats.GROUPS)))            # any format input: weights are zero
    with torch.no_grad():
        want, _ = source(src_tokens)
        got, _ = model(tokens, feats=feats, pair=tokens)
    torch.testing.assert_close(got, want[:, :, rows], atol=1e-6, rtol=0)        # logit j = the source's row rows[j]


def test_init_from_refuses_another_shape_and_resume_in_one_line(tmp_path):
    source = PoetryLM(ModelConfig(vocab_size=8, embed_dim=8, hidden_size=12, num_layers=1))
    ckpt = {"model": source.state_dict(), "itos": [str(i) for i in range(8)]}
    model = PoetryLM(ModelConfig(vocab_size=8, embed_dim=8, hidden_size=16, num_layers=1))
    with pytest.raises(UserError, match="lstm.layers.0.W is .*give the model settings"):
        loop.start_from(model, ckpt, ckpt["itos"], "src.pt", verbose=False)
    r = run("train", "--resume", "a.pt", "--init-from", "b.pt")
    assert r.returncode == 2 and "pass one" in r.stderr and "Traceback" not in r.stderr
