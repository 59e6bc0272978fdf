"""What the LSTM holds while it reads a poem, without torch: the poem's inputs (its tokens, and the format inputs
when the model reads them), the record `inspect` writes, the gates' summary, and the cells to show.

The record (JSON) of a poem of n tokens c1 … cn (characters and marks):

    chars    <bos> c1 … cn          the token read at each of the n + 1 steps (the state starts at zero)
    targets  c1 … cn <eos>          the token the model predicts at that step
    prob     p(targets[t] | chars[:t+1]) for every step t
    layers   one object a layer (1-based "layer"), keys i f o g c h: lists over steps of lists over cells
             (0-based), the gates and the cell and hidden states after reading chars[t]
    gates    each layer's i, f, o averaged over steps and cells, and their saturation: the share of values
             below 0.1 (low) and above 0.9 (high)

main.py inspect (studies/lstm_inspect.py, the torch layers' equations re-run) and MyLSTM_np.py inspect (the NumPy LSTM,
cmd_inspect_np here) fill the same record, so the two can be compared. The cells shown without --cells are the
ones the cells study named (studies/cells_study.py writes them to docs/cells*.json, keyed by the weights' fingerprint),
else the highest-variance cells of the poem.
"""
import dataclasses
import glob
import hashlib
import json
import os
import sys

import numpy as np

import dataUtil
from common import fileio
from config import Config, UserError, make_parser
from verse.text import ci_pattern
from verse.tables import verse_tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ("i", "f", "o", "g", "c", "h")        # the record's arrays of each layer
GATES = ("i", "f", "o")                      # the gates summarised (g is tanh, not a gate in [0, 1])
LOW, HIGH = 0.1, 0.9                         # a gate value below LOW or above HIGH is saturated
MAX_POEM = 400                               # characters of a poem inspected at most
MAX_CELLS = 32                               # cells shown at most
DEFAULT_SHOWN = 12                           # cells shown without --cells at most
DIGITS = 6                                   # decimals kept in the JSON (float32 holds about 7 digits)
STUDY_GLOBS = ("docs/cells*.json", "pretrained/cells*.json")
FORMAT_MODES = ("auto", "poem", "none")


@dataclasses.dataclass
class InspectConfig:
    """The settings of one inspect run (main.py inspect and MyLSTM_np.py inspect)."""
    poem: str = ""
    ckpt: str = ""                 # empty: as generate picks it
    layer: int = 0                 # 1-based; 0: the last layer
    cells: str = ""                # "12,87": 0-based cells of that layer; empty: the study's, else the most varied
    state: str = "c"               # the state the heatmap colours: c | h
    formats: str = "auto"          # auto: the poem's format inputs when the model reads them and they can be
                                   # read from the poem; poem: insist on them; none: characters alone
    out: str = "inspect"           # main.py: a folder (inspect.json, heatmap.png); MyLSTM_np.py: the JSON file
    overwrite: bool = False


@dataclasses.dataclass
class Inputs:
    """A poem as the model reads it: ids (n + 1,) = <bos> c1 … cn, targets (n + 1,) = c1 … cn <eos>, and the
    format inputs feats (n + 1, K) and pair (n + 1,) or None (unknown)."""
    text: str
    ids: np.ndarray
    targets: np.ndarray
    feats: object = None
    pair: object = None
    formats: str = "unknown"       # poem | unknown: which format inputs the model was given
    why: str = ""


# ----------------------------------------------------------------------------------------------------------
# the poem's inputs

def read_inputs(raw, itos, reads_formats, genre="tang", mode="auto"):
    """The Inputs of user text for a model of vocabulary itos. Empty, non-Chinese or over-long text, and a
    character outside the vocabulary, are UserErrors naming the problem."""
    from verse import prosody
    if not raw or not raw.strip():
        raise UserError("the poem is empty; give its lines, e.g. \"白日依山尽，黄河入海流。\"")
    text = prosody.normalise(raw, set(itos))
    if len(text) > MAX_POEM:
        raise UserError(f"the poem has {len(text)} characters; at most {MAX_POEM} are inspected")
    stoi = {w: i for i, w in enumerate(itos)}
    unknown = sorted({ch for ch in text if ch not in stoi}, key=text.index)
    if unknown:
        raise UserError(f"{''.join(unknown[:5])} not in the model's vocabulary ({len(itos)} tokens); the model would "
                        "read them as <unk>: give a poem of characters it knows")
    chars = [stoi[ch] for ch in text]
    ids = np.array([stoi[dataUtil.BOS], *chars], np.int64)
    targets = np.array([*chars, stoi[dataUtil.EOS]], np.int64)
    inputs = Inputs(text, ids, targets)
    return with_formats(inputs, stoi, reads_formats, genre, mode)


def with_formats(inputs, stoi, reads_formats, genre, mode):
    """inputs with the poem's format inputs (formats.features of its Format) when mode allows and the model
    reads them; else unknown, with the reason in inputs.why."""
    if mode not in FORMAT_MODES:
        raise UserError(f"--formats: one of {', '.join(FORMAT_MODES)}")
    if mode == "none":
        inputs.why = "--formats none: characters alone"
        return inputs
    if not reads_formats:
        if mode == "poem":
            raise UserError("--formats poem: this model has no format inputs (it reads characters alone)")
        inputs.why = "the model has no format inputs"
        return inputs
    fmt = poem_format(inputs.text, genre)
    if fmt is None:
        if mode == "poem":
            raise UserError("--formats poem: the format inputs describe a regular 诗 (5 or 7 characters a line, "
                            "an even number of lines) or a 词 to a known 词牌, and this poem is neither")
        inputs.why = "the poem is not of a form the format inputs describe: unknown"
        return inputs
    from verse import formats
    inputs.feats, inputs.pair = formats.features(inputs.text, fmt, stoi)
    inputs.formats, inputs.why = "poem", "the poem's own form (formats.features, as training reads it)"
    return inputs


def poem_format(text, genre):
    """The formats.Format a real poem follows (training/inputs.py's poem_formats reading), or None."""
    from verse import formats
    cfg = Config()
    cfg.data.genre = genre
    tones, pingshui, cilin, cipai = verse_tables(dataUtil.processed_dir(cfg))
    reader = formats.Formatter(tones, pingshui, cilin, cipai if genre == "ci" else None, ci_pattern)
    return reader(text)


def format_embedding(params, inputs):
    """(n + 1, E) the sum of the format inputs' embeddings, as model.FormatInputs computes it, from the
    state_dict's arrays (formats.table.weight (TOTAL, E), formats.pair.weight (E, E)); zeros without them."""
    from verse import formats
    E = params["embed.weight"].shape[1]
    if inputs.feats is None or "formats.table.weight" not in params:
        return np.zeros((len(inputs.ids), E), params["embed.weight"].dtype)
    offsets = np.array([formats.OFFSETS[g] for g in formats.GROUPS])
    table = params["formats.table.weight"].copy()
    table[offsets] = 0.0                                           # the unknown rows embed to zero
    out = table[inputs.feats + offsets].sum(1)                      # (n + 1, E)
    pair_x = params["embed.weight"][inputs.pair] @ params["formats.pair.weight"].T    # (n + 1, E)
    return out + pair_x * (inputs.pair != 0)[:, None]


# ----------------------------------------------------------------------------------------------------------
# the record

def build_record(inputs, itos, layers, probs, meta):
    """The JSON-ready record: layers is a list of {key: (n + 1, H) array} over KEYS, probs (n + 1,)."""
    rnd = lambda a: np.round(np.asarray(a, np.float64), DIGITS).tolist()   # noqa: E731
    return {**meta, "poem": inputs.text, "formats": inputs.formats, "formats_why": inputs.why,
            "chars": [itos[i] for i in inputs.ids], "targets": [itos[i] for i in inputs.targets],
            "prob": rnd(probs),
            "layers": [{"layer": l + 1, **{k: rnd(layer[k]) for k in KEYS}} for l, layer in enumerate(layers)],
            "gates": gate_summary(layers)}


def gate_summary(layers):
    """[{layer, i, f, o: {mean, low, high}}]: each gate's mean over steps and cells and its saturated shares."""
    out = []
    for l, layer in enumerate(layers):
        row = {"layer": l + 1}
        for k in GATES:
            a = np.asarray(layer[k])
            row[k] = {"mean": round(float(a.mean()), 4), "low": round(float((a < LOW).mean()), 4),
                      "high": round(float((a > HIGH).mean()), 4)}
        out.append(row)
    return out


def summary_lines(gates):
    """The gate summary as printed lines."""
    lines = [f"gates averaged over the poem's steps and cells (saturated: < {LOW} or > {HIGH}):"]
    for row in gates:
        parts = [f"{k} {row[k]['mean']:.3f} (<{LOW} {row[k]['low']:.1%}, >{HIGH} {row[k]['high']:.1%})" for k in GATES]
        lines.append(f"  layer {row['layer']}: " + "   ".join(parts))
    return lines


def target_probs(logits, targets):
    """(T,) softmax(logits)[t, targets[t]] from logits (T, V), in float64."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return np.exp(logp[np.arange(len(targets)), targets])


def fingerprint(weights):
    """A short hash of the LSTM's weights (a list of float32 arrays W, b per layer): the study's named cells
    belong to the model whose fingerprint they carry."""
    h = hashlib.sha256()
    for w in weights:
        h.update(np.ascontiguousarray(w, np.float32).tobytes())
    return h.hexdigest()[:16]


def write_json(path, record):
    fileio.write_text(path, json.dumps(record, ensure_ascii=False, separators=(",", ":")))


# ----------------------------------------------------------------------------------------------------------
# which cells

def parse_cells(text, hidden):
    """The 0-based cells of "12,87" (each in [0, hidden), at most MAX_CELLS, no repeats)."""
    try:
        cells = [int(p) for p in text.replace(" ", "").split(",") if p != ""]
    except ValueError:
        raise UserError(f"--cells: 0-based cell numbers separated by commas, e.g. 12,87; not {text!r}")
    if not cells or len(cells) > MAX_CELLS or len(set(cells)) != len(cells):
        raise UserError(f"--cells: 1 to {MAX_CELLS} different cells")
    bad = [c for c in cells if not 0 <= c < hidden]
    if bad:
        raise UserError(f"--cells: {bad[0]} is not a cell of a layer of {hidden} (0 to {hidden - 1})")
    return cells


def pick_layer(layer, num_layers):
    """The 1-based layer asked for (0: the last)."""
    if not 0 <= layer <= num_layers:
        raise UserError(f"--layer: 1 to {num_layers} (0: the last), not {layer}")
    return layer or num_layers


def study_entry(fp, root=ROOT):
    """(the study's JSON dict, its path) for the model of fingerprint fp, else (None, None)."""
    for pattern in STUDY_GLOBS:
        for path in sorted(glob.glob(os.path.join(root, pattern))):
            try:
                with open(path, encoding="utf-8") as f:
                    entry = json.load(f)
            except (OSError, ValueError):
                continue
            if isinstance(entry, dict) and entry.get("fingerprint") == fp:
                return entry, path
    return None, None


def named_cells(entry, layer):
    """{cell: label} of the cells the study named in a layer (1-based), best first."""
    out = {}
    for n in (entry or {}).get("named", []):
        if n["layer"] == layer:
            out.setdefault(n["cell"], f"{n['property']} r={n['r']:+.2f}")
    return out


def choose_cells(cells_text, layer, values, entry, source):
    """(cells, {cell: label}, where they came from) for a layer whose state over the poem is values (T, H)."""
    labels = named_cells(entry, layer)
    if cells_text:
        return parse_cells(cells_text, values.shape[1]), labels, "--cells"
    if labels:
        return list(labels)[:DEFAULT_SHOWN], labels, f"named by the cells study ({os.path.relpath(source, ROOT)})"
    spread = values.std(0)
    return [int(c) for c in np.argsort(-spread)[:DEFAULT_SHOWN]], labels, "the poem's highest-variance cells"


def presets(entry):
    """The study's cells as the page's presets: [{name, layer, cells}], one a property and layer."""
    return list((entry or {}).get("presets", []))


# ----------------------------------------------------------------------------------------------------------
# the command line (shared flags) and MyLSTM_np.py inspect

def add_flags(parser, out_help):
    parser.add_argument("poem", help="the poem's text")
    parser.add_argument("--ckpt", default="", help="the model (default: as generate picks it)")
    parser.add_argument("--formats", choices=FORMAT_MODES, default="auto",
                        help="format inputs: auto (the poem's own when the model reads them and the poem is a "
                        "regular 诗 or a 词 to a known 词牌), poem (insist), none (characters alone)")
    parser.add_argument("--out", default="", help=out_help)
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def config_of(args, **defaults):
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(InspectConfig) if hasattr(args, f.name)}
    return InspectConfig(**{**given, **{k: v for k, v in defaults.items() if not given.get(k)}})


def refuse_existing(paths, overwrite):
    """A UserError when one of paths exists (or is a folder) and overwrite is not set."""
    for p in paths:
        if os.path.isdir(p):
            raise UserError(f"{p} is a folder; give a file to write")
        if os.path.exists(p) and not overwrite:
            raise UserError(f"{p} exists; pass --overwrite to replace it, or --out elsewhere")


def cmd_inspect_np(rest, load):
    """python MyLSTM_np.py inspect "POEM" --ckpt … --out FILE.json: the record from the NumPy LSTM, without
    torch. load(path) -> (NumpyLM, itos, config dict), MyLSTM_np.NumpyLM.from_checkpoint."""
    from config import pick_checkpoint
    parser = make_parser("MyLSTM_np.py inspect", "every layer's gates and states over a poem, from the NumPy "
                         "LSTM (the JSON of main.py inspect)", [])
    add_flags(parser, "the JSON file to write (default: inspect.json)")
    cfg = config_of(parser.parse_args(rest), out="inspect.json")
    refuse_existing([cfg.out], cfg.overwrite)
    path = pick_checkpoint(cfg.ckpt)
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} not found; pass --ckpt PATH")
    try:
        model, itos, config = load(path)
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path} is not a readable checkpoint of this project ({e}); pass one from train")
    m = config.get("model", {})
    genre = config.get("data", {}).get("genre", "tang")
    inputs = read_inputs(cfg.poem, itos, bool(m.get("format_inputs")), genre, cfg.formats)
    layers, logits = numpy_trace(model, inputs)
    meta = {"checkpoint": os.path.relpath(path), "fingerprint": fingerprint(numpy_weights(model)), "engine": "numpy"}
    record = build_record(inputs, itos, layers, target_probs(logits, inputs.targets), meta)
    write_json(cfg.out, record)
    print("\n".join(summary_lines(record["gates"])))
    print(f"format inputs: {inputs.formats} ({inputs.why})\nwrote {cfg.out}", file=sys.stderr)
    return 0


def numpy_weights(model):
    return [a for cell in model.lstm.cells for a in (cell.W, cell.b)]


def numpy_trace(model, inputs):
    """([{key: (n + 1, H)}] over layers, logits (n + 1, V)) from a MyLSTM_np.NumpyLM: its LSTM's forward over
    the poem, read from the caches it keeps for backward (gates i, f, o, g and c_{t-1} of every step)."""
    x = model.params["embed.weight"][inputs.ids] + format_embedding(model.params, inputs)      # (T, E)
    out, _, c_n, caches = model.lstm.forward(x[:, None, :])                                     # (T, 1, H)
    layers = []
    for l, (_, _, gcaches) in enumerate(caches):
        i, f, o, g, c_prev, tanh_c = (np.stack([gc[k][0] for gc in gcaches]) for k in range(6))   # (T, H)
        c = np.concatenate([c_prev[1:], c_n[l]], 0)                                           # c_t = c_prev of t+1
        layers.append({"i": i, "f": f, "o": o, "g": g, "c": c, "h": o * tanh_c})
    logits = out[:, 0] @ model.params["proj.weight"].T + model.params["proj.bias"]            # (T, V)
    return layers, logits


def parse_main_args(rest):
    """The InspectConfig of main.py inspect's flags."""
    parser = make_parser("main.py inspect", "what the LSTM's cells do while it reads a poem: a heatmap of chosen "
                         "cells, the gates' saturation, and every activation as JSON", [])
    add_flags(parser, "the folder to write inspect.json and heatmap.png into (default: inspect)")
    parser.add_argument("--layer", type=int, default=0, help="the layer shown (1-based; default: the last)")
    parser.add_argument("--cells", default="", help="0-based cells of that layer, e.g. 12,87 (default: those the "
                        "cells study named, else the poem's highest-variance cells)")
    parser.add_argument("--state", choices=("c", "h"), default="c", help="the state coloured: c (cell, default) or h")
    return config_of(parser.parse_args(rest), out="inspect")

