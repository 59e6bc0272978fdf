"""The regulariser study (`python main.py experiment regularizers`): do AWD-LSTM's regularisers (Merity et al.
2018) pay here? Locked (variational) dropout, DropConnect on the recurrent weights, and a moving average of the
weights, each against the shipped recipe (weight tying, dropout per element at the embedding, between the layers
and before the output).

Every row trains the characters-only model from scratch on the same batches, for the same steps, from each of
several seeds, on the first --limit-poems train poems: a subset small enough that the model overfits within the
budget, as the shipped models do after many epochs of the whole corpus (their train loss runs 0.2 nats below dev).
Dev perplexity is measured on the first 1,000 dev poems every steps/8 steps; a row's figure is the best of its
curve (what early stopping keeps), mean and range over the seeds. Writes docs/regularizer_study.md and
figures/regularizer_curves.png.
"""
import contextlib
import json
import os

import numpy as np
import torch

import dataUtil
from common import fileio
from config import Config, UserError, make_parser, config_from_args, check_config
from studies.experiments import plot_dev_curves, recipe_config, short_run

BASE = {"embed_dim": 128, "hidden_size": 256, "num_layers": 2, "tie_weights": True, "dropout": 0.2, "lr": 2e-3}
ROWS = [  # (label, overrides of BASE; "ema" is the weight average's decay, not a model setting)
    ("shipped recipe: dropout 0.2 per element", {}),
    ("locked dropout 0.2 (one mask per poem)", {"dropout_kind": "locked"}),
    ("+ DropConnect 0.3 on W_h", {"weight_drop": 0.3}),
    ("+ weight average (EMA 0.995)", {"ema": 0.995}),
    ("all three", {"dropout_kind": "locked", "weight_drop": 0.3, "ema": 0.995}),
]
DEV_POEMS = 1000


class WeightAverage:
    """An exponential moving average of a model's parameters (Polyak averaging with a forgetting factor):
    avg <- d avg + (1 - d) param after the n-th step, d = min(decay, (1 + n) / (10 + n)) so that the random
    initial weights are soon forgotten; swapped(model) puts the average in the model's parameters for the
    duration of a with block (an evaluation), then restores the trained ones."""

    def __init__(self, model, decay):
        self.decay, self.updates = decay, 0
        self.avg = [p.detach().clone() for p in model.parameters()]

    @torch.no_grad()
    def update(self, model):
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for a, p in zip(self.avg, model.parameters()):
            a.lerp_(p, 1 - d)

    @contextlib.contextmanager
    def swapped(self, model):
        trained = [p.detach().clone() for p in model.parameters()]
        with torch.no_grad():
            for p, a in zip(model.parameters(), self.avg):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, t in zip(model.parameters(), trained):
                    p.copy_(t)


def run_rows(cfg, corpus, steps, seeds, rows):
    """{label: {"overrides", "curves": [curve per seed]}} for each row, every seed on the same batches."""
    results = {}
    for label, overrides in rows:
        settings = {**BASE, **{k: v for k, v in overrides.items() if k != "ema"}}
        decay = overrides.get("ema")
        average = (lambda m: WeightAverage(m, decay)) if decay else None
        curves = []
        for seed in range(seeds):
            c = recipe_config(cfg, settings)
            c.train.seed = seed
            _, curve = short_run(c, corpus, steps, max(steps // 8, 1), average=average)
            curves.append(curve)
            print(f"  {label}, seed {seed}: best dev perplexity {min(curve['dev_ppl']):.2f}, last "
                  f"{curve['dev_ppl'][-1]:.2f}, {curve['time'][-1] / len(curve['time']):.2f} s/step", flush=True)
        results[label] = {"overrides": overrides, "curves": curves}
    return results


def summary(curves):
    """(mean, min, max) of the best dev perplexity over seeds, and the mean of the last."""
    best = [min(c["dev_ppl"]) for c in curves]
    return float(np.mean(best)), min(best), max(best), float(np.mean([c["dev_ppl"][-1] for c in curves]))


def write_table(results, cfg, args, path):
    first = summary(next(iter(results.values()))["curves"])[0]
    lines = ["# Regulariser study", "",
             f"Command: `python main.py experiment regularizers --steps {args.steps} --seeds {args.seeds} "
             f"--limit-poems {cfg.data.limit_poems}` (characters only; E {BASE['embed_dim']}, H "
             f"{BASE['hidden_size']}, L {BASE['num_layers']}, weight tying, Adam lr {BASE['lr']}, batch "
             f"{cfg.train.batch_size}, clip {cfg.train.clip}; the first {cfg.data.limit_poems} train poems, "
             f"{args.steps * cfg.train.batch_size / max(cfg.data.limit_poems, 1):.1f} epochs; dev perplexity on the "
             f"first {DEV_POEMS} dev poems every {max(args.steps // 8, 1)} steps; seeds 0-{args.seeds - 1}, each "
             "seed's runs on the same batches).", "",
             "| variant | flags | best dev perplexity, mean over seeds | range | vs the shipped recipe | "
             "last dev perplexity (mean) | train loss (last 20 steps) |", "|---|---|---|---|---|---|---|"]
    for label, r in results.items():
        mean, lo, hi, last = summary(r["curves"])
        loss = np.mean([np.mean(c["loss"][-20:]) for c in r["curves"]])
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in r["overrides"].items() if k != "ema")
        if "ema" in r["overrides"]:
            flags += f" (weight average {r['overrides']['ema']}, this study only)"
        lines.append(f"| {label} | {flags.strip() or '(the shipped flags)'} | {mean:.2f} | {lo:.2f}-{hi:.2f} | "
                     f"{mean / first - 1:+.1%} | {last:.2f} | {loss:.3f} |")
    lines += ["", "Figure: `figures/regularizer_curves.png` (dev perplexity against step, seed 0)."]
    fileio.write_text(path, "\n".join(lines) + "\n")


def cmd_regularizers(rest):
    """python main.py experiment regularizers [--steps N] [--seeds N] [--rows 0,1,...] [--limit-poems N]"""
    parser = make_parser("main.py experiment regularizers", __doc__.split("\n\n")[0], ["data", "train"],
                         only={"data_dir", "limit_poems", "batch_size", "eval_batch_size", "device", "use_gpu",
                               "figures_dir", "precision"})
    parser.add_argument("--steps", type=int, default=500, help="training steps of each run (default: 500)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds of each row (default: 2)")
    parser.add_argument("--rows", default="", help=f"comma-separated row numbers 0-{len(ROWS) - 1} (default: all)")
    parser.add_argument("--docs-dir", default="docs", help="where regularizer_study.md goes (default: docs)")
    parser.add_argument("--overwrite", action="store_true", help="replace the study's Markdown and figure")
    base = Config()
    base.data.limit_poems = 1000
    args = parser.parse_args(rest)
    cfg = check_config(config_from_args(args, base))
    rows = [k.strip() for k in args.rows.split(",") if k.strip()] if args.rows else [str(k) for k in range(len(ROWS))]
    if not rows or any(not k.isdigit() or int(k) >= len(ROWS) for k in rows):
        raise UserError(f"--rows: comma-separated row numbers 0-{len(ROWS) - 1}")
    if not 1 <= args.steps <= 10 ** 6 or not 1 <= args.seeds <= 100:
        raise UserError("--steps in 1-1000000, --seeds in 1-100")
    doc = os.path.join(args.docs_dir, "regularizer_study.md")
    figure = os.path.join(cfg.train.figures_dir or "figures", "regularizer_curves.png")
    for path in (doc, figure):
        fileio.check_target(path, args.overwrite)
    corpus = dataUtil.load_corpus(cfg)
    corpus.dev = corpus.dev[:DEV_POEMS]
    cfg.model.vocab_size = len(corpus.itos)
    print(f"experiment regularizers: {len(corpus.train)} train poems, {len(corpus.dev)} dev poems, base "
          + json.dumps(BASE), flush=True)
    results = run_rows(cfg, corpus, args.steps, args.seeds, [ROWS[int(k)] for k in rows])
    plot_dev_curves({label: r["curves"][0] for label, r in results.items()}, figure, "dev perplexity (seed 0)", False)
    write_table(results, cfg, args, doc)
    print(f"wrote {doc} and {figure}")
    return 0
