"""The failures found by the second reliability search (docs/reliability.md lists every case tried), each
reproduced: lost or overwritten work, tracebacks, unbounded memory, misleading output."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from writing import decoding
from writing import constraints
from common import fileio
from training import loop
from training import checkpoint
from config import Config, ModelConfig, UserError
from conftest import FIXTURE_RAW, ROOT
from test_model_train import run, tiny_cfg
from tests_helpers import TINY_ITOS, tiny_checkpoint
from verse.tables import load_tone_table, prepared_or_shipped


def read(path):
    with open(path, "rb") as f:
        return f.read()


# ----------------------------------------------------------------------------------------------------------
# work never lost or overwritten

def test_resuming_an_older_checkpoint_never_replaces_a_better_best(tmp_path):
    cfg = tiny_cfg(tmp_path, max_steps=30, pp_every=5)
    done = loop.train(cfg)
    d = cfg.train.ckpt_dir
    best_before = read(os.path.join(d, "best.pt"))
    young = tiny_cfg(tmp_path / "young", max_steps=1)               # an older state of the run: one step in
    loop.train(young)
    older = os.path.join(d, "epoch_0.pt")
    shutil.copyfile(os.path.join(young.train.ckpt_dir, "last.pt"), older)
    cfg.train.resume, cfg.train.max_steps = older, 2
    resumed = loop.train(cfg, checkpoint.load_checkpoint(older))
    assert resumed["best_ppl"] > done["best_ppl"]              # the resumed model is worse ...
    assert read(os.path.join(d, "best.pt")) == best_before     # ... so best.pt stays the better one


def test_a_new_run_never_deletes_files_it_did_not_write(tmp_path):
    cfg = tiny_cfg(tmp_path, max_steps=2)
    d = cfg.train.ckpt_dir
    os.makedirs(d)
    for name, data in (("epoch_2.pt", b"a user's checkpoint"), ("notes.tmp", b"a user's notes")):
        open(os.path.join(d, name), "wb").write(data)
    with pytest.raises(UserError, match="earlier run.*epoch_2.pt"):
        loop.train(cfg)
    assert read(os.path.join(d, "epoch_2.pt")) == b"a user's checkpoint"
    assert read(os.path.join(d, "notes.tmp")) == b"a user's notes"
    os.remove(os.path.join(d, "epoch_2.pt"))
    loop.train(cfg)                                        # notes only: the run starts, notes kept
    assert read(os.path.join(d, "notes.tmp")) == b"a user's notes"
    cfg.train.overwrite = True
    loop.train(cfg)                                        # --overwrite: the run's own files only
    assert read(os.path.join(d, "notes.tmp")) == b"a user's notes"


def test_a_torn_metrics_line_does_not_stop_a_resume(tmp_path):
    cfg = tiny_cfg(tmp_path, max_steps=4, pp_every=2)
    loop.train(cfg)
    d = cfg.train.ckpt_dir
    with open(os.path.join(d, "metrics.jsonl"), "a") as f:
        f.write('{"step": 5, "lo')                            # a full disk cut the last write short
    cfg.train.resume, cfg.train.max_steps = os.path.join(d, "last.pt"), 6
    loop.train(cfg, checkpoint.load_checkpoint(cfg.train.resume))
    rows = [json.loads(line) for line in open(os.path.join(d, "metrics.jsonl"))]   # every line parses
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 7))


def test_a_failed_append_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = str(tmp_path / "m.jsonl")
    fileio.append_line(path, '{"step": 1}')
    before = read(path)
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:3]))    # the disk filled mid-line
    with pytest.raises(OSError):
        fileio.append_line(path, '{"step": 2, "loss": 1.0}')
    monkeypatch.setattr(os, "write", real_write)
    assert read(path) == before


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = str(tmp_path / "study.md")
    fileio.write_text(path, "the committed study\n")

    def fail(tmp):
        open(tmp, "w").write("half")
        raise OSError(28, "No space left on device")
    with pytest.raises(OSError):
        fileio.atomic_write(path, fail)
    assert open(path).read() == "the committed study\n" and os.listdir(tmp_path) == ["study.md"]


def test_export_refuses_a_folder_and_keeps_the_tables_kept_beside_it(tmp_path, tiny_ckpt_path):
    out = tmp_path / "out"
    out.mkdir()
    r = run("export", "--ckpt", tiny_ckpt_path, "--out", str(out))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "is a folder" in r.stderr, r.stderr
    data = tmp_path / "data" / "processed"
    data.mkdir(parents=True)
    (data / "tones.json").write_text('{"table": {"春": "平"}}')
    (out / "tones.json").write_text("the user's own table")
    r = run("export", "--ckpt", tiny_ckpt_path, "--out", str(out / "m.pt"), "--data-dir", str(tmp_path / "data"))
    assert r.returncode == 2 and "tones.json" in r.stderr and not (out / "m.pt").exists()
    assert (out / "tones.json").read_text() == "the user's own table"
    r = run("export", "--ckpt", tiny_ckpt_path, "--out", str(out / "m.pt"), "--data-dir", str(tmp_path / "data"),
            "--overwrite")
    assert r.returncode == 0 and (out / "tones.json").read_text() == '{"table": {"春": "平"}}'


def test_export_into_a_read_only_folder_is_one_line_exit_1(tmp_path, tiny_ckpt_path):
    if os.geteuid() == 0:
        ro = "/proc/tang.pt"                                   # root writes anywhere but here
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        ro = str(tmp_path / "ro" / "tang.pt")
    r = run("export", "--ckpt", tiny_ckpt_path, "--out", ro)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


@pytest.fixture
def tiny_ckpt_path(tmp_path):
    return tiny_checkpoint(tmp_path)


# ----------------------------------------------------------------------------------------------------------
# memory and sampling

class CountingModel(torch.nn.Module):
    """A model wrapper that records the time length of every call."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.lengths = inner, []

    def forward(self, tokens, state=None):
        self.lengths.append(tokens.shape[0])
        return self.inner(tokens, state)


def test_a_long_prefix_is_read_in_chunks_with_the_same_result(tmp_path):
    model, _, itos = checkpoint.model_from_checkpoint(checkpoint.load_checkpoint(tiny_checkpoint(tmp_path)), "cpu")
    tokens = torch.randint(4, len(itos), (300, 3))
    counted = CountingModel(model)
    with torch.no_grad():
        logits, (h, c) = decoding.read_in_chunks(counted, tokens)
        full, (h_full, c_full) = model(tokens)
    assert max(counted.lengths) <= 64 and sum(counted.lengths) == 300
    assert logits.shape[0] == 1                                 # only the last step's logits are kept
    torch.testing.assert_close(logits[0], full[-1], atol=1e-5, rtol=0)
    torch.testing.assert_close(h, h_full, atol=1e-5, rtol=0)


def test_an_empty_constraint_mask_is_a_one_line_error_naming_the_constraint(tmp_path, monkeypatch):
    model, _, itos = checkpoint.model_from_checkpoint(checkpoint.load_checkpoint(tiny_checkpoint(tmp_path)), "cpu")
    g = Config().gen
    g.form, g.lines, g.rhyme = 5, 4, True
    monkeypatch.setattr(constraints.Automaton, "in_form", lambda self: np.zeros(len(itos), bool))   # nothing fits
    with pytest.raises(UserError, match="no character .* fits --form 5 --lines 4 --rhyme at line 1, position 1"):
        decoding.sample(model, itos, [[]], g, "cpu", torch.Generator().manual_seed(0), constraints.spec_from(g))


def test_tones_alone_names_tones(tmp_path):
    g = Config().gen
    g.tones = True
    with pytest.raises(UserError, match=r"^--tones needs --form"):
        constraints.spec_from(g)


# ----------------------------------------------------------------------------------------------------------
# every command answers --help

@pytest.mark.parametrize("argv", [["main.py", "--help"], ["main.py", "train", "--help"],
                                  ["main.py", "generate", "--help"], ["main.py", "evaluate", "--help"],
                                  ["main.py", "export", "--help"], ["main.py", "experiment", "--help"],
                                  ["main.py", "experiment", "optim", "--help"], ["dataUtil.py", "--help"],
                                  ["dataUtil.py", "prepare", "--help"], ["MyLSTM_np.py", "--help"],
                                  ["benchmark.py", "--help"]])
def test_every_command_answers_help_with_exit_0(argv):
    import subprocess
    import sys
    from conftest import ROOT
    r = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONWARNINGS": "default"})
    assert r.returncode == 0 and r.stdout.strip() and not r.stderr.strip(), (argv, r.stderr[-500:])


def test_no_library_warning_before_a_one_line_error(tmp_path):
    """fastNLP's pkg_resources warning and torch's pickle-protocol warning never reach the user."""
    import subprocess
    import sys
    from conftest import ROOT
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    r = subprocess.run([sys.executable, "-c", "import dataUtil; dataUtil.fastnlp_vocabulary()"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    foreign = str(tmp_path / "foreign.pt")
    torch.save({"format": 1, "weights": torch.zeros(2)}, foreign, pickle_protocol=4)
    r = subprocess.run([sys.executable, "main.py", "generate", "--ckpt", foreign, "--start", "春"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


# ----------------------------------------------------------------------------------------------------------
# every flag's range, from one table

def numeric_fields():
    import dataclasses
    cfg = Config()
    return [(s, f.name) for s in ("data", "model", "train", "gen") for f in dataclasses.fields(getattr(cfg, s))
            if type(getattr(getattr(cfg, s), f.name)) in (int, float) and (s, f.name) != ("model", "vocab_size")]


def test_every_numeric_setting_has_a_range_or_choices():
    import config
    missing = [k for k in numeric_fields() if k not in config.RANGES and k not in config.CHOICES]
    assert not missing, missing


def outside(interval, kind):
    """Values just outside an interval "[a, b]" / "(a, b]" ..., of the field's type."""
    lo, hi = (int(x) if x.strip().lstrip("-").isdigit() else float(x) for x in interval[1:-1].split(","))
    step = 1 if kind is int else 1e-9 * max(1.0, abs(hi))
    below = lo if interval[0] == "(" else lo - (1 if kind is int else max(step, 1e-9))
    above = hi if interval[-1] == ")" else hi + (1 if kind is int else step)
    return [kind(below), kind(above)]


@pytest.mark.parametrize("section,name", sorted(__import__("config").RANGES))
def test_each_range_refuses_values_just_outside_it(section, name):
    import config
    kind = type(getattr(getattr(Config(), section), name))
    for value in outside(config.RANGES[section, name], kind):
        cfg = Config()
        setattr(getattr(cfg, section), name, value)
        with pytest.raises(UserError, match="--" + name.replace("_", "-")):
            config.check_config(cfg)
    config.check_config(Config())                       # the defaults lie inside every range


@pytest.mark.parametrize("flags", [["--hidden-size", "1000000"], ["--batch-size", "-1"]])   # the rest in-process
def test_train_refuses_huge_or_negative_sizes_in_one_line(flags, tmp_path):
    r = run("train", *flags, "--data-dir", str(tmp_path / "d"), "--ckpt-dir", str(tmp_path / "c"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and flags[0] in r.stderr, r.stderr
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()     # refused before any work


@pytest.mark.parametrize("device", ["mps", "meta", "cuda:7", "cpu:0", "CUDA"])
def test_devices_this_machine_lacks_are_refused_by_name(device):
    from config import TrainConfig
    with pytest.raises(UserError, match="--device"):
        checkpoint.pick_device(TrainConfig(device=device))


def test_a_device_this_machine_lacks_is_one_line_exit_2(tiny_ckpt_path):
    r = run("generate", "--ckpt", tiny_ckpt_path, "--start", TINY_ITOS[10], "--device", "mps")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--device" in r.stderr, r.stderr


def test_an_output_that_cannot_show_chinese_is_one_line(tiny_ckpt_path):
    import subprocess
    import sys
    from conftest import ROOT
    r = subprocess.run([sys.executable, "main.py", "generate", "--ckpt", tiny_ckpt_path, "--start", TINY_ITOS[10]],
                       cwd=ROOT, capture_output=True, timeout=120,
                       env={**os.environ, "PYTHONIOENCODING": "ascii", "PYTHONWARNINGS": "ignore"})
    err = r.stderr.decode("ascii", "replace")
    assert r.returncode == 1 and len(err.strip().splitlines()) == 1 and "PYTHONIOENCODING" in err, err


# ----------------------------------------------------------------------------------------------------------
# found by the probe (docs/reliability.md)

@pytest.mark.parametrize("section,name", [("gen", "start"), ("gen", "prefix"), ("gen", "ckpt"), ("train", "ckpt_dir")])
def test_text_flags_with_undecodable_bytes_are_refused_by_name(section, name):
    import config
    cfg = Config()
    setattr(getattr(cfg, section), name, "\udcff\udcfe")         # what Python makes of the bytes ff fe
    with pytest.raises(UserError, match="--" + name.replace("_", "-") + " holds bytes that are not UTF-8"):
        config.check_config(cfg)


@pytest.mark.parametrize("args", [["--cipai", "不存在"], ["--start", "日", "--tones"],
                                  ["--acrostic", "春夏秋冬", "--form", "7", "--lines", "8"]])
def test_a_bad_generate_request_is_one_line_before_any_model_is_named(args):
    r = run("generate", *args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "using" not in r.stderr, r.stderr


def test_a_save_into_a_missing_place_is_not_called_a_full_disk(tmp_path, tiny_ckpt_path):
    (tmp_path / "file.txt").write_text("a file where a folder should be")
    r = run("export", "--ckpt", tiny_ckpt_path, "--out", str(tmp_path / "file.txt" / "x.pt"))
    assert r.returncode == 1 and "no space" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_two_prepares_into_one_folder_at_once_both_succeed(tmp_path):
    import subprocess
    import sys
    from conftest import ROOT
    cmd = [sys.executable, "dataUtil.py", "prepare", "--raw-dir", FIXTURE_RAW, "--data-dir", str(tmp_path / "d"),
           "--min-freq", "1", "--dev-frac", "0.2", "--test-frac", "0.2"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert not [n for n in os.listdir(tmp_path / "d" / "processed") if ".tmp" in n]
    cfg = Config()
    cfg.data.raw_dir, cfg.data.data_dir, cfg.data.min_freq = FIXTURE_RAW, str(tmp_path / "d"), 1
    cfg.data.dev_frac = cfg.data.test_frac = 0.2
    import dataUtil
    assert dataUtil.read_cache(os.path.join(str(tmp_path / "d"), "processed", "corpus.npz"),
                               dataUtil.cache_key(cfg, dataUtil.source_files(cfg, dataUtil.raw_files(FIXTURE_RAW))),
                               dataUtil.settings_key(cfg)) is not None


def test_ctrl_c_during_generation_is_one_line_and_130(tiny_ckpt_path):
    import signal
    import subprocess
    import sys
    import time
    from conftest import ROOT
    p = subprocess.Popen([sys.executable, "main.py", "generate", "--ckpt", tiny_ckpt_path, "--start", TINY_ITOS[10],
                          "--num", "100000"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert p.stdout.readline()                               # generating
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err, err


@pytest.mark.parametrize("argv,code,says", [
    (["main.py", "experiment", "recipe", "--variants", "99"], 2, "--variants"),
    (["main.py", "experiment", "recipe", "--variants", "abc"], 2, "--variants"),
    (["main.py", "generate", "--start", "日", "--precision", "fp16"], 2, "--precision"),
    (["main.py", "generate", "--ckpt", "/tmp", "--start", "日"], 2, "not a file"),
    (["dataUtil.py", "export-npz", "/tmp"], 2, "is a folder"),                  # refused before any work
    (["benchmark.py", "train", "--steps", "0"], 2, "--steps"),
    (["benchmark.py", "train", "--variants", "bogus"], 2, "--variants"),
    (["main.py", "generate", "--start", "日", "--keywords", "春", "夏", "秋", "冬", "雪"], 2, "give 1 to 4"),
    (["main.py", "generate", "--start", "日", "--keywords", "春", "--free"], 2, "needs a form"),
    (["main.py", "revise", "白日依山尽，黄河入海流。", "--line", "9"], 2, "has 2 lines"),
    (["main.py", "revise", "白日依山尽，黄河入海流。千里目。", "--line", "1"], 2, "not a regular poem"),
    (["main.py", "check", "--no-model", "hello"], 2, "neither a Chinese"),
    (["main.py", "serve", "--port", "0"], 2, "--port"),
    (["main.py", "serve", "--precision", "fp16"], 2, "--precision"),
    (["tools/loadtest.py", "--rounds", "0"], 2, "--rounds"),
])
def test_probe_cases_are_one_line(argv, code, says):
    import subprocess
    import sys
    from conftest import ROOT
    r = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONWARNINGS": "default"})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code and len(lines) == 1 and says in lines[0], r.stderr[-800:]


@pytest.mark.parametrize("damage", ["folder", "schema"])
def test_a_damaged_prepared_table_falls_back_to_the_shipped_one_with_a_warning(tmp_path, capsys, damage):
    import dataUtil
    processed = tmp_path / "processed"
    processed.mkdir()
    if damage == "folder":
        (processed / "tones.json").mkdir()
    else:
        (processed / "tones.json").write_text('{"table": {"春": "rising"}}', encoding="utf-8")   # not 平/仄/both
    table = prepared_or_shipped("tones.json", load_tone_table, str(tmp_path))
    shipped = load_tone_table(os.path.join(ROOT, "pretrained", "tones.json"))
    assert table == shipped and table
    assert "warning:" in capsys.readouterr().err
