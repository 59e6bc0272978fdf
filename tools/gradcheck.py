"""Checks of MyLSTM_np against references (run by `python MyLSTM_np.py test`, which hands itself in as M: this
file does not import MyLSTM_np, so the two do not import each other).

References: torch.nn.LSTMCell / torch.nn.LSTM autograd on the same weights (converted to torch's gate order and
W_ih / W_hh split), and centred finite differences (delta 1e-5) of the NumPy forward pass itself, at 6 random
entries of every tensor (among those whose gradient is at least 1e-4, see pick_entries). All in float64.
Relative error is |a - n| / max(|a| + |n|, 1e-12), the max over the compared entries.
A check fails when an autograd comparison exceeds 1e-6 or a finite difference exceeds 1e-5.
"""
import numpy as np

from model import gate_perm

AUTOGRAD_TOL, FD_TOL, DELTA = 1e-6, 1e-5, 1e-5
LSTM_CASES = [  # (T, B, D, H, num_layers)
    (5, 3, 4, 6, 2),
    (7, 4, 5, 3, 3),
    (6, 3, 8, 8, 1),
]


def rel_err(a, n):
    a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
    return float(np.max(np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), 1e-12))) if a.size else 0.0


def to_torch_layout(W, b, D):
    """Our (W, b) with gates i, f, o, g -> torch's w_ih, w_hh, b_ih, b_hh (gates i, f, g, o)."""
    perm = gate_perm(W.shape[0] // 4).numpy()
    return W[perm, :D], W[perm, D:], b[perm], np.zeros_like(b)


def from_torch_grads(g_ih, g_hh, g_bih, H):
    """Gradients in torch's layout -> ours (the permutation is its own inverse)."""
    perm = gate_perm(H).numpy()
    return np.concatenate([g_ih, g_hh], 1)[perm], g_bih[perm]


def finite_diff(f, arr, idx):
    """Centred differences of scalar f() at the entries idx of arr (perturbed in place, then restored)."""
    out = []
    for i in idx:
        old = arr[i]
        arr[i] = old + DELTA
        up = f()
        arr[i] = old - DELTA
        down = f()
        arr[i] = old
        out.append((up - down) / (2 * DELTA))
    return np.array(out)


def pick_entries(grad, rng, k=6, floor=1e-4):
    """k random entries whose analytic gradient is at least `floor` in size (any entries if none is):
    below that, float64 rounding in f(x +- delta) (about 1e-11 absolute) dominates the relative error."""
    big = np.argwhere(np.abs(grad) >= floor)
    pool = big if len(big) else np.argwhere(np.ones_like(grad, dtype=bool))
    return [tuple(pool[j]) for j in rng.choice(len(pool), size=min(k, len(pool)), replace=False)]


def fd_rows(f, named, analytic, rng):
    """(name, fd rel err) for each named array, against the analytic gradient at the same entries."""
    rows = []
    for name, arr in named.items():
        idx = pick_entries(analytic[name], rng)
        num = finite_diff(f, arr, idx)
        rows.append((name, rel_err([analytic[name][i] for i in idx], num)))
    return rows


# ----------------------------------------------------------------------------------------------------------
# LSTMCell: one step

def check_cell(M, rng):
    import torch
    B, D, H = 3, 4, 5
    cell = M.LSTMCell(D, H, rng)
    x, h, c = (rng.standard_normal((B, n)) for n in (D, H, H))
    gh, gc = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    h1, c1, cache = cell.forward(x, h, c)
    dx, dh, dc, dW, db = cell.backward(cache, gh, gc)

    ref = torch.nn.LSTMCell(D, H).double()
    with torch.no_grad():
        for p, v in zip((ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh), to_torch_layout(cell.W, cell.b, D)):
            p.copy_(torch.from_numpy(v))
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    rh, rc = ref(tx, (th, tc))
    ((rh * torch.from_numpy(gh)).sum() + (rc * torch.from_numpy(gc)).sum()).backward()
    rW, rb = from_torch_grads(ref.weight_ih.grad.numpy(), ref.weight_hh.grad.numpy(), ref.bias_ih.grad.numpy(), H)
    auto = {"h": (h1, rh.detach().numpy()), "c": (c1, rc.detach().numpy()), "dx": (dx, tx.grad.numpy()),
            "dh_prev": (dh, th.grad.numpy()), "dc_prev": (dc, tc.grad.numpy()), "dW": (dW, rW), "db": (db, rb)}

    def loss():
        h2, c2, _ = cell.forward(x, h, c)
        return float((h2 * gh).sum() + (c2 * gc).sum())

    fd = dict(fd_rows(loss, {"dx": x, "dh_prev": h, "dc_prev": c, "dW": cell.W, "db": cell.b},
                      {"dx": dx, "dh_prev": dh, "dc_prev": dc, "dW": dW, "db": db}, rng))
    return [(f"cell {name}", rel_err(a, r), fd.get(name)) for name, (a, r) in auto.items()]


# ----------------------------------------------------------------------------------------------------------
# LSTM: layers through time, with initial states and upstream gradients on out, h_n and c_n

def check_lstm(M, case, rng):
    import torch
    T, B, D, H, L = case
    lstm = M.LSTM(D, H, L, rng)
    x = rng.standard_normal((T, B, D))
    h0, c0 = rng.standard_normal((L, B, H)), rng.standard_normal((L, B, H))
    g_out, g_h, g_c = rng.standard_normal((T, B, H)), rng.standard_normal((L, B, H)), rng.standard_normal((L, B, H))
    out, h_n, c_n, cache = lstm.forward(x, h0, c0)
    dx, dh0, dc0, grads = lstm.backward(cache, g_out, g_h, g_c)

    ref = torch.nn.LSTM(D, H, L).double()
    with torch.no_grad():
        for l, cell in enumerate(lstm.cells):
            for name, v in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
                               to_torch_layout(cell.W, cell.b, cell.input_size)):
                getattr(ref, f"{name}_l{l}").copy_(torch.from_numpy(v))
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    r_out, (r_h, r_c) = ref(tx, (th, tc))
    ((r_out * torch.from_numpy(g_out)).sum() + (r_h * torch.from_numpy(g_h)).sum()
     + (r_c * torch.from_numpy(g_c)).sum()).backward()
    auto = {"out": (out, r_out.detach().numpy()), "h_n": (h_n, r_h.detach().numpy()),
            "c_n": (c_n, r_c.detach().numpy()), "dx": (dx, tx.grad.numpy()), "dh0": (dh0, th.grad.numpy()),
            "dc0": (dc0, tc.grad.numpy())}
    for l in range(L):
        rW, rb = from_torch_grads(*(getattr(ref, f"{n}_l{l}").grad.numpy() for n in ("weight_ih", "weight_hh", "bias_ih")), H)
        auto[f"dW{l}"], auto[f"db{l}"] = (grads[l][0], rW), (grads[l][1], rb)

    def loss():
        o, hn, cn, _ = lstm.forward(x, h0, c0)
        return float((o * g_out).sum() + (hn * g_h).sum() + (cn * g_c).sum())

    named = {"dx": x, "dh0": h0, "dc0": c0}
    analytic = {"dx": dx, "dh0": dh0, "dc0": dc0}
    for l, cell in enumerate(lstm.cells):
        named[f"dW{l}"], named[f"db{l}"] = cell.W, cell.b
        analytic[f"dW{l}"], analytic[f"db{l}"] = grads[l]
    fd = dict(fd_rows(loss, named, analytic, rng))
    tag = f"lstm T{T} B{B} D{D} H{H} L{L}"
    return [(f"{tag} {name}", rel_err(a, r), fd.get(name)) for name, (a, r) in auto.items()]


# ----------------------------------------------------------------------------------------------------------
# the language model against model.PoetryLM (torch.nn.LSTM backend) autograd

def check_lm(M, rng, V=23, E=6, H=7, L=2, T=6, B=4, pad_id=0):
    import torch
    from config import ModelConfig
    from model import PoetryLM
    torch.manual_seed(int(rng.integers(1 << 30)))
    ref = PoetryLM(ModelConfig(vocab_size=V, embed_dim=E, hidden_size=H, num_layers=L, lstm="cudnn")).double()
    params = {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}
    lm = M.NumpyLM(params, L)
    tokens = rng.integers(1, V, (T, B))
    targets = rng.integers(1, V, (T, B))
    targets[-2:, 1] = pad_id                         # padding in the targets is ignored
    loss, grads = lm.loss_and_grads(tokens, targets, pad_id)

    logits, _ = ref(torch.from_numpy(tokens))
    r_loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), torch.from_numpy(targets).reshape(-1),
                                               ignore_index=pad_id)
    r_loss.backward()
    rows = [("lm loss", rel_err(loss, r_loss.item()), None)]
    fd = dict(fd_rows(lambda: lm.loss_and_grads(tokens, targets, pad_id)[0], params, grads, rng))
    for name, p in ref.named_parameters():
        rows.append((f"lm d{name}", rel_err(grads[name], p.grad.numpy()), fd[name]))
    return rows


# ----------------------------------------------------------------------------------------------------------
# the table

def all_rows(M, seed=0):
    rng = np.random.default_rng(seed)
    rows = check_cell(M, rng)
    for case in LSTM_CASES:
        rows += check_lstm(M, case, rng)
    return rows + check_lm(M, rng)


def run_all(M, verbose=True, seed=0):
    """Run every check of the NumPy LSTM module M; print the table when verbose; True when all pass."""
    rows = all_rows(M, seed)
    bad = [r for r in rows if r[1] > AUTOGRAD_TOL or (r[2] is not None and r[2] > FD_TOL)]
    if verbose:
        print(f"{'tensor':<40}{'vs autograd':>14}{'vs finite diff':>16}")
        for name, a, f in rows:
            flag = "  FAIL" if (name, a, f) in bad else ""
            print(f"{name:<40}{a:>14.2e}{'' if f is None else format(f, '.2e'):>16}{flag}")
        worst_a = max(r[1] for r in rows)
        worst_f = max(r[2] for r in rows if r[2] is not None)
        print(f"max relative error: {worst_a:.2e} vs autograd (limit {AUTOGRAD_TOL:g}), "
              f"{worst_f:.2e} vs finite differences (limit {FD_TOL:g})")
        print(f"{len(rows) - len(bad)} passed, {len(bad)} failed")
    return not bad
