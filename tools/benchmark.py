"""Benchmarks that print figures (never timed tests); `python benchmark.py` at the top runs them.

    python benchmark.py              # all the benchmarks below
    python benchmark.py lstm         # LSTM forward+backward: NumPy (MyLSTM_np) vs PyTorch CPU autograd
    python benchmark.py train [--device cuda] [--variants fused-bf16,fused-fp32,nnlstm-bf16,nnlstm-fp32]
                                     # training tokens/s of PoetryLM on real batches, variants (backend and
                                     # precision) alternated on the same batches; ratios to the nn.LSTM peers;
                                     # peak memory of each
                                     # first: the like-for-like table (ratio below)
    python benchmark.py ratio        # the hand-written LSTM / nn.LSTM, same model, loss, dtype, batches:
                                     # fused (C++ loop) and python (Python loop) at E128 H256 and E256 H512
    python benchmark.py layers       # (not in all) the two-layer LSTM alone (no embedding, output layer or loss):
                                     # forward and backward timed apart, ours against nn.LSTM, alternating;
                                     # then the first layer's forward loop against its matmuls alone (CPU)
    python benchmark.py matmul       # (not in all) the LSTM's matmul shapes: aten::mm against oneDNN's linear,
                                     # its weight packed or not, fp32 and bf16 (why model.py takes oneDNN)
    python benchmark.py infer        # no-grad forward as evaluate and generate use it, per backend
    python benchmark.py profile --variants fused-bf16,cudnn-bf16   # where a training step's time goes
    python benchmark.py engine       # (not in all) the serve engine in-process, no HTTP: poems/s, 20 clients,
                                     # batched and one request at a time, fp32 and bf16, alternating

Numbers depend on the machine and on what else runs: quote them with the hardware and the command.
"""
import os
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(fn, repeats):
    """Mean seconds of fn() over repeats, after one warm-up call."""
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def lstm_bench(M, T=64, B=64, D=128, H=256, L=2, repeats=5):
    """Forward + backward of the LSTM stack in float32: NumPy (the MyLSTM_np module M, handed in) vs PyTorch CPU
    autograd (ours, and nn.LSTM)."""
    from model import FusedLSTM, from_torch_lstm_params
    rng = np.random.default_rng(0)
    lstm = M.LSTM(D, H, L, rng, dtype=np.float32)
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    dout = rng.standard_normal((T, B, H)).astype(np.float32)

    def numpy_step():
        out, _, _, cache = lstm.forward(x)
        lstm.backward(cache, dout)

    tx, tdout = torch.from_numpy(x).requires_grad_(), torch.from_numpy(dout)

    def torch_step(module, bf16=False):
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            out, _ = module(tx)
        out.float().backward(tdout)

    fused, auto, ref = FusedLSTM(D, H, L), FusedLSTM(D, H, L, "autograd"), torch.nn.LSTM(D, H, L)
    with torch.no_grad():                                         # nn.LSTM's initial weights in all three
        for l in range(L):
            W, b = from_torch_lstm_params(*(getattr(ref, f"{n}_l{l}") for n in
                                            ("weight_ih", "weight_hh", "bias_ih", "bias_hh")))
            for m in (fused, auto):
                m.layers[l].W.copy_(W)
                m.layers[l].b.copy_(b)
    print(f"LSTM forward+backward, T={T} B={B} D={D} H={H} layers={L}, float32 unless said, "
          f"{torch.get_num_threads()} threads")
    res = {"numpy (MyLSTM_np)": timed(numpy_step, repeats),
           "torch, hand-derived backward (fused)": timed(lambda: torch_step(fused), repeats),
           "torch, autograd backward (autograd)": timed(lambda: torch_step(auto), repeats),
           "torch.nn.LSTM": timed(lambda: torch_step(ref), repeats),
           "fused, bf16 matmuls": timed(lambda: torch_step(fused, True), repeats),
           "torch.nn.LSTM, autocast bf16": timed(lambda: torch_step(ref, True), repeats)}
    for name, sec in res.items():
        print(f"  {name:<38}{sec * 1000:8.1f} ms")
    return res


def infer_bench(device, repeats=5):
    """No-grad forward of the default model as evaluate (T=50, B=256) and generate (64 poems, one step at a time
    for 50 steps) use it: fused (no backward buffers) vs autograd (the plain loop) vs cudnn, alternated."""
    from config import ModelConfig
    from model import PoetryLM
    print(f"inference (no_grad), default model, {device}, {torch.get_num_threads()} threads, median of {repeats}")
    tokens = torch.randint(4, 5161, (50, 256), device=device)
    models = {}
    for backend in ("fused", "autograd", "cudnn"):
        torch.manual_seed(0)
        models[backend] = PoetryLM(ModelConfig(vocab_size=5161, lstm=backend)).to(device).eval()

    @torch.no_grad()
    def evaluate_like(model):
        model(tokens)

    @torch.no_grad()
    def generate_like(model):
        _, state = model(tokens[:1, :64])
        for t in range(1, 50):
            _, state = model(tokens[t:t + 1, :64], state)

    times = {(b, k): [] for b in models for k in ("evaluate", "generate")}
    for _ in range(repeats + 1):                                  # the first round warms up
        for b, model in models.items():
            for k, fn in (("evaluate", evaluate_like), ("generate", generate_like)):
                sync(device)
                t = time.perf_counter()
                fn(model)
                sync(device)
                times[b, k].append(time.perf_counter() - t)
    for b in models:
        print(f"  {b:<9} evaluate-like {np.median(times[b, 'evaluate'][1:]) * 1000:7.1f} ms"
              f"   generate-like {np.median(times[b, 'generate'][1:]) * 1000:7.1f} ms")


def train_setup(cfg, device, count):
    """The first `count` real length-bucketed batches of the corpus (the training run's own order, seed 0)."""
    import dataUtil
    corpus = dataUtil.load_corpus(cfg, verbose=False)
    cfg.model.vocab_size = len(corpus.itos)
    lengths = [len(p) for p in corpus.train]
    batches = dataUtil.length_batches(lengths, cfg.train.batch_size, np.random.default_rng([cfg.train.seed, 0]))
    pad = corpus.itos.index(dataUtil.PAD)
    tensors = []
    for idx in batches[:count]:
        inputs, targets = dataUtil.pad_batch([corpus.train[i] for i in idx], pad)
        tensors.append((torch.from_numpy(inputs).to(device), torch.from_numpy(targets).to(device)))
    return tensors, pad


# name -> (the model's --lstm backend, precision, loss): "ours" is model.masked_nll, "torch" F.cross_entropy
# as a PyTorch user writes it (under torch.autocast in bf16). nnlstm-* are the peers a PyTorch user would pick.
VARIANTS = {f"{b}-{p}": (b, p, "ours") for b in ("fused", "python", "autograd", "cudnn") for p in ("fp32", "bf16")}
VARIANTS.update({"nnlstm-fp32": ("cudnn", "fp32", "torch"), "nnlstm-bf16": ("cudnn", "bf16", "torch")})
DEFAULT_VARIANTS = "fused-bf16,fused-fp32,cudnn-bf16,nnlstm-bf16,nnlstm-fp32"


def make_trainer(cfg, variant, device, pad):
    """A fresh default model for the variant, and one Adam training step on a batch (clipped like train)."""
    from config import ModelConfig
    from model import PoetryLM, masked_nll
    backend, precision, loss = VARIANTS[variant]
    torch.manual_seed(0)
    model = PoetryLM(ModelConfig(**{**cfg.model.__dict__, "lstm": backend})).to(device)
    model.precision = precision
    opt = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)

    def step(inputs, targets):
        logits, _ = model(inputs)
        if loss == "ours":
            nll, n = masked_nll(logits, targets, pad)
        else:
            with torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
                nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                                        ignore_index=pad, reduction="sum")
            n = int((targets != pad).sum())
        opt.zero_grad(set_to_none=True)
        (nll / n).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip)
        opt.step()
        return n
    return step


SIZES = ((128, 256), (256, 512))          # (E, H): the default model's, and the shipped models'


def step_flops(cfg, tokens):
    """Matmul FLOPs of one training step over `tokens` positions (padding included, as the kernels run it):
    per layer 2 (D + H) 4H a position forward, twice that backward; the tied output H -> E -> V likewise."""
    m = cfg.model
    lstm = sum(2 * ((m.embed_dim if l == 0 else m.hidden_size) + m.hidden_size) * 4 * m.hidden_size
               for l in range(m.num_layers))
    out = 2 * m.hidden_size * m.embed_dim + 2 * m.embed_dim * m.vocab_size if m.tie_weights \
        else 2 * m.hidden_size * m.vocab_size
    return 3 * (lstm + out) * tokens


def matmul_roof(dtype, n=6400, k=512, m=2048, repeats=5):
    """GFLOP/s of the best of `repeats` (n x k) @ (k x m) products in dtype, the step's largest matmul shape,
    by the fastest of torch's kernels: aten::mm (BLAS or oneDNN) and oneDNN's linear (in float32 BLAS's sgemm
    is the slower on README's EPYC, `benchmark.py matmul`, and nn.LSTM's oneDNN kernel ran above a BLAS-only
    roof)."""
    from model import onednn_linear
    a, b = torch.randn(n, k).to(dtype), torch.randn(k, m).to(dtype)
    kernels = [lambda: a @ b]
    if torch.backends.mkldnn.is_available():
        bt = b.t().contiguous()
        kernels.append(lambda: onednn_linear(a, bt))
    best = min(timed(f, 1) for f in kernels for _ in range(repeats))
    return 2 * n * k * m / best / 1e9


def matmul_bench(B=128, T=50, D=256, H=512, repeats=5):
    """The products of one LSTM layer's training step, each by aten::mm and by oneDNN's linear (y = a W^T;
    the recurrent ones also with W packed once, as model.packed does): median of `repeats` means, in us."""
    from model import onednn_linear as lp, packed as pack
    print(f"matmul shapes of one LSTM layer, B {B} T {T} D {D} H {H}, cpu, {torch.get_num_threads()} threads")
    for dt in (torch.float32, torch.bfloat16):
        g = torch.Generator().manual_seed(0)
        r = lambda *s: torch.randn(*s, generator=g).to(dt)      # noqa: E731
        W_h, W_x, h, dz, x = r(4 * H, H), r(4 * H, D), r(B, H), r(T * B, 4 * H), r(T * B, D)
        W_hT, W_xT = W_h.t().contiguous(), W_x.t().contiguous()
        cases = [  # name, FLOPs, aten::mm, oneDNN, oneDNN packed (None: not measured)
            ("recurrent h W_h^T (each step)", 2 * B * H * 4 * H, lambda: h @ W_hT, lambda: lp(h, W_h),
             (lambda p: lambda: lp(h, p))(pack(W_h, B))),
            ("recurrent dz W_h (each step)", 2 * B * H * 4 * H, lambda: dz[:B] @ W_h,
             lambda: lp(dz[:B], W_hT), (lambda p: lambda: lp(dz[:B], p))(pack(W_hT, B))),
            ("input gates x W_x^T (all steps)", 2 * T * B * D * 4 * H, lambda: x @ W_xT,
             lambda: lp(x, W_x), None),
            ("input grad dz W_x (all steps)", 2 * T * B * D * 4 * H, lambda: dz @ W_x,
             lambda: lp(dz, W_xT), None)]
        for name, flops, *fns in cases:
            us = [None if f is None else 1e6 * float(np.median([timed(f, 10 if "each" in name else 2)
                                                                for _ in range(repeats)])) for f in fns]
            cells = "   ".join("          —" if u is None else f"{u:8.0f} us {flops / u / 1e3:4.0f} GF/s"
                               for u in us)
            print(f"  {str(dt)[6:]:<9} {name:<32} aten::mm / oneDNN / oneDNN packed:  {cells}")


def like_for_like(device, steps=10):
    """The hand-written LSTM against torch.nn.LSTM with everything else equal: the same model, loss
    (model.masked_nll), dtype and batches, at both SIZES; fused (C++ time loop) and python (the Python loop)
    alternating with cudnn (nn.LSTM's kernel) batch by batch. Prints tokens/s, the median per-batch ratio to
    nn.LSTM, and GFLOP/s of the step against the measured matmul roof of its dtype."""
    from config import Config
    if device.type == "cpu":
        roof = {"fp32": matmul_roof(torch.float32), "bf16": matmul_roof(torch.bfloat16)}
        print(f"matmul roof ({device}, {torch.get_num_threads()} threads, 6400x512 @ 512x2048): "
              f"fp32 {roof['fp32']:.0f} GFLOP/s, bf16 {roof['bf16']:.0f} GFLOP/s")
    else:
        roof = {}
    for E, H in SIZES:
        cfg = Config()
        cfg.model.embed_dim, cfg.model.hidden_size, cfg.model.tie_weights = E, H, True
        batches, pad = train_setup(cfg, device, steps + 1)
        tokens = sum(t.numel() for t, _ in batches[1:]) / steps
        print(f"like for like, E{E} H{H} L{cfg.model.num_layers} V{cfg.model.vocab_size} tied, batch "
              f"{cfg.train.batch_size}, {steps} real batches, same loss and dtype, {device}")
        for p in ("fp32", "bf16"):
            names = [f"fused-{p}", f"python-{p}", f"cudnn-{p}"]
            steppers = {v: make_trainer(cfg, v, device, pad) for v in names}
            for v in names:
                steppers[v](*batches[0])                          # warm-up (and the C++ loop's build)
            secs = {v: [] for v in names}
            for inputs, targets in batches[1:]:
                for v in names:
                    sync(device)
                    t = time.perf_counter()
                    steppers[v](inputs, targets)
                    sync(device)
                    secs[v].append(time.perf_counter() - t)
            for v in names:
                ratio = np.median(np.array(secs[names[-1]]) / np.array(secs[v]))
                gflops = step_flops(cfg, tokens) / np.median(secs[v]) / 1e9
                of_roof = f"  {gflops / roof[p]:5.1%} of the {p} roof" if p in roof else ""
                print(f"  {v:<12} {np.median(secs[v]) * 1000:7.0f} ms/step   / nn.LSTM {ratio:.3f}x   "
                      f"{gflops:6.0f} GFLOP/s{of_roof}")


def layers_bench(device, steps=24, T=50, B=128):
    """FusedLSTM (the hand-derived backward, C++ time loops) against nn.LSTM's kernel on the same weights,
    nothing else in the step: forward and backward (of sum(out * g)) timed apart, alternating call by call.
    Prints medians and the median per-call ratio nn.LSTM time / ours (above 1: ours faster)."""
    from model import CudnnLSTM, FusedLSTM, init_layer
    print(f"the LSTM alone, 2 layers, T {T} B {B}, {steps} alternating calls, {device}, "
          f"{torch.get_num_threads()} threads (ratio: nn.LSTM time / ours)")
    for E, H in SIZES:
        torch.manual_seed(0)
        ours = FusedLSTM(E, H, 2, "fused")
        for layer in ours.layers:                                 # as training starts (model.init_weights)
            init_layer(layer, "default")
        ours.to(device)
        models = {"ours": ours, "nn.LSTM": CudnnLSTM(ours)}
        x = torch.randn(T, B, E, device=device, requires_grad=True)
        g = torch.randn(T, B, H, device=device)
        for p in ("fp32", "bf16"):
            secs = {(m, part): [] for m in models for part in ("forward", "backward")}
            for k in range(steps + 1):                            # the first round warms up (and builds)
                for name, m in models.items():
                    sync(device)
                    t0 = time.perf_counter()
                    with torch.autocast(device.type, torch.bfloat16, enabled=p == "bf16"):
                        out, _ = m(x)
                    sync(device)
                    t1 = time.perf_counter()
                    (out.float() * g).sum().backward()
                    sync(device)
                    if k:
                        secs[name, "forward"].append(t1 - t0)
                        secs[name, "backward"].append(time.perf_counter() - t1)
            for name in models:
                secs[name, "both"] = np.add(secs[name, "forward"], secs[name, "backward"])
            for part in ("forward", "backward", "both"):
                a, b = np.array(secs["ours", part]), np.array(secs["nn.LSTM", part])
                print(f"  E{E} H{H} {p} {part:<8}  ours {np.median(a) * 1e3:6.0f} ms   nn.LSTM "
                      f"{np.median(b) * 1e3:6.0f} ms   ratio {np.median(b / a):.3f}x")
        if device.type == "cpu":
            forward_parts(ours.layers[0], x.detach(), steps)


def forward_parts(layer, x, steps):
    """Where the first layer's forward goes, float32: one call of the C++ time loop as training runs it
    (model.layer_forward_cpp: its weights packed, the input gates made in the loop a chunk of steps at a time)
    against its matmuls alone (the same packed weights and shapes), medians of alternating calls; the rest is
    the packing, each step's cell pass and the buffers it writes."""
    import kernels
    from model import layer_forward_cpp, onednn_linear, packed
    ext = kernels.lstm_cell()
    if ext is None:
        return
    T, B, D = x.shape
    W, b = layer.W.detach(), layer.b.detach()
    h0 = c0 = torch.zeros(B, layer.hidden_size)
    Wp, Wxp = packed(W[:, D:].contiguous(), B), packed(W[:, :D].contiguous(), ext.CHUNK_ROWS)
    if Wxp is None:                                               # no oneDNN: the loop is handed the gates
        return
    rows = (ext.CHUNK_ROWS // B) * B
    xs = x.reshape(T * B, D)
    parts = {"C++ time loop": lambda: layer_forward_cpp(ext, x, h0, c0, W, b, torch.float32),
             f"its {T} recurrent matmuls": lambda: [onednn_linear(h0, Wp) for _ in range(T)],
             "its input-gate products": lambda: [onednn_linear(xs[r:r + rows], Wxp) for r in range(0, T * B, rows)]}
    secs = {k: [] for k in parts}
    for k in range(steps + 1):
        for name, fn in parts.items():
            t0 = time.perf_counter()
            fn()
            if k:
                secs[name].append(time.perf_counter() - t0)
    print(f"  first layer's forward, fp32: " + ", ".join(f"{name} {np.median(v) * 1e3:.1f} ms"
                                                         for name, v in secs.items()))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_bench(device, steps=24, variants=tuple(DEFAULT_VARIANTS.split(","))):
    """Training tokens/s on real batches: the variants alternate on the same batch (A B C A B C ...); for each,
    the median of its per-batch ratios to each nnlstm-* peer given (else to the last variant), and its peak memory."""
    from config import Config
    cfg = Config()
    batches, pad = train_setup(cfg, device, steps + 1)
    print(f"training step, default model (E={cfg.model.embed_dim} H={cfg.model.hidden_size} "
          f"L={cfg.model.num_layers} V={cfg.model.vocab_size}), Adam, batch {cfg.train.batch_size}, "
          f"{steps} real batches ({sum(int((t != pad).sum()) for _, t in batches[1:])} target tokens), {device}, "
          f"{torch.get_num_threads()} threads")
    steppers = {v: make_trainer(cfg, v, device, pad) for v in variants}
    for v in variants:
        steppers[v](*batches[0])                                  # warm-up
    rates = {v: [] for v in variants}
    for inputs, targets in batches[1:]:
        for v in variants:                                        # alternate on the same batch
            sync(device)
            t = time.perf_counter()
            n = steppers[v](inputs, targets)
            sync(device)
            rates[v].append(n / (time.perf_counter() - t))
    refs = [v for v in variants if v.startswith("nnlstm")] or [variants[-1]]
    for v in variants:
        ratios = "   ".join(f"/{r} {np.median(np.array(rates[v]) / np.array(rates[r])):.3f}x" for r in refs)
        print(f"  {v:<13}{np.median(rates[v]):9.0f} tokens/s   {ratios}   peak memory "
              f"{peak_memory(v, device, steps) / 2**20:7.1f} MiB")
    print("  (ratios: median of per-batch ratios; nnlstm-*: torch.nn.LSTM's kernel with F.cross_entropy, "
          "under torch.autocast in bf16)")
    return rates


def profile_bench(device, steps=5, variants=("fused-bf16",), rows=12):
    """torch.profiler over `steps` real training steps of each variant: where the time goes, by operator."""
    from torch.profiler import profile, ProfilerActivity
    from config import Config
    cfg = Config()
    batches, pad = train_setup(cfg, device, steps + 1)
    for v in variants:
        step = make_trainer(cfg, v, device, pad)
        step(*batches[0])                                         # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for inputs, targets in batches[1:]:
                step(inputs, targets)
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in events)
        print(f"{v}: {steps} real batches, {total / 1e6:.2f} s of CPU time (self time by operator)")
        for e in events[:rows]:
            print(f"  {e.key[:44]:<44} {e.self_cpu_time_total / total:6.1%}  {e.count:6d} calls")


def peak_memory(variant, device, steps):
    """Peak memory of training steps with one variant: CUDA's max_memory_allocated, or on a CPU the growth of
    the peak resident set of a fresh process (python benchmark.py peak BACKEND) over its steps."""
    if device.type == "cuda":
        from config import Config
        cfg = Config()
        batches, pad = train_setup(cfg, device, steps + 1)
        step = make_trainer(cfg, variant, device, pad)
        step(*batches[0])
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        for inputs, targets in batches[1:steps + 1]:
            step(inputs, targets)
        return torch.cuda.max_memory_allocated(device) - base
    import subprocess
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmark.py"), "peak", variant, str(steps)], capture_output=True, text=True)
    return float(out.stdout.strip().split()[-1])


def peak_rss_growth(variant, steps):
    """Bytes the peak resident set grows by while training `steps` real batches (CPU, this process)."""
    from config import Config
    cfg = Config()
    device = torch.device("cpu")
    batches, pad = train_setup(cfg, device, steps + 1)
    step = make_trainer(cfg, variant, device, pad)
    before = peak_rss()
    for inputs, targets in batches[:steps + 1]:
        step(inputs, targets)
    return peak_rss() - before


def peak_rss():
    """This process's peak resident set in bytes (Linux VmHWM; unlike ru_maxrss it does not carry over the
    parent's peak across exec)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def engine_bench(device, clients=20, seconds=10.0, rounds=2):
    """server.Engine driven by client threads writing default poems back to back, as `serve` runs it but without
    HTTP: poems/s batched (256 rows) and one request at a time (8 rows), in fp32 and bf16, alternating."""
    from tools import loadtest
    from serve import server
    from training.checkpoint import load_model
    model, _, itos = load_model(os.path.join(ROOT, "pretrained", "tang.pt"), device)
    engines = {rows: server.Engine({"tang": (model, itos)}, device, rows) for rows in (256, 8)}

    def run(engine):
        count, stop_at = [0], time.perf_counter() + seconds

        def client(c):
            k = 0
            while time.perf_counter() < stop_at:
                job = engine.submit(engine.write_job({"start": loadtest.STARTS[(c + k) % len(loadtest.STARTS)],
                                                      "seed": 1000 * c + k}))
                job.done.wait()
                count[0] += job.error is None
                k += 1
        wall = loadtest.run_clients(client, clients, seconds + 120)
        return count[0] / wall
    print(f"the serve engine in-process, {clients} clients writing default poems, {seconds:.0f} s each, "
          f"{device.type}, {torch.get_num_threads()} threads")
    for r in range(1, rounds + 1):
        for precision in ("fp32", "bf16"):
            model.precision = precision
            rates = {rows: run(engine) for rows, engine in engines.items()}
            print(f"  round {r} {precision}: batched {rates[256]:6.2f} poems/s   one at a time {rates[8]:6.2f} "
                  f"poems/s   ratio {rates[256] / max(rates[8], 1e-9):.2f}x", flush=True)


SUBCOMMANDS = {   # name: (what it measures, its flags)
    "all": ("lstm, train and infer, one after another", ("device", "steps", "variants")),
    "lstm": ("LSTM forward + backward: NumPy (MyLSTM_np) next to PyTorch CPU autograd, ours and nn.LSTM", ()),
    "train": ("training tokens/s of PoetryLM on real batches, the variants (backend and precision) alternated on "
              "the same batches; ratios to the nn.LSTM peers; peak memory of each", ("device", "steps", "variants")),
    "ratio": ("the hand-written LSTM against nn.LSTM like for like (same model, loss, dtype, batches) at E128 "
              "H256 and E256 H512, fp32 and bf16, alternating, with GFLOP/s against the matmul roof",
              ("device", "steps")),
    "layers": ("the two-layer LSTM alone, no embedding, output layer or loss (T 50, B 128, random inputs): "
               "forward and backward timed apart, the hand-written LSTM against nn.LSTM on the same weights, "
               "E128 H256 and E256 H512, fp32 and bf16, alternating", ("device", "steps")),
    "matmul": ("the LSTM layer's matmul shapes (B 128, T 50, E256 H512): aten::mm against oneDNN's linear, its "
               "weight packed once or not, fp32 and bf16", ()),
    "infer": ("no-grad forward as evaluate and generate use it, per backend", ("device",)),
    "profile": ("where a training step's time goes, per variant", ("device", "steps", "variants")),
    "engine": ("the serve engine in-process, without HTTP: poems/s of 20 clients, batched and one request at a "
               "time, fp32 and bf16, alternating", ("device",)),
}


def main(argv, M):
    """The benchmark named by argv[0] (all when none); M: the MyLSTM_np module (for lstm)."""
    from config import OneLineParser, suggest
    if argv[:1] == ["peak"]:                      # train's helper process: peak memory of one variant
        if len(argv) != 3 or argv[1] not in VARIANTS or not argv[2].isdigit():
            print("error: benchmark.py peak VARIANT STEPS is train's helper process; run benchmark.py train",
                  file=sys.stderr)
            return 2
        print(peak_rss_growth(argv[1], int(argv[2])))
        return 0
    which = argv[0] if argv and not argv[0].startswith("-") else "all"
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if which not in SUBCOMMANDS:
        print(f"error: benchmark.py {which}: choose one of {', '.join(SUBCOMMANDS)}{suggest(which, list(SUBCOMMANDS))}",
              file=sys.stderr)
        return 2
    what, flags = SUBCOMMANDS[which]
    parser = OneLineParser(prog=f"benchmark.py {which}", description=what + ". Figures depend on the machine and "
                           "on what else runs: quote them with the hardware and the command.")
    if "device" in flags:
        parser.add_argument("--device", default="cpu", help="cpu | cuda (default: cpu)")
    if "steps" in flags:
        parser.add_argument("--steps", type=int, default=24, help="real batches per variant (default: 24; "
                            "profile: at most 5)")
    if "variants" in flags:
        parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                            help=f"comma-separated, from: {', '.join(VARIANTS)} (default: {DEFAULT_VARIANTS})")
    a = parser.parse_args(argv[1:] if argv and argv[0] == which else argv)
    device, steps, variants = getattr(a, "device", "cpu"), getattr(a, "steps", 24), getattr(a, "variants", DEFAULT_VARIANTS)
    if steps < 1:
        print("error: --steps must be at least 1", file=sys.stderr)
        return 2
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda asked for, but CUDA is not available here", file=sys.stderr)
        return 2
    bad = [v for v in variants.split(",") if v not in VARIANTS]
    if bad:
        print(f"error: --variants {bad[0]}: choose from {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    if which in ("lstm", "all"):
        lstm_bench(M)
    if which in ("train", "all", "ratio"):
        like_for_like(torch.device(device), min(steps, 10))
    if which in ("train", "all"):
        train_bench(torch.device(device), steps, tuple(variants.split(",")))
    if which == "layers":
        layers_bench(torch.device(device), steps)
    if which == "matmul":
        matmul_bench()
    if which in ("infer", "all"):
        infer_bench(torch.device(device))
    if which == "engine":
        engine_bench(torch.device(device))
    if which == "profile":
        profile_bench(torch.device(device), min(steps, 5), tuple(variants.split(",")))
    return 0
