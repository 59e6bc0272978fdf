"""Runs that never clobber, crash or mislead: earlier runs kept, one live run per directory, failed saves,
stop-time evaluation, leftovers and stale metrics after a resume."""
import json
import os

import pytest
import torch

from training import loop
from training import checkpoint
from config import UserError
from test_model_train import run, tiny_cfg
from conftest import FIXTURE_RAW


def metrics(cfg):
    return [json.loads(line) for line in open(os.path.join(cfg.train.ckpt_dir, "metrics.jsonl"))]


def test_a_run_stopped_before_its_first_evaluation_still_leaves_best(tmp_path):
    cfg = tiny_cfg(tmp_path, max_steps=3, pp_every=100)
    out = loop.train(cfg)
    best = checkpoint.load_checkpoint(os.path.join(cfg.train.ckpt_dir, "best.pt"))
    assert best["step"] == 3 and best["best_ppl"] == out["best_ppl"] < float("inf")
    assert [r["step"] for r in metrics(cfg) if "dev_ppl" in r] == [3]


def test_a_new_run_refuses_a_directory_holding_an_earlier_run(tmp_path):
    cfg = tiny_cfg(tmp_path, max_steps=4, pp_every=2)
    loop.train(cfg)
    before = {n: open(os.path.join(cfg.train.ckpt_dir, n), "rb").read() for n in ("best.pt", "last.pt", "metrics.jsonl")}
    with pytest.raises(UserError, match="earlier run.*--resume .*last.pt.*--overwrite"):
        loop.train(tiny_cfg(tmp_path, max_steps=2, pp_every=2))
    after = {n: open(os.path.join(cfg.train.ckpt_dir, n), "rb").read() for n in before}
    assert before == after
    cfg.train.overwrite, cfg.train.max_steps = True, 2
    loop.train(cfg)                                   # told to: starts anew
    assert max(r["step"] for r in metrics(cfg)) == 2


def test_cli_refusal_is_one_line_exit_2(tmp_path):
    args = ["train", "--raw-dir", FIXTURE_RAW, "--data-dir", str(tmp_path / "d"), "--ckpt-dir", str(tmp_path / "c"),
            "--embed-dim", "8", "--hidden-size", "8", "--batch-size", "4", "--min-freq", "1", "--max-steps", "2"]
    assert run(*args).returncode == 0
    r = run(*args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "earlier run" in r.stderr, r.stderr


def test_a_second_live_run_into_the_same_directory_is_refused(tmp_path):
    cfg = tiny_cfg(tmp_path, max_steps=2)
    holder = loop.RunDir(cfg.train)                    # a live run holds the lock
    try:
        with pytest.raises(UserError, match="another run is training"):
            loop.train(cfg)
    finally:
        holder.release()
    loop.train(cfg)                                   # free again once released


def test_a_failed_save_removes_its_temporary_file_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, max_steps=4, pp_every=2)
    loop.train(cfg)
    last = os.path.join(cfg.train.ckpt_dir, "last.pt")
    good = open(last, "rb").read()
    real_save = torch.save

    def full_disk(obj, path):                             # what a full disk does: a partial file, then an error
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file "
                           "data/3: file write failed")
    monkeypatch.setattr(torch, "save", full_disk)
    model = torch.nn.Linear(2, 2)
    with pytest.raises(checkpoint.SaveFailed, match="could not write .*last.pt .*PytorchStreamWriter"):
        checkpoint.save_checkpoint(last, model, None, cfg, ["a"], {})
    assert open(last, "rb").read() == good and not [n for n in os.listdir(cfg.train.ckpt_dir) if n.endswith(".tmp")]
    monkeypatch.setattr(torch, "save", real_save)


def test_training_on_a_full_disk_stops_with_one_line(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, max_steps=6, pp_every=2)

    def full_disk(obj, path):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(checkpoint.SaveFailed, match="No space left on device"):
        loop.train(cfg)
    assert not [n for n in os.listdir(cfg.train.ckpt_dir) if n.endswith(".tmp")]


def test_leftover_temporary_files_are_removed_and_resume_drops_metrics_past_its_step(tmp_path):
    cfg = tiny_cfg(tmp_path, max_steps=5, pp_every=5)
    loop.train(cfg)
    ckpt_dir = cfg.train.ckpt_dir
    os.replace(os.path.join(ckpt_dir, "last.pt"), os.path.join(ckpt_dir, "step5.pt"))
    cfg.train.max_steps = 10
    cfg.train.resume = os.path.join(ckpt_dir, "step5.pt")
    loop.train(cfg, checkpoint.load_checkpoint(cfg.train.resume))          # metrics now reach step 10
    open(os.path.join(ckpt_dir, "best.pt.tmp"), "wb").write(b"half a checkpoint")   # a killed save
    cfg.train.max_steps = 7                                                   # resume the step-5 file again
    loop.train(cfg, checkpoint.load_checkpoint(cfg.train.resume))
    steps = [r["step"] for r in metrics(cfg) if "loss" in r]
    assert steps == list(range(1, 8))                                         # no duplicates, nothing past 7
    assert not os.path.exists(os.path.join(ckpt_dir, "best.pt.tmp"))


def test_resuming_another_run_into_a_folder_holding_a_third_is_refused(tmp_path):
    a = tiny_cfg(tmp_path / "a", max_steps=2)
    loop.train(a)
    b = tiny_cfg(tmp_path / "b", max_steps=2)
    loop.train(b)
    before = open(os.path.join(b.train.ckpt_dir, "metrics.jsonl")).read()
    c = tiny_cfg(tmp_path / "b", max_steps=4, resume=os.path.join(a.train.ckpt_dir, "last.pt"))
    with pytest.raises(UserError, match="holds another run"):
        loop.train(c, checkpoint.load_checkpoint(c.train.resume))
    assert open(os.path.join(b.train.ckpt_dir, "metrics.jsonl")).read() == before


def test_overwrite_is_never_inherited_from_a_checkpoint(tmp_path):
    common = ["--raw-dir", FIXTURE_RAW, "--data-dir", str(tmp_path / "d"), "--embed-dim", "8", "--hidden-size", "8",
              "--batch-size", "4", "--min-freq", "1", "--max-steps", "2"]
    assert run("train", *common, "--ckpt-dir", str(tmp_path / "a"), "--overwrite").returncode == 0
    assert run("train", *common, "--ckpt-dir", str(tmp_path / "b")).returncode == 0
    kept = open(tmp_path / "b" / "metrics.jsonl").read()
    r = run("train", *common, "--ckpt-dir", str(tmp_path / "b"), "--resume", str(tmp_path / "a" / "last.pt"),
            "--max-steps", "4")
    assert r.returncode == 2 and "holds another run" in r.stderr
    assert open(tmp_path / "b" / "metrics.jsonl").read() == kept
