"""The keywords study (`python main.py experiment keywords`): poems written with two keywords each against the
same settings without, from one model: inclusion, fluency (the model's NLL per token), a discriminator against
real poems, and where the keywords land (line x position). Writes docs/keywords_study.md.
"""
import os

import numpy as np
import torch

from writing import requests
from common import fileio
from writing import keywords
from verse import poetics
from config import SAMPLE_STARTS, GenConfig, UserError, make_parser

WORDS = "春 秋 月 风 雨 山 水 花 柳 江 云 雪 夜 酒 明月 春风 秋风 白云 青山 流水 故人 落花 孤舟 夕阳".split()
MODES = [("default (a real poem's form)", {}), ("--form 7 --lines 4 --rhyme", dict(form=7, lines=4, rhyme=True))]


def cmd_keywords(rest):
    from studies.base import study_model
    from training.perplexity import text_nll
    parser = make_parser("main.py experiment keywords", "poems with keywords against poems without", [])
    parser.add_argument("--ckpt", default="", help="the model (default: as generate picks it)")
    parser.add_argument("--samples", type=int, default=10, help="poems per start character and mode (default: 10)")
    parser.add_argument("--docs-dir", default="docs", help="where keywords_study.md goes (default: docs)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing keywords_study.md")
    args = parser.parse_args(rest)
    fileio.check_target(os.path.join(args.docs_dir, "keywords_study.md"), args.overwrite)   # before any work
    if not 1 <= args.samples <= 200:
        raise UserError("--samples: 1 to 200")
    path, model, itos, corpus = study_model(args.ckpt)
    real = [t for t in map(corpus.decode, corpus.dev + corpus.test) if t[0] in SAMPLE_STARTS]
    rng = np.random.default_rng(0)
    rows, hists = [], []
    for label, settings in MODES:
        for with_words in (False, True):
            poems, asked = [], []
            for k, start in enumerate(SAMPLE_STARTS):
                for j in range(args.samples):
                    words = list(rng.choice(WORDS, 2, replace=False)) if with_words else []
                    g = GenConfig(start=start, seed=1000 * k + j, keywords=" ".join(words), **settings)
                    poems.append(requests.poems_for(model, itos, g, torch.device("cpu"))[0])
                    asked.append(words)
            hits = [h for p, ws in zip(poems, asked) for h in keywords.positions(p, ws)]
            rows.append({"mode": label + (" --keywords (2 words)" if with_words else ""), "poems": len(poems),
                         "inclusion": poetics.mean(h is not None for h in hits) if with_words else float("nan"),
                         "nll": text_nll(model, itos, poems, torch.device("cpu")),
                         "disc": poetics.discriminator_accuracy(poems, real),
                         "length": poetics.mean(map(len, poems))})
            print(f"  {rows[-1]}", flush=True)
            if with_words and settings:
                hists.append((label, keywords.histogram(hits, settings["lines"], settings["form"])))
            if with_words and not settings:
                hists.append((label + ", by line", line_histogram(poems, asked)))
    write(rows, hists, path, args)
    return 0


def line_histogram(poems, asked):
    """(1, 8) counts of the line (1-8, later lines as 8) each keyword lands on."""
    h = np.zeros((1, 8), int)
    for p, ws in zip(poems, asked):
        for hit in keywords.positions(p, ws):
            if hit is not None:
                h[0, min(hit[0], 7)] += 1
    return h


def write(rows, hists, path, args):
    lines = ["# Keywords study", "",
             f"Command: `python main.py experiment keywords --samples {args.samples}` on `{os.path.relpath(path)}` "
             f"(this machine's CPU). {args.samples} poems per start character ({SAMPLE_STARTS}) and mode, each the best "
             "of 8 candidates; with keywords, two words drawn per poem from a list of common images "
             f"({' '.join(WORDS)}). inclusion: keywords found verbatim; NLL/token: the model's own mean NLL of the "
             "poems (fluency); disc.: a logistic regression on character 1-2-grams telling the poems from real "
             "dev/test poems with the same first characters (5-fold cross-validated accuracy; 50% = "
             "indistinguishable).", "", "| mode | poems | inclusion | NLL/token | disc. | mean length |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        inc = "—" if r["inclusion"] != r["inclusion"] else f"{r['inclusion']:.1%}"
        lines.append(f"| {r['mode']} | {r['poems']} | {inc} | {r['nll']:.3f} | {r['disc']:.1%} | {r['length']:.1f} |")
    for label, h in hists:
        by_line = label.endswith("by line")
        lines += ["", f"Where the keywords' first characters land, {label}"
                  + (" (line 8: line 8 or later):" if by_line else " (rows: lines; columns: positions):"), "",
                  ("| | " + " | ".join(f"line {p + 1}" for p in range(h.shape[1])) if by_line else
                   "| line | " + " | ".join(str(p + 1) for p in range(h.shape[1]))) + " |",
                  "|---" * (h.shape[1] + 1) + "|"]
        lines += [f"| {'keywords' if by_line else k + 1} | " + " | ".join(map(str, row)) + " |"
                  for k, row in enumerate(h)]
    doc = os.path.join(args.docs_dir, "keywords_study.md")
    fileio.write_text(doc, "\n".join(lines) + "\n")
    print(f"wrote {doc}")
