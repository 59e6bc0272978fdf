"""The studies' command line (`python main.py experiment init|optim|recipe|regularizers|rerank|rhyme|keywords|
gelv|form`) and the training studies init, optim and recipe; the others live in studies/regularizer_study.py,
rerank_study.py, studies/rhyme_study.py, studies/keywords_study.py, studies/gelv_study.py and studies/form_study.py.

init:  (1) the three zero-initialisation cases, trained 50 steps, measured: share of parameters still exactly
       zero, distinct rows (to 1e-6) of the embedding and of each gate block of W, spread of row norms;
       (2) normal (std 1/sqrt(n_in)), xavier_normal, xavier_uniform and PyTorch's default, trained with SGD on
       the same budget: train loss and dev perplexity curves, and gradient norms per layer over the first steps.
optim: SGD, momentum, Nesterov, Adagrad, Adadelta, Adam, AdamW, RMSprop, each at the learning rate a bracketing
       sweep picks (rates on the 1-3-10 lattice, each trained the full budget and scored by its best dev
       perplexity; the grid widens until the best rate has a worse one on both sides), then that rate with
       more seeds: mean and spread of best dev perplexity, steps to a common target, seconds per step, and
       where the sweep's choice and the ranking settle; curves against steps and wall time.

Every run uses the same data subset and, within a seed, the same batch order. Results go to figures/ and a
Markdown table in docs/. Wall-clock figures depend on the machine; everything else reproduces exactly on one.
recipe: model and training variants on the same batches for a fixed step budget.

Deliberately left out: learning-rate schedules (the studies compare optimisers at a constant rate).
"""
import contextlib
import json
import math
import os
import time

import numpy as np
import torch

import dataUtil
from common import fileio
from config import Config, UserError, make_parser, config_from_args, check_config
from model import PoetryLM
from training.loop import Diverged, TrainLoop, make_optimizer
from training.perplexity import evaluate
from training.checkpoint import pick_device

ZERO_CASES = [  # (label, embedding scheme, LSTM scheme)
    ("embedding zero, LSTM zero", "zero", "zero"),
    ("embedding zero, LSTM xavier_uniform", "zero", "xavier_uniform"),
    ("embedding default, LSTM zero", "default", "zero"),
]
INIT_SCHEMES = ["normal", "xavier_normal", "xavier_uniform", "default"]
START_RATE = {  # centre of each optimiser's first three rates: the best of an earlier 40-step sweep
    "sgd": 10.0, "momentum": 1.0, "nesterov": 1.0, "adagrad": 0.1, "adadelta": 10.0, "adam": 0.03, "adamw": 0.03,
    "rmsprop": 0.01,
}
QUICK = {"steps": 40, "seeds": 2}  # experiment optim --quick (the default: 100 steps, 3 seeds)
MAX_RATES = 8                 # rates tried per optimiser before the sweep gives up (the table then says so)
ADAMW_DECAY = 0.01            # torch's default for AdamW; with 0 it would be Adam exactly


# ----------------------------------------------------------------------------------------------------------
# one short run

def short_run(cfg, corpus, steps, eval_every, on_grads=None, average=None):
    """Train a fresh model for `steps` steps; returns (model, curve) where curve has step, loss, time, dev_ppl.
    A diverging run stops early with its last dev perplexity set to inf. average: a function of the model
    returning an object with update(model) after each step and swapped(model), a context in which dev perplexity
    is measured (the regulariser study's weight average)."""
    device = pick_device(cfg.train)
    torch.manual_seed(cfg.train.seed)
    model = PoetryLM(cfg.model).to(device)
    loop = TrainLoop(cfg, model, make_optimizer(cfg.train, model.parameters()), corpus, device, {})
    avg = average(model) if average else None
    curve = {"step": [], "loss": [], "time": [], "eval_step": [], "dev_ppl": []}
    pad, t0 = corpus.itos.index(dataUtil.PAD), time.perf_counter()
    for step in range(1, steps + 1):
        try:
            loss, _, _ = loop.advance(on_grads)
        except Diverged:
            curve["eval_step"].append(step - 1)
            curve["dev_ppl"].append(math.inf)
            return model, curve
        if avg:
            avg.update(model)
        curve["step"].append(step)
        curve["loss"].append(loss)
        curve["time"].append(time.perf_counter() - t0)
        if evaluates_at(step, steps, eval_every):
            curve["eval_step"].append(step)
            with avg.swapped(model) if avg else contextlib.nullcontext():
                curve["dev_ppl"].append(evaluate(model, corpus.dev, pad, cfg.train.eval_batch_size, device)["ppl"])
    return model, curve


def study_config(args_cfg, **model_overrides):
    """The config of one study run: the characters-only model the init, optim and recipe studies measure (no
    format inputs unless a row asks for them), with model_overrides."""
    cfg = Config.from_dict(args_cfg.to_dict())
    cfg.model.format_inputs = False
    for k, v in model_overrides.items():
        setattr(cfg.model, k, v)
    return cfg


# ----------------------------------------------------------------------------------------------------------
# measurements of a trained model (the zero-initialisation study)

def distinct_rows(m, tol=1e-6):
    """Number of distinct rows of m, rows within tol of each other counted once (greedy clustering)."""
    reps = []
    for row in m:
        if not any(np.max(np.abs(row - r)) <= tol for r in reps):
            reps.append(row)
            if len(reps) > 50:
                return f">{len(reps) - 1}"
    return str(len(reps))


def row_spread(m):
    """Coefficient of variation of the row norms (std / mean); 0 when every row has the same norm."""
    norms = np.linalg.norm(m, axis=1)
    return float(norms.std() / norms.mean()) if norms.mean() > 0 else 0.0


def symmetry_report(model, seen_ids):
    """What the seed eyeballed, as numbers: zeros per tensor, distinct rows, row-norm spread."""
    sd = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    E = sd["embed.weight"][seen_ids]                                   # rows of tokens the data uses
    layer = model.lstm.layers[0]
    W, H, D = sd["lstm.layers.0.W"], layer.hidden_size, layer.input_size
    rep = {f"zero share {name}": float(np.mean(v == 0)) for name, v in sd.items()}
    rep["distinct embedding rows"] = distinct_rows(E)
    rep["embedding row-norm spread"] = row_spread(E)
    for k, gate in enumerate("ifog"):
        rep[f"distinct rows W_x[{gate}]"] = distinct_rows(W[k * H:(k + 1) * H, :D])
    rep["W_x row-norm spread"] = row_spread(W[:, :D])
    return rep


# ----------------------------------------------------------------------------------------------------------
# the init study

def run_init(cfg, corpus, steps, out):
    seen = np.unique(np.concatenate(corpus.train))
    zero_rows = []
    for label, emb, lstm in ZERO_CASES:
        c = study_config(cfg, init_embed=emb, init_lstm=lstm)
        model, curve = short_run(c, corpus, 50, 50)
        zero_rows.append((label, symmetry_report(model, seen), curve["loss"][-1]))
        print(f"  {label}: loss after 50 steps {curve['loss'][-1]:.3f}")
    curves, norms = {}, {}
    for scheme in INIT_SCHEMES:
        c = study_config(cfg, init_embed=scheme, init_lstm=scheme)
        grad_log = []

        def log_grads(m):                              # gradient norms per tensor, first 100 steps
            if len(grad_log) < 100:
                grad_log.append({n: p.grad.norm().item() for n, p in m.named_parameters()})

        _, curves[scheme] = short_run(c, corpus, steps, max(steps // 10, 1), log_grads)
        norms[scheme] = grad_log
        print(f"  {scheme}: final loss {curves[scheme]['loss'][-1]:.3f}, dev perplexity {curves[scheme]['dev_ppl'][-1]:.1f}")
    plot_init(curves, norms, out["figures"])
    write_init_table(zero_rows, curves, norms, cfg, steps, out["doc"])
    return zero_rows, curves


def write_init_table(zero_rows, curves, norms, cfg, steps, path):
    keys = list(zero_rows[0][1])
    lines = [f"# Initialisation study", "",
             f"Command: `python main.py experiment init --steps {steps} --limit-poems {cfg.data.limit_poems}` "
             f"(SGD, lr {cfg.train.lr}, batch {cfg.train.batch_size}, model E={cfg.model.embed_dim} "
             f"H={cfg.model.hidden_size} L={cfg.model.num_layers}, seed {cfg.train.seed}).", "",
             "## Zero initialisation, after 50 steps", "",
             "| measure | " + " | ".join(r[0] for r in zero_rows) + " |", "|---" * (len(zero_rows) + 1) + "|"]
    for k in keys:
        cells = [fmt(r[1][k]) for r in zero_rows]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("| train loss at step 50 | " + " | ".join(f"{r[2]:.3f}" for r in zero_rows) + " |")
    lines += ["", f"## Non-zero schemes, {steps} steps", "",
              "| scheme | final train loss (mean of last 20 steps) | final dev perplexity | "
              "grad norm embed / LSTM W / proj, step 1 | same, mean of steps 1-100 |", "|---|---|---|---|---|"]
    for s, c in curves.items():
        g = norms[s]
        first = " / ".join(f"{g[0][n]:.3g}" for n in ("embed.weight", "lstm.layers.0.W", "proj.weight"))
        avg = " / ".join(f"{np.mean([x[n] for x in g]):.3g}" for n in ("embed.weight", "lstm.layers.0.W", "proj.weight"))
        lines.append(f"| {s} | {np.mean(c['loss'][-20:]):.3f} | {c['dev_ppl'][-1]:.1f} | {first} | {avg} |")
    lines += ["", "Figures: `figures/init_curves.png`, `figures/init_gradnorms.png`."]
    fileio.write_text(path, "\n".join(lines) + "\n")


def fmt(v):
    return f"{v:.3f}" if isinstance(v, float) else str(v)


# ----------------------------------------------------------------------------------------------------------
# the optimiser study

def lr_at(k):
    """The k-th rate of the 1-3-10 lattice (factor-of-3 steps): k = 0 -> 1, 1 -> 3, 2 -> 10, -1 -> 0.3, ..."""
    return float(f"{1 if k % 2 == 0 else 3}e{k // 2}")


def lattice_index(lr):
    k = round(2 * math.log10(lr))
    if not math.isclose(lr_at(k), lr, rel_tol=1e-9):
        raise UserError(f"learning rate {lr:g} is not on the 1-3-10 lattice")
    return k


def badness(score):
    return score if math.isfinite(score) else math.inf               # nan (diverged) ranks with inf, last


def bracket(score, centre, max_points=MAX_RATES):
    """Scores rates of the lattice, starting with centre and its two neighbours and adding one lattice step on
    the side of the best until the best has a worse rate on both sides. Returns ({lr: score} in ascending lr,
    the best lr, whether it is bracketed); it stops unbracketed after max_points rates."""
    k0 = lattice_index(centre)
    scores = {k: score(lr_at(k)) for k in (k0 - 1, k0, k0 + 1)}
    while True:
        best = min(sorted(scores), key=lambda k: badness(scores[k]))  # ties: the smaller rate
        lo, hi = min(scores), max(scores)
        if lo < best < hi or len(scores) >= max_points:
            return {lr_at(k): scores[k] for k in sorted(scores)}, lr_at(best), lo < best < hi
        new = lo - 1 if best == lo else hi + 1
        scores[new] = score(lr_at(new))


def run_score(curve):
    """A run's score: its best dev perplexity, inf when it diverged (even after a good start)."""
    return math.inf if math.isinf(curve["dev_ppl"][-1]) else min(curve["dev_ppl"])


def best_so_far(curve, step):
    """The score a run of `step` steps would have had (curves share their evaluation steps)."""
    seen = [p for s, p in zip(curve["eval_step"], curve["dev_ppl"]) if s <= step]
    return math.inf if not seen or math.isinf(seen[-1]) else min(seen)


def settled_at(choices):
    """choices: [(step, choice)] in step order; the first step from which the choice is the final one."""
    step = choices[-1][0]
    for s, c in reversed(choices):
        if c != choices[-1][1]:
            break
        step = s
    return step


def run_optim(cfg, corpus, steps, seeds, optimizers, out):
    """Per optimiser: bracket the rate (the configured seed, `steps` steps each, scored by best dev perplexity),
    then the chosen rate again with the next seeds-1 seeds. All runs share the data subset and evaluation steps."""
    t0, results = time.perf_counter(), {}
    eval_every = optim_eval_every(steps)
    for name in optimizers:
        sweep_curves = {}

        def score(lr):
            sweep_curves[lr] = short_run(optim_config(cfg, name, lr), corpus, steps, eval_every)[1]
            print(f"    {name} lr {lr:g}: {fmt_ppl(run_score(sweep_curves[lr]))}", flush=True)
            return run_score(sweep_curves[lr])

        sweep, best_lr, bracketed = bracket(score, START_RATE[name])
        curves = [sweep_curves[best_lr]] + [short_run(optim_config(cfg, name, best_lr, seed=cfg.train.seed + s),
                                                      corpus, steps, eval_every)[1] for s in range(1, seeds)]
        choice = [(s, min(sweep, key=lambda lr: badness(best_so_far(sweep_curves[lr], s))))
                  for s in eval_steps(steps, eval_every)]
        results[name] = {"lr": best_lr, "sweep": sweep, "bracketed": bracketed, "curves": curves,
                         "settled": settled_at(choice)}
        print(f"  {name}: lr {best_lr:g} of {', '.join(f'{k:g}: {v:.0f}' for k, v in sweep.items())}"
              f"{'' if bracketed else ' (NOT bracketed)'}; best dev perplexity "
              + ", ".join(f"{run_score(c):.1f}" for c in curves))
    minutes = (time.perf_counter() - t0) / 60
    plot_optim(results, out["figures"])
    write_optim_table(results, cfg, steps, seeds, minutes, out["doc"])
    return results


def optim_config(cfg, name, lr, seed=None):
    c = study_config(cfg)
    c.train.optimizer, c.train.lr = name, lr
    c.train.seed = cfg.train.seed if seed is None else seed
    if name == "adamw":
        c.train.weight_decay = ADAMW_DECAY
    return c


def evaluates_at(step, steps, every):
    """Whether a run of `steps` steps evaluating every `every` evaluates after `step`: short_run's rule."""
    return step % every == 0 or step == steps


def eval_steps(steps, every):
    """The steps short_run evaluates at."""
    return [s for s in range(1, steps + 1) if evaluates_at(s, steps, every)]


def optim_eval_every(steps):
    """The optimiser study evaluates ten times a run."""
    return max(steps // 10, 1)


def seed_scores(r):
    return [run_score(c) for c in r["curves"]]


def ranking_at(results, step):
    """Optimisers ordered by their mean over seeds of the best dev perplexity up to `step`."""
    mean = {n: np.mean([best_so_far(c, step) for c in r["curves"]]) for n, r in results.items()}
    return sorted(mean, key=lambda n: badness(mean[n]))


def kendall_tau(a, b):
    """Kendall's tau between two orderings of the same items (1 = same order, -1 = reversed)."""
    pos = {x: i for i, x in enumerate(b)}
    pairs = [(i, j) for i in range(len(a)) for j in range(i + 1, len(a))]
    agree = sum(1 if pos[a[i]] < pos[a[j]] else -1 for i, j in pairs)
    return agree / len(pairs) if pairs else 1.0


def spread(values, fmt_one="{:.1f}", missing="diverged"):
    """mean (min-max) of finite values; the count of the others said apart."""
    ok = [v for v in values if v is not None and math.isfinite(v)]
    text = fmt_one.format(np.mean(ok)) if ok else "—"
    if len(ok) > 1:
        text += f" ({fmt_one.format(min(ok))}–{fmt_one.format(max(ok))})"
    return text + (f", {len(values) - len(ok)} of {len(values)} {missing}" if len(ok) < len(values) else "")


def write_optim_table(results, cfg, steps, seeds, minutes, path):
    means = [np.mean(seed_scores(r)) for r in results.values()]
    target = max((m for m in means if math.isfinite(m)), default=math.inf)   # the worst optimiser's mean best
    final = ranking_at(results, steps)
    taus = [(s, kendall_tau(ranking_at(results, s), final)) for s in eval_steps(steps, optim_eval_every(steps))]
    lines = optim_header(results, cfg, steps, seeds, minutes, target)
    lines += [optim_row(name, r, target) for name, r in results.items()]
    lines += ["", "Where the ranking settles: the last column is the first evaluation step from which a sweep of that "
              "many steps would already have chosen the same rate (each rate's best dev perplexity up to that step). "
              "Kendall's tau between the ranking of the optimisers (by mean best dev perplexity up to the step) and "
              "the final ranking: " + ", ".join(f"step {s}: {t:.2f}" for s, t in taus) + ".", "",
              "Final ranking: " + " < ".join(final) + ".", "",
              "Figures: `figures/optim_curves.png` (mean over seeds, min–max shaded, against steps and wall time), "
              "`figures/optim_sweep.png` (best dev perplexity of the first seed against the rate)."]
    fileio.write_text(path, "\n".join(lines) + "\n")


def optim_header(results, cfg, steps, seeds, minutes, target):
    """The study's title, command, method and table head."""
    starts = ", ".join(f"{n} {START_RATE[n]:g}" for n in results)
    more_seeds = ", ".join(str(cfg.train.seed + s) for s in range(1, seeds))
    return ["# Optimiser study", "",
            f"Command: `python main.py experiment optim --steps {steps} --seeds {seeds} --limit-poems "
            f"{cfg.data.limit_poems}` (batch {cfg.train.batch_size}, model E={cfg.model.embed_dim} "
            f"H={cfg.model.hidden_size} L={cfg.model.num_layers}, clip {cfg.train.clip}, dev perplexity on the first "
            f"300 dev poems every {optim_eval_every(steps)} steps); wall time {minutes:.1f} minutes.", "",
            f"Learning rate: rates on the 1-3-10 lattice, starting from three around {starts}; "
            f"each rate trained {steps} steps (seed {cfg.train.seed}) and scored by its best dev perplexity "
            f"(a diverged run scores worst); the grid widens by one factor-of-3 step on the side of the best until "
            f"the best has a worse rate on both sides (at most {MAX_RATES} rates). The chosen rate (bold) then "
            f"trains with seeds {more_seeds} as well. AdamW with weight decay {ADAMW_DECAY}, the others without. "
            f"Steps to target: first evaluation with dev perplexity ≤ {target:.1f} (the worst optimiser's mean).", "",
            f"| optimiser | rates tried (best dev perplexity, seed {cfg.train.seed}) | best dev perplexity"
            f"{f', {seeds} seeds: mean (min–max)' if seeds > 1 else ''} | steps to target | seconds / step | "
            "sweep choice settled at step |",
            "|---|---|---|---|---|---|"]


def optim_row(name, r, target):
    """One optimiser's row: rates tried (chosen bold), best dev perplexity, steps to target, seconds/step."""
    tried = ", ".join((f"**{lr:g}**" if lr == r["lr"] else f"{lr:g}") + f": {fmt_ppl(p)}"
                      for lr, p in r["sweep"].items())
    reach = [next((s for s, p in zip(c["eval_step"], c["dev_ppl"]) if p <= target), None) for c in r["curves"]]
    per_step = [c["time"][-1] / len(c["time"]) for c in r["curves"]]
    return (f"| {name} | {tried}{'' if r['bracketed'] else ' (not bracketed)'} | {spread(seed_scores(r))} | "
            f"{spread(reach, '{:.0f}', 'never')} | {spread(per_step, '{:.3f}')} | {r['settled']} |")


def fmt_ppl(p):
    return f"{p:.1f}" if math.isfinite(p) else "diverged"


# ----------------------------------------------------------------------------------------------------------
# plots and files

def plot_init(curves, norms, figures_dir):
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for s, c in curves.items():
        a.plot(*smooth(c["step"], c["loss"]), label=s, lw=1)
        b.plot(c["eval_step"], c["dev_ppl"], marker="o", ms=3, label=s)
    a.set(xlabel="step", ylabel="train loss (smoothed)", title="train loss")
    b.set(xlabel="step", ylabel="dev perplexity", yscale="log", title="dev perplexity")
    finish(plt, fig, (a, b), os.path.join(figures_dir, "init_curves.png"))
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, n in zip(axes, ("embed.weight", "lstm.layers.0.W", "proj.weight")):
        for s, g in norms.items():
            ax.plot(range(1, len(g) + 1), [x[n] for x in g], label=s, lw=1)
        ax.set(xlabel="step", ylabel="gradient norm", yscale="log", title=n)
    finish(plt, fig, axes, os.path.join(figures_dir, "init_gradnorms.png"))


def plot_optim(results, figures_dir):
    """Mean over seeds with the min-max band, against steps and seconds; and each sweep's score against lr."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for name, r in results.items():
        label, cs = f"{name} (lr {r['lr']:g})", r["curves"]
        if any(len(c["dev_ppl"]) != len(cs[0]["dev_ppl"]) for c in cs):
            cs = cs[:1]                                   # a seed diverged: its curves do not align; the first only
        loss = np.array([smooth(c["step"], c["loss"])[1] for c in cs])
        ppl = np.array([c["dev_ppl"] for c in cs])
        x_loss, t = smooth(cs[0]["step"], cs[0]["loss"])[0], np.mean([c["time"] for c in cs], axis=0)
        t_loss, t_eval = [t[s - 1] for s in x_loss], [t[s - 1] for s in cs[0]["eval_step"]]
        for ax, x, y in ((axes[0, 0], x_loss, loss), (axes[0, 1], t_loss, loss),
                         (axes[1, 0], cs[0]["eval_step"], ppl), (axes[1, 1], t_eval, ppl)):
            line, = ax.plot(x, y.mean(axis=0), label=label, lw=1)
            ax.fill_between(x, y.min(axis=0), y.max(axis=0), color=line.get_color(), alpha=0.2)
    axes[0, 0].set(xlabel="step", ylabel="train loss (smoothed)")
    axes[0, 1].set(xlabel="seconds", ylabel="train loss (smoothed)")
    axes[1, 0].set(xlabel="step", ylabel="dev perplexity", yscale="log")
    axes[1, 1].set(xlabel="seconds", ylabel="dev perplexity", yscale="log")
    finish(plt, fig, axes.ravel(), os.path.join(figures_dir, "optim_curves.png"))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in results.items():
        finite = [(lr, p) for lr, p in r["sweep"].items() if math.isfinite(p)]
        line, = ax.plot(*zip(*finite), marker="o", ms=3, label=name)
        ax.plot([r["lr"]], [r["sweep"][r["lr"]]], marker="*", ms=12, color=line.get_color())
    ax.set(xlabel="learning rate", ylabel="best dev perplexity (first seed)", xscale="log", yscale="log",
           title="rate sweeps (star: chosen; diverged rates not drawn)")
    finish(plt, fig, [ax], os.path.join(figures_dir, "optim_sweep.png"))


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def finish(plt, fig, axes, path):
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fileio.save_figure(fig, path, dpi=110)
    plt.close(fig)


def smooth(x, y, k=10):
    """Running mean of y over k points, with the x of each window's last point (no edge artifacts)."""
    if len(y) < k:
        return list(x), list(y)
    return list(x[k - 1:]), np.convolve(np.asarray(y, float), np.ones(k) / k, mode="valid").tolist()


# ----------------------------------------------------------------------------------------------------------
# the recipe study

RECIPES = [  # (label, overrides of ModelConfig / TrainConfig fields); the first row is the seed's recipe
    ("seed recipe (no dropout, constant lr)", {}),
    ("dropout 0.2 (embed, layers, output)", {"dropout": 0.2}),
    ("dropout 0.1 (embed, layers, output)", {"dropout": 0.1}),
    ("weight tying", {"tie_weights": True}),
    ("cosine schedule, 100 warm-up steps", {"lr_schedule": "cosine", "warmup_steps": 100}),
    ("lr 2e-3", {"lr": 2e-3}),
    ("chosen: weight tying + dropout 0.2 + lr 2e-3", {"tie_weights": True, "dropout": 0.2, "lr": 2e-3}),
    # larger models for the second shipped pair (rows 7-9), each with the chosen recipe
    ("E 192 H 384 L 2, tying, dropout 0.25, lr 2e-3",
     {"embed_dim": 192, "hidden_size": 384, "tie_weights": True, "dropout": 0.25, "lr": 2e-3}),
    ("E 256 H 512 L 2, tying, dropout 0.3, lr 2e-3",
     {"embed_dim": 256, "hidden_size": 512, "tie_weights": True, "dropout": 0.3, "lr": 2e-3}),
    ("E 256 H 384 L 3, tying, dropout 0.3, lr 2e-3",
     {"embed_dim": 256, "hidden_size": 384, "num_layers": 3, "tie_weights": True, "dropout": 0.3, "lr": 2e-3}),
]


def recipe_config(cfg, overrides):
    c = study_config(cfg)
    for k, v in overrides.items():
        setattr(c.model if hasattr(c.model, k) else c.train, k, v)
    return c


def run_recipe(cfg, corpus, steps, variants, out):
    """Each variant trained `steps` steps on the same batches from the same seed; dev perplexity curves."""
    results = {}
    for label, overrides in variants:
        c = recipe_config(cfg, overrides)
        c.train.max_steps = steps                           # the cosine schedule spans the study's budget
        _, curve = short_run(c, corpus, steps, max(steps // 8, 1))
        results[label] = {"overrides": overrides, "curve": curve}
        print(f"  {label}: dev perplexity {curve['dev_ppl'][-1]:.1f} (best {min(curve['dev_ppl']):.1f}), "
              f"train loss {np.mean(curve['loss'][-20:]):.3f}, {curve['time'][-1] / len(curve['time']):.2f} s/step")
    plot_recipe(results, out["figures"])
    write_recipe_table(results, cfg, steps, out["doc"])
    return results


def write_recipe_table(results, cfg, steps, path):
    seed_ppl = next(iter(results.values()))["curve"]["dev_ppl"][-1]
    lines = ["# Recipe study", "",
             f"Command: `python main.py experiment recipe --steps {steps}` (full corpus, {cfg.train.batch_size} "
             f"poems a batch, Adam lr {cfg.train.lr}, model E={cfg.model.embed_dim} H={cfg.model.hidden_size} "
             f"L={cfg.model.num_layers}, clip {cfg.train.clip}, seed {cfg.train.seed}; every variant sees the same "
             f"batches; dev perplexity on a fixed subset of the dev split).", "",
             "| variant | flags | dev perplexity at the end | vs seed | best | train loss (last 20 steps) | "
             "seconds / step |", "|---|---|---|---|---|---|---|"]
    for label, r in results.items():
        c = r["curve"]
        flags = " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}") for k, v in r["overrides"].items())
        lines.append(f"| {label} | {flags or '(defaults)'} | {c['dev_ppl'][-1]:.1f} | "
                     f"{c['dev_ppl'][-1] / seed_ppl - 1:+.1%} | {min(c['dev_ppl']):.1f} | "
                     f"{np.mean(c['loss'][-20:]):.3f} | {c['time'][-1] / len(c['time']):.2f} |")
    lines += ["", "Figure: `figures/recipe_curves.png` (dev perplexity against step)."]
    fileio.write_text(path, "\n".join(lines) + "\n")


def plot_recipe(results, figures_dir):
    plot_dev_curves({label: r["curve"] for label, r in results.items()},
                    os.path.join(figures_dir, "recipe_curves.png"))


def plot_dev_curves(curves, path, ylabel="dev perplexity", log=True):
    """curves {label: a short_run curve}: dev perplexity against step, one line each (the recipe and regulariser
    studies' figures)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, c in curves.items():
        ax.plot(c["eval_step"], c["dev_ppl"], marker="o", ms=3, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    finish(plt, fig, [ax], path)



# ----------------------------------------------------------------------------------------------------------
# command line

STUDY_HELP = {
    "init": "the initialisation study: the three zero-initialisation cases (what stays zero, distinct rows), then "
            "normal, xavier_normal, xavier_uniform and PyTorch's default trained with SGD on one budget (curves, "
            "gradient norms); a small model on 3,000 poems by default. Writes docs/init_study.md and "
            "figures/init_*.png",
    "optim": "the optimiser study: SGD, momentum, Nesterov, Adagrad, Adadelta, Adam, AdamW, RMSprop, each at the "
             "rate a bracketing sweep on the 1-3-10 lattice picks, then more seeds; a small model on 3,000 poems "
             "by default. Writes docs/optim_study.md and figures/optim_*.png",
    "recipe": "the recipe study: model and training variants (dropout, weight tying, lr, schedule) of the default "
              "model on the full corpus, on the same batches for a fixed step budget. Writes docs/recipe_study.md "
              "and figures/recipe_curves.png",
}
STUDY_FIGURES = {"init": ("init_curves.png", "init_gradnorms.png"), "optim": ("optim_curves.png", "optim_sweep.png"),
                 "recipe": ("recipe_curves.png",)}
COMMON_FLAGS = {"data_dir", "raw_dir", "limit_poems", "embed_dim", "hidden_size", "num_layers", "batch_size",
                "eval_batch_size", "seed", "device", "use_gpu", "figures_dir", "precision"}
STUDY_FLAGS = {"init": COMMON_FLAGS | {"lr"}, "optim": COMMON_FLAGS, "recipe": COMMON_FLAGS | {"lr", "dropout"}}


def cmd_experiment(rest):
    """python main.py experiment init|optim|recipe [--steps N] [--limit-poems N] [model/train flags]."""
    if rest and rest[0] in ("-h", "--help"):
        print(cmd_experiment.__doc__ + "\n\n" + __doc__)
        return 0
    if rest and rest[0] == "rerank":
        from studies import rerank_study
        return rerank_study.cmd_rerank(rest[1:])
    if rest and rest[0] == "rhyme":
        from studies import rhyme_study
        return rhyme_study.cmd_rhyme(rest[1:])
    if rest and rest[0] == "keywords":
        from studies import keywords_study
        return keywords_study.cmd_keywords(rest[1:])
    if rest and rest[0] == "form":
        from studies import form_study
        return form_study.cmd_form(rest[1:])
    if rest and rest[0] == "gelv":
        from studies import gelv_study
        return gelv_study.cmd_gelv(rest[1:])
    if not rest or rest[0] not in ("init", "optim", "recipe"):
        raise UserError("usage: python main.py experiment init|optim|recipe|regularizers|rerank|rhyme|keywords|gelv|form "
                        "[--steps N] [--limit-poems N] ...")
    which = rest[0]
    parser = make_parser(f"main.py experiment {which}", STUDY_HELP[which], ["data", "model", "train"],
                         only=STUDY_FLAGS[which])
    steps = {"init": 300, "optim": 100, "recipe": 400}[which]
    parser.add_argument("--steps", type=int, default=steps, help=f"training steps of each run (default: {steps})")
    if which == "optim":
        parser.add_argument("--seeds", type=int, default=3, help="seeds of each chosen rate (default: 3)")
        parser.add_argument("--quick", action="store_true", help=f"{QUICK['steps']} steps, {QUICK['seeds']} seeds")
        parser.add_argument("--optimizers", default=",".join(START_RATE),
                            help=f"comma-separated (default: {','.join(START_RATE)})")
    if which == "recipe":
        parser.add_argument("--variants", default="", help="comma-separated row numbers of RECIPES, 0 = the seed's "
                            f"recipe, 0-{len(RECIPES) - 1} (default: all)")
    parser.add_argument("--docs-dir", default="docs", help=f"where {which}_study.md goes (default: docs)")
    parser.add_argument("--overwrite", action="store_true", help="replace the study's Markdown and figures where "
                        "they exist (the committed docs/ and figures/ are written only then)")
    parser.set_defaults(seeds=3, quick=False, optimizers=",".join(START_RATE), variants="")
    base = Config()
    base.model.format_inputs = False                  # the studies measure the characters-only model
    if which != "recipe":                             # the init and optim studies use a small, fast setting
        base.data.limit_poems, base.train.batch_size, base.train.eval_batch_size = 3000, 32, 512
        base.model.embed_dim, base.model.hidden_size, base.model.num_layers = 64, 128, 1
        base.train.optimizer, base.train.lr = "sgd", 1.0
    if which == "optim":                              # ~48 runs: small evaluation batches halve their cost here
        base.train.eval_batch_size = 64
    from config import shown_default
    for action in parser._actions:                    # --help shows the study's own defaults
        if "." in (action.dest or "") and action.help:
            section, name = action.dest.split(".", 1)
            action.help = action.help.rsplit(" (default: ", 1)[0] + \
                f" (default: {shown_default(getattr(getattr(base, section), name))})".replace("%", "%%")
    args = parser.parse_args(rest[1:])
    cfg = check_config(config_from_args(args, base))
    optimizers = [o for o in args.optimizers.split(",") if o]
    if which == "optim" and (not optimizers or any(o not in START_RATE for o in optimizers)):
        raise UserError(f"--optimizers: one or more of {', '.join(START_RATE)}, comma-separated")
    if args.quick:
        args.steps, args.seeds = QUICK["steps"], QUICK["seeds"]
    if args.steps < 1 or args.seeds < 1:
        raise UserError("--steps and --seeds must be at least 1")
    if which == "recipe":
        rows = [k.strip() for k in args.variants.split(",") if k.strip()] if args.variants else range(len(RECIPES))
        if any(not str(k).isdigit() or int(k) >= len(RECIPES) for k in rows) or not rows:
            raise UserError(f"--variants: comma-separated row numbers 0-{len(RECIPES) - 1} of RECIPES")
    for path in [os.path.join(args.docs_dir, f"{which}_study.md")] + [
            os.path.join(cfg.train.figures_dir or "figures", name) for name in STUDY_FIGURES[which]]:
        fileio.check_target(path, args.overwrite)     # before any work: nothing committed is replaced unasked
    corpus = dataUtil.load_corpus(cfg)
    corpus.dev = corpus.dev[:300]                     # a fixed dev subset keeps each evaluation short
    cfg.model.vocab_size = len(corpus.itos)
    print(f"experiment {which}: {len(corpus.train)} train poems, {len(corpus.dev)} dev poems, config "
          + json.dumps({k: cfg.to_dict()[k] for k in ("model", "train")}))
    out = {"figures": cfg.train.figures_dir or "figures", "doc": os.path.join(args.docs_dir, f"{which}_study.md")}
    if which == "init":
        run_init(cfg, corpus, args.steps, out)
    elif which == "recipe":
        run_recipe(cfg, corpus, args.steps, [RECIPES[int(k)] for k in rows], out)
    else:
        run_optim(cfg, corpus, args.steps, args.seeds, optimizers, out)
    print(f"wrote {out['doc']} and figures in {out['figures']}/")
    return 0
