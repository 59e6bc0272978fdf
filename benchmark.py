"""Benchmarks that print figures (never timed tests).

    python benchmark.py              # both benchmarks below
    python benchmark.py lstm         # LSTM forward+backward: NumPy (MyLSTM_np) vs PyTorch CPU autograd
    python benchmark.py train        # training tokens/s of PoetryLM: fused (hand-written) vs cudnn (nn.LSTM)

Numbers depend on the machine and on what else runs: quote them with the hardware and the command.
"""
import sys
import time

import numpy as np
import torch

import MyLSTM_np as M


def timed(fn, repeats):
    """Mean seconds of fn() over repeats, after one warm-up call."""
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def lstm_bench(T=64, B=64, D=128, H=256, L=2, repeats=5):
    """Forward + backward of the LSTM stack in float32: NumPy vs PyTorch CPU autograd (ours, and nn.LSTM)."""
    from model import FusedLSTM
    rng = np.random.default_rng(0)
    lstm = M.LSTM(D, H, L, rng, dtype=np.float32)
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    dout = rng.standard_normal((T, B, H)).astype(np.float32)

    def numpy_step():
        out, _, _, cache = lstm.forward(x)
        lstm.backward(cache, dout)

    tx, tdout = torch.from_numpy(x).requires_grad_(), torch.from_numpy(dout)

    def torch_step(module):
        out, _ = module(tx)
        out.backward(tdout)

    fused, ref = FusedLSTM(D, H, L), torch.nn.LSTM(D, H, L)
    print(f"LSTM forward+backward, T={T} B={B} D={D} H={H} layers={L}, float32, {torch.get_num_threads()} threads")
    res = {"numpy (MyLSTM_np)": timed(numpy_step, repeats),
           "torch autograd, fused (model.py)": timed(lambda: torch_step(fused), repeats),
           "torch.nn.LSTM": timed(lambda: torch_step(ref), repeats)}
    for name, sec in res.items():
        print(f"  {name:<36}{sec * 1000:8.1f} ms")
    print(f"  numpy / torch fused: {res['numpy (MyLSTM_np)'] / res['torch autograd, fused (model.py)']:.2f}x")
    return res


def train_bench(steps=8):
    """Training tokens/s of the default PoetryLM on real batches of the corpus, fused vs cudnn backend."""
    import dataUtil
    from config import Config
    from main import TrainLoop, make_optimizer, pick_device
    from model import PoetryLM
    cfg = Config()
    corpus = dataUtil.load_corpus(cfg)
    cfg.model.vocab_size = len(corpus.itos)
    device = pick_device(cfg.train)
    print(f"training step, default model (E={cfg.model.embed_dim} H={cfg.model.hidden_size} "
          f"L={cfg.model.num_layers} V={cfg.model.vocab_size}), batch {cfg.train.batch_size}, {device}, "
          f"{torch.get_num_threads()} threads")
    for backend in ("fused", "cudnn"):
        cfg.model.lstm = backend
        torch.manual_seed(0)
        model = PoetryLM(cfg.model).to(device)
        loop = TrainLoop(cfg, model, make_optimizer(cfg.train, model.parameters()), corpus, device, {"step": 0})
        batches = loop.epoch_batches(0)[:steps + 1]
        loop.train_step(batches[0])                                   # warm-up
        tokens = seconds = 0
        for idx in batches[1:]:
            _, n, dt = loop.train_step(idx)
            tokens, seconds = tokens + n, seconds + dt
        print(f"  {backend:<8}{tokens / seconds:10.0f} tokens/s  ({seconds / steps:.2f} s/step over {steps} steps)")


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    if which in ("lstm", "all"):
        lstm_bench()
    if which in ("train", "all"):
        train_bench()
