"""inspect and the cells study: the torch record equals the NumPy LSTM's (MyLSTM_np.py inspect, torch-free) and
a step-by-step re-computation from the checkpoint's weights; the re-run equations give the model's own logits
and state (with and without format inputs); bad input is one line and exit code 2; the study's pieces (the
properties of a poem, the probes) and a whole small study, whose named cells inspect then shows; the
/api/inspect endpoint's answers and bounds."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import MyLSTM_np as M
from studies import cellplot
from studies import cellrecord
from studies import cells_study
from studies import lstm_inspect
from config import run_cli
from conftest import ROOT
from tests_helpers import tiny_checkpoint
from verse.text import convert_chars

CHUNWANG = "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。"
TANG = os.path.join(ROOT, "pretrained", "tang-chars.pt")          # characters only: no format inputs
SHIPPED = os.path.join(ROOT, "pretrained", "tang.pt")            # the page's model (format inputs)
TINY_POEM = "一丁七万丈，三上下不与。丑且世丘丙，业丛东丝丞。"       # a regular 五言绝句 of TINY_ITOS characters
TOL = 2e-5                     # float32 activations, written to 6 decimals


def torch_record(tmp_path, poem, ckpt=TANG, *flags):
    out = tmp_path / "torch"
    assert run_cli(lstm_inspect.cmd_inspect, [poem, "--ckpt", ckpt, "--out", str(out), *flags]) == 0
    assert (out / "heatmap.png").stat().st_size > 1000
    return json.loads((out / "inspect.json").read_text(encoding="utf-8"))


def numpy_record(tmp_path, poem, ckpt=TANG, *flags):
    out = tmp_path / "numpy.json"
    assert run_cli(lambda rest: cellrecord.cmd_inspect_np(rest, M.NumpyLM.from_checkpoint),
                   [poem, "--ckpt", ckpt, "--out", str(out), *flags]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def assert_same(a, b, tol=TOL):
    for key in ("poem", "chars", "targets", "formats", "fingerprint"):
        assert a[key] == b[key], key
    assert np.allclose(a["prob"], b["prob"], atol=tol, rtol=1e-4)
    for la, lb in zip(a["layers"], b["layers"], strict=True):
        for k in cellrecord.KEYS:
            assert np.abs(np.array(la[k]) - np.array(lb[k])).max() < tol, (la["layer"], k)


def test_record_layout_and_numpy_lstm_agree(tmp_path):
    a = torch_record(tmp_path, CHUNWANG)
    n = len(CHUNWANG)
    assert a["chars"] == ["<bos>", *CHUNWANG] and a["targets"] == [*CHUNWANG, "<eos>"] and len(a["prob"]) == n + 1
    assert [l["layer"] for l in a["layers"]] == [1, 2] and a["formats"] == "unknown" and a["engine"] == "torch"
    for layer in a["layers"]:
        assert set(layer) == {"layer", *cellrecord.KEYS}
        assert all(np.array(layer[k]).shape == (n + 1, 512) for k in cellrecord.KEYS)
    assert {g["layer"] for g in a["gates"]} == {1, 2} and 0 < a["gates"][0]["f"]["mean"] < 1
    assert len(a["shown"]["cells"]) >= 1 and a["shown"]["layer"] == 2
    b = numpy_record(tmp_path, CHUNWANG)
    assert b["engine"] == "numpy"
    assert_same(a, b)


def test_torch_record_equals_a_step_by_step_numpy_recomputation(tmp_path):
    """The record's activations against MyLSTM_np.LSTMCell run one step at a time on the checkpoint's weights,
    read without torch."""
    a = torch_record(tmp_path, CHUNWANG)
    params = {k: v.astype(np.float32) for k, v in M.read_torch_checkpoint(TANG)["model"].items()}
    itos = M.read_torch_checkpoint(TANG)["itos"]
    x = params["embed.weight"][[itos.index(t) for t in a["chars"]]]            # (T, E)
    for l, layer in enumerate(a["layers"]):
        W = params[f"lstm.layers.{l}.W"]
        cell = M.LSTMCell(x.shape[1], W.shape[0] // 4)
        cell.W, cell.b = W, params[f"lstm.layers.{l}.b"]
        h = c = np.zeros((1, cell.hidden_size), np.float32)
        hs = []
        for t in range(len(x)):
            h, c, (_, (i, f, o, g, _, _)) = cell.forward(x[t][None], h, c)
            for k, v in zip(cellrecord.KEYS, (i, f, o, g, c, h)):
                assert np.abs(np.array(layer[k][t]) - v[0]).max() < TOL, (l, k, t)
            hs.append(h[0])
        x = np.stack(hs)
    proj = params["embed.weight"] @ params["proj.down.weight"]                  # the tied output layer (V, H)
    logits = x @ proj.T + params["proj.bias"]
    probs = cellrecord.target_probs(logits, [itos.index(t) for t in a["targets"]])
    assert np.allclose(a["prob"], probs, atol=TOL)


@pytest.mark.parametrize("formats", ["none", "auto"])
def test_trace_gives_the_models_own_logits_and_state(tmp_path, formats):
    """On a model with format inputs (the tiny checkpoint's config has them): the re-run equations' last state
    and probabilities equal PoetryLM.forward's, with the poem's format inputs (auto) or without (none)."""
    from training.checkpoint import load_checkpoint, model_from_checkpoint
    model, cfg, itos = model_from_checkpoint(load_checkpoint(tiny_checkpoint(tmp_path, formats=True)),
                                             torch.device("cpu"))
    assert cfg.model.format_inputs
    inputs = cellrecord.read_inputs(TINY_POEM, itos, True, "tang", formats)
    assert inputs.formats == ("poem" if formats == "auto" else "unknown")
    layers, probs = lstm_inspect.read_poem(model, itos, inputs)
    extra = ()
    if inputs.feats is not None:
        assert inputs.feats.any()
        extra = (torch.from_numpy(inputs.feats)[:, None], torch.from_numpy(inputs.pair)[:, None])
    with torch.no_grad():
        logits, (h_n, c_n) = model(torch.from_numpy(inputs.ids)[:, None], None, *extra)
    expect = torch.softmax(logits[:, 0].double(), -1)[torch.arange(len(probs)), torch.from_numpy(inputs.targets)]
    assert np.allclose(probs, expect.numpy(), atol=1e-6)
    for l, layer in enumerate(layers):
        assert np.allclose(layer["h"][-1], h_n[l, 0].numpy(), atol=1e-6)
        assert np.allclose(layer["c"][-1], c_n[l, 0].numpy(), atol=1e-6)


def test_format_inputs_numpy_equals_torch(tmp_path):
    ckpt = tiny_checkpoint(tmp_path, formats=True)
    a = torch_record(tmp_path, TINY_POEM, ckpt)
    b = numpy_record(tmp_path, TINY_POEM, ckpt)
    assert a["formats"] == b["formats"] == "poem"
    assert_same(a, b, 1e-5)
    c = numpy_record(tmp_path, TINY_POEM, ckpt, "--formats", "none", "--overwrite")
    assert c["formats"] == "unknown" and not np.allclose(c["prob"], b["prob"], atol=1e-4)   # they matter


def test_numpy_inspect_never_imports_torch(tmp_path):
    out = tmp_path / "np.json"
    code = ("import sys, MyLSTM_np; from config import run_cli; "
            f"rc = run_cli(MyLSTM_np.main, ['inspect', {CHUNWANG!r}, '--ckpt', {TANG!r}, '--out', {str(out)!r}]); "
            "print(rc, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.stdout.split()[-2:] == ["0", "False"], r.stderr
    assert json.loads(out.read_text(encoding="utf-8"))["chars"][1] == "国"


@pytest.mark.parametrize("args,message", [
    (["hello world"], "neither a Chinese character"),
    (["   "], "empty"),
    ([CHUNWANG, "--ckpt", "/nonexistent/x.pt"], "not found"),
    (["龘龘龘龘龘，龘龘龘龘龘。"], "not in the model's vocabulary"),
    ([CHUNWANG, "--cells", "12,x"], "--cells"),
    ([CHUNWANG, "--cells", "600"], "not a cell"),
    ([CHUNWANG, "--layer", "3"], "--layer"),
    ([CHUNWANG, "--formats", "poem", "--ckpt", TANG], "no format inputs"),
    ([CHUNWANG, "--cells", ",".join(map(str, range(33)))], "1 to 32"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    assert run_cli(lstm_inspect.cmd_inspect, [*args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("error:"), err
    assert not (tmp_path / "x" / "inspect.json").exists()


def test_existing_output_needs_overwrite(tmp_path, capsys):
    torch_record(tmp_path, CHUNWANG)
    assert run_cli(lstm_inspect.cmd_inspect, [CHUNWANG, "--out", str(tmp_path / "torch")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    torch_record(tmp_path, CHUNWANG, TANG, "--overwrite", "--cells", "3,5", "--state", "h", "--layer", "1")
    shown = json.loads((tmp_path / "torch" / "inspect.json").read_text(encoding="utf-8"))["shown"]
    assert shown == {"layer": 1, "state": "h", "cells": [3, 5], "source": "--cells", "labels": shown["labels"]}


def test_main_py_dispatches_inspect(tmp_path):
    r = subprocess.run([sys.executable, "main.py", "inspect", CHUNWANG, "--out", str(tmp_path / "o")], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "layer 2:" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "main.py", "inspect", "abc", "--out", str(tmp_path / "o")], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_heatmap_without_a_cjk_font_warns_and_draws(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cellplot, "FONT_NAMES", ())
    monkeypatch.setattr(cellplot, "FONT_FILES", ())
    chars = ["<bos>", *CHUNWANG]
    cellplot.heatmap(str(tmp_path / "h.png"), chars, np.full(len(chars), 0.5), np.random.rand(len(chars), 3),
                     [1, 2, 3], {2: "a label"}, "test")
    assert (tmp_path / "h.png").stat().st_size > 1000 and "no CJK font" in capsys.readouterr().err
    assert cellplot.labels_of(CHUNWANG[:7], None) == ["1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "2.1"]


def test_strips_cut_at_line_ends():
    text = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。" * 3          # 72 tokens
    parts = cellplot.strips(list(text), wrap=32)
    assert parts[0] == (0, 30) and all(e - s <= 32 for s, e in parts) and parts[-1][1] == 72
    assert all(text[e - 1] in "，。" for _, e in parts)


# ----------------------------------------------------------------------------------------------------------
# the study

def test_properties_of_a_poem():
    p = cells_study.properties("白日依山尽，黄河入海流。", {1}, {"白": "仄", "日": "仄", "依": "平", "黄": "平", "流": "平"})
    assert p["left"].tolist()[:7] == [5, 4, 3, 2, 1, 0, 5] and np.isnan(p["left"][-1])
    assert p["pos"].tolist()[:7] == [1, 2, 3, 4, 5, 6, 1]
    assert p["line"].tolist()[:12] == [1] * 6 + [2] * 6 and p["even"].tolist()[:12] == [0] * 6 + [1] * 6
    assert np.flatnonzero(p["rhyme"][:-1] == 1).tolist() == [10] and p["punct"][:-1].sum() == 2
    assert p["tone"][:3].tolist() == [0, 0, 1] and np.isnan(p["tone"][5]) and p["tone"][10] == 1


def test_probes_find_what_is_there():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 20))
    y = X[:, 3] * 2 + 0.1 * rng.standard_normal(2000)
    hold = np.arange(1500) % 5 == 0
    assert cells_study.ridge_probes(X[:1500], y[:1500, None], X[1500:], y[1500:, None], hold)[0] > 0.99
    r = cells_study.correlations(X, np.where(np.arange(2000) % 7 == 0, np.nan, y))
    assert np.argmax(np.abs(r)) == 3 and abs(r[3]) > 0.99
    Y = np.stack([(X[:, 5] > 0).astype(float), np.where(np.arange(2000) % 3 == 0, np.nan, (X[:, 0] < 0.5) * 1.0)], 1)
    acc, base = cells_study.logistic_probes(X[:1500], Y[:1500], X[1500:], Y[1500:])
    assert min(acc) > 0.95 and 0.5 <= base[0] < 0.6


def synthetic_corpus(itos, n=40, seed=0):
    """A corpus of regular 五言 poems of itos's characters (4 or 8 lines), in every split."""
    import dataUtil
    rng = np.random.default_rng(seed)
    chars = [t for t in itos if t not in dataUtil.SPECIALS and t not in "，。" and convert_chars(t) == t]

    def poem():
        lines = rng.choice([4, 8])
        return "".join("".join(rng.choice(chars, 5)) + ("，" if k % 2 == 0 else "。") for k in range(lines))
    stoi = {w: i for i, w in enumerate(itos)}
    splits = {s: dataUtil.encode([poem() for _ in range(n)], stoi) for s in ("train", "dev", "test")}
    return dataUtil.corpus_of(itos, splits)


def test_a_small_study_writes_its_doc_and_inspect_shows_its_cells(tmp_path, monkeypatch, capsys):
    from studies import base
    ckpt = tiny_checkpoint(tmp_path)
    from training.checkpoint import load_checkpoint, model_from_checkpoint
    model, _, itos = model_from_checkpoint(load_checkpoint(ckpt), torch.device("cpu"))
    monkeypatch.setattr(base, "study_model", lambda path: (path, model, itos, synthetic_corpus(itos)))
    out = tmp_path / "docs" / "cells_tiny.md"
    args = ["--ckpt", ckpt, "--poems", "30", "--out", str(out)]
    assert run_cli(cells_study.cmd_cells, args) == 0
    doc = out.read_text(encoding="utf-8")
    assert doc.count("| characters left in the line |") == 2 and "![gate saturation](cells_tiny_figures/saturation.png)" in doc
    for name in ("saturation", "probes", "top_cells", "showcase"):
        assert (tmp_path / "docs" / "cells_tiny_figures" / f"{name}.png").stat().st_size > 1000
    entry = json.loads((tmp_path / "docs" / "cells_tiny.json").read_text(encoding="utf-8"))
    assert entry["fingerprint"] == cellrecord.fingerprint(lstm_inspect.torch_weights(model))
    for row in entry["rows"]:           # the tiny model is untrained: the same seed's model reads alike
        assert row["probe"] == pytest.approx(row["probe_untrained"]) and row["untrained"] >= abs(row["top"][0][1]) - 1e-9
    assert run_cli(cells_study.cmd_cells, args) == 2 and "--overwrite" in capsys.readouterr().err
    found, path = cellrecord.study_entry(entry["fingerprint"], root=str(tmp_path))
    assert path.endswith("cells_tiny.json")
    values = np.zeros((5, 12))
    cells, labels, why = cellrecord.choose_cells("", 1, values, found, path)
    named = [n["cell"] for n in entry["named"] if n["layer"] == 1]
    assert cells == list(dict.fromkeys(named))[:cellrecord.DEFAULT_SHOWN] and "cells study" in why or not named


# ----------------------------------------------------------------------------------------------------------
# the page's endpoint

@pytest.fixture(scope="module")
def client():
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient
    from serve import server
    from tests_helpers import shipped_models
    return TestClient(server.make_app(server.Engine(shipped_models(), torch.device("cpu"))))


def test_api_inspect_answers_the_chosen_cells(client):
    r = client.post("/api/inspect", json={"poem": CHUNWANG, "layer": 1, "cells": [5, 300], "state": "h"})
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["chars"][1:] == list(CHUNWANG) and a["layer"] == 1 and a["layers"] == 2 and a["hidden"] == 512
    assert [c["cell"] for c in a["cells"]] == [5, 300] and a["source"] == "--cells"
    for c in a["cells"]:
        assert all(len(c[k]) == len(CHUNWANG) + 1 for k in ("values", "i", "f", "o"))
    tang = shipped_models_record()
    assert np.allclose(a["cells"][1]["values"], np.array(tang["layers"][0]["h"])[:, 300], atol=1e-4)
    assert np.allclose(a["prob"], tang["prob"], atol=1e-4)
    default = client.post("/api/inspect", json={"poem": CHUNWANG}).json()
    assert default["layer"] == 2 and 1 <= len(default["cells"]) <= cellrecord.DEFAULT_SHOWN


def shipped_models_record(cache={}):
    if not cache:
        model, _, itos = lstm_inspect.model_from_checkpoint(lstm_inspect.load_checkpoint(SHIPPED), torch.device("cpu"))
        inputs = cellrecord.read_inputs(CHUNWANG, itos, model.cfg.format_inputs)
        layers, probs = lstm_inspect.read_poem(model, itos, inputs)
        cache.update(cellrecord.build_record(inputs, itos, layers, probs, {}))
    return cache


@pytest.mark.parametrize("body,message", [
    ({"poem": "国" * 401}, "over 400"),
    ({"poem": CHUNWANG, "cells": list(range(33))}, "at most 32"),
    ({"poem": CHUNWANG, "cells": [9999]}, "not a cell"),
    ({"poem": CHUNWANG, "cells": "1,2"}, "cells"),
    ({"poem": CHUNWANG, "layer": "2"}, "layer"),
    ({"poem": CHUNWANG, "state": "x"}, "state"),
    ({"poem": CHUNWANG, "colour": 1}, "unknown key"),
    ({"text": CHUNWANG}, "give poem"),
    ({"poem": "<b>x</b>"}, "neither a Chinese character"),
])
def test_api_inspect_refuses_bad_requests(client, body, message):
    r = client.post("/api/inspect", json=body)
    assert r.status_code == 400 and message in r.json()["error"], r.text
