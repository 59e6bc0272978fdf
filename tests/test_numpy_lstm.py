"""MyLSTM_np: the gradient checks pass, a broken backward is caught, and the NumPy model equals the torch one."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import MyLSTM_np as M
from tools import gradcheck
from training import loop
from training import checkpoint
from conftest import ROOT
from tests_helpers import TINY_ITOS, tiny_checkpoint


def failing(rows):
    return [r for r in rows if r[1] > gradcheck.AUTOGRAD_TOL or (r[2] is not None and r[2] > gradcheck.FD_TOL)]


def test_every_tensor_matches_autograd_and_finite_differences():
    rows = gradcheck.all_rows(M, seed=1)
    assert not failing(rows)
    names = {r[0] for r in rows}
    # everything the contract names is compared, for a 3-layer case and the language model
    for t in ("dx", "dh0", "dc0", "dW0", "db0", "dW2", "db2", "h_n", "c_n", "out"):
        assert f"lstm T7 B4 D5 H3 L3 {t}" in names
    for t in ("dembed.weight", "dproj.weight", "dproj.bias", "dlstm.layers.1.W"):
        assert f"lm {t}" in names


def test_flipped_sign_in_one_gate_is_caught(monkeypatch):
    real = M.gates_backward

    def broken(gcache, dh, dc):
        dz, dc_prev = real(gcache, dh, dc)
        H = dz.shape[1] // 4
        dz[:, H:2 * H] *= -1                      # the forget gate's gradient with the wrong sign
        return dz, dc_prev

    monkeypatch.setattr(M, "gates_backward", broken)
    bad = failing(gradcheck.all_rows(M, seed=0))
    assert any("dW" in r[0] for r in bad) and any("dc0" in r[0] or "dc_prev" in r[0] for r in bad)
    assert not gradcheck.run_all(M, verbose=False)


def test_missing_recurrent_term_is_caught(monkeypatch):
    # BPTT that forgets what step t+1 sends back into h_t (dh = dz[t] @ W_h): a one-step check cannot see it
    def no_bptt(cell, cache, dout, dh, dc):
        x, h_prev, gcaches = cache
        T, B, D = x.shape
        dz = np.empty((T, B, 4 * cell.hidden_size))
        for t in reversed(range(T)):
            dz[t], dc = M.gates_backward(gcaches[t], dout[t] + dh, dc)
        dz2 = dz.reshape(T * B, -1)
        dW = np.concatenate([dz2.T @ x.reshape(T * B, D), dz2.T @ h_prev.reshape(T * B, -1)], axis=1)
        return (dz2 @ cell.W[:, :D]).reshape(T, B, D), dz[0] @ cell.W[:, D:], dc, dW, dz2.sum(0)

    monkeypatch.setattr(M, "layer_backward", no_bptt)
    bad = {r[0] for r in failing(gradcheck.all_rows(M, seed=0))}
    assert "lstm T5 B3 D4 H6 L2 dW0" in bad and not any(name.startswith("cell") for name in bad)


def test_cli_test_exits_zero_and_prints_the_table():
    r = subprocess.run([sys.executable, "MyLSTM_np.py", "test"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "vs finite diff" in r.stdout and " 0 failed" in r.stdout


def test_numpy_logits_equal_torch_logits_from_a_checkpoint(tmp_path):
    path = tiny_checkpoint(tmp_path)
    model, _, itos = checkpoint.model_from_checkpoint(checkpoint.load_checkpoint(path), torch.device("cpu"))
    np_model, np_itos, cfg = M.NumpyLM.from_checkpoint(path)
    assert np_itos == itos == TINY_ITOS and cfg["model"]["hidden_size"] == 12
    tokens = np.random.default_rng(0).integers(0, 40, (9, 3))
    with torch.no_grad():
        ref, (h, c) = model(torch.from_numpy(tokens))
    logits, (h_n, c_n), _ = np_model.forward(tokens)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, ref.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(c_n, c.numpy(), atol=1e-5, rtol=0)


def test_checkpoint_reader_refuses_code(tmp_path):
    import pickle
    import zipfile

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("evil/data.pkl", pickle.dumps({"model": Evil()}))
    with pytest.raises(ValueError, match="not allowed"):
        M.read_torch_checkpoint(str(path))


def test_generate_without_torch(tmp_path):
    tiny_checkpoint(tmp_path)
    code = ("import sys; sys.modules['torch'] = None; import runpy; "
            f"sys.argv = ['MyLSTM_np.py', 'generate', '--ckpt', {str(tmp_path / 'tiny.pt')!r}, '--start', '一', "
            "'--num', '2', '--max-gen-len', '10']; runpy.run_path('MyLSTM_np.py', run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert r.returncode == 0, r.stderr
    poems = r.stdout.strip().split("\n\n")
    assert len(poems) == 2 and all(p.startswith("一") for p in poems)
    assert not any(tok in r.stdout for tok in ("<eos>", "<bos>", "</s>", "<unk>"))


def test_generate_bad_checkpoint_and_start_exit_2(tmp_path):
    tiny_checkpoint(tmp_path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    run = lambda *a: subprocess.run([sys.executable, "MyLSTM_np.py", "generate", *a], cwd=ROOT, capture_output=True,
                                    text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    for args in (["--ckpt", str(tmp_path / "junk.pt"), "--start", "一"],
                 ["--ckpt", str(tmp_path / "missing.pt"), "--start", "一"],
                 ["--ckpt", str(tmp_path / "tiny.pt"), "--start", "龘"],
                 ["--ckpt", str(tmp_path / "tiny.pt"), "--start", "abc"]):
        r = run(*args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
