"""torchrun with two gloo ranks on the CPU: the same update as one process, checkpoints plain generate loads,
resume across a change of world size, and a stop signal to one rank ending both."""
import json
import os
import signal
import subprocess
import sys
import time

import torch

from training import loop
from training import checkpoint
from conftest import FIXTURE_RAW, ROOT

SMALL = ["--raw-dir", FIXTURE_RAW, "--min-freq", "1", "--dev-frac", "0.2", "--test-frac", "0.2", "--embed-dim", "16",
         "--hidden-size", "24", "--num-layers", "2", "--batch-size", "5", "--lr", "0.01", "--pp-every", "3",
         "--gen-every", "0", "--device", "cpu", "--precision", "fp32"]   # bf16 rounds a rank's half-batch sums
                                                                         # otherwise than the whole: not 1e-4
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1",
       "PYTHONFAULTHANDLER": "1", "TORCH_SHOW_CPP_STACKTRACES": "1"}      # a rank that aborts says where


def rank_errors(stderr):
    """What the ranks themselves said when they failed, ahead of torchrun's summary (which fills the tail)."""
    keys = ("Error", "error", "terminate", "what()", "Fatal", "Traceback", "File ", "Thread", "abort")
    said = [l for l in stderr.splitlines() if any(k in l for k in keys) and "torch/distributed/" not in l]
    return "\n".join(said)[:3000] + "\n...\n" + stderr[-1000:]


def train(tmp_path, run, ranks, *extra, wait=True):
    args = ["train", *SMALL, "--data-dir", str(tmp_path / "data"), "--ckpt-dir", str(tmp_path / run), *extra]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)] \
        if ranks > 1 else [sys.executable]
    cmd = launcher + ["main.py", *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    r = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, rank_errors(r.stderr)
    return r


def weights(tmp_path, run, name="last.pt"):
    return checkpoint.load_checkpoint(str(tmp_path / run / name))


def assert_same_weights(a, b, rel=1e-4):
    for k in a["model"]:
        err = ((a["model"][k] - b["model"][k]).norm() / a["model"][k].norm()).item()
        assert err <= rel, (k, err)


def test_two_ranks_make_the_update_of_one_process_and_write_plain_checkpoints(tmp_path):
    train(tmp_path, "one", 1, "--max-steps", "6")
    two = train(tmp_path, "two", 2, "--max-steps", "6")
    a, b = weights(tmp_path, "one"), weights(tmp_path, "two")
    assert a["step"] == b["step"] == 6
    assert_same_weights(a, b)
    assert abs(a["best_ppl"] - b["best_ppl"]) <= 1e-3 * a["best_ppl"]       # dev perplexity: rank 0, whole split
    assert two.stdout.count("stopped:") == 1                                 # rank 0 alone reports and writes
    rows = [json.loads(l) for l in open(tmp_path / "two" / "metrics.jsonl")]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert not any(k.startswith("module.") for k in b["model"])              # unwrapped state_dict
    g = subprocess.run([sys.executable, "main.py", "generate", "--ckpt", str(tmp_path / "two" / "best.pt"),
                        "--start", "秦", "--max-gen-len", "8"], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert g.returncode == 0 and g.stdout.startswith("秦"), g.stderr


def test_resume_under_two_ranks_from_a_one_process_checkpoint(tmp_path):
    train(tmp_path, "straight", 1, "--max-steps", "7")
    train(tmp_path, "split", 1, "--max-steps", "3")
    last = str(tmp_path / "split" / "last.pt")
    r = train(tmp_path, "split", 2, "--max-steps", "7", "--resume", last)
    assert "resumed from step 3" in r.stdout
    a, b = weights(tmp_path, "straight"), weights(tmp_path, "split")
    assert b["step"] == 7 and b["epoch"] == a["epoch"] and b["batch_in_epoch"] == a["batch_in_epoch"]
    assert_same_weights(a, b)


def children(pid):
    """Process ids whose parent is pid."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d))
    return out


def test_a_stop_signal_to_one_rank_ends_both(tmp_path):
    p = train(tmp_path, "sig", 2, "--max-steps", "100000", "--pp-every", "1000", wait=False)
    metrics = tmp_path / "sig" / "metrics.jsonl"
    for _ in range(600):                                  # until a few steps are done
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.1)
    workers = children(p.pid)
    assert len(workers) == 2
    os.kill(max(workers), signal.SIGTERM)                 # one rank only
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-2000:]
    assert "stopped: interrupted" in out
    ckpt = weights(tmp_path, "sig")
    assert ckpt["step"] >= 3 and os.path.exists(tmp_path / "sig" / "best.pt")
