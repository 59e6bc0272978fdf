"""The CUDA path (skipped without a GPU): the hand-derived backward on the GPU against autograd and cuDNN, and
cuDNN getting its weights as one contiguous buffer."""
import warnings

import pytest
import torch

from config import ModelConfig
from model import FusedLSTM, PoetryLM
from test_fused_backward import gradcheck_inputs, random_stack, stack_fn

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_gradcheck_float64_on_cuda():
    m = random_stack(5, 4, 2).cuda()
    inputs = tuple(t.detach().cuda().requires_grad_() for t in gradcheck_inputs(m, 6, 3, 5, 4, 2))
    assert torch.autograd.gradcheck(stack_fn(m), inputs)


def test_default_size_gradients_on_cuda_equal_autograd_and_cudnn():
    cfg = ModelConfig(vocab_size=5161, embed_dim=128, hidden_size=256, num_layers=2)
    torch.manual_seed(0)
    tokens, targets = torch.randint(0, 5161, (40, 64)).cuda(), torch.randint(0, 5161, (40, 64)).cuda()
    grads = {}
    for backend in ("fused", "autograd", "cudnn"):
        torch.manual_seed(0)
        m = PoetryLM(ModelConfig(**{**cfg.__dict__, "lstm": backend})).cuda()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            logits, _ = m(tokens)
            torch.nn.functional.cross_entropy(logits.reshape(-1, 5161), targets.reshape(-1)).backward()
        assert not [w for w in caught if "contiguous" in str(w.message)], [str(w.message) for w in caught]
        grads[backend] = {n: p.grad for n, p in m.named_parameters()}
    for other in ("autograd", "cudnn"):
        for name, g in grads["fused"].items():
            rel = ((g - grads[other][name]).norm() / grads[other][name].norm()).item()
            assert rel <= 1e-4, (other, name, rel)


def test_inference_on_cuda_matches_cpu():
    m = FusedLSTM(6, 8, 2)
    for layer in m.layers:
        torch.nn.init.uniform_(layer.W, -0.3, 0.3)
        torch.nn.init.uniform_(layer.b, -0.3, 0.3)
    x = torch.randn(9, 4, 6)
    with torch.no_grad():
        cpu = m(x)[0]
        gpu = m.cuda()(x.cuda())[0].cpu()
    torch.testing.assert_close(cpu, gpu, atol=1e-5, rtol=0)


def test_bf16_gradients_on_cuda_match_float64():
    """The bf16 path on the GPU (cuBLAS bfloat16 matmuls) within the tolerance of tests/test_bf16.py."""
    from test_bf16 import BF16_TOL, gradients, stack_and_inputs
    ref, inputs, upstream = stack_and_inputs(0)
    want, _ = gradients(ref, inputs, upstream, torch.float64, False)
    m = FusedLSTM(ref.layers[0].input_size, ref.hidden_size, ref.num_layers).cuda()
    m.load_state_dict({k: v.float() for k, v in ref.state_dict().items()})
    leaves = [t.float().cuda().requires_grad_() for t in inputs]
    with torch.autocast("cuda", torch.bfloat16):
        out, (h, c) = m(leaves[0], (leaves[1], leaves[2]))
    assert out.dtype == torch.bfloat16
    dout, dh, dc = (u.float().cuda() for u in upstream)
    ((out.float() * dout).sum() + (h * dh).sum() + (c * dc).sum()).backward()
    got = [t.grad for t in leaves] + [p.grad for p in m.parameters()]
    errs = [((a.double().cpu() - b).norm() / b.norm()).item() for a, b in zip(got, want)]
    assert max(errs) <= BF16_TOL, errs
