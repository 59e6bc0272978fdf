"""kernels/lstm_cell.cpp, the C++ time loops: equal to model.py's Python loop step for step (float64, float32,
bf16), sane where the gates saturate, built wherever a compiler is, and the model's fallback without it."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import kernels
import model
from conftest import ROOT


def ext_or_skip():
    ext = kernels.lstm_cell()
    if ext is None:
        pytest.skip("the C++ LSTM loop cannot be built here (no compiler)")
    return ext


def layer_case(dtype, T=9, B=5, D=7, H=6, scale=0.5, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)     # noqa: E731
    return r(T, B, D), r(B, H), r(B, H), r(4 * H, D + H) * scale, r(4 * H), (r(T, B, H), r(B, H), r(B, H))


def both(dtype, md, **case):
    """(python, cpp): the forward buffers and the backward gradients of one layer on the same inputs."""
    ext = ext_or_skip()
    x, h0, c0, W, b, (dout, dh, dc) = layer_case(dtype, **case)
    dout = dout.to(md)
    hs, _, (g, cs, tc) = model.layer_forward(x, h0, c0, W, b, True, md)
    py = (hs, g, cs, tc), model.layer_backward(x, W, hs, g, cs, tc, dout, dh, dc)
    hs, _, (g, cs, tc) = model.layer_forward_cpp(ext, x, h0, c0, W, b, md)
    cp = (hs, g, cs, tc), model.layer_backward_cpp(ext, x, W, hs, g, cs, tc, dout, dh, dc)
    return py, cp


def rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("dtype,md,tol", [(torch.float64, torch.float64, 1e-13), (torch.float32, torch.float32, 1e-5)])
def test_cpp_loop_equals_the_python_loop(dtype, md, tol):
    (fwd_py, bwd_py), (fwd_cp, bwd_cp) = both(dtype, md)
    for a, b in zip(fwd_cp + bwd_cp, fwd_py + bwd_py):       # hs, activations, cs, tanh(c); dx dh0 dc0 dW db
        assert a.dtype == b.dtype and a.shape == b.shape
        assert rel(a, b) <= tol


def test_cpp_loop_in_bf16_is_as_close_to_float64_as_the_python_loop():
    (_, ref) = both(torch.float64, torch.float64, T=20, B=16, D=12, H=24)[0]
    (_, py), (_, cp) = both(torch.float32, torch.bfloat16, T=20, B=16, D=12, H=24)
    for a_cp, a_py, r in zip(cp, py, ref):
        assert rel(a_cp, r) <= max(1.5 * rel(a_py, r), 4e-3)  # bf16 rounding, no worse than the Python loop's
        assert rel(a_cp, r) > 1e-4                             # the matmuls did run in bf16


def test_cpp_loop_with_saturated_gates_stays_finite():
    """|z| in the hundreds: exp(-z) would overflow; the float32 loop stays finite and as near float64 as Python's."""
    ref = sum(both(torch.float64, torch.float64, scale=60.0)[0], ())
    py, cp = (sum(r, ()) for r in both(torch.float32, torch.float32, scale=60.0))
    for a_cp, a_py, r in zip(cp, py, ref):
        assert torch.isfinite(a_cp).all()
        assert rel(a_cp, r) <= 2 * rel(a_py, r) + 1e-5


def test_the_loop_builds_where_a_compiler_is():
    if not (shutil.which("c++") or shutil.which("g++")) or not shutil.which("ninja"):
        pytest.skip("no C++ compiler or ninja here: the Python loop runs")
    assert kernels.lstm_cell() is not None


def test_without_the_cpp_loop_training_runs_the_python_loop_and_says_nothing():
    code = ("import torch, model; from config import ModelConfig; torch.manual_seed(0);"
            "m = model.PoetryLM(ModelConfig(vocab_size=20, embed_dim=6, hidden_size=8, num_layers=2));"
            "l, _ = m(torch.randint(0, 20, (5, 3))); l.sum().backward();"
            "print(model.kernels.lstm_cell(), float(m.lstm.layers[0].W.grad.norm()) > 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "POETRY_LSTM_CPP": "0"})
    assert r.returncode == 0 and r.stdout.split() == ["None", "True"] and r.stderr == "", r.stderr


def test_a_lock_left_by_a_killed_build_is_cleared(tmp_path):
    lock = tmp_path / "lock"
    lock.write_text("")                                 # what torch's FileBaton leaves when its build is killed
    os.utime(lock, (0, 0))                              # long ago
    with kernels.build_lock(str(tmp_path)):
        assert not lock.exists()


def test_a_young_lock_is_waited_for_until_it_is_stale(tmp_path, capsys):
    """A killed build's compiler may still run in the folder: a young lock file is left until it is stale."""
    lock = tmp_path / "lock"
    lock.write_text("")
    with kernels.build_lock(str(tmp_path), stale=2):
        assert not lock.exists()
    assert "waiting until it is 2 s old" in capsys.readouterr().err


def test_a_live_builders_lock_is_waited_for(tmp_path):
    """While another process holds the flock (a live build), its lock file stays and the build waits."""
    (tmp_path / "lock").write_text("")
    os.utime(tmp_path / "lock", (0, 0))
    code = ("import fcntl, sys, time; f = open(sys.argv[1] + '/flock', 'a'); fcntl.flock(f, fcntl.LOCK_EX);"
            "print('held', flush=True); sys.stdin.readline()")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        waiter = subprocess.Popen([sys.executable, "-c",
                                   "import sys, kernels; ctx = kernels.build_lock(sys.argv[1]); ctx.__enter__(); print('in')",
                                   str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.wait(timeout=3)                      # still waiting: the holder is alive
        assert (tmp_path / "lock").exists()
        holder.stdin.write("\n"); holder.stdin.flush()
        out, err = waiter.communicate(timeout=60)
        assert out.strip() == "in" and "waiting for another process's build" in err
        assert not (tmp_path / "lock").exists()
    finally:
        holder.kill()


@pytest.mark.parametrize("N", [5, 2048])
def test_linear_is_a_times_w_transposed_plus_b(N):
    """model.linear (oneDNN for long float32 products, torch's own otherwise) against float64."""
    g = torch.Generator().manual_seed(1)
    a, Wb, b = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((N, 24), (40, 31), (40,)))
    W = Wb[:, 3:27]                                             # (40, 24), strided, as model.py passes W_x
    for bias in (None, b):
        ref = a @ W.t() + (0 if bias is None else bias)
        got = model.linear(a.float(), W.float(), None if bias is None else bias.float())
        assert got.shape == (N, 40) and rel(got, ref) < 1e-6


@pytest.mark.parametrize("md", [torch.float32, torch.bfloat16])
def test_the_cpp_loop_gives_the_same_with_the_weight_packed_or_not(md):
    """The oneDNN branch (model.packed's weight) against the at::mm branch of the same C++ loop."""
    ext = ext_or_skip()
    if model.packed(torch.zeros(8, 2, dtype=md), 1) is None:
        pytest.skip("oneDNN cannot pack this dtype on this CPU: the at::mm branch is the one that runs")
    x, h0, c0, W, b, (dout, dh, dc) = layer_case(torch.float32, T=12, B=6, D=5, H=8)
    Wm = W.to(md)
    apart = md == torch.bfloat16                                # b added in the loop, as layer_forward_cpp does
    W_h, gates = Wm[:, 5:].contiguous(), model.input_gates(x, Wm, b, md, bias=not apart)
    runs = []
    for pack in (False, True):
        hs, cs, tc, acts = ext.layer_forward(gates.clone(), W_h.t().contiguous(), h0.to(md), c0,
                                             model.packed(W_h, 6) if pack else None, b if apart else None)
        back = ext.layer_backward(acts, cs, tc, W_h, dout.to(md), dh, dc,
                                  model.packed(W_h.t(), 6) if pack else None)
        runs.append((hs, cs, tc, acts, *back))
    for a, r in zip(*runs):
        assert a.dtype == r.dtype and rel(a, r) <= (1e-6 if md == torch.float32 else 2e-2)
    assert model.packed(W.double(), 3) is None


@pytest.mark.parametrize("md", [torch.float32, torch.bfloat16])
def test_the_cpp_loop_makes_the_input_gates_as_one_product_does(md):
    """Given W_x packed, the loop makes x W_x^T itself, CHUNK_ROWS / B steps at a time (here 8, 8, then 4):
    the same buffers as when handed the whole product."""
    ext = ext_or_skip()
    if model.packed(torch.zeros(8, 2, dtype=md), 1) is None:
        pytest.skip("oneDNN cannot pack this dtype on this CPU: the loop is always handed the product")
    T, B, D = 20, 128, 5
    assert T % (ext.CHUNK_ROWS // B) != 0 and T > ext.CHUNK_ROWS // B      # several chunks, the last one short
    x, h0, c0, W, b, _ = layer_case(torch.float32, T=T, B=B, D=D, H=8)
    Wm = W.to(md)
    W_h = Wm[:, D:].contiguous()
    args = W_h.t().contiguous(), h0.to(md), c0, model.packed(W_h, B), b
    whole = ext.layer_forward((x.reshape(T * B, D).to(md) @ Wm[:, :D].t()).view(T, B, -1), *args)   # b apart
    chunked = ext.layer_forward(x.to(md), *args, model.packed(Wm[:, :D].contiguous(), ext.CHUNK_ROWS))
    for a, r in zip(chunked, whole):                           # hs, cs, tanh(c), activations
        assert a.dtype == r.dtype and a.shape == r.shape and rel(a, r) <= (1e-6 if md == torch.float32 else 2e-2)


def test_weight_grads_through_onednn_equal_float64():
    """T*B >= LINEAR_ROWS in float32: dW by oneDNN's linear reading dz^T in place (model.onednn_outer), held to
    the same sums in float64 (the short-batch tests above never reach that branch)."""
    T, B, D, H = 9, 128, 5, 8
    assert T * B >= model.LINEAR_ROWS
    g = torch.Generator().manual_seed(3)
    x, hs, dzs, W = (torch.randn(*s, generator=g, dtype=torch.float64)
                     for s in ((T, B, D), (T + 1, B, H), (T, B, 4 * H), (4 * H, D + H)))
    dx, dW, db = model.weight_grads(x.float(), W.float(), W.float(), hs.float(), dzs.float())
    dz = dzs.reshape(T * B, 4 * H)
    assert model.onednn_outer(dz.float()) == torch.backends.mkldnn.is_available()
    ref_W = dz.t() @ torch.cat([x.reshape(T * B, D), hs[:-1].reshape(T * B, H)], 1)
    assert rel(dW, ref_W) < 1e-6 and rel(db, dz.sum(0)) < 1e-6 and rel(dx, (dz @ W[:, :D]).view(T, B, D)) < 1e-6
    assert dW.dtype == db.dtype == dx.dtype == torch.float32 and dW.is_contiguous()


def pooled_case(seed):
    """A layer whose pooled buffers are above the pool's 1 MB floor: cs (T+1, B, H) and tanh(c) in float32,
    1.3 MB each; dz and the bf16 activations (T, B, 4H), 5.2 MB."""
    return layer_case(torch.float32, T=20, B=64, D=16, H=256, scale=0.2, seed=seed)


def test_pool_reuses_a_buffer_only_once_its_tensors_are_gone():
    """The C++ loop's buffers come from a pool (kernels/lstm_cell.cpp, Pool): one still held is not handed out
    again; a freed one goes back to the pool, and the next call draws on the pool instead of the system."""
    ext = ext_or_skip()
    x, h0, c0, W, b, _ = pooled_case(0)
    md = torch.bfloat16                                        # the activations: a buffer of their own
    first = model.layer_forward_cpp(ext, x, h0, c0, W, b, md)
    acts = first[2][0]
    held = [model.layer_forward_cpp(ext, x, h0, c0, W, b, md) for _ in range(2)]
    assert acts.data_ptr() not in {h[2][0].data_ptr() for h in held}          # in use: not handed out
    before = ext.pool_held()
    del first, acts
    freed = ext.pool_held()
    assert freed >= before + 20 * 64 * 4 * 256 * 4                            # at least the activations' block
    again = model.layer_forward_cpp(ext, x, h0, c0, W, b, md)
    assert ext.pool_held() < freed and again[2][0].shape == (20, 64, 4 * 256)  # drawn from the pool


def test_a_retained_graph_keeps_its_buffers_through_later_calls():
    """Backward twice through a retained graph, with other forward and backward calls in between (which take
    buffers from the pool), gives the autograd reference's gradients both times."""
    ext_or_skip()
    x, h0, c0, W, b, (dout, _, _) = pooled_case(1)
    W = W.requires_grad_()
    ref = torch.autograd.grad((model.autograd_layer(x, h0, c0, W, b)[0] * dout).sum(), W)[0]
    out = model.LSTMLayerFunction.apply(x, h0, c0, W, b, torch.float32)[0]
    loss = (out * dout).sum()
    grads = [torch.autograd.grad(loss, W, retain_graph=True)[0]]
    for seed in (2, 3):                                        # other calls, each freeing its buffers
        x2, h2, c2, _, b2, (d2, _, _) = pooled_case(seed)
        torch.autograd.grad((model.LSTMLayerFunction.apply(x2, h2, c2, W, b2, torch.float32)[0] * d2).sum(), W)
    grads.append(torch.autograd.grad(loss, W)[0])
    assert all(rel(g, ref) < 1e-5 for g in grads)


def test_pool_keeps_no_more_than_its_bound():
    """Freed blocks beyond POOL_KEEP bytes are returned to the system, not kept."""
    ext = ext_or_skip()
    T, B, H = 40, 64, 512
    x, h0, c0, W, b, _ = layer_case(torch.float32, T=T, B=B, D=8, H=H, scale=0.1)
    per_call = T * B * H * (4 * 4 + 4 + 4 + 2) + B * H * (4 + 2)       # the activations, tanh(c), cs, hs
    calls = [model.layer_forward_cpp(ext, x, h0, c0, W, b, torch.bfloat16)
             for _ in range(ext.POOL_KEEP // per_call + 2)]
    del calls
    assert 0.5 * ext.POOL_KEEP < ext.pool_held() <= ext.POOL_KEEP
