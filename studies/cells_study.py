"""The cells study (`python main.py experiment cells`): which of the LSTM's cells track a poem's form.

    python main.py experiment cells [--ckpt …] [--poems N] [--out docs/cells.md] [--overwrite]

Over N regular poems of the test split (五/七言 绝句/律诗 without <unk>; for a 词 model, 词 that follow a 词牌 of
the table), read as inspect reads them (lstm_inspect.trace: the layers' equations on the weights, state from
zero at <bos>), for every cell of every layer: the correlation (Pearson, over all steps) of its cell state c
with each property of the token it is about to predict (PROPERTIES: characters left to the line end, position
in the line, line index, even line, rhyme slot, the next character's tone by pretrained/tones.json,
punctuation). A linear probe per property and layer reads the layer's [c ; h]: ridge regression for the
counts (R², its penalty picked on a fifth of the train poems held out), logistic regression for the yes/no
properties (accuracy against the majority class), trained on N train-split poems and scored on the test ones;
the same probes on an untrained model of the same size (the training seed's initialisation) say how much a
random LSTM would show anyway. Also each gate's saturation by layer (Karpathy, Johnson & Fei-Fei 2015).

Writes the doc (docs/cells.md), its figures (figures/cells/*.png) and the named cells as JSON beside the doc
(docs/cells.json: inspect and the page read it, keyed by the weights' fingerprint). Files that exist are
replaced only with --overwrite.
"""
import os
import time

import numpy as np
import torch

from studies import cellplot
from studies import cellrecord
import dataUtil
from common import fileio
from studies import lstm_inspect
from verse import poetics
from config import Config, UserError, make_parser
from training.checkpoint import load_checkpoint
from verse.text import PUNCT, ci_pattern
from verse.tables import verse_tables
from training.inputs import pad_formats, poem_formats

PROPERTIES = [  # (key, what it is, kind: r2 for a count (ridge), acc for yes/no (logistic))
    ("left", "characters left in the line", "r2"),
    ("pos", "position in the line", "r2"),
    ("line", "line index", "r2"),
    ("even", "even line", "acc"),
    ("rhyme", "rhyme slot next", "acc"),
    ("tone", "next character 平 (not 仄)", "acc"),
    ("punct", "punctuation next", "acc"),
]
SINGLE = 0.5                   # |r| from which one cell is said to track a property
NAMED = 0.3                    # |r| from which a cell is named for inspect and offered as a preset
TOP = 3                        # cells listed per property and layer
PRESET_CELLS = 4               # cells a preset shows at most
RIDGE = (1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)      # ridge penalties tried (on standardised features)
LOGISTIC_L2 = 1e-3             # the logistic probes' L2 penalty (per-sample mean loss + L2/2 |w|^2)
LOGISTIC_STEPS = 400
BATCH = 64
SHOWCASE = "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。烽火连三月，家书抵万金。白头搔更短，浑欲不胜簪。"
CI_SHOWCASE = "明月几时有，把酒问青天。不知天上宫阙，今夕是何年。"


# ----------------------------------------------------------------------------------------------------------
# the poems and their properties

def lines_of(text):
    return poetics.split_after(text, PUNCT)


def properties(text, rhyme_lines, tones):
    """{key: (n + 1,) float} for `<bos> text`: row t describes the token predicted at step t (text[t]); the
    last row (<eos> predicted) is NaN. rhyme_lines: 0-based lines whose last character is a rhyme slot."""
    n = len(text)
    out = {k: np.full(n + 1, np.nan) for k, _, _ in PROPERTIES}
    t = 0
    for li, piece in enumerate(lines_of(text)):
        L = len(piece) - 1                                   # characters before the mark
        for j, ch in enumerate(piece):
            mark = j == L
            out["left"][t] = 0 if mark else L - j
            out["pos"][t] = j + 1
            out["line"][t] = li + 1
            out["even"][t] = li % 2
            out["rhyme"][t] = float(j == L - 1 and li in rhyme_lines)
            out["tone"][t] = {"平": 1.0, "仄": 0.0}.get(tones.get(ch), np.nan) if not mark else np.nan
            out["punct"][t] = float(mark)
            t += 1
    return out


def regular_poems(poems, itos, genre, cipai):
    """[(ids, text, rhyme lines)] of the regular poems among encoded poems (no <unk>): a 诗 of poetics.REGULAR_FORMS
    (rhyme slots: the even lines' last characters), or for ci a 词 following a table 词牌 (its rhyme sets)."""
    unk = itos.index(dataUtil.UNK)
    by_pattern = {}
    for entry in (cipai or {}).values():
        by_pattern.setdefault(tuple(map(tuple, entry["lines"])), entry)
    out = []
    for ids in poems:
        if unk in ids:
            continue
        text = dataUtil.decode(ids, itos)
        if genre == "ci":
            entry = by_pattern.get(ci_pattern(text))
            if entry is not None:
                out.append((ids, text, {i for s in entry.get("rhymes", []) for i in s["lines"]}))
        elif poetics.form_of(text) in poetics.REGULAR_FORMS:
            out.append((ids, text, set(range(1, len(lines_of(text)), 2))))
    return out


def sample(items, n, seed):
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order[:n]]


# ----------------------------------------------------------------------------------------------------------
# activations over many poems

def collect(model, poems, tones, feats_of=None):
    """Over poems [(ids, text, rhyme lines)]: per layer {c, h: (N, H) float32} at the N steps that predict a
    token of a poem (not <eos>), the properties {key: (N,)}, and per layer and gate the count of steps below
    LOW and above HIGH per cell. Poems of one length are read as one batch (no padding)."""
    L = len(model.lstm.layers)
    states = [{"c": [], "h": []} for _ in range(L)]
    props = {k: [] for k, _, _ in PROPERTIES}
    sat = [{g: np.zeros((2, model.cfg.hidden_size)) for g in cellrecord.GATES} for _ in range(L)]
    steps = 0
    by_len = {}
    for k, p in enumerate(poems):
        by_len.setdefault(len(p[0]), []).append(k)
    for T, idx in sorted(by_len.items()):
        for s in range(0, len(idx), BATCH):
            part = [poems[k] for k in idx[s:s + BATCH]]
            ids = torch.from_numpy(np.stack([p[0] for p in part]).astype(np.int64).T)[:-1]   # (T - 1, B)
            feats, pair = feats_of([k for k in idx[s:s + BATCH]], T - 1) if feats_of else (None, None)
            layers, _ = lstm_inspect.trace(model, ids, feats, pair, keep=("i", "f", "o", "c", "h"))
            for l, acts in enumerate(layers):
                for key in ("c", "h"):
                    states[l][key].append(acts[key][:-1].transpose(0, 1).reshape(-1, acts[key].shape[2]).numpy())
                for g in cellrecord.GATES:
                    a = acts[g][:-1]
                    sat[l][g] += np.stack([(a < cellrecord.LOW).sum((0, 1)).numpy(), (a > cellrecord.HIGH).sum((0, 1)).numpy()])
            for _, text, rhyme in part:
                for key, v in properties(text, rhyme, tones).items():
                    props[key].append(v[:-1])
            steps += (T - 2) * len(part)
    states = [{k: np.concatenate(v) for k, v in layer.items()} for layer in states]
    return states, {k: np.concatenate(v) for k, v in props.items()}, [{g: a / steps for g, a in s.items()} for s in sat]


# ----------------------------------------------------------------------------------------------------------
# correlations and probes

def correlations(X, y):
    """(H,) Pearson r of each column of X (N, H) with y (N,) over the rows where y is known."""
    keep = ~np.isnan(y)
    X, y = X[keep].astype(np.float64), y[keep]
    Xc, yc = X - X.mean(0), y - y.mean()
    den = np.sqrt((Xc ** 2).sum(0) * (yc ** 2).sum())
    return np.where(den > 0, Xc.T @ yc / np.where(den > 0, den, 1), 0.0)


def standardiser(X):
    mu, sd = X.mean(0), X.std(0)
    return lambda A: (A - mu) / np.where(sd > 0, sd, 1)


def ridge_path(X, Y, lams):
    """{lam: (W (D, P), b (P,))} minimising |XW + b - Y|^2 + lam |W|^2 for each lam, from one
    eigendecomposition of the centred Gram matrix."""
    mu, ym = X.mean(0), Y.mean(0)
    Xc = X - mu
    e, Q = np.linalg.eigh(Xc.T @ Xc)                          # (D,), (D, D)
    QtXy = Q.T @ (Xc.T @ (Y - ym))                            # (D, P)
    out = {}
    for lam in lams:
        W = Q @ (QtXy / (np.maximum(e, 0) + lam)[:, None])
        out[lam] = (W, ym - mu @ W)
    return out


def r2(pred, y):
    """(P,) R² of predictions (N, P) of y (N, P)."""
    return 1.0 - ((pred - y) ** 2).sum(0) / np.maximum(((y - y.mean(0)) ** 2).sum(0), 1e-12)


def ridge_probes(Xtr, Ytr, Xte, Yte, hold):
    """(P,) test R² of ridge regressions of the columns of Y (no NaN), each penalty chosen among RIDGE on
    the held-out train rows (hold: a boolean mask of Xtr's rows)."""
    path = ridge_path(Xtr[~hold], Ytr[~hold], RIDGE)
    scores = np.stack([r2(Xtr[hold] @ W + b, Ytr[hold]) for W, b in path.values()])       # (lams, P)
    best = [RIDGE[k] for k in scores.argmax(0)]
    full = ridge_path(Xtr, Ytr, sorted(set(best)))
    return [float(r2(Xte @ full[lam][0][:, p:p + 1] + full[lam][1][p], Yte[:, p:p + 1])[0]) for p, lam in enumerate(best)]


def logistic_fit(X, Y, steps=LOGISTIC_STEPS, l2=LOGISTIC_L2):
    """(W (D, P), b (P,)) of P logistic regressions at once (Y (N, P) in {0, 1}, NaN = not counted), by
    Nesterov's accelerated gradient on the mean log loss + l2/2 |W|^2; X standardised."""
    M = ~np.isnan(Y)
    Yz, n = np.where(M, Y, 0.0), np.maximum(M.sum(0), 1)
    v = np.random.default_rng(0).standard_normal(X.shape[1])
    for _ in range(30):                                     # the largest eigenvalue of X^T X / N
        v = X.T @ (X @ v)
        v /= np.linalg.norm(v)
    lip = (np.linalg.norm(X.T @ (X @ v)) / len(X) + 1.0) / 4 + l2
    W = np.zeros((X.shape[1], Y.shape[1]))
    b = np.zeros(Y.shape[1])
    W_prev, b_prev = W.copy(), b.copy()
    for k in range(1, steps + 1):
        mom = (k - 1) / (k + 2)
        Wm, bm = W + mom * (W - W_prev), b + mom * (b - b_prev)
        R = (sigmoid(X @ Wm + bm) - Yz) * M / n                # (N, P)
        W_prev, b_prev = W, b
        W, b = Wm - (X.T @ R + l2 * Wm) / lip, bm - R.sum(0) / lip
    return W, b


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def logistic_probes(Xtr, Ytr, Xte, Yte):
    """(P,) test accuracies and (P,) majority-class rates of the test rows."""
    W, b = logistic_fit(Xtr, Ytr)
    P = (Xte @ W + b) > 0
    acc, base = [], []
    for p in range(Yte.shape[1]):
        keep = ~np.isnan(Yte[:, p])
        y = Yte[keep, p]
        acc.append(float((P[keep, p] == (y > 0.5)).mean()))
        base.append(float(max(y.mean(), 1 - y.mean())))
    return acc, base


def probe_layer(train, test, hold):
    """{property: test score} of the probes on one layer's [c ; h] (train and test: ({c, h}, props))."""
    (str_, ptr), (ste, pte) = train, test
    scale = standardiser(np.concatenate([str_["c"], str_["h"]], 1).astype(np.float64))
    Xtr = scale(np.concatenate([str_["c"], str_["h"]], 1).astype(np.float64))
    Xte = scale(np.concatenate([ste["c"], ste["h"]], 1).astype(np.float64))
    counts = [key for key, _, kind in PROPERTIES if kind == "r2"]
    out, base = dict(zip(counts, ridge_probes(Xtr, np.stack([ptr[k] for k in counts], 1), Xte,
                                              np.stack([pte[k] for k in counts], 1), hold))), {}
    binary = [key for key, _, kind in PROPERTIES if kind == "acc"]
    acc, rates = logistic_probes(Xtr, np.stack([ptr[k] for k in binary], 1), Xte, np.stack([pte[k] for k in binary], 1))
    out.update(zip(binary, acc))
    base.update(zip(binary, rates))
    return out, base


# ----------------------------------------------------------------------------------------------------------
# the study

def read_model(model, train, test, tones, hold_poems, feats):
    """Correlations, probes and saturation of one model over the train and test poems."""
    t0 = time.time()
    tr_states, tr_props, _ = collect(model, train, tones, feats and feats["train"])
    te_states, te_props, sat = collect(model, test, tones, feats and feats["test"])
    hold = np.concatenate([np.full(len(p[1]), k in hold_poems) for k, p in enumerate(sorted_by_len(train))])
    corr = [{key: {s: correlations(layer[s], te_props[key]) for s in ("c", "h")} for key, _, _ in PROPERTIES}
            for layer in te_states]
    probes = [probe_layer((tr_states[l], tr_props), (te_states[l], te_props), hold) for l in range(len(te_states))]
    print(f"  read {len(train)} + {len(test)} poems, probes fitted, {time.time() - t0:.0f} s", flush=True)
    return {"corr": corr, "probes": probes, "sat": sat, "test_states": te_states, "test_props": te_props,
            "steps": len(te_props["left"])}


def sorted_by_len(poems):
    """poems in the order collect reads them (by length, stable)."""
    return sorted(poems, key=lambda p: len(p[0]))


def untrained_like(model, cfg):
    """A model of the same size as its training run started: the training seed's initialisation."""
    from model import PoetryLM
    torch.manual_seed(cfg.train.seed)
    return PoetryLM(cfg.model).eval()


def formats_reader(mode, model, cfg, itos, train, test):
    """None (format inputs unknown), or {split: feats_of(indices, T)} giving the batch's format inputs."""
    if mode == "none":
        return None
    if not model.cfg.format_inputs:
        raise UserError("--formats poem: this model has no format inputs")
    out = {}
    for split, poems in (("train", train), ("test", test)):
        ordered = poems
        items = poem_formats([p[0] for p in ordered], itos, cfg)
        out[split] = (lambda items: lambda idx, T: tuple(torch.from_numpy(a) for a in
                                                            pad_formats([items[k] for k in idx], T)))(items)
    return out


def cmd_cells(rest):
    parser = make_parser("main.py experiment cells", "which LSTM cells track a poem's form: correlations, "
                         "probes against an untrained model, gate saturation", [])
    parser.add_argument("--ckpt", default="", help="the model (default: as generate picks it)")
    parser.add_argument("--poems", type=int, default=300, help="test poems read (and as many train poems for "
                        "the probes; default: 300)")
    parser.add_argument("--out", default="docs/cells.md", help="the doc to write (default: docs/cells.md); the "
                        "named cells go beside it as .json")
    parser.add_argument("--figures-dir", default="", help="where the figures go (default: figures/cells for the "
                        "default --out, else a folder beside --out)")
    parser.add_argument("--formats", choices=("none", "poem"), default="none",
                        help="a format model's format inputs: none (characters alone, default) or the poem's own")
    parser.add_argument("--seed", type=int, default=0, help="which poems are drawn (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace the doc, its JSON and figures")
    args = parser.parse_args(rest)
    if not 10 <= args.poems <= 5000:
        raise UserError("--poems: 10 to 5000")
    paths = output_paths(args)
    cellrecord.refuse_existing(list(paths.values()), args.overwrite)
    run(args, paths)
    return 0


def output_paths(args):
    """{name: path} of every file the study writes."""
    stem = os.path.splitext(args.out)[0]
    figs = args.figures_dir or ("figures/cells" if os.path.normpath(args.out) == os.path.normpath("docs/cells.md")
                                else stem + "_figures")
    out = {"doc": args.out, "json": stem + ".json"}
    for name in ("saturation", "probes", "top_cells", "showcase"):
        out[name] = os.path.join(figs, f"{name}.png")
    return out


def run(args, paths):
    from studies.base import study_model
    t0 = time.time()
    path, model, itos, corpus = study_model(args.ckpt)
    cfg = Config.from_dict(load_checkpoint(path)["config"])
    genre = cfg.data.genre
    tones, _, _, cipai = verse_tables(dataUtil.processed_dir(cfg))
    test = sample(regular_poems(corpus.test, itos, genre, cipai), args.poems, args.seed)
    train = sample(regular_poems(corpus.train, itos, genre, cipai), args.poems, args.seed + 1)
    if len(test) < 10 or len(train) < 10:
        raise UserError("fewer than 10 regular poems in the test or train split: prepare the corpus this model "
                        "was trained on (python dataUtil.py prepare)")
    train, test = sorted_by_len(train), sorted_by_len(test)
    hold_poems = set(np.random.default_rng(args.seed + 2).permutation(len(train))[:len(train) // 5].tolist())
    print(f"cells study of {os.path.relpath(path)}: {len(test)} test and {len(train)} train poems", flush=True)
    results = {}
    for name, m in (("trained", model), ("untrained", untrained_like(model, cfg))):
        feats = formats_reader(args.formats, m, cfg, itos, train, test)
        results[name] = read_model(m, train, test, tones, hold_poems, feats)
    fp = cellrecord.fingerprint(lstm_inspect.torch_weights(model))
    summary = summarise(results, len(model.lstm.layers))
    write_json(paths["json"], summary, fp, path, args)
    figures(paths, results, summary, model, itos, genre, test[0][1])
    write_doc(paths, summary, results, path, args, len(test), len(train), time.time() - t0, genre)
    print(f"wrote {paths['doc']}, {paths['json']} and {len(paths) - 2} figures ({time.time() - t0:.0f} s)")


# ----------------------------------------------------------------------------------------------------------
# summary, JSON, figures, doc

def summarise(results, num_layers):
    """Per property and layer: top cells (c) with r, the best |r| of h, the untrained model's best |r|, the
    probes; named cells and presets."""
    rows, named, presets = [], [], []
    for key, label, kind in PROPERTIES:
        for l in range(num_layers):
            rc = results["trained"]["corr"][l][key]["c"]
            top = [int(c) for c in np.argsort(-np.abs(rc))[:TOP]]
            row = {"property": key, "label": label, "kind": kind, "layer": l + 1,
                   "top": [(c, float(rc[c])) for c in top],
                   "best_h": float(np.abs(results["trained"]["corr"][l][key]["h"]).max()),
                   "untrained": float(max(np.abs(results["untrained"]["corr"][l][key][s]).max() for s in "ch")),
                   "probe": results["trained"]["probes"][l][0][key],
                   "probe_untrained": results["untrained"]["probes"][l][0][key],
                   "base": results["trained"]["probes"][l][1].get(key)}
            rows.append(row)
            strong = [(c, r) for c, r in row["top"] if abs(r) >= NAMED]
            named += [{"layer": l + 1, "cell": c, "property": label, "r": round(r, 3)} for c, r in strong[:2]]
            order = np.argsort(-np.abs(rc))[:PRESET_CELLS]
            if strong:
                presets.append({"name": f"{label} · layer {l + 1}", "layer": l + 1,
                                "cells": [int(c) for c in order if abs(rc[c]) >= NAMED]})
    named.sort(key=lambda n: -abs(n["r"]))
    return {"rows": rows, "named": named, "presets": presets}


def write_json(path, summary, fp, ckpt, args):
    fileio.write_json(path, {"fingerprint": fp, "checkpoint": os.path.relpath(ckpt), "command": command(args),
                             "named": summary["named"], "presets": summary["presets"],
                             "rows": summary["rows"]})


def command(args):
    parts = ["python main.py experiment cells"]
    if args.ckpt:
        parts.append(f"--ckpt {args.ckpt}")
    parts.append(f"--poems {args.poems}")
    if args.out != "docs/cells.md":
        parts.append(f"--out {args.out}")
    if args.formats != "none":
        parts.append(f"--formats {args.formats}")
    return " ".join(parts + ["--overwrite"])


def figures(paths, results, summary, model, itos, genre, fallback):
    num_layers = len(model.lstm.layers)
    sat = {name: [{g: (s[g][0], s[g][1]) for g in cellrecord.GATES} for s in r["sat"]] for name, r in results.items()}
    cellplot.saturation_figure(paths["saturation"], sat["trained"], sat["untrained"])
    rows = []
    for key, label, kind in PROPERTIES:
        mine = [r for r in summary["rows"] if r["property"] == key]
        rows.append({"property": label, "kind": kind, "base": mine[0]["base"],
                     "scores": {**{(r["layer"], True): r["probe"] for r in mine},
                                **{(r["layer"], False): r["probe_untrained"] for r in mine}}})
    cellplot.probe_figure(paths["probes"], rows, num_layers)
    cellplot.top_cells_figure(paths["top_cells"], top_panels(results["trained"], summary))
    showcase(paths["showcase"], model, itos, genre, summary, fallback)


def best_row(summary, key):
    return max((r for r in summary["rows"] if r["property"] == key), key=lambda r: abs(r["top"][0][1]))


def top_panels(trained, summary):
    """The best cell of each count property: its mean state c at each value of the property."""
    panels = []
    for key in ("left", "pos", "line"):
        row = best_row(summary, key)
        cell, r = row["top"][0]
        c = trained["test_states"][row["layer"] - 1]["c"][:, cell]
        y = trained["test_props"][key]
        xs = [v for v in np.unique(y[~np.isnan(y)]) if (y == v).sum() >= 20]
        panels.append({"title": f"{row['label']}: layer {row['layer']} cell #{cell} (r = {r:+.2f})",
                       "xlabel": row["label"], "x": xs, "mean": [c[y == v].mean() for v in xs],
                       "std": [c[y == v].std() for v in xs]})
    return panels


def showcase_layer(summary):
    """The layer whose best cells correlate most, summed over the properties."""
    layers = sorted({r["layer"] for r in summary["rows"]})
    return max(layers, key=lambda l: sum(abs(r["top"][0][1]) for r in summary["rows"] if r["layer"] == l))


def showcase(path, model, itos, genre, summary, fallback):
    """The heatmap of a famous poem (else fallback) with the showcase layer's best cell for each property."""
    layer = showcase_layer(summary)
    cells, labels = [], {}
    for r in summary["rows"]:
        c, rv = r["top"][0]
        if r["layer"] == layer and c not in labels:
            cells.append(c)
            labels[c] = f"{r['label']} r={rv:+.2f}"
    text = CI_SHOWCASE if genre == "ci" else SHOWCASE
    if not set(text) <= set(itos):                           # a model without its characters: a test poem
        text = fallback
    inputs = cellrecord.read_inputs(text, itos, False, genre, "none")
    layers, probs = lstm_inspect.read_poem(model, itos, inputs)
    cellplot.heatmap(path, [itos[i] for i in inputs.ids], probs, layers[layer - 1]["c"][:, cells], cells, labels,
                     f"layer {layer}, c_t, each property's best cell")


def findings(summary):
    """One line a property: its best cell (in the layer where it correlates most) or "no single cell", with
    that layer's probe against the untrained model's."""
    out = []
    for key, label, kind in PROPERTIES:
        row = best_row(summary, key)
        probe = (f"probe R² {row['probe']:.2f} against {row['probe_untrained']:.2f} untrained" if kind == "r2" else
                 f"probe {row['probe']:.1%} against {row['probe_untrained']:.1%} untrained, {row['base']:.1%} majority")
        out.append(f"- {label}: layer {row['layer']} {verdict(row)}; {probe}.")
    return out


def verdict(row):
    cell, r = row["top"][0]
    if abs(r) >= SINGLE:
        return f"cell #{cell} (r = {r:+.2f})"
    return f"no single cell (best \\|r\\| = {abs(r):.2f})"


def fmt_probe(row, which):
    v = row[which]
    return f"{v:.3f}" if row["kind"] == "r2" else f"{v:.1%}"


def write_doc(paths, summary, results, ckpt, args, n_test, n_train, seconds, genre):
    doc_dir = os.path.dirname(os.path.abspath(paths["doc"]))
    link = lambda name: os.path.relpath(os.path.abspath(paths[name]), doc_dir)      # noqa: E731
    steps = results["trained"]["steps"]
    what = "词 following a 词牌 of the table" if genre == "ci" else "regular 诗 (五/七言 绝句/律诗)"
    lines = ["# What the LSTM's cells track", "",
             f"Command: `{command(args)}` on `{os.path.relpath(ckpt)}` ({seconds / 60:.1f} minutes on this "
             f"machine's CPU). {n_test} {what} of the test split ({steps} steps), read from `<bos>` with the state "
             f"at zero, format inputs {'unknown (characters alone)' if args.formats == 'none' else 'from each poem'}; "
             f"the probes trained on {n_train} train-split poems of the same kinds. The untrained model is the same "
             "size with the training seed's initialisation.", "",
             "Each property describes the token the model is about to predict after reading step t: characters left "
             "in its line (0 at the mark), its position in the line (the mark counts as the last), its line (1-based), "
             "whether that line is even, whether it is a rhyme slot (the last character of an even line; of a rhyming "
             "line of the 词牌 for 词), whether it is 平 rather than 仄 (pretrained/tones.json; characters of both or no "
             "tone left out), whether it is punctuation. r: Pearson's correlation of a cell's state c with the "
             f"property over all steps; a cell 'tracks' a property from \\|r\\| = {SINGLE}. Probes read the layer's "
             "[c ; h] (standardised): ridge regression for the counts (test R²), logistic regression for the yes/no "
             "properties (test accuracy; the majority class's share beside it).", "",
             "| property | layer | top cells (c), r | best \\|r\\| of h | untrained best \\|r\\| | probe | untrained probe "
             "| majority | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        tops = ", ".join(f"#{c} {r:+.2f}" for c, r in row["top"])
        base = "" if row["base"] is None else f"{row['base']:.1%}"
        lines.append(f"| {row['label']} | {row['layer']} | {tops} | {row['best_h']:.2f} | {row['untrained']:.2f} | "
                     f"{fmt_probe(row, 'probe')} | {fmt_probe(row, 'probe_untrained')} | {base} | {verdict(row)} |")
    lines += ["", "## Findings", ""] + findings(summary) + [
              "", "Notes: in a regular poem the lines end in ， and 。 by turns, so the last mark read tells an even "
              "line from an odd one, and the untrained model's probe reads it too; a probe of a random LSTM's state "
              "sees the recent characters mixed, so its scores are the floor a trained cell has to beat. A probe "
              "below the majority class has over-fitted its train poems."]
    lines += ["", "Gate saturation (share of all steps and cells below 0.1 / above 0.9; cells: how many are saturated "
              "in more than half the steps):", "",
              "| model | layer | gate | mean share < 0.1 | mean share > 0.9 | cells mostly < 0.1 | cells mostly > 0.9 |",
              "|---|---|---|---|---|---|---|"]
    for name in ("trained", "untrained"):
        for l, s in enumerate(results[name]["sat"]):
            for g in cellrecord.GATES:
                lo, hi = s[g]
                lines.append(f"| {name} | {l + 1} | {g} | {lo.mean():.1%} | {hi.mean():.1%} | {(lo > 0.5).sum()} | "
                             f"{(hi > 0.5).sum()} |")
    lines += ["", "## Figures", "", f"![the best cells on a poem]({link('showcase')})", "",
              "The showcase layer's best cell for each property over " + ("苏轼《水调歌头》's opening" if genre == "ci"
                                                                        else "杜甫《春望》") +
              " (`python main.py inspect` draws the same for any poem).", "",
              f"![gate saturation]({link('saturation')})", "",
              "Each point a cell: the share of steps its gate is below 0.1 against above 0.9 (Karpathy, Johnson & "
              "Fei-Fei 2015, *Visualizing and Understanding Recurrent Networks*, fig. 3); grey: the untrained model.",
              "", f"![probes]({link('probes')})", "", "The probes, trained (solid) and untrained (pale).", "",
              f"![top cells]({link('top_cells')})", "",
              "The best cell of each count property: its mean state at each value (± one standard deviation).", "",
              "The named cells (\\|r\\| ≥ " + f"{NAMED}, two a property and layer) are in `{os.path.basename(paths['json'])}`, "
              "which `python main.py inspect` shows by default and the page's 看 tab offers as presets."]
    fileio.write_text(paths["doc"], "\n".join(lines) + "\n")
