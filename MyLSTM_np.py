"""The LSTM in NumPy with a hand-derived backward pass through time, checked against PyTorch.

    python MyLSTM_np.py test                                 # gradients vs autograd and finite differences
    python MyLSTM_np.py bench                                # NumPy fwd+bwd time next to PyTorch CPU autograd
    python MyLSTM_np.py generate --ckpt checkpoints/best.pt --start 日   # inference without importing torch
    python MyLSTM_np.py inspect "POEM" --ckpt pretrained/tang.pt --out FILE.json   # main.py inspect's JSON

Layout shared with model.py (docs/design.md): a layer has W (4H, D+H) and b (4H,), row blocks in gate
order i, f, o, g, columns acting on [x_t ; h_{t-1}]. Equation numbers (1)-(16) refer to docs/derivation.md.
Arrays are time-major: x (T, B, D). Only the `test` and `bench` commands import torch.

Deliberately left out: dropout, peepholes, and any gradient clipping inside backward (clipping belongs to the
optimiser step, and would make the gradient check meaningless).
"""
import math
import sys
import zipfile
import pickle

import numpy as np
from verse.text import check_opening, encode_start, format_poem


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))          # equal to 1 / (1 + e^-x), without overflow


# ----------------------------------------------------------------------------------------------------------
# one step: gates from pre-activations, and back (shared by LSTMCell and LSTM)

def gates_forward(z, c_prev):
    """z (B, 4H) pre-activations, c_prev (B, H) -> h, c, and what backward needs.   eqs. (1)-(3)"""
    H = c_prev.shape[1]
    ifo = sigmoid(z[:, :3 * H])                      # (B, 3H)   eq. (1)
    i, f, o = ifo[:, :H], ifo[:, H:2 * H], ifo[:, 2 * H:]
    g = np.tanh(z[:, 3 * H:])                        # (B, H)    eq. (1)
    c = f * c_prev + i * g                           # eq. (2)
    tanh_c = np.tanh(c)
    h = o * tanh_c                                   # eq. (3)
    return h, c, (i, f, o, g, c_prev, tanh_c)


def gates_backward(gcache, dh, dc):
    """Gradients at h and c (B, H) -> dz (B, 4H) at the pre-activations, dc_prev (B, H).   eqs. (4)-(9)"""
    i, f, o, g, c_prev, tanh_c = gcache
    do = dh * tanh_c                                 # backprop into o            eq. (4)
    dc = dc + dh * o * (1.0 - tanh_c ** 2)           # backprop into c (total)    eq. (5)
    di, df, dg = dc * g, dc * c_prev, dc * i         # backprop into i, f, g      eq. (6)
    dc_prev = dc * f                                 # backprop into c_{t-1}      eq. (7)
    dz = np.concatenate([di * i * (1.0 - i),         # through the sigmoids       eq. (8)
                         df * f * (1.0 - f),
                         do * o * (1.0 - o),
                         dg * (1.0 - g ** 2)], axis=1)   # through the tanh        eq. (9)
    return dz, dc_prev


def init_layer(input_size, hidden_size, rng, dtype):
    """U(-1/sqrt(H), 1/sqrt(H)) like torch.nn.LSTM: W (4H, D+H), b (4H,)."""
    k = 1.0 / math.sqrt(hidden_size)
    W = rng.uniform(-k, k, (4 * hidden_size, input_size + hidden_size)).astype(dtype)
    b = rng.uniform(-k, k, 4 * hidden_size).astype(dtype)
    return W, b


# ----------------------------------------------------------------------------------------------------------
# LSTMCell and LSTM

class LSTMCell:
    """One time step of one layer."""

    def __init__(self, input_size, hidden_size, rng=None, dtype=np.float64):
        rng = rng if rng is not None else np.random.default_rng(0)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.W, self.b = init_layer(input_size, hidden_size, rng, dtype)

    def forward(self, x, h_prev, c_prev):
        """x (B, D), h_prev and c_prev (B, H) -> h, c (B, H), cache."""
        xh = np.concatenate([x, h_prev], axis=1)    # (B, D+H)
        z = xh @ self.W.T + self.b                   # (B, 4H)    eq. (1), one matmul for all four gates
        h, c, gcache = gates_forward(z, c_prev)
        return h, c, (xh, gcache)

    def backward(self, cache, dh, dc):
        """Gradients at h and c -> (dx, dh_prev, dc_prev, dW, db).   eqs. (8)-(11)"""
        xh, gcache = cache
        dz, dc_prev = gates_backward(gcache, dh, dc)  # (B, 4H)
        dW = dz.T @ xh                                # backprop into W            eq. (10)
        db = dz.sum(axis=0)                           # backprop into b            eq. (10)
        dxh = dz @ self.W                             # backprop into [x ; h_prev] eq. (11)
        D = self.input_size
        return dxh[:, :D], dxh[:, D:], dc_prev, dW, db


class LSTM:
    """num_layers stacked layers over a whole sequence; state (num_layers, B, H)."""

    def __init__(self, input_size, hidden_size, num_layers=1, rng=None, dtype=np.float64):
        rng = rng if rng is not None else np.random.default_rng(0)
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.cells = [LSTMCell(input_size if l == 0 else hidden_size, hidden_size, rng, dtype)
                      for l in range(num_layers)]

    def forward(self, x, h0=None, c0=None):
        """x (T, B, D) -> out (T, B, H) of the top layer, h_n, c_n (num_layers, B, H), cache."""
        L, B, H = self.num_layers, x.shape[1], self.hidden_size
        h0 = np.zeros((L, B, H), x.dtype) if h0 is None else h0
        c0 = np.zeros((L, B, H), x.dtype) if c0 is None else c0
        h_n, c_n, caches = np.empty_like(h0), np.empty_like(c0), []
        for l, cell in enumerate(self.cells):
            x, h_n[l], c_n[l], cache = layer_forward(cell, x, h0[l], c0[l])
            caches.append(cache)
        return x, h_n, c_n, caches

    def backward(self, caches, dout, dh_n=None, dc_n=None):
        """Any upstream gradients on out (T, B, H), h_n, c_n (None = zeros) -> (dx, dh0, dc0, [(dW, db)])."""
        L, B, H = self.num_layers, dout.shape[1], self.hidden_size
        dh_n = np.zeros((L, B, H), dout.dtype) if dh_n is None else dh_n
        dc_n = np.zeros((L, B, H), dout.dtype) if dc_n is None else dc_n
        dh0, dc0, grads = np.empty_like(dh_n), np.empty_like(dc_n), [None] * L
        for l in reversed(range(L)):                 # the layer above hands its dx down as dout   eq. (13)
            dout, dh0[l], dc0[l], dW, db = layer_backward(self.cells[l], caches[l], dout, dh_n[l], dc_n[l])
            grads[l] = (dW, db)
        return dout, dh0, dc0, grads


def layer_forward(cell, x, h, c):
    """One layer over all steps: the input projection for every step is one matmul.   eq. (12)"""
    T, B, D = x.shape
    Wx, Wh = cell.W[:, :D], cell.W[:, D:]
    xz = (x.reshape(T * B, D) @ Wx.T + cell.b).reshape(T, B, -1)   # (T, B, 4H)
    WhT = Wh.T                                                     # (H, 4H)
    out, hs, gcaches = np.empty((T, B, cell.hidden_size), x.dtype), [h], []
    for t in range(T):
        h, c, gcache = gates_forward(xz[t] + h @ WhT, c)           # one matmul per step
        out[t] = h
        hs.append(h)
        gcaches.append(gcache)
    return out, h, c, (x, np.stack(hs[:-1]), gcaches)              # h_{t-1} for every t: (T, B, H)


def layer_backward(cell, cache, dout, dh, dc):
    """BPTT through one layer: dh at step t is dout[t] plus what step t+1 sent back.   eqs. (13)-(14)"""
    x, h_prev, gcaches = cache
    T, B, D = x.shape
    Wh = cell.W[:, D:]                                             # (4H, H)
    dz = np.empty((T, B, 4 * cell.hidden_size), x.dtype)
    for t in reversed(range(T)):
        dz[t], dc = gates_backward(gcaches[t], dout[t] + dh, dc)   # eq. (13)
        dh = dz[t] @ Wh                                            # into h_{t-1}   eq. (11)
    dz2 = dz.reshape(T * B, -1)                                    # (T*B, 4H)
    dW = np.concatenate([dz2.T @ x.reshape(T * B, D),              # eq. (14): sums over t in one matmul
                         dz2.T @ h_prev.reshape(T * B, -1)], axis=1)
    dx = (dz2 @ cell.W[:, :D]).reshape(T, B, D)                    # into the layer's input   eq. (11)
    return dx, dh, dc, dW, dz2.sum(axis=0)


# ----------------------------------------------------------------------------------------------------------
# the language model (same parameters as model.PoetryLM)

class NumpyLM:
    """embedding (V, E) -> LSTM -> projection (V, H) + (V,). Parameter names follow PoetryLM's state_dict."""

    def __init__(self, params, num_layers):
        self.params = params
        E = params["embed.weight"].shape[1]
        H = params["proj.weight"].shape[1]
        self.lstm = LSTM(E, H, num_layers, dtype=params["embed.weight"].dtype)
        for l, cell in enumerate(self.lstm.cells):
            cell.W, cell.b = params[f"lstm.layers.{l}.W"], params[f"lstm.layers.{l}.b"]

    @classmethod
    def from_checkpoint(cls, path):
        """(model, itos, config dict) from a checkpoint written by main.py train, without torch."""
        ckpt = read_torch_checkpoint(path)
        params = {k: v.astype(np.float32) for k, v in ckpt["model"].items()}
        bad = next((k for k, v in params.items() if not np.isfinite(v).all()), None)
        if bad:
            raise ValueError(f"damaged: its weight {bad} holds NaN or infinite values")
        if "proj.down.weight" in params:                           # a tied model: its projection is E W_d
            params["proj.weight"] = params["embed.weight"] @ params.pop("proj.down.weight")   # (V, H)
        return cls(params, ckpt["config"]["model"]["num_layers"]), ckpt["itos"], ckpt["config"]

    def forward(self, tokens, state=None):
        """tokens (T, B) -> logits (T, B, V), (h_n, c_n), cache."""
        x = self.params["embed.weight"][tokens]                    # (T, B, E)
        h0, c0 = state if state is not None else (None, None)
        out, h_n, c_n, lcache = self.lstm.forward(x, h0, c0)       # (T, B, H)
        logits = out @ self.params["proj.weight"].T + self.params["proj.bias"]   # (T, B, V)
        return logits, (h_n, c_n), (tokens, out, lcache)

    def loss_and_grads(self, tokens, targets, pad_id=0):
        """Mean cross-entropy over targets != pad_id, and its gradient for every parameter (dict)."""
        logits, _, (tokens, out, lcache) = self.forward(tokens)
        mask = targets != pad_id                                   # (T, B)
        n = mask.sum()
        logp = logits - logits.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))        # log-softmax (T, B, V)
        loss = -np.take_along_axis(logp, targets[..., None], -1)[..., 0][mask].sum() / n
        dlogits = np.exp(logp)                                     # softmax - onehot, masked, / n   eq. (15)
        np.put_along_axis(dlogits, targets[..., None], np.take_along_axis(dlogits, targets[..., None], -1) - 1, -1)
        dlogits *= mask[..., None] / n
        V = dlogits.shape[-1]
        d2, o2 = dlogits.reshape(-1, V), out.reshape(-1, out.shape[-1])
        grads = {"proj.weight": d2.T @ o2, "proj.bias": d2.sum(0)}          # eq. (15)
        dx, _, _, lgrads = self.lstm.backward(lcache, dlogits @ self.params["proj.weight"])
        for l, (dW, db) in enumerate(lgrads):
            grads[f"lstm.layers.{l}.W"], grads[f"lstm.layers.{l}.b"] = dW, db
        dE = np.zeros_like(self.params["embed.weight"])
        np.add.at(dE, tokens.reshape(-1), dx.reshape(-1, dx.shape[-1]))   # rows of the used tokens   eq. (16)
        grads["embed.weight"] = dE
        return loss, grads


# ----------------------------------------------------------------------------------------------------------
# reading a torch checkpoint without torch

class _Storage:
    def __init__(self, dtype, key):
        self.dtype, self.key = dtype, key


_STORAGE_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
                   "LongStorage": np.int64, "IntStorage": np.int32, "ByteStorage": np.uint8,
                   "BoolStorage": np.bool_, "ShortStorage": np.int16, "CharStorage": np.int8}


class _CheckpointUnpickler(pickle.Unpickler):
    """Only tensors, OrderedDicts and plain types: any other global is refused (no code runs)."""

    def __init__(self, f, zf, prefix):
        super().__init__(f)
        self.zf, self.prefix = zf, prefix

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return self.rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            import collections
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"checkpoint refers to {module}.{name}, which is not allowed")

    def persistent_load(self, pid):
        _, storage_type, key, _location, _numel = pid
        return _Storage(_STORAGE_DTYPES[storage_type], key)

    def rebuild_tensor(self, storage, offset, size, stride, *_):
        data = np.frombuffer(self.zf.read(f"{self.prefix}/data/{storage.key}"), dtype=storage.dtype)
        check_view(len(data), offset, size, stride)
        item = data.itemsize
        return np.lib.stride_tricks.as_strided(data[offset:], shape=tuple(size),
                                               strides=tuple(s * item for s in stride)).copy()


def check_view(n, offset, size, stride):
    """Refuse a tensor view that reaches outside its storage of n elements (a crafted file could otherwise
    make as_strided read foreign memory or crash the process)."""
    ints = [offset, *size, *stride]
    if len(size) != len(stride) or not all(isinstance(v, int) and v >= 0 for v in ints):
        raise pickle.UnpicklingError("a tensor with negative or malformed offset, size or stride")
    if 0 in size:
        return
    last = offset + sum((d - 1) * s for d, s in zip(size, stride))
    if last >= n:
        raise pickle.UnpicklingError(f"a tensor reaches element {last} of a storage of {n}")


MAX_CKPT_BYTES = 4 * 2 ** 30          # as training.checkpoint.MAX_CKPT_BYTES: far above any model of this project


def read_torch_checkpoint(path):
    """The dict torch.save wrote (tensors as NumPy arrays). Raises ValueError on anything unreadable: a path
    that is not a regular file (a device such as /dev/zero, a FIFO: never opened), a file or member over
    MAX_CKPT_BYTES, bytes failing their CRC (zipfile checks each member it reads)."""
    import os
    import stat
    try:
        st = os.stat(path)
    except OSError as e:
        raise ValueError(f"{type(e).__name__}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError("not a regular file (a folder, device or pipe)")
    if st.st_size > MAX_CKPT_BYTES:
        raise ValueError(f"{st.st_size / 2**30:.1f} GiB, over the {MAX_CKPT_BYTES // 2**30} GiB a checkpoint may be")
    try:
        with zipfile.ZipFile(path) as zf:
            big = next((i.filename for i in zf.infolist() if i.file_size > MAX_CKPT_BYTES), None)
            if big:
                raise pickle.UnpicklingError(f"{big} claims {zf.getinfo(big).file_size} bytes")
            pkl = next(n for n in zf.namelist() if n.endswith("/data.pkl"))
            with zf.open(pkl) as f:
                return _CheckpointUnpickler(f, zf, pkl[:-len("/data.pkl")]).load()
    except (OSError, zipfile.BadZipFile, StopIteration, pickle.UnpicklingError, EOFError, KeyError) as e:
        raise ValueError(f"{type(e).__name__}: {e}") from None


# ----------------------------------------------------------------------------------------------------------
# generation without torch

def sample_np(model, itos, starts, gcfg, rngs):
    """NumPy twin of writing/decoding.py's sampler without constraints: len(starts) poems as one batch, each
    ends at <eos> or max_gen_len; rngs holds each poem's own random stream (poem k is the same whatever else
    is in the batch)."""
    import dataUtil
    stoi = {w: i for i, w in enumerate(itos)}
    eos = stoi[dataUtil.EOS]
    banned = [stoi[dataUtil.PAD], stoi[dataUtil.UNK], stoi[dataUtil.BOS]]
    tokens = np.array([[stoi[dataUtil.BOS], *p] for p in starts]).T            # (P, B)
    logits, state, _ = model.forward(tokens)
    out, done = [list(p) for p in starts], np.zeros(len(starts), bool)
    for _ in range(gcfg.max_gen_len):
        nxt = pick_next_np(logits[-1], banned, gcfg, rngs)
        for b in np.flatnonzero(~done & (nxt != eos)):
            out[b].append(int(nxt[b]))
        done |= nxt == eos
        if done.all():
            break
        logits, state, _ = model.forward(nxt[None, :], state)
    return [dataUtil.decode(o, itos) for o in out]


def pick_next_np(logits, banned, gcfg, rngs):
    logits = logits.astype(np.float64)
    logits[:, banned] = -np.inf
    if gcfg.greedy:
        return logits.argmax(-1)
    logits = logits / max(gcfg.temperature, 1e-6)
    if gcfg.top_k > 0:
        kth = np.sort(logits, -1)[:, -min(gcfg.top_k, logits.shape[-1])][:, None]
        logits[logits < kth] = -np.inf
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.array([rng.choice(len(row), p=row) for row, rng in zip(p, rngs)])


NP_GEN_FLAGS = {"ckpt", "start", "num", "temperature", "top_k", "greedy", "seed", "max_gen_len"}


def cmd_generate(rest):
    """Unconstrained poems from --start; the constrained modes (--form, --rhyme, ...) live in main.py generate."""
    from config import UserError, check_config, make_parser, config_from_args, pick_checkpoint
    parser = make_parser("MyLSTM_np.py generate", "poems with the NumPy model, without torch (for --form, "
                         "--acrostic, --rhyme, --tones, --top-p, --prefix use python main.py generate)",
                         ["gen"], only=NP_GEN_FLAGS)
    gcfg = check_config(config_from_args(parser.parse_args(rest))).gen
    check_opening(gcfg.start)                   # before any model is named
    path = pick_checkpoint(gcfg.ckpt)
    try:
        model, itos, _ = NumpyLM.from_checkpoint(path)
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path} is not a readable checkpoint of this project ({e}); pass one from train")
    if not gcfg.start.strip():
        raise UserError("--start is empty; give the character(s) the poem begins with, e.g. --start 日")
    start = encode_start(gcfg.start, itos)
    for first in range(0, gcfg.num, 64):                 # bounded batches, printed as they are done
        rngs = [np.random.default_rng([gcfg.seed, k]) for k in range(first, min(first + 64, gcfg.num))]
        for k, poem in enumerate(sample_np(model, itos, [start] * len(rngs), gcfg, rngs)):
            print(("" if first + k == 0 else "\n") + format_poem(poem), flush=True)
    return 0


# ----------------------------------------------------------------------------------------------------------
# test and bench

def no_flags(prog, description, rest):
    """Commands without flags: --help prints what they do (and runs nothing); any other argument is refused."""
    from config import OneLineParser
    OneLineParser(prog=prog, description=description).parse_args(rest)


def cmd_test(rest):
    no_flags("MyLSTM_np.py test", "the gradient checks: the NumPy and PyTorch LSTMs' hand-derived backward "
             "passes against autograd and finite differences (exit 0 when all pass, 1 when one fails)", rest)
    from tools import gradcheck
    return 0 if gradcheck.run_all(sys.modules[__name__], verbose=True) else 1


def cmd_bench(rest):
    no_flags("MyLSTM_np.py bench", "LSTM forward + backward time: NumPy (this file) next to PyTorch CPU autograd "
             "(ours and nn.LSTM); figures depend on the machine", rest)
    from tools import benchmark
    benchmark.lstm_bench(sys.modules[__name__])
    return 0


# ----------------------------------------------------------------------------------------------------------
# inspect: every layer's gates and states over a poem (studies/cellrecord.py's record, the JSON of main.py inspect)

def cmd_inspect(rest):
    from studies import cellrecord
    return cellrecord.cmd_inspect_np(rest, NumpyLM.from_checkpoint)


def main(argv):
    from config import UserError
    from config import suggest
    commands = {"test": cmd_test, "bench": cmd_bench, "generate": cmd_generate, "inspect": cmd_inspect}
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if not argv or argv[0] not in commands:
        hint = suggest(argv[0], list(commands)) if argv else ""
        raise UserError(f"usage: python MyLSTM_np.py {{{'|'.join(commands)}}} [flags]{hint}")
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    from config import run_cli
    sys.exit(run_cli(main))
