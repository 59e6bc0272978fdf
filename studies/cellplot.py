"""Figures of the LSTM's cells: the inspect heatmap and the cells study's figures.

heatmap: the poem's characters along (wrapped at line ends into strips of at most WRAP tokens), one row per
chosen cell coloured by its state after reading each character (each row scaled to its own largest |value|,
printed at its right), and above them the model's probability of each character. The study's: gate saturation
(after Karpathy, Johnson & Fei-Fei 2015, fig. 3: each cell's share of steps with the gate below 0.1 against above
0.9), the probes' scores, and the top cells against their property.

CJK text needs a CJK font: the first of FONT_NAMES that matplotlib's font_manager knows (or finds among the
system's fonts, e.g. Debian's fonts-noto-cjk), else a one-line warning and characters labelled by position.
"""
import os
import sys
import warnings

import numpy as np

from common import fileio

FONT_NAMES = ("Noto Sans CJK SC", "Noto Serif CJK SC", "Noto Sans CJK JP", "Noto Serif CJK JP", "Source Han Sans SC",
              "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "AR PL UMing CN", "Droid Sans Fallback")
FONT_FILES = ("cjk", "wqy", "sourcehan", "uming", "ukai", "droidsansfallback")
WRAP = 32                     # tokens a heatmap strip holds at most
MARKS = "，。？！；：、"


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def cjk_font():
    """FontProperties of a CJK font, or None after a warning on stderr."""
    from matplotlib import font_manager as fm
    for attempt in range(2):
        known = {f.name for f in fm.fontManager.ttflist}
        for name in FONT_NAMES:
            if name in known:
                return fm.FontProperties(family=name)
        if attempt == 0:                       # fonts installed after matplotlib's cache was written
            for path in fm.findSystemFonts():
                if any(k in os.path.basename(path).lower() for k in FONT_FILES):
                    try:
                        fm.fontManager.addfont(path)
                    except (OSError, RuntimeError, ValueError):
                        continue
    print("warning: no CJK font found (apt-get install fonts-noto-cjk); the figure labels characters by "
          "position", file=sys.stderr)
    return None


def strips(tokens, wrap=WRAP):
    """Index ranges [(start, end)] cutting tokens into strips of at most wrap, at line ends where possible."""
    out, start, last_end = [], 0, None
    for k, tok in enumerate(tokens):
        if tok in MARKS:
            last_end = k + 1
        if k + 1 - start > wrap:
            cut = last_end if last_end and last_end > start else k
            out.append((start, cut))
            start, last_end = cut, None
    if start < len(tokens):
        out.append((start, len(tokens)))
    return out


def labels_of(tokens, font):
    """The x labels: the characters with a CJK font, else line.position."""
    if font is not None:
        return list(tokens)
    out, line, pos = [], 1, 0
    for tok in tokens:
        pos += 1
        out.append(f"{line}.{pos}")
        if tok in MARKS:
            line, pos = line + 1, 0
    return out


def heatmap(path, chars, probs, values, cells, labels, title):
    """chars (n + 1,) the tokens read (<bos> first), probs (n + 1,) each step's target probability, values
    (n + 1, k) the k chosen cells' states; the figure shows characters c1 … cn with p(c_k) and the state after
    reading c_k."""
    plt = pyplot()
    font = cjk_font()
    tokens, p, v = chars[1:], np.asarray(probs)[:-1], np.asarray(values)[1:]          # (n,), (n,), (n, k)
    scale = np.maximum(np.abs(v).max(0), 1e-9)                                       # (k,) each row's largest
    parts = strips(tokens)
    k, wide = v.shape[1], max(e - s for s, e in parts)
    fig = plt.figure(figsize=(max(6.0, 0.36 * wide + 3.2), (0.3 * k + 0.9) * len(parts) + 0.5))
    grid = fig.add_gridspec(3 * len(parts), 1, height_ratios=[1.6, 1.1, k] * len(parts), hspace=0.05)
    xlabels = labels_of(tokens, font)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                      # missing glyphs when no CJK font
        for j, (s, e) in enumerate(parts):
            fig.add_subplot(grid[3 * j]).axis("off")         # room for the characters above the strip
            draw_strip(fig, grid[3 * j + 1], grid[3 * j + 2], xlabels[s:e], pad(p[s:e], wide),
                       pad(v[s:e] / scale, wide), scale, cells, labels, font)
        fig.suptitle(f"{title} — the state after each character (each row scaled to its largest |value|, at the "
                     "right); above: p(character)", fontsize=9)
        fileio.save_figure(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def pad(a, width):
    """a (n, ...) padded with NaN (drawn blank) to width rows."""
    out = np.full((width,) + a.shape[1:], np.nan)
    out[:len(a)] = a
    return out


def draw_strip(fig, top_spec, cell_spec, xlabels, p, v, scale, cells, labels, font):
    n = len(xlabels)
    top = fig.add_subplot(top_spec)
    top.imshow(p[None, :], cmap="Greens", vmin=0, vmax=1, aspect="auto")
    for x, q in enumerate(p[:n]):
        top.text(x, 0, f"{q:.0%}" if q >= 0.005 else "", ha="center", va="center", fontsize=6,
                 color="white" if q > 0.6 else "black")
    top.set_xticks(range(n))
    top.set_xlim(-0.5, len(p) - 0.5)
    top.set_xticklabels(xlabels, fontproperties=font, fontsize=11 if font is not None else 6)
    top.xaxis.tick_top()
    top.set_yticks([0])
    top.set_yticklabels(["p"], fontsize=8)
    top.tick_params(length=0)
    ax = fig.add_subplot(cell_spec, sharex=top)
    ax.imshow(v.T, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(cells)))
    ax.set_yticklabels([f"#{c} {labels.get(c, '')}".strip() for c in cells], fontsize=7, fontproperties=font)
    right = ax.secondary_yaxis("right")
    right.set_yticks(range(len(cells)))
    right.set_yticklabels([f"{s:.2f}" for s in scale], fontsize=6)
    right.tick_params(length=0)
    ax.tick_params(axis="x", bottom=False, labelbottom=False, length=0)
    ax.set_xticks(np.arange(-0.5, n + 0.5, 1), minor=True)
    ax.grid(which="minor", axis="x", color="white", linewidth=0.5)


# ----------------------------------------------------------------------------------------------------------
# the study's figures

def saturation_figure(path, trained, untrained, gates=("i", "f", "o")):
    """trained and untrained: [{gate: (low (H,), high (H,))}] per layer, each cell's share of steps with the
    gate below 0.1 and above 0.9. One panel a gate, a point a cell, a colour a layer (untrained in grey)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(gates), figsize=(4 * len(gates), 4), sharex=True, sharey=True)
    colours = plt.get_cmap("tab10")
    for ax, gate in zip(axes, gates):
        for l, layer in enumerate(untrained):
            ax.scatter(*layer[gate], s=4, color="0.75", label="untrained" if l == 0 else None)
        for l, layer in enumerate(trained):
            ax.scatter(*layer[gate], s=5, alpha=0.6, color=colours(l), label=f"layer {l + 1}")
        ax.plot([0, 1], [1, 0], color="0.6", linewidth=0.6)
        ax.set_title(f"{gate} gate")
        ax.set_xlabel("share of steps < 0.1 (left-saturated)")
    axes[0].set_ylabel("share of steps > 0.9 (right-saturated)")
    axes[-1].legend(fontsize=8, markerscale=3)
    fig.tight_layout()
    fileio.save_figure(fig, path, dpi=110)
    plt.close(fig)


def probe_figure(path, rows, num_layers):
    """rows: [{property, kind (r2 | acc), base, scores: {(layer, trained): score}}]; bars per property."""
    plt = pyplot()
    font = cjk_font()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1, 1.4]})
    for ax, kind, ylabel in ((axes[0], "r2", "test R²"), (axes[1], "acc", "test accuracy")):
        sel = [r for r in rows if r["kind"] == kind]
        x = np.arange(len(sel))
        w = 0.8 / (2 * num_layers)
        for l in range(num_layers):
            for j, trained in enumerate((True, False)):
                off = (2 * l + j - num_layers + 0.5) * w
                ax.bar(x + off, [r["scores"][(l + 1, trained)] for r in sel], w,
                       color=f"C{l}", alpha=1.0 if trained else 0.35,
                       label=f"layer {l + 1}{'' if trained else ', untrained'}")
        if kind == "acc":
            ax.scatter(x, [r["base"] for r in sel], marker="_", s=400, color="black", label="majority class", zorder=3)
            ax.set_ylim(0.4, 1.0)
        ax.set_xticks(x)
        ax.set_xticklabels([r["property"] for r in sel], fontsize=8, rotation=15, fontproperties=font)
        ax.set_ylabel(ylabel)
    handles, names = axes[1].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fileio.save_figure(fig, path, dpi=110)
    plt.close(fig)


def top_cells_figure(path, panels):
    """panels: [{title, x (values of the property), mean, std}] — a top cell's mean state per property value."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2))
    for ax, pnl in zip(np.atleast_1d(axes), panels):
        x, m, s = map(np.asarray, (pnl["x"], pnl["mean"], pnl["std"]))
        ax.plot(x, m, marker="o", color="C3")
        ax.fill_between(x, m - s, m + s, color="C3", alpha=0.2)
        ax.set_title(pnl["title"], fontsize=9)
        ax.set_xlabel(pnl["xlabel"], fontsize=8)
        ax.set_ylabel("cell state c (mean ± sd)", fontsize=8)
    fig.tight_layout()
    fileio.save_figure(fig, path, dpi=110)
    plt.close(fig)
