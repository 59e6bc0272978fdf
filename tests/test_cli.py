"""The command lines as a newcomer meets them: help, did-you-mean, pipes, bounded generation, and the
torch-free checkpoint reader refusing crafted files."""
import io
import os
import pickle
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import MyLSTM_np as M
from conftest import ROOT
from tests_helpers import tiny_checkpoint


def run(script, *args):
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.mark.parametrize("args", [["main.py", "--help"], ["main.py", "train", "--help"],
                                  ["main.py", "generate", "--help"], ["main.py", "evaluate", "--help"],
                                  ["MyLSTM_np.py", "--help"], ["MyLSTM_np.py", "generate", "--help"],
                                  ["dataUtil.py", "prepare", "--help"]])
def test_help_exits_0(args):
    r = run(*args)
    assert r.returncode == 0 and "usage" in (r.stdout + r.stderr).lower() or "python" in r.stdout, r.stderr


def test_every_train_flag_has_a_description_and_choices_are_listed():
    out = run("main.py", "train", "--help").stdout
    assert "--optimizer sgd|momentum|nesterov|adagrad|adadelta|adam|adamw|rmsprop" in out
    assert "--lstm fused|python|autograd|cudnn" in out
    gen = run("main.py", "generate", "--help").stdout
    assert "--form 0|5|7" in gen and "--lines 0|4|8" in gen
    assert "(default: " in out and " (default: " in gen
    import config
    helps = config.field_help()
    fields = {f.name for s in ("data", "model", "train", "gen")
              for f in config.dataclasses.fields(getattr(config.Config(), s)) if "_" in f.name}
    for section in ("data", "model", "train", "gen"):
        for f in config.dataclasses.fields(getattr(config.Config(), section)):
            text = helps.get((section, f.name))
            assert text, f.name                                # every field carries its one-line help ...
            assert not fields & set(re.findall(r"\w+", text)), (f.name, text)   # ... naming flags, not fields


@pytest.mark.parametrize("args,hint", [(["main.py", "genrate"], "did you mean generate?"),
                                       (["main.py", "train", "--hiden-size", "3"], "did you mean --hidden-size?"),
                                       (["MyLSTM_np.py", "tset"], "did you mean test?")])
def test_misspellings_get_a_suggestion(args, hint):
    r = run(*args)
    assert r.returncode == 2 and hint in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@pytest.mark.parametrize("args,message", [(["--seeds", "0"], "--seeds must be at least 1"),
                                          (["--optimizers", "sgd,lbfgs"], "--optimizers: one or more of"),
                                          (["--optimizers", ""], "--optimizers: one or more of"),   # no empty study
                                          (["--sweep-steps", "40"], "unrecognized arguments: --sweep-steps")])
def test_the_optimiser_study_refuses_bad_requests_before_any_work(args, message):
    r = run("main.py", "experiment", "optim", *args)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_numpy_generate_refuses_the_options_it_does_not_implement(tmp_path):
    ckpt = tiny_checkpoint(tmp_path)
    r = run("MyLSTM_np.py", "generate", "--ckpt", ckpt, "--start", "一", "--form", "5")
    assert r.returncode == 2 and "--form" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    ok = run("MyLSTM_np.py", "generate", "--ckpt", ckpt, "--start", "一", "--num", "70", "--max-gen-len", "4")
    assert ok.returncode == 0 and len(ok.stdout.strip().split("\n\n")) == 70, ok.stderr


def test_a_closed_pipe_ends_generation_quietly(tmp_path):
    ckpt = tiny_checkpoint(tmp_path)
    p = subprocess.run(f"{sys.executable} main.py generate --ckpt {ckpt} --start 一 --num 3000 --max-gen-len 3 "
                       "| head -1", shell=True, cwd=ROOT, capture_output=True, text=True)
    assert p.stdout.strip().startswith("一") and "Traceback" not in p.stderr, p.stderr


def crafted_checkpoint(path, numel_storage, size, stride=None, offset=0):
    """A torch-format zip whose only tensor views a storage of numel_storage floats with the given size,
    stride and offset, written by hand (torch.save would never write an out-of-bounds view)."""
    import collections
    import torch

    class Rebuild:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (Storage(), offset, tuple(size),
                                                      tuple(stride or [1] * len(size)), False,
                                                      collections.OrderedDict()))

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({"model": Rebuild()})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        z.writestr("archive/data/0", np.zeros(numel_storage, np.float32).tobytes())


class Storage:
    pass


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", "FloatStorage", "0", "cpu", 4) if isinstance(obj, Storage) else None


def test_the_torch_free_reader_refuses_views_outside_their_storage(tmp_path):
    ok, big, past, neg = (str(tmp_path / n) for n in ("ok.pt", "big.pt", "past.pt", "neg.pt"))
    crafted_checkpoint(ok, 4, [2, 2], [2, 1])
    crafted_checkpoint(big, 4, [400_000_000])
    crafted_checkpoint(past, 4, [2000])
    crafted_checkpoint(neg, 4, [2], [1], offset=-1)
    assert M.read_torch_checkpoint(ok)["model"].shape == (2, 2)
    for path in (big, past, neg):
        with pytest.raises(ValueError, match="tensor"):
            M.read_torch_checkpoint(path)


def test_generate_many_poems_comes_in_bounded_batches(tmp_path, monkeypatch):
    from writing import decoding
    from writing import requests
    from training import checkpoint
    from config import Config
    ckpt = tiny_checkpoint(tmp_path)
    model, _, itos = checkpoint.model_from_checkpoint(checkpoint.load_checkpoint(ckpt), __import__("torch").device("cpu"))
    sizes = []
    real = decoding.sample_scored
    monkeypatch.setattr(decoding, "sample_scored",
                        lambda m, i, starts, *a, **k: sizes.append(len(starts)) or real(m, i, starts, *a, **k))
    g = Config().gen
    g.start, g.num, g.max_gen_len, g.candidates = "一", 150, 3, 1
    poems = list(requests.iter_poems(model, itos, g, __import__("torch").device("cpu")))
    assert len(poems) == 150 and sizes == [64, 64, 22]
    sizes.clear()
    g.num, g.candidates = 20, 4                            # 16 poems of 4 candidates fill a batch of 64
    poems = list(requests.iter_poems(model, itos, g, __import__("torch").device("cpu")))
    assert len(poems) == 20 and sizes == [64, 16] and all(len(p.others) == 3 for p in poems)


def test_the_model_used_is_ckpt_then_best_then_pretrained(tmp_path, monkeypatch, capsys):
    import config
    from config import UserError
    monkeypatch.chdir(tmp_path)
    assert config.pick_checkpoint("mine.pt") == "mine.pt"
    shipped = os.path.join(ROOT, config.PRETRAINED)
    assert config.pick_checkpoint("") == shipped and "shipped model" in capsys.readouterr().err
    monkeypatch.setattr(config, "PRETRAINED", "pretrained/missing.pt")      # a clone without the model
    with pytest.raises(UserError, match="train first"):
        config.pick_checkpoint("")
    os.makedirs("checkpoints")
    open("checkpoints/best.pt", "wb").close()
    assert config.pick_checkpoint("") == config.TRAINED and "your trained model" in capsys.readouterr().err


def test_ctrl_c_at_any_moment_is_one_line(tmp_path):
    import signal
    import time
    ckpt = tiny_checkpoint(tmp_path)
    for delay in (0.5, 1.5, 3.0):                      # while importing, loading, generating
        p = subprocess.Popen([sys.executable, "main.py", "generate", "--ckpt", ckpt, "--start", "一", "--num",
                              "100000"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        err = p.communicate(timeout=60)[1]
        assert p.returncode == 130 and err.strip().splitlines()[-1] == "interrupted", (delay, err[-500:])
        assert "Traceback" not in err
