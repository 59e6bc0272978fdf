"""model.py's hand-derived backward (LSTMLayerFunction) against autograd, nn.LSTM and finite differences."""
import inspect

import pytest
import torch

import model
from config import ModelConfig
from model import FusedLSTM, PoetryLM


def random_stack(D, H, L, backend="fused", seed=0):
    torch.manual_seed(seed)
    m = FusedLSTM(D, H, L, backend).double()
    for layer in m.layers:                      # wider than the default init, so every gate saturates somewhat
        torch.nn.init.uniform_(layer.W, -0.5, 0.5)
        torch.nn.init.uniform_(layer.b, -0.5, 0.5)
    return m


def stack_fn(m):
    """(x, h0, c0, *params) -> (out, h_n, c_n): a function of every input and parameter, for gradcheck."""
    names = [n for n, _ in m.named_parameters()]

    def fn(x, h0, c0, *params):
        out, (h, c) = torch.func.functional_call(m, dict(zip(names, params)), (x, (h0, c0)))
        return out, h, c
    return fn


def gradcheck_inputs(m, T, B, D, H, L, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, D, dtype=torch.float64, generator=g)
    h0 = torch.randn(L, B, H, dtype=torch.float64, generator=g)          # a nonzero initial state
    c0 = torch.randn(L, B, H, dtype=torch.float64, generator=g)
    return tuple(t.requires_grad_() for t in (x, h0, c0, *[p.detach().clone() for p in m.parameters()]))


@pytest.mark.parametrize("T,B,D,H,L", [(5, 3, 4, 3, 1), (6, 3, 5, 4, 2), (5, 4, 3, 5, 3)])
def test_gradcheck_float64(T, B, D, H, L, time_loop):
    """Gradients flow in from out, h_n and c_n at once (gradcheck checks every output's Jacobian)."""
    m = random_stack(D, H, L)
    assert torch.autograd.gradcheck(stack_fn(m), gradcheck_inputs(m, T, B, D, H, L))


def test_a_broken_backward_is_caught(monkeypatch, python_loop):
    """The same backward with the cell-state carry through the forget gate (eq. 7) dropped must fail."""
    src = inspect.getsource(model.layer_backward)
    assert "dc.mul_(f)" in src
    namespace = dict(vars(model))
    exec(src.replace("dc.mul_(f)", "dc.zero_()"), namespace)
    monkeypatch.setattr(model, "layer_backward", namespace["layer_backward"])
    m = random_stack(4, 3, 2)
    assert not torch.autograd.gradcheck(stack_fn(m), gradcheck_inputs(m, 5, 3, 4, 3, 2), raise_exception=False)


def test_default_size_gradients_equal_autograd_and_cudnn_float32(time_loop):
    """All parameter gradients of the default-size model (E 128, H 256, 2 layers, V 5161), float32."""
    cfg = ModelConfig(vocab_size=5161, embed_dim=128, hidden_size=256, num_layers=2)
    torch.manual_seed(0)
    tokens = torch.randint(0, 5161, (30, 8))
    targets = torch.randint(0, 5161, (30, 8))
    grads = {}
    for backend in ("fused", "autograd", "cudnn"):
        torch.manual_seed(0)
        m = PoetryLM(ModelConfig(**{**cfg.__dict__, "lstm": backend}))
        logits, _ = m(tokens)
        torch.nn.functional.cross_entropy(logits.reshape(-1, 5161), targets.reshape(-1)).backward()
        grads[backend] = {n: p.grad for n, p in m.named_parameters()}
    for other in ("autograd", "cudnn"):
        for name, g in grads["fused"].items():
            ref = grads[other][name]
            rel = ((g - ref).norm() / ref.norm()).item()
            assert rel <= 1e-4, (other, name, rel)


def test_inference_runs_without_the_backward_buffers(monkeypatch):
    """Under no_grad the layer never enters the autograd Function, and gives the training path's outputs."""
    m = random_stack(5, 4, 2)
    x = torch.randn(7, 3, 5, dtype=torch.float64)
    out_train, (h_train, c_train) = m(x)

    def refuse(*args):
        raise AssertionError("the autograd Function ran under no_grad")
    monkeypatch.setattr(model.LSTMLayerFunction, "apply", refuse)
    with torch.no_grad():
        out, (h, c) = m(x)
    for a, b in ((out, out_train), (h, h_train), (c, c_train)):
        torch.testing.assert_close(a, b.detach(), atol=1e-12, rtol=0)
    with torch.no_grad():
        _, _, (gates, cs, tanh_c) = model.layer_forward(x, h[0], c[0], m.layers[0].W, m.layers[0].b, keep=False)
    assert cs.shape[0] == 2 and tanh_c.shape[0] == 1        # two cell states held, not T + 1


def test_backward_twice_with_a_retained_graph_gives_the_same_gradients():
    m = random_stack(4, 3, 2)
    x = torch.randn(5, 3, 4, dtype=torch.float64, requires_grad=True)
    out, (h, c) = m(x)
    loss = out.square().sum() + h.sum() + c.sum()
    first = torch.autograd.grad(loss, [x, *m.parameters()], retain_graph=True)
    second = torch.autograd.grad(loss, [x, *m.parameters()])
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_checkpoint_trained_with_one_backend_loads_in_the_others():
    cfg = ModelConfig(vocab_size=30, embed_dim=6, hidden_size=9, num_layers=2)
    torch.manual_seed(3)
    tokens = torch.randint(0, 30, (7, 2))
    outs = []
    state = PoetryLM(cfg).state_dict()
    for backend in ("fused", "autograd", "cudnn"):
        m = PoetryLM(ModelConfig(**{**cfg.__dict__, "lstm": backend}))
        m.load_state_dict(state)
        with torch.no_grad():
            outs.append(m(tokens)[0])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-5, rtol=0)
    torch.testing.assert_close(outs[0], outs[2], atol=1e-5, rtol=0)
