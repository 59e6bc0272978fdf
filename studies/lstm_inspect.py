"""`python main.py inspect "POEM"`: what the LSTM's cells do while it reads a poem.

    python main.py inspect "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。" [--ckpt …] [--layer L] [--cells 12,87]
        [--state c|h] [--formats auto|poem|none] [--out DIR] [--overwrite]

writes DIR/heatmap.png (the poem's characters along, the chosen cells' c_t or h_t as colour, the model's
probability of each character above them) and DIR/inspect.json (cellrecord's record: every layer's i, f, o, g,
c, h at every step, each character's probability), and prints the gates' means and saturation per layer.

The activations come from the layers' equations re-run on the checkpoint's weights (docs/design.md's layout:
W (4H, D+H), b (4H,), gates i, f, o, g on [x_t ; h_{t-1}]): model.py is used for its embedding, format inputs
and output layer only, with no hook. tests/test_inspect.py checks them against the model's own logits and
against the NumPy LSTM (MyLSTM_np.py inspect). page_answer serves the page's 看 tab (serve/server.py /api/inspect).
"""
import os
import sys

import numpy as np
import torch

from studies import cellplot
from studies import cellrecord
from studies.cellrecord import KEYS
from config import UserError
from config import pick_checkpoint
from training.checkpoint import load_checkpoint, model_from_checkpoint

PAGE_DIGITS = 4                   # decimals of the page's values


# ----------------------------------------------------------------------------------------------------------
# the activations, from the weights

def layer_trace(x, W, b):
    """One layer from the zero state: x (T, B, D), W (4H, D+H), b (4H,) -> {i, f, o, g, c, h: (T, B, H)}."""
    T, B, D = x.shape
    H = W.shape[0] // 4
    xz = x @ W[:, :D].T + b                                    # (T, B, 4H) the input's part, every step at once
    W_hT = W[:, D:].T                                          # (H, 4H)
    h = c = x.new_zeros(B, H)
    out = {k: x.new_empty(T, B, H) for k in KEYS}
    for t in range(T):
        z = xz[t] + h @ W_hT                                   # (B, 4H) z = W [x_t ; h_{t-1}] + b
        i, f, o = torch.sigmoid(z[:, :3 * H]).split(H, dim=1)
        g = torch.tanh(z[:, 3 * H:])
        c = f * c + i * g                                      # c_t = f c_{t-1} + i g
        h = o * torch.tanh(c)                                  # h_t = o tanh(c_t)
        for k, v in zip(KEYS, (i, f, o, g, c, h)):
            out[k][t] = v
    return out


@torch.no_grad()
def trace(model, ids, feats=None, pair=None, keep=KEYS):
    """ids (T, B) -> ([{key: (T, B, H)} for each layer, only the keys in keep], top layer's h (T, B, H)).
    feats (T, B, K) and pair (T, B): the format inputs (None: unknown, the characters alone)."""
    x = model.embed(ids)                                       # (T, B, E)
    if feats is not None and model.cfg.format_inputs:
        x = x + model.formats(feats, model.embed(pair), pair)
    layers = []
    for layer in model.lstm.layers:
        acts = layer_trace(x, layer.W.float(), layer.b.float())
        layers.append({k: acts[k] for k in keep})
        x = acts["h"]
    return layers, x


def torch_weights(model):
    return [p.detach().float().cpu().numpy() for layer in model.lstm.layers for p in (layer.W, layer.b)]


@torch.no_grad()
def read_poem(model, itos, inputs):
    """([{key: (n + 1, H) array}] over layers, (n + 1,) probabilities of the targets) of one poem's Inputs."""
    ids = torch.from_numpy(inputs.ids)[:, None]                               # (T, 1)
    feats = pair = None
    if inputs.feats is not None:
        feats, pair = torch.from_numpy(inputs.feats)[:, None], torch.from_numpy(inputs.pair)[:, None]
    layers, top = trace(model, ids, feats, pair)
    logits = model.proj(top)[:, 0].double()                                   # (T, V)
    probs = torch.softmax(logits, -1)[torch.arange(len(inputs.targets)), torch.from_numpy(inputs.targets)]
    return [{k: v[:, 0].numpy() for k, v in layer.items()} for layer in layers], probs.numpy()


def genre_of(cfg):
    return getattr(getattr(cfg, "data", None), "genre", "tang")


# ----------------------------------------------------------------------------------------------------------
# the command

def cmd_inspect(rest):
    cfg = cellrecord.parse_main_args(rest)
    if os.path.isfile(cfg.out):
        raise UserError(f"--out {cfg.out} is a file; give the folder to write inspect.json and heatmap.png into")
    out_json, out_png = os.path.join(cfg.out, "inspect.json"), os.path.join(cfg.out, "heatmap.png")
    cellrecord.refuse_existing([out_json, out_png], cfg.overwrite)
    path = pick_checkpoint(cfg.ckpt)
    model, mcfg, itos = model_from_checkpoint(load_checkpoint(path), torch.device("cpu"))
    inputs = cellrecord.read_inputs(cfg.poem, itos, mcfg.model.format_inputs, genre_of(mcfg), cfg.formats)
    layers, probs = read_poem(model, itos, inputs)
    fp = cellrecord.fingerprint(torch_weights(model))
    record = cellrecord.build_record(inputs, itos, layers, probs,
                                     {"checkpoint": os.path.relpath(path), "fingerprint": fp, "engine": "torch"})
    layer = cellrecord.pick_layer(cfg.layer, len(layers))
    entry, source = cellrecord.study_entry(fp)
    cells, labels, why = cellrecord.choose_cells(cfg.cells, layer, layers[layer - 1][cfg.state], entry, source)
    record["shown"] = {"layer": layer, "state": cfg.state, "cells": cells, "source": why,
                       "labels": {str(c): labels[c] for c in cells if c in labels}}
    os.makedirs(cfg.out, exist_ok=True)
    cellrecord.write_json(out_json, record)
    cellplot.heatmap(out_png, record["chars"], probs, layers[layer - 1][cfg.state][:, cells], cells, labels,
                     f"{os.path.basename(path)}, layer {layer}, {cfg.state}_t")
    print("\n".join(cellrecord.summary_lines(record["gates"])))
    print(f"layer {layer}, cells {','.join(map(str, cells))} ({why}); format inputs: {inputs.formats} "
          f"({inputs.why})", file=sys.stderr)
    print(f"wrote {out_png} and {out_json}", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------------------------------------
# the page's 看 tab (POST /api/inspect)

PAGE_KEYS = {"poem", "layer", "cells", "state", "formats"}


def page_request(body):
    """(poem, layer, cells text, state, formats) of a request's JSON object; bad values are UserErrors."""
    if not isinstance(body, dict) or not isinstance(body.get("poem"), str):
        raise UserError("give poem, the text to inspect")
    unknown = sorted(set(body) - PAGE_KEYS)
    if unknown:
        raise UserError(f"unknown key {unknown[0]!r}; known: {', '.join(sorted(PAGE_KEYS))}")
    if len(body["poem"]) > cellrecord.MAX_POEM:
        raise UserError(f"the poem is over {cellrecord.MAX_POEM} characters")
    layer, cells = body.get("layer", 0), body.get("cells") or []
    if not isinstance(layer, int) or isinstance(layer, bool):
        raise UserError("layer: a layer number (1-based; 0 the last)")
    if not isinstance(cells, list) or len(cells) > cellrecord.MAX_CELLS or \
            not all(isinstance(c, int) and not isinstance(c, bool) for c in cells):
        raise UserError(f"cells: a list of at most {cellrecord.MAX_CELLS} cell numbers")
    state, mode = body.get("state", "c"), body.get("formats", "auto")
    if state not in ("c", "h") or mode not in cellrecord.FORMAT_MODES:
        raise UserError(f"state: c or h; formats: {', '.join(cellrecord.FORMAT_MODES)}")
    return body["poem"], layer, ",".join(map(str, cells)), state, mode


def page_answer(model, itos, body, genre="tang"):
    """The answer to the page: the poem's tokens and probabilities, and for each chosen cell of one layer its
    state and gates at every step; the gate summary, the study's presets, the layers' size."""
    poem, layer, cells_text, state, mode = page_request(body)
    inputs = cellrecord.read_inputs(poem, itos, reads_formats(model), genre, mode)
    layers, probs = read_poem(model, itos, inputs)
    layer = cellrecord.pick_layer(layer, len(layers))
    entry, source = cellrecord.study_entry(cellrecord.fingerprint(torch_weights(model)))
    cells, labels, why = cellrecord.choose_cells(cells_text, layer, layers[layer - 1][state], entry, source)
    rnd = lambda a: np.round(a.astype(np.float64), PAGE_DIGITS).tolist()    # noqa: E731
    acts = layers[layer - 1]
    return {"poem": inputs.text, "chars": [itos[i] for i in inputs.ids], "targets": [itos[i] for i in inputs.targets],
            "prob": rnd(probs), "layer": layer, "layers": len(layers), "hidden": acts["c"].shape[1], "state": state,
            "source": why, "formats": inputs.formats,
            "cells": [{"cell": c, "label": labels.get(c, ""), "values": rnd(acts[state][:, c]),
                       **{k: rnd(acts[k][:, c]) for k in ("i", "f", "o")}} for c in cells],
            "gates": cellrecord.gate_summary(layers), "presets": cellrecord.presets(entry)}


def reads_formats(model):
    """Whether the model reads format inputs."""
    return bool(getattr(model.cfg, "format_inputs", False))
