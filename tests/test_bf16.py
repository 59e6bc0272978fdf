"""--precision bf16: the hand-derived backward with bfloat16 matmuls against the float64 reference, the loss
(SoftmaxNLL) against F.cross_entropy, and how the precision is chosen.

Tolerance. bfloat16 keeps 8 significant bits: unit roundoff u = 2^-8 ~ 3.9e-3. Each matmul rounds its two
operands and its result to bfloat16 (about 3u relative per product), everything elementwise runs in float32,
and the rounding errors have random signs, so a gradient's norm-wise relative error stays a small multiple of u
(measured 1e-3 to 4e-3 on these shapes). BF16_TOL = 2e-2 (5u) leaves room for that; the float32 path is
within 1e-6 and a backward with eq. (7)'s carry dropped is off by more than 0.1, so the check separates both.
"""
import inspect

import pytest
import torch

import model
from config import ModelConfig
from model import FusedLSTM, PoetryLM, masked_nll, set_precision

BF16_TOL = 2e-2
T, B, D, H, L = 11, 6, 9, 10, 2          # shapes the float32 tests do not use


def stack_and_inputs(seed=0):
    """The float64 reference is the autograd loop (itself gradchecked), so it does not share layer_backward."""
    torch.manual_seed(seed)
    ref = FusedLSTM(D, H, L, "autograd").double()
    for layer in ref.layers:                 # gates saturate somewhat, as in the float32 tests
        torch.nn.init.uniform_(layer.W, -0.5, 0.5)
        torch.nn.init.uniform_(layer.b, -0.5, 0.5)
    g = torch.Generator().manual_seed(seed + 1)
    x, dout = torch.randn(T, B, D, generator=g, dtype=torch.float64), torch.randn(T, B, H, generator=g, dtype=torch.float64)
    h0, c0, dh, dc = (torch.randn(L, B, H, generator=g, dtype=torch.float64) for _ in range(4))
    return ref, (x, h0 * 0.5, c0 * 0.5), (dout, dh, dc)


def gradients(m, inputs, upstream, dtype, bf16):
    """Gradients of <out, dout> + <h_n, dh> + <c_n, dc> wrt x, h0, c0 and every parameter; and out."""
    leaves = [t.to(dtype).detach().requires_grad_() for t in inputs]
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        out, (h, c) = m(leaves[0], (leaves[1], leaves[2]))
    dout, dh, dc = (u.to(dtype) for u in upstream)
    ((out.to(dtype) * dout).sum() + (h * dh).sum() + (c * dc).sum()).backward()
    return [t.grad for t in leaves] + [p.grad for p in m.parameters()], out


def errors(dtype, bf16, seed=0):
    ref, inputs, upstream = stack_and_inputs(seed)
    want, _ = gradients(ref, inputs, upstream, torch.float64, False)
    m = FusedLSTM(D, H, L)
    m.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    got, out = gradients(m, inputs, upstream, dtype, bf16)
    return [((a.double() - b).norm() / b.norm()).item() for a, b in zip(got, want)], out


@pytest.mark.parametrize("seed", [0, 1])
def test_bf16_gradients_match_float64_within_the_stated_tolerance(seed, time_loop):
    errs, out = errors(torch.float32, True, seed)
    assert out.dtype == torch.bfloat16                       # the matmuls did run in bfloat16 ...
    assert max(errs) <= BF16_TOL, errs
    assert min(errs) > 1e-4, errs                            # ... and their rounding shows: not float32 in disguise
    errs32, out32 = errors(torch.float32, False, seed)
    assert out32.dtype == torch.float32 and max(errs32) <= 1e-5, errs32


def test_a_broken_backward_fails_the_bf16_check(monkeypatch, python_loop):
    src = inspect.getsource(model.layer_backward)
    assert "dc.mul_(f)" in src
    namespace = dict(vars(model))
    exec(src.replace("dc.mul_(f)", "dc.zero_()"), namespace)        # eq. (7)'s carry dropped
    monkeypatch.setattr(model, "layer_backward", namespace["layer_backward"])
    errs, _ = errors(torch.float32, True)
    assert max(errs) > 5 * BF16_TOL, errs


def test_bf16_keeps_cell_state_gates_and_master_weights_in_float32():
    m = FusedLSTM(D, H, L)
    x = torch.randn(T, B, D)
    h0 = c0 = torch.zeros(B, H)
    with torch.autocast("cpu", torch.bfloat16), torch.no_grad():
        hs, c_T, (gates, cs, tanh_c) = model.layer_forward(x, h0, c0, m.layers[0].W, m.layers[0].b, keep=True,
                                                           md=model.matmul_dtype("cpu", torch.float32))
    assert hs.dtype == torch.bfloat16
    assert gates.dtype == cs.dtype == tanh_c.dtype == c_T.dtype == torch.float32
    with torch.autocast("cpu", torch.bfloat16):
        out, (h, c) = m(x)
    out.float().sum().backward()
    assert all(p.dtype == p.grad.dtype == torch.float32 for p in m.parameters())
    assert h.dtype == c.dtype == torch.float32


@pytest.mark.parametrize("backend", ["fused", "autograd", "cudnn"])
def test_every_backend_trains_the_language_model_in_bf16(backend):
    """The whole model under --precision bf16: loss and every parameter gradient against float64."""
    cfg = ModelConfig(vocab_size=50, embed_dim=12, hidden_size=16, num_layers=2, tie_weights=True)
    torch.manual_seed(0)
    tokens, targets = torch.randint(0, 50, (9, 5)), torch.randint(1, 50, (9, 5))
    targets[6:, 0] = 0                                                  # some padding
    ref = PoetryLM(ModelConfig(**{**cfg.__dict__, "lstm": "autograd"})).double()
    m = PoetryLM(ModelConfig(**{**cfg.__dict__, "lstm": backend}))
    m.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    set_precision(m, "bf16", torch.device("cpu"))
    results = []
    for net in (ref, m):
        logits, _ = net(tokens)
        nll, n = masked_nll(logits, targets, 0)
        (nll / n).backward()
        results.append((nll.item() / n, {k: p.grad for k, p in net.named_parameters()}))
    assert logits.dtype == torch.bfloat16
    assert abs(results[1][0] - results[0][0]) <= BF16_TOL * results[0][0]
    for name, g in results[0][1].items():
        err = ((results[1][1][name].double() - g).norm() / g.norm()).item()
        assert err <= BF16_TOL, (backend, name, err)


def test_softmax_nll_equals_cross_entropy_and_its_gradient():
    torch.manual_seed(0)
    logits = torch.randn(7, 5, 40, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, 40, (7, 5))
    targets[4:, 1] = 0
    nll, n = masked_nll(logits, targets, 0)
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, 40), targets.reshape(-1), ignore_index=0,
                                             reduction="sum")
    assert n == int((targets != 0).sum())
    torch.testing.assert_close(nll, want, rtol=1e-12, atol=0)
    g, = torch.autograd.grad(nll, logits)
    g_want, = torch.autograd.grad(want, logits)
    torch.testing.assert_close(g, g_want, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x: masked_nll(x, targets, 0)[0], (logits,))
    model.SoftmaxNLL.ROWS, rows = 3, model.SoftmaxNLL.ROWS              # chunks that do not divide N
    try:
        torch.testing.assert_close(torch.autograd.grad(masked_nll(logits, targets, 0)[0], logits)[0], g_want,
                                   rtol=0, atol=1e-12)
    finally:
        model.SoftmaxNLL.ROWS = rows


def test_softmax_nll_of_bf16_logits_is_float32():
    torch.manual_seed(0)
    logits = torch.randn(6, 4, 30) * 3
    targets = torch.randint(0, 30, (6, 4))
    want = torch.nn.functional.cross_entropy(logits.bfloat16().double().reshape(-1, 30), targets.reshape(-1),
                                             reduction="sum")
    lb = logits.bfloat16().requires_grad_()
    nll, _ = masked_nll(lb, targets, -1)
    assert nll.dtype == torch.float32
    assert abs(nll.item() - want.item()) <= 1e-5 * want.item()     # exact maths on the rounded logits
    nll.backward()
    assert lb.grad.dtype == torch.bfloat16


def test_auto_precision_follows_native_bf16(monkeypatch):
    m = PoetryLM(ModelConfig(vocab_size=20, embed_dim=4, hidden_size=5, num_layers=1))
    cpu = torch.device("cpu")
    for native, want in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(model, "native_bf16", lambda device, native=native: native)
        precision, why = set_precision(m, "auto", cpu)
        assert precision == want == m.precision and "auto" in why
    assert set_precision(m, "fp32", cpu)[0] == "fp32" and m.precision == "fp32"


def test_bf16_inference_casts_weights_once_and_follows_their_changes():
    """Generation under bf16 reads weights cast once (model.cast_once): its logits are the float64 model's
    within BF16_TOL and, to the last bit, those of the path that casts at every call (training's); the cast is
    reused while the weights stay, and a weight changed in place (an optimiser step, a loaded state) is cast
    again, never served stale."""
    torch.manual_seed(3)
    cfg = ModelConfig(vocab_size=37, embed_dim=8, hidden_size=12, num_layers=2, tie_weights=True)
    m = PoetryLM(cfg).eval()
    ref = PoetryLM(cfg).double().eval()
    tokens = torch.randint(0, 37, (5, 4))

    def relerr(a, b):
        return float((a.double() - b).norm() / b.norm())
    set_precision(m, "bf16", torch.device("cpu"))
    with torch.no_grad():
        for _ in range(2):
            ref.load_state_dict({k: v.double() for k, v in m.state_dict().items()})
            first = m(tokens)[0]
            assert relerr(first, ref(tokens)[0]) < BF16_TOL
            with torch.enable_grad():                                         # autocast's own casts: the same
                assert torch.equal(m(tokens)[0], first)                       # numbers to the last bit
            casts = {id(v[1]) for mod in m.modules() for v in mod.__dict__.get("_casts", {}).values()}
            assert len(casts) == 5 and torch.equal(m(tokens)[0], first)   # 2 layers' W, down, embedding, bias
            again = {id(v[1]) for mod in m.modules() for v in mod.__dict__.get("_casts", {}).values()}
            assert again == casts                                             # reused, not cast anew
            for p in m.parameters():
                p.mul_(-1.5)                                                  # changed in place
