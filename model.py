"""The PyTorch poetry language model: embedding -> hand-written LSTM layers -> projection.

The LSTM uses the layout shared with MyLSTM_np.py (docs/design.md): layer l has W (4H, D_l + H) and b (4H,),
row blocks in gate order i, f, o, g, columns acting on [x_t ; h_{t-1}]:

    z_t = W [x_t ; h_{t-1}] + b,   i, f, o = sigmoid(z_i, z_f, z_o),   g = tanh(z_g)
    c_t = f * c_{t-1} + i * g,     h_t = o * tanh(c_t)

Four backends share one state_dict (`--lstm`): `fused` (the default) runs each layer as one autograd.Function
whose backward is the hand-derived BPTT of docs/derivation.md, eq. numbers in the comments, its time loops in C++
(kernels/lstm_cell.cpp: each step's cell one fused pass; built at first use); `python` is the same Function with
the time loops below in Python (what `fused` falls back to where no compiler is); `autograd` is the
same time loop differentiated by autograd, the readable reference the tests compare against; `cudnn` runs
torch.nn.LSTM's kernel (cuDNN on a GPU) on the same parameters, converted on the fly (gates i, f, g, o).

Options beyond the seed's model, each a flag measured by `python main.py experiment recipe`: dropout (embedding,
between layers, before the output layer) and weight tying; measured by `python main.py experiment regularizers`:
AWD-LSTM's locked dropout (one mask per poem, shared by its steps) and DropConnect on the recurrent weights.
Deliberately left out: peepholes, layer norm.
"""
import functools
import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

import kernels
from verse import formats
from config import CHOICES

INIT_SCHEMES = CHOICES[("model", "init_lstm")]
BACKENDS = CHOICES[("model", "lstm")]


# ----------------------------------------------------------------------------------------------------------
# one layer, forward without an autograd graph (shared by training and by no_grad inference)

def layer_forward(x, h0, c0, W, b, keep, md=None):
    """x (T, B, D), h0 and c0 (B, H) -> hs (T+1, B, H) with hs[0] = h0 (hs[1:] is the layer's output), c_T,
    and, when keep, what backward needs: gates (T, B, 4H) holding the activations i, f, o, g of every step,
    cs (T+1, B, H) with cs[0] = c0, tanh_c (T, B, H). Without keep only two cell states are ever held.

    md is the matmuls' dtype (default W's). With md = bfloat16 (--precision bf16) the matmuls take bfloat16
    operands (accumulating in float32 inside the kernel) and hs, their input, is held in bfloat16; the gates,
    the cell states, tanh(c) and the nonlinearities stay float32."""
    T, B, D = x.shape
    H = h0.shape[1]
    md = md or W.dtype
    Wm = W.to(md)                                                                  # a no-op in float32
    gates = input_gates(x, Wm, b, md)                                              # (T, B, 4H)
    W_hT = Wm[:, D:].t()                         # (H, 4H), a strided view that BLAS reads as fast as a
    if T >= 16:                                  # copy (measured); a copy costs more than a whole step at
        W_hT = W_hT.contiguous()                 # T = 1 (generation), so only long reads (training) make it
    hs = x.new_empty(T + 1, B, H, dtype=md)
    hs[0] = h0
    cs = c0.new_empty(T + 1 if keep else 2, B, H)
    cs[0] = c0
    tanh_c = c0.new_empty(T if keep else 1, B, H)
    scratch = c0.new_empty(B, 4 * H, dtype=md)
    for t in range(T):
        z = add_matmul_(gates[t], hs[t], W_hT, scratch)        # (B, 4H) pre-activations        eq. (1)
        z[:, :3 * H].sigmoid_()                                # i, f, o                        eq. (1)
        z[:, 3 * H:].tanh_()                                   # g                              eq. (1)
        i, f, o, g = z.split(H, dim=1)
        c_prev, c = (cs[t], cs[t + 1]) if keep else (cs[t % 2], cs[(t + 1) % 2])
        torch.mul(f, c_prev, out=c).addcmul_(i, g)             # c_t = f c_{t-1} + i g          eq. (2)
        tc = torch.tanh(c, out=tanh_c[t if keep else 0])
        torch.mul(o, tc, out=hs[t + 1])                        # h_t = o tanh(c_t)              eq. (3)
    c_T = cs[T if keep else T % 2]
    return hs, c_T, (gates, cs, tanh_c)


LINEAR_ROWS = 1024


def input_gates(x, Wm, b, md, bias=True):
    """x (T, B, D) -> x_t W_x^T + b for every step at once (T, B, 4H), float32 (W's dtype): one matmul.
    bias=False under bfloat16 matmuls: x_t W_x^T alone, in bfloat16 as the matmul gives it (the C++ loop adds
    b in float32 as it reads each step, sparing a pass over the whole (T, B, 4H) in float32)."""
    T, B, D = x.shape
    xm = x.reshape(T * B, D).to(md)
    if md == b.dtype:                                                              # float32 (or 64)
        return linear(xm, Wm[:, :D], b).view(T, B, -1)                             # eq. (12)
    if not bias:
        return (xm @ Wm[:, :D].t()).view(T, B, -1)                                 # eq. (12), b apart
    return torch.add(b, xm @ Wm[:, :D].t()).view(T, B, -1)                         # eq. (12)


def linear(a, W, b=None):
    """a W^T (+ b): a (N, in), W (out, in). The long float32 products of training (N >= LINEAR_ROWS: all steps
    at once) through oneDNN where torch has it (BLAS's sgemm reached 0.4-0.75x of it at this model's shapes
    on README's EPYC: `benchmark.py matmul`, docs/precision.md); else, and for generation's one-step reads
    (W would be copied each step), torch's own."""
    if (a.dtype == torch.float32 and a.device.type == "cpu" and a.shape[0] >= LINEAR_ROWS
            and torch.backends.mkldnn.is_available()):
        return onednn_linear(a, W.contiguous(), b)
    return a @ W.t() if b is None else torch.addmm(b, a, W.t())


def onednn_linear(a, W, b=None):
    """a W^T (+ b) by oneDNN's linear; a contiguous; W (out, in) contiguous, packed by `packed`, or a transposed
    view of a contiguous matrix (weight_grads)."""
    return torch.ops.mkldnn._linear_pointwise(a, W, b, "none", [], "")


def layer_forward_cpp(ext, x, h0, c0, W, b, md):
    """layer_forward with keep, its time loop in C++ (kernels/lstm_cell.cpp: each step's cell one fused pass).
    Where oneDNN packs W_x, the loop makes the input gates itself a few steps at a time (b added in the loop);
    else they are one product here, b included but under bfloat16 matmuls (the loop adds b as it reads)."""
    T, B, D = x.shape
    Wm = W.to(md)
    W_h = Wm[:, D:].contiguous()                                                   # (4H, H)
    W_hT, Wp, h0m = W_h.t().contiguous(), packed(W_h, B), h0.to(md).contiguous()
    Wxp = packed(Wm[:, :D].contiguous(), ext.CHUNK_ROWS) if Wp is not None else None
    if Wxp is not None:
        hs, cs, tanh_c, acts = ext.layer_forward(x.to(md).contiguous(), W_hT, h0m, c0.contiguous(), Wp,
                                                 b.contiguous(), Wxp)
    else:
        apart = md != b.dtype                                  # bfloat16: the loop adds b as it reads
        gates = input_gates(x, Wm, b, md, bias=not apart)                          # (T, B, 4H)
        hs, cs, tanh_c, acts = ext.layer_forward(gates, W_hT, h0m, c0.contiguous(), Wp,
                                                 b.contiguous() if apart else None)
    return hs, cs[-1], (acts, cs, tanh_c)


def packed(W, batch):
    """W (out, in), a matmul's weight y = a W^T, reordered once into oneDNN's blocked layout for a batch of
    `batch` rows (the C++ loop then runs its recurrent matmul through oneDNN: 1.7-2.2x BLAS's sgemm in
    float32, 1.03-1.09x aten::mm in bfloat16, B 128 H 512: `benchmark.py matmul`, docs/precision.md), or None
    where oneDNN cannot (float64, a build without it)."""
    if W.dtype not in (torch.float32, torch.bfloat16) or not torch.backends.mkldnn.is_available():
        return None
    if W.dtype == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return None                              # oneDNN packs bf16 only with AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT
    return torch.ops.mkldnn._reorder_linear_weight(W.contiguous(), batch)


def add_matmul_(acc, a, b, scratch):
    """acc += a @ b in place; acc float32, a and b float32 or bfloat16 (then through scratch, as the CPU has
    no bfloat16 matmul writing float32)."""
    if a.dtype == acc.dtype:
        return acc.addmm_(a, b)
    return acc.add_(torch.mm(a, b, out=scratch))


# ----------------------------------------------------------------------------------------------------------
# one layer, backward through time by hand (docs/derivation.md; MyLSTM_np.layer_backward is the same in NumPy)

def layer_backward(x, W, hs, gates, cs, tanh_c, dout, dh, dc):
    """Gradients at the outputs (T, B, H) and at h_T, c_T (B, H) -> dx (T, B, D), dh0, dc0, dW, db.
    Any of dout, dh, dc may be None (zero). The saved buffers are only read, so a retained graph can run
    backward again; dz (T, B, 4H), the gradients at the pre-activations, gets a buffer of its own.
    The matmuls run in hs's dtype (bfloat16 under --precision bf16: dz is then held in bfloat16, the matmuls'
    operand, while every elementwise step and dc run in float32); dW and db come back in W's dtype."""
    T, B, D = x.shape
    H = hs.shape[2]
    md = hs.dtype
    Wm = W.to(md)
    W_h = Wm[:, D:].contiguous()                               # (4H, H), see layer_forward
    dh = torch.zeros_like(cs[0]) if dh is None else dh
    dc = torch.zeros_like(cs[0]) if dc is None else dc.clone()  # updated in place below
    dht, tmp, s = cs.new_empty(B, H), cs.new_empty(B, H), cs.new_empty(B, 4 * H)
    dh_prev = cs.new_empty(B, H, dtype=md)
    dzs = gates.new_empty(T, B, 4 * H, dtype=md)               # (T, B, 4H)
    sig_bwd, tanh_bwd = torch.ops.aten.sigmoid_backward.grad_input, torch.ops.aten.tanh_backward.grad_input
    for t in reversed(range(T)):
        i, f, o, g = gates[t].split(H, dim=1)                  # the activations of step t
        z = dzs[t]
        tc = tanh_c[t]
        if dout is not None:                                   # from above plus from step t+1   eq. (13)
            dh = torch.add(dout[t], dh, out=dht)
        torch.mul(dh, tc, out=s[:, 2 * H:3 * H])               # backprop into o                 eq. (4)
        torch.mul(dh, o, out=tmp)
        dc.add_(tanh_bwd(tmp, tc, grad_input=tmp))             # backprop into c (total)         eq. (5)
        torch.mul(dc, g, out=s[:, :H])                         # backprop into i, f, g           eq. (6)
        torch.mul(dc, cs[t], out=s[:, H:2 * H])
        torch.mul(dc, i, out=s[:, 3 * H:])
        dc.mul_(f)                                             # backprop into c_{t-1}           eq. (7)
        sig_bwd(s[:, :3 * H], gates[t, :, :3 * H], grad_input=z[:, :3 * H])   # through the sigmoids  eq. (8)
        tanh_bwd(s[:, 3 * H:], g, grad_input=z[:, 3 * H:])     # through the tanh                 eq. (9)
        dh = torch.mm(z, W_h, out=dh_prev)                     # into h_{t-1}                    eq. (11)
    dx, dW, db = weight_grads(x, W, Wm, hs, dzs)
    return dx, dh.to(cs.dtype), dc, dW, db


def weight_grads(x, W, Wm, hs, dzs):
    """dz (T, B, 4H) of every step -> dx (T, B, D), dW, db: three matmuls over all steps at once."""
    T, B, D = x.shape
    H = hs.shape[2]
    dz = dzs.view(T * B, 4 * H)                                # (T*B, 4H)
    xs, hp = x.reshape(T * B, D).to(hs.dtype), hs[:-1].reshape(T * B, H)
    if onednn_outer(dz):                                       # float32 on the CPU: oneDNN, see the doc
        dW = torch.cat([onednn_linear(xs.t().contiguous(), dz.t()),          # (D, 4H): (dz^T x)^T
                        onednn_linear(hp.t().contiguous(), dz.t())]).t()     # sums over t      eq. (14)
    else:
        dW = torch.cat([dz.t() @ xs, dz.t() @ hp], dim=1)      # sums over t in one matmul        eq. (14)
    db = dz.sum(0, dtype=W.dtype)
    dx = linear(dz, Wm[:, :D].t()).view(T, B, D)               # into the layer's input          eq. (11)
    return dx.to(x.dtype), dW.to(W.dtype).contiguous(), db


def onednn_outer(dz):
    """Whether dz^T a (the weight gradients, a sum over all T*B rows) runs through oneDNN's linear, as
    a^T (dz^T)^T with dz^T a strided view oneDNN reads in place (T*B >= LINEAR_ROWS, float32 on the CPU).
    BLAS's sgemm for the transposed product ran at 200 GFLOP/s on README's EPYC, oneDNN this way at 370, where
    converting dz into oneDNN's own layout first (round 5) cost a fresh 52 MB copy each call
    (docs/precision.md, round 6); bfloat16's torch.mm is oneDNN's already."""
    return (dz.dtype == torch.float32 and dz.device.type == "cpu" and dz.shape[0] >= LINEAR_ROWS
            and torch.backends.mkldnn.is_available())


def layer_backward_cpp(ext, x, W, hs, gates, cs, tanh_c, dout, dh, dc):
    """layer_backward with its time loop in C++ (kernels/lstm_cell.cpp; the same equations, one pass a step)."""
    D = x.shape[2]
    md = hs.dtype
    Wm = W.to(md)
    dh = torch.zeros_like(cs[0]) if dh is None else dh.to(cs.dtype).contiguous()
    dc = torch.zeros_like(cs[0]) if dc is None else dc.to(cs.dtype).contiguous()
    dout = None if dout is None else dout.to(md).contiguous()
    W_h = Wm[:, D:].contiguous()                                                   # (4H, H)
    dzs, dh0, dc0 = ext.layer_backward(gates, cs, tanh_c, W_h, dout, dh, dc, packed(W_h.t(), gates.shape[1]))
    dx, dW, db = weight_grads(x, W, Wm, hs, dzs)
    return dx, dh0.to(cs.dtype), dc0, dW, db


class LSTMLayerFunction(torch.autograd.Function):
    """One LSTM layer as a single autograd node: forward keeps its buffers, backward is layer_backward. md is
    the matmuls' dtype; both run with autocast off, since every cast is explicit here. cpp: the time loops in
    C++ (kernels.lstm_cell) where it is built, else the Python ones."""

    @staticmethod
    def forward(ctx, x, h0, c0, W, b, md, cpp=True):
        ctx.ext = kernels.lstm_cell() if cpp and x.device.type == "cpu" and x.shape[0] > 0 else None
        with torch.autocast(x.device.type, enabled=False):
            if ctx.ext is not None:
                hs, c_T, (gates, cs, tanh_c) = layer_forward_cpp(ctx.ext, x, h0, c0, W, b, md)
            else:
                hs, c_T, (gates, cs, tanh_c) = layer_forward(x, h0, c0, W, b, keep=True, md=md)
        ctx.save_for_backward(x, W, hs, gates, cs, tanh_c)
        return hs[1:], hs[-1].to(h0.dtype, copy=True), c_T.clone()   # out (T, B, H) in md, h_T, c_T

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dout, dh, dc):
        x, W, hs, gates, cs, tanh_c = ctx.saved_tensors
        with torch.autocast(x.device.type, enabled=False):
            if ctx.ext is not None:
                return *layer_backward_cpp(ctx.ext, x, W, hs, gates, cs, tanh_c, dout, dh, dc), None, None
            return *layer_backward(x, W, hs, gates, cs, tanh_c, dout, dh, dc), None, None


def autograd_layer(x, h, c, W, b):
    """The same layer in plain tensor operations, differentiated by autograd: the readable reference the
    tests compare the hand-written backward against (`--lstm autograd`)."""
    T, D = x.shape[0], x.shape[2]
    H = h.shape[1]
    xz = torch.addmm(b, x.reshape(-1, D), W[:, :D].t()).view(T, x.shape[1], 4 * H)   # (T, B, 4H)
    W_h = W[:, D:].t()                                         # (H, 4H), hoisted out of the loop
    outs = []
    for t in range(T):
        z = torch.addmm(xz[t], h, W_h)                         # (B, 4H)
        ifo = torch.sigmoid(z[:, :3 * H])
        i, f, o = ifo[:, :H], ifo[:, H:2 * H], ifo[:, 2 * H:]
        g = torch.tanh(z[:, 3 * H:])
        c = f * c + i * g
        h = o * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs), h, c                             # (T, B, H)


# ----------------------------------------------------------------------------------------------------------
# the stack

class LSTMLayer(nn.Module):
    """One layer's parameters: W (4H, D+H), b (4H,), gates i, f, o, g. weight_drop: DropConnect on the recurrent
    columns W[:, D:] in training (AWD-LSTM's WeightDrop), one mask per forward call, i.e. per batch, so that the
    time loop still runs on one fixed matrix."""

    def __init__(self, input_size, hidden_size, weight_drop=0.0):
        super().__init__()
        self.input_size, self.hidden_size, self.weight_drop = input_size, hidden_size, weight_drop
        self.W = nn.Parameter(torch.empty(4 * hidden_size, input_size + hidden_size))
        self.b = nn.Parameter(torch.empty(4 * hidden_size))

    def forward(self, x, h, c, backend="fused"):
        """x (T, B, D), h and c (B, H) -> out (T, B, H), h_T, c_T."""
        W = self.dropped_weight()
        if backend == "autograd":
            return autograd_layer(x, h, c, W, self.b)
        md = matmul_dtype(x.device.type, self.W.dtype)
        if torch.is_grad_enabled() and any(t.requires_grad for t in (x, h, c, W, self.b)):
            return LSTMLayerFunction.apply(x, h, c, W, self.b, md, backend == "fused")
        with torch.autocast(x.device.type, enabled=False):       # inference: no backward buffers
            hs, c_T, _ = layer_forward(x, h, c, cast_once(self, "W", md), self.b, keep=False, md=md)
        return hs[1:], hs[-1].to(h.dtype), c_T

    def dropped_weight(self):
        """W with its recurrent columns DropConnect-ed (training mode, weight_drop > 0), else W itself."""
        if not (self.training and self.weight_drop > 0):
            return self.W
        D, p = self.input_size, self.weight_drop
        keep = torch.ones_like(self.W)                                 # (4H, D+H): input columns always kept
        keep[:, D:].bernoulli_(1 - p).div_(1 - p)
        return self.W * keep


class LockedDropout(nn.Module):
    """Dropout with one mask per sequence, shared by all its steps (variational or locked dropout, Gal and
    Ghahramani 2016, AWD-LSTM): x (T, B, D) times a (1, B, D) mask; the identity outside training."""

    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not (self.training and self.p > 0):
            return x
        mask = torch.empty((1,) + x.shape[1:], device=x.device, dtype=x.dtype).bernoulli_(1 - self.p)
        return x * mask.div_(1 - self.p)


def make_dropout(p, kind):
    """kind: standard (a mask per element and step) | locked (a mask per sequence, shared over time)."""
    return LockedDropout(p) if kind == "locked" else nn.Dropout(p)


class FusedLSTM(nn.Module):
    """A stack of LSTMLayer; state is (h, c), each (num_layers, B, H). backend: fused | python | autograd. dropout acts
    on each layer's output before the next layer (in training mode only)."""

    def __init__(self, input_size, hidden_size, num_layers, backend="fused", dropout=0.0, dropout_kind="standard",
                 weight_drop=0.0):
        super().__init__()
        self.hidden_size, self.num_layers, self.backend = hidden_size, num_layers, backend
        self.dropout = make_dropout(dropout, dropout_kind)
        self.layers = nn.ModuleList(LSTMLayer(input_size if l == 0 else hidden_size, hidden_size, weight_drop)
                                    for l in range(num_layers))

    def forward(self, x, state=None):
        """x (T, B, D) -> out (T, B, H), (h_n, c_n)."""
        h0, c0 = state if state is not None else zero_state(self, x.shape[1], x)
        hs, cs = [], []
        for l, layer in enumerate(self.layers):
            x, h, c = layer(self.dropout(x) if l > 0 else x, h0[l], c0[l], self.backend)
            hs.append(h)
            cs.append(c)
        return x, (torch.stack(hs), torch.stack(cs))


def cast_once(module, name, dtype):
    """module's parameter `name` in dtype, for inference: cast once and kept until the parameter changes
    (generation calls the model once a token, and casting the weights each time cost as much as a step)."""
    param = getattr(module, name)
    if param.dtype == dtype:
        return param
    key = (dtype, param.data_ptr(), param._version)
    cache = module.__dict__.setdefault("_casts", {})
    if cache.get(name, (None,))[0] != key:
        cache[name] = (key, param.detach().to(dtype))
    return cache[name][1]


def matmul_dtype(device_type, default):
    """The dtype the LSTM's matmuls run in: autocast's when it is on for this device (torch.autocast with
    bfloat16, as --precision bf16 sets it), else default (the weights' dtype)."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return default


def zero_state(lstm, batch, like):
    z = like.new_zeros(lstm.num_layers, batch, lstm.hidden_size)
    return z, z


# ----------------------------------------------------------------------------------------------------------
# conversion to and from torch.nn.LSTM's layout

def gate_perm(H, device=None):
    """Row indices that reorder our gates (i, f, o, g) into torch's (i, f, g, o); the map is its own inverse."""
    idx = torch.arange(4 * H, device=device)
    return torch.cat([idx[:2 * H], idx[3 * H:], idx[2 * H:3 * H]])


def to_torch_lstm_params(W, b, input_size):
    """Our (W, b) -> torch's weight_ih, weight_hh, bias_ih, bias_hh (bias_hh zero)."""
    p = gate_perm(W.shape[0] // 4, W.device)
    return W[p, :input_size], W[p, input_size:], b[p], torch.zeros_like(b)


def from_torch_lstm_params(w_ih, w_hh, b_ih, b_hh):
    """torch's four tensors -> our (W, b)."""
    p = gate_perm(w_ih.shape[0] // 4, w_ih.device)
    return torch.cat([w_ih, w_hh], dim=1)[p], (b_ih + b_hh)[p]


class CudnnLSTM(nn.Module):
    """torch.nn.LSTM's kernel (cuDNN on a GPU, PyTorch's native LSTM on a CPU) run on a FusedLSTM's parameters.

    Each call converts the parameters differentiably into torch's layout, written into ONE contiguous buffer
    in cuDNN's order (per layer: weight_ih, weight_hh, bias_ih, bias_hh), so the kernel finds its weights
    already flat: one conversion per forward, and no "weights are not part of a single contiguous chunk" copy."""

    def __init__(self, fused):
        super().__init__()
        self.fused = [fused]                      # a plain list: the parameters stay owned by the fused module

    def flat_weights(self):
        """The converted weights as views into one contiguous buffer (differentiable)."""
        parts = []
        for layer in self.fused[0].layers:
            parts += to_torch_lstm_params(layer.W, layer.b, layer.input_size)
        flat = torch.cat([p.reshape(-1) for p in parts])
        return [v.view_as(p) for v, p in zip(flat.split([p.numel() for p in parts]), parts)]

    def forward(self, x, state=None):
        fused = self.fused[0]
        h0, c0 = state if state is not None else zero_state(fused, x.shape[1], x)
        if x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and not native_bf16(x.device):
            # oneDNN has no bfloat16 LSTM primitive on a CPU without native bfloat16: there it runs in float32
            with torch.autocast("cpu", enabled=False):
                return self.run(x.float(), h0.float(), c0.float())
        return self.run(x, h0, c0)

    def run(self, x, h0, c0):
        fused = self.fused[0]
        out, h, c = torch._VF.lstm(x, (h0, c0), self.flat_weights(), True, fused.num_layers,
                                   fused.dropout.p, self.training, False, False)
        return out, (h, c)


# ----------------------------------------------------------------------------------------------------------
# the language model

class TiedOutput(nn.Module):
    """The output layer with weight tying: logits = (out W_d^T) E^T + b, sharing the embedding E (V, E); W_d
    (E, H) maps the LSTM's output down to the embedding width. Its effective projection is E W_d (V, H)."""

    def __init__(self, embed, hidden_size):
        super().__init__()
        self.embed = [embed]                      # a plain list: the embedding stays owned by the model
        self.down = nn.Linear(hidden_size, embed.embedding_dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(embed.num_embeddings))
        self.out_features = embed.num_embeddings

    def forward(self, out):
        md = matmul_dtype(out.device.type, self.bias.dtype)
        if torch.is_grad_enabled() or md == self.bias.dtype:
            return F.linear(self.down(out), self.embed[0].weight, self.bias)      # (T, B, V)
        with torch.autocast(out.device.type, enabled=False):     # inference under bf16: weights cast once
            low = F.linear(out.to(md), cast_once(self.down, "weight", md))      # what autocast would do, with
            return F.linear(low, cast_once(self.embed[0], "weight", md), cast_once(self, "bias", md))  # the casts kept


class FormatInputs(nn.Module):
    """The sum of the format inputs' embeddings (verse/formats.py): one table with a block of rows per feature group,
    the row of each group's value 0 (unknown) held at zero, plus the aligned character of the line answered
    (pair) through an E x E map of its character embedding. forward(feats (T, B, K), pair_embed (T, B, E) or
    None, pair (T, B)) -> (T, B, E)."""

    def __init__(self, dim):
        super().__init__()
        self.table = nn.Embedding(formats.TOTAL, dim)
        self.pair = nn.Linear(dim, dim, bias=False)
        offsets = torch.tensor([formats.OFFSETS[g] for g in formats.GROUPS])
        self.register_buffer("offsets", offsets, persistent=False)
        unknown = torch.zeros(formats.TOTAL, 1)
        unknown[offsets] = 1.0
        self.register_buffer("known", 1.0 - unknown, persistent=False)      # (TOTAL, 1): 0 on the unknown rows
        with torch.no_grad():
            nn.init.normal_(self.table.weight, std=0.1)
            nn.init.normal_(self.pair.weight, std=0.1 / math.sqrt(dim))

    def forward(self, feats, pair_embed=None, pair=None):
        T, B, K = feats.shape
        rows = (feats + self.offsets).reshape(T * B, K)
        out = F.embedding_bag(rows, self.table.weight * self.known, mode="sum").reshape(T, B, -1)   # (T, B, E)
        if pair_embed is not None:
            out = out + self.pair(pair_embed) * (pair != 0).unsqueeze(-1).to(pair_embed.dtype)
        return out


class PoetryLM(nn.Module):
    """forward(tokens (T, B), state=None) -> logits (T, B, V), state. One interface for train, eval, generate.

    Options (ModelConfig): dropout at the embedding output, between LSTM layers and before the output layer
    (`dropout`, `dropout_at`), and weight tying (`tie_weights`). With neither, this is the seed's model."""

    def __init__(self, mcfg):
        super().__init__()
        self.cfg = mcfg
        self.embed = nn.Embedding(mcfg.vocab_size, mcfg.embed_dim)
        if mcfg.lstm not in BACKENDS:
            raise ValueError(f"unknown lstm backend {mcfg.lstm!r}")
        at = set(filter(None, mcfg.dropout_at.split(",")))
        rate = {k: mcfg.dropout if k in at else 0.0 for k in ("embed", "layers", "output")}
        if mcfg.lstm == "cudnn" and mcfg.weight_drop > 0:
            raise ValueError("weight_drop needs the hand-written LSTM (not lstm cudnn)")
        self.lstm = FusedLSTM(mcfg.embed_dim, mcfg.hidden_size, mcfg.num_layers,
                              mcfg.lstm if mcfg.lstm in ("autograd", "python") else "fused", rate["layers"],
                              mcfg.dropout_kind, mcfg.weight_drop)
        self.drop_embed = make_dropout(rate["embed"], mcfg.dropout_kind)
        self.drop_out = make_dropout(rate["output"], mcfg.dropout_kind)
        self.proj = TiedOutput(self.embed, mcfg.hidden_size) if mcfg.tie_weights \
            else nn.Linear(mcfg.hidden_size, mcfg.vocab_size)
        self.cudnn = [CudnnLSTM(self.lstm)] if mcfg.lstm == "cudnn" else None
        self.precision = "fp32"       # fp32 | bf16: a setting of the run, not of the model (set_precision)
        init_weights(self, mcfg.init_embed, mcfg.init_lstm)
        if mcfg.format_inputs:
            self.formats = FormatInputs(mcfg.embed_dim)

    def forward(self, tokens, state=None, feats=None, pair=None):
        """tokens (T, B); feats (T, B, len(formats.GROUPS)) and pair (T, B), the format inputs of the positions
        predicted (formats.features; None: all unknown, the characters alone)."""
        with torch.autocast(tokens.device.type, torch.bfloat16, enabled=self.precision == "bf16"):
            x = self.embed(tokens)                                # (T, B, E)
            if feats is not None and self.cfg.format_inputs:
                x = x + self.formats(feats, self.embed(pair) if pair is not None else None, pair)
            x = self.drop_embed(x)
            if self.cudnn:
                out, state = self.cudnn[0](x, state)
            else:
                out, state = self.lstm(x, state)                  # (T, B, H)
            logits = self.proj(self.drop_out(out))                # (T, B, V), bfloat16 under bf16
        return logits, tuple(s.float() for s in state)           # masked_nll and sampling work in float32


# ----------------------------------------------------------------------------------------------------------
# precision

@functools.lru_cache(maxsize=None)
def native_bf16(device):
    """Whether the device multiplies bfloat16 natively (faster than float32): a CUDA GPU of compute capability
    8 or more, or a CPU with AVX512-BF16 or AMX (read from /proc/cpuinfo; elsewhere assumed not)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def set_precision(model, precision, device):
    """Set the model's precision (fp32 | bf16 | auto: bf16 where native_bf16) and return it with the reason."""
    if precision == "auto":
        native = native_bf16(device)
        precision = "bf16" if native else "fp32"
        why = f"auto: {device.type} {'has' if native else 'lacks'} native bfloat16 matmul"
    else:
        why = "asked for"
    model.precision = precision
    return precision, why


def init_tensor(t, scheme):
    """Fill a weight (out, in) in place: zero | normal (std 1/sqrt(in)) | xavier_normal | xavier_uniform."""
    if scheme == "zero":
        nn.init.zeros_(t)
    elif scheme == "normal":
        nn.init.normal_(t, std=1.0 / math.sqrt(t.shape[1]))
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(t)
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(t)
    else:
        raise ValueError(f"unknown init scheme {scheme!r}; choose from {', '.join(INIT_SCHEMES)}")


@torch.no_grad()
def init_weights(model, embed_scheme, lstm_scheme):
    """Embedding and LSTM schemes chosen separately; "default" is PyTorch's own (N(0, 1) for nn.Embedding,
    U(-1/sqrt(H), 1/sqrt(H)) for every nn.LSTM weight and bias). Non-default LSTM schemes zero the biases.
    The projection keeps nn.Linear's default. A tied embedding is also the output layer, so its "default" is
    N(0, 1/E): initial logits near zero instead of a standard deviation near 5."""
    if embed_scheme == "default":
        nn.init.normal_(model.embed.weight, std=model.embed.embedding_dim ** -0.5 if model.cfg.tie_weights else 1)
    else:
        init_tensor(model.embed.weight, embed_scheme)
    for layer in model.lstm.layers:
        init_layer(layer, lstm_scheme)


@torch.no_grad()
def init_layer(layer, scheme):
    """One LSTMLayer's W and b: "default" U(-1/sqrt(H), 1/sqrt(H)) for both (nn.LSTM's), else init_tensor's
    scheme for W and zero biases."""
    if scheme == "default":
        bound = 1.0 / math.sqrt(layer.hidden_size)
        nn.init.uniform_(layer.W, -bound, bound)
        nn.init.uniform_(layer.b, -bound, bound)
    else:
        init_tensor(layer.W, scheme)
        nn.init.zeros_(layer.b)


def masked_nll(logits, targets, pad_id):
    """Summed cross-entropy over real targets (pad_id masked) and their count: (sum (), n int).
    logits (T, B, V) in float32 or bfloat16; the loss is float32 either way (SoftmaxNLL)."""
    keep = (targets != pad_id).reshape(-1)
    nll = SoftmaxNLL.apply(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), keep)
    return nll, int(keep.sum())


def unlikelihood(logits, t, b, c):
    """-sum_k log(1 - p(c_k | position (t_k, b_k))) (Welleck et al. 2020's token-level unlikelihood) over the
    candidates c (K,) at positions (t, b) of logits (T, B, V): the loss that makes the model unlikely to write
    what the caller names (training's rhyme unlikelihood: a rhyme character the poem already used)."""
    acc = torch.promote_types(logits.dtype, torch.float32)          # float32, or float64 in the tests
    if len(t) == 0:
        return logits.new_zeros((), dtype=acc)
    rows = logits[t, b].to(acc)                                      # (K, V), one row per candidate
    p = torch.softmax(rows, -1).gather(1, c[:, None]).squeeze(1)    # (K,)
    return -torch.log1p(-p.clamp(max=1 - 1e-6)).sum()


class SoftmaxNLL(torch.autograd.Function):
    """sum_n keep_n * (logsumexp(logits_n) - logits_n[target_n]), with its gradient softmax - onehot written
    in one pass per row chunk, in the logits' own dtype. The maths runs in float32 whatever that dtype; rows of
    at most ROWS keep the float32 temporaries small (F.cross_entropy instead writes log-probabilities, a zero
    gradient and a one-hot scatter the size of the whole (N, V) logits, in float32 under autocast)."""
    ROWS = 512

    @staticmethod
    def forward(ctx, logits, targets, keep):                 # logits (N, V), targets and keep (N,)
        acc = torch.promote_types(logits.dtype, torch.float32)          # float32, or float64 in the tests
        lse = torch.cat([torch.logsumexp(rows.to(acc), -1) for rows in logits.split(SoftmaxNLL.ROWS)])  # (N,)
        picked = logits.gather(1, targets[:, None]).squeeze(1).to(acc)
        ctx.save_for_backward(logits, targets, keep, lse)
        return torch.where(keep, lse - picked, 0.0).sum()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        logits, targets, keep, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        weight = keep.to(lse.dtype) * g                             # (N,) the upstream gradient, 0 at pads
        same = grad.dtype == lse.dtype                              # float32 logits: written in place
        for s in range(0, logits.shape[0], SoftmaxNLL.ROWS):
            e = min(s + SoftmaxNLL.ROWS, logits.shape[0])
            out = grad[s:e] if same else lse.new_empty(e - s, logits.shape[1])   # (rows, V), contiguous
            p = torch.sub(logits[s:e], lse[s:e, None], out=out).exp_()
            p.scatter_add_(1, targets[s:e, None], p.new_full((e - s, 1), -1.0))    # softmax - onehot
            p.mul_(weight[s:e, None])
            if not same:
                grad[s:e] = p                                       # into bf16 logits' dtype
        return grad, None, None
