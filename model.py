"""The PyTorch poetry language model: embedding -> hand-written fused-gate LSTM layers -> projection.

The LSTM is written with tensor operations and autograd only (no torch.nn.LSTM in the default path), in the
layout shared with MyLSTM_np.py (../shared/DESIGN.md): layer l has W (4H, D_l + H) and b (4H,), row blocks in
gate order i, f, o, g, columns acting on [x_t ; h_{t-1}]:

    z_t = W [x_t ; h_{t-1}] + b,   i, f, o = sigmoid(z_i, z_f, z_o),   g = tanh(z_g)
    c_t = f * c_{t-1} + i * g,     h_t = o * tanh(c_t)

`lstm="cudnn"` runs torch.nn.LSTM on the same parameters, converted on the fly (gate order i, f, g, o, W split
into W_ih / W_hh), so both backends share one state_dict and can be compared for speed and results.

Deliberately left out: dropout and weight tying (the seed has neither; the studies compare inits and optimisers).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from config import CHOICES

INIT_SCHEMES = CHOICES[("model", "init_lstm")]


# ----------------------------------------------------------------------------------------------------------
# the fused LSTM

class LSTMLayer(nn.Module):
    """One layer: W (4H, D+H), b (4H,), gates i, f, o, g."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.W = nn.Parameter(torch.empty(4 * hidden_size, input_size + hidden_size))
        self.b = nn.Parameter(torch.empty(4 * hidden_size))

    def forward(self, x, h, c):
        """x (T, B, D), h and c (B, H) -> out (T, B, H), h_T, c_T."""
        H, D = self.hidden_size, self.input_size
        xz = torch.addmm(self.b, x.reshape(-1, D), self.W[:, :D].t()).view(x.shape[0], x.shape[1], 4 * H)  # (T, B, 4H)
        W_h = self.W[:, D:].t()                                   # (H, 4H), hoisted out of the loop
        outs = []
        for t in range(x.shape[0]):
            z = torch.addmm(xz[t], h, W_h)                        # (B, 4H)
            ifo = torch.sigmoid(z[:, :3 * H])
            i, f, o = ifo[:, :H], ifo[:, H:2 * H], ifo[:, 2 * H:]
            g = torch.tanh(z[:, 3 * H:])
            c = f * c + i * g
            h = o * torch.tanh(c)
            outs.append(h)
        return torch.stack(outs), h, c                            # (T, B, H)


class FusedLSTM(nn.Module):
    """A stack of LSTMLayer; state is (h, c), each (num_layers, B, H)."""

    def __init__(self, input_size, hidden_size, num_layers):
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.layers = nn.ModuleList(
            LSTMLayer(input_size if l == 0 else hidden_size, hidden_size) for l in range(num_layers))

    def forward(self, x, state=None):
        """x (T, B, D) -> out (T, B, H), (h_n, c_n)."""
        h0, c0 = state if state is not None else zero_state(self, x.shape[1], x)
        hs, cs = [], []
        for l, layer in enumerate(self.layers):
            x, h, c = layer(x, h0[l], c0[l])
            hs.append(h)
            cs.append(c)
        return x, (torch.stack(hs), torch.stack(cs))


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
    """torch.nn.LSTM run on a FusedLSTM's parameters (converted each call, differentiably)."""

    def __init__(self, fused):
        super().__init__()
        self.fused = [fused]                      # a plain list: the parameters stay owned by the fused module
        self.ref = nn.LSTM(fused.layers[0].input_size, fused.hidden_size, fused.num_layers)
        for p in self.ref.parameters():
            p.requires_grad_(False)

    def forward(self, x, state=None):
        fused = self.fused[0]
        params = {}
        for l, layer in enumerate(fused.layers):
            names = [f"weight_ih_l{l}", f"weight_hh_l{l}", f"bias_ih_l{l}", f"bias_hh_l{l}"]
            params.update(zip(names, to_torch_lstm_params(layer.W, layer.b, layer.input_size)))
        state = state if state is not None else zero_state(fused, x.shape[1], x)
        return torch.func.functional_call(self.ref, params, (x, state))


# ----------------------------------------------------------------------------------------------------------
# the language model

class PoetryLM(nn.Module):
    """forward(tokens (T, B), state=None) -> logits (T, B, V), state. One interface for train, eval, generate."""

    def __init__(self, mcfg):
        super().__init__()
        self.cfg = mcfg
        self.embed = nn.Embedding(mcfg.vocab_size, mcfg.embed_dim)
        self.lstm = FusedLSTM(mcfg.embed_dim, mcfg.hidden_size, mcfg.num_layers)
        self.proj = nn.Linear(mcfg.hidden_size, mcfg.vocab_size)
        if mcfg.lstm not in ("fused", "cudnn"):
            raise ValueError(f"unknown lstm backend {mcfg.lstm!r}")
        self.cudnn = [CudnnLSTM(self.lstm)] if mcfg.lstm == "cudnn" else None
        init_weights(self, mcfg.init_embed, mcfg.init_lstm)

    def forward(self, tokens, state=None):
        x = self.embed(tokens)                                    # (T, B, E)
        if self.cudnn:
            self.cudnn[0].ref.to(x.device)
            out, state = self.cudnn[0](x, state)
        else:
            out, state = self.lstm(x, state)                      # (T, B, H)
        return self.proj(out), state                              # (T, B, V)


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
    The projection keeps nn.Linear's default."""
    if embed_scheme == "default":
        nn.init.normal_(model.embed.weight)
    else:
        init_tensor(model.embed.weight, embed_scheme)
    for layer in model.lstm.layers:
        if lstm_scheme == "default":
            bound = 1.0 / math.sqrt(layer.hidden_size)
            nn.init.uniform_(layer.W, -bound, bound)
            nn.init.uniform_(layer.b, -bound, bound)
        else:
            init_tensor(layer.W, lstm_scheme)
            nn.init.zeros_(layer.b)


def masked_nll(logits, targets, pad_id):
    """Summed cross-entropy over real targets (pad_id masked) and their count: (sum (), n int)."""
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                          ignore_index=pad_id, reduction="sum")
    return nll, int((targets != pad_id).sum())
