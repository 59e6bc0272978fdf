"""Command line of the project: train, generate, evaluate.

    python main.py train [--max-minutes 60] [--resume checkpoints/last.pt] ...
    python main.py generate --start 日 [--num 4] [--temperature 0.6] [--top-k 20] [--greedy]
    python main.py evaluate [--ckpt checkpoints/best.pt] [--samples 20]
    python main.py experiment init|optim [--steps N] [--limit-poems N]

Training: mean cross-entropy over real target tokens only (padding is masked; it only ever follows a poem, so a
poem's predictions never see it), dev perplexity exp(total NLL / real target tokens) every pp_every steps,
early stopping after `tolerance` evaluations without a new best, atomic checkpoints (best.pt, epoch_N.pt,
last.pt — also on Ctrl-C / SIGTERM) that hold everything needed to resume exactly or to generate.
"""
import argparse
import json
import math
import os
import signal
import sys
import time

import numpy as np
import torch

from config import Config, UserError, check_config, make_parser, config_from_args, run_cli
import dataUtil
import decoding
from model import PoetryLM, masked_nll

SAMPLE_STARTS = "日红山夜湖海月"
CKPT_FORMAT = 1
PROGRESS_KEYS = ("step", "epoch", "batch_in_epoch", "best_ppl", "bad_evals")


# ----------------------------------------------------------------------------------------------------------
# small helpers

def pick_device(tcfg):
    if tcfg.device:
        if tcfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {tcfg.device} asked for, but CUDA is not available here; use --device cpu")
        return torch.device(tcfg.device)
    return torch.device("cuda" if tcfg.use_gpu and torch.cuda.is_available() else "cpu")


def make_optimizer(tcfg, params):
    """The optimiser named by tcfg.optimizer, at tcfg.lr."""
    lr, wd = tcfg.lr, tcfg.weight_decay
    makers = {
        "sgd": lambda: torch.optim.SGD(params, lr=lr, weight_decay=wd),
        "momentum": lambda: torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd),
        "nesterov": lambda: torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd),
        "adagrad": lambda: torch.optim.Adagrad(params, lr=lr, weight_decay=wd),
        "adadelta": lambda: torch.optim.Adadelta(params, lr=lr, weight_decay=wd),
        "adam": lambda: torch.optim.Adam(params, lr=lr, weight_decay=wd),
        "adamw": lambda: torch.optim.AdamW(params, lr=lr, weight_decay=wd),
        "rmsprop": lambda: torch.optim.RMSprop(params, lr=lr, weight_decay=wd),
    }
    return makers[tcfg.optimizer]()          # the name was checked by config.check_config


# ----------------------------------------------------------------------------------------------------------
# checkpoints

def save_checkpoint(path, model, optimizer, cfg, itos, progress):
    """Atomic torch.save of a dict of state_dicts, plain config, vocabulary, progress and RNG state."""
    ckpt = {
        "format": CKPT_FORMAT, "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "config": cfg.to_dict(), "itos": list(itos), **progress,
        "rng": {"torch": torch.get_rng_state()},
    }
    tmp = path + ".tmp"
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def load_checkpoint(path):
    """The checkpoint dict; a missing, truncated or foreign file is a UserError (never code execution)."""
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} not found; train first (python main.py train) or pass --ckpt PATH")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:       # truncated zip, pickle with code, not a torch file at all ...
        raise UserError(f"{path} is not a readable checkpoint ({type(e).__name__}); pass a file written by train")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT or "model" not in ckpt:
        raise UserError(f"{path} is not a checkpoint of this project; pass a file written by main.py train")
    return ckpt


def model_from_checkpoint(ckpt, device):
    """(model in eval mode, config, itos) rebuilt from the checkpoint alone."""
    try:
        cfg = Config.from_dict(ckpt["config"])
        model = PoetryLM(cfg.model)
        model.load_state_dict(ckpt["model"])
        return model.to(device).eval(), cfg, list(ckpt["itos"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"checkpoint does not hold a model of this project ({type(e).__name__}); retrain it")


# ----------------------------------------------------------------------------------------------------------
# evaluation and sampling

@torch.no_grad()
def evaluate(model, poems, pad_id, batch_size, device):
    """Perplexity over a whole split, exp(total NLL / real target tokens), plus the batch-mean figure
    mean_b exp(NLL_b / n_b) that some peers report (it weighs short batches as much as long ones)."""
    was_training = model.training
    model.eval()
    total, count, batch_ppls = 0.0, 0, []
    for idx in dataUtil.length_batches([len(p) for p in poems], batch_size):
        inputs, targets = dataUtil.pad_batch([poems[i] for i in idx], pad_id)
        logits, _ = model(torch.from_numpy(inputs).to(device))
        nll, n = masked_nll(logits, torch.from_numpy(targets).to(device), pad_id)
        total, count = total + nll.item(), count + n
        batch_ppls.append(math.exp(nll.item() / n))
    model.train(was_training)
    return {"ppl": math.exp(total / count), "nll": total / count, "tokens": count,
            "batch_mean_ppl": float(np.mean(batch_ppls))}


# ----------------------------------------------------------------------------------------------------------
# training

class Stopper:
    """Turns Ctrl-C / SIGTERM into a flag the training loop checks after each step (last.pt is then saved)."""

    def __init__(self):
        self.stop = False
        self.old = {s: signal.signal(s, self.handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def handle(self, signum, frame):
        self.stop = True

    def restore(self):
        for s, h in self.old.items():
            signal.signal(s, h)


def train(cfg, ckpt=None):
    """Train with early stopping on dev perplexity, continuing from ckpt when given (exactly: weights,
    optimiser, step, position in the epoch, best perplexity, early-stop counter, RNG). Returns the progress."""
    tcfg = cfg.train
    device = pick_device(tcfg)
    torch.manual_seed(tcfg.seed)
    corpus = dataUtil.load_corpus(cfg)
    cfg.model.vocab_size = len(corpus.itos)
    model = PoetryLM(cfg.model).to(device)
    optimizer = make_optimizer(tcfg, model.parameters())
    progress = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_ppl": math.inf, "bad_evals": 0}
    if ckpt is not None:
        progress = resume_into(ckpt, tcfg.resume, model, optimizer, corpus.itos)
    os.makedirs(tcfg.ckpt_dir, exist_ok=True)
    if ckpt is None:                                   # a new run starts a new metrics file
        open(os.path.join(tcfg.ckpt_dir, "metrics.jsonl"), "w").close()
    print("config " + json.dumps(cfg.to_dict(), ensure_ascii=False))
    print(f"device {device}; {sum(p.numel() for p in model.parameters()):,} parameters; "
          f"{len(corpus.train)} train / {len(corpus.dev)} dev poems")
    loop = TrainLoop(cfg, model, optimizer, corpus, device, progress)
    return loop.run()


def resume_into(ckpt, path, model, optimizer, itos):
    """Load a checkpoint's weights, optimiser state and RNG; returns its progress dict."""
    if ckpt["itos"] != list(itos):
        raise UserError(f"{path} was trained on another vocabulary; prepare with its data settings or start anew")
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        return {k: ckpt[k] for k in PROGRESS_KEYS}
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot resume from {path} ({type(e).__name__}): keep the model and optimiser it had")


class TrainLoop:
    """The training loop's state and its pieces: step, evaluate, sample, checkpoint, plot."""

    def __init__(self, cfg, model, optimizer, corpus, device, progress):
        self.cfg, self.model, self.opt, self.corpus, self.device = cfg, model, optimizer, corpus, device
        self.p = dict(progress)
        self.pad_id = corpus.itos.index(dataUtil.PAD)
        self.lengths = [len(x) for x in corpus.train]
        self.metrics_path = os.path.join(cfg.train.ckpt_dir, "metrics.jsonl")
        self.sample_gen = torch.Generator().manual_seed(cfg.train.seed)   # sampling never moves training RNG

    def epoch_batches(self, epoch):
        """The epoch's batch order, fixed by (seed, epoch) so that a resumed run sees the same data."""
        return dataUtil.length_batches(self.lengths, self.cfg.train.batch_size,
                                       np.random.default_rng([self.cfg.train.seed, epoch]))

    def run(self):
        from tqdm import tqdm
        tcfg, t0, stopper = self.cfg.train, time.time(), Stopper()
        reason = ""
        bar = tqdm(total=tcfg.max_steps or None, initial=self.p["step"], unit="step", dynamic_ncols=True,
                   mininterval=0.5 if sys.stderr.isatty() else 60)
        try:
            while not reason and self.p["epoch"] < tcfg.epoch:
                batches = self.epoch_batches(self.p["epoch"])
                while not reason and self.p["batch_in_epoch"] < len(batches):
                    loss, ntok, dt = self.train_step(batches[self.p["batch_in_epoch"]])
                    self.p["batch_in_epoch"] += 1
                    self.p["step"] += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", dev_ppl=f"{self.p['best_ppl']:.1f}", tok_s=f"{ntok / dt:.0f}",
                                    epoch=self.p["epoch"], refresh=False)
                    self.log({"step": self.p["step"], "epoch": self.p["epoch"], "loss": loss, "tok_s": ntok / dt,
                              "time": time.time() - t0})
                    reason = self.after_step(t0, stopper, bar)
                if self.p["batch_in_epoch"] == len(batches):
                    self.end_epoch()
        finally:                                   # a Diverged error leaves through here: no last.pt
            stopper.restore()
            bar.close()
        reason = reason or "epochs done"
        self.save("last.pt")
        print(f"stopped: {reason} at step {self.p['step']}; best dev perplexity {self.p['best_ppl']:.2f}")
        return dict(self.p, reason=reason)

    def train_step(self, idx, on_grads=None):
        """One optimiser step on the poems idx; on_grads(model) sees the raw gradients before clipping."""
        t = time.time()
        inputs, targets = dataUtil.pad_batch([self.corpus.train[i] for i in idx], self.pad_id)
        logits, _ = self.model(torch.from_numpy(inputs).to(self.device))
        nll, n = masked_nll(logits, torch.from_numpy(targets).to(self.device), self.pad_id)
        loss = nll / n
        if not torch.isfinite(loss):
            raise Diverged(f"loss became {loss.item()} at step {self.p['step'] + 1}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if on_grads is not None:
            on_grads(self.model)
        if self.cfg.train.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.clip)
        self.opt.step()
        return loss.item(), n, time.time() - t

    def after_step(self, t0, stopper, bar):
        """Evaluate, sample and check the stop conditions; returns a stop reason or ''."""
        tcfg, step = self.cfg.train, self.p["step"]
        if step % tcfg.pp_every == 0 and self.evaluate_dev(bar):
            return "early stop"
        if tcfg.gen_every and step % tcfg.gen_every == 0:
            self.print_samples(bar)
        if stopper.stop:
            return "interrupted"
        if tcfg.max_steps and step >= tcfg.max_steps:
            return "max steps"
        if tcfg.max_minutes and time.time() - t0 >= tcfg.max_minutes * 60:
            return "max minutes"
        return ""

    def evaluate_dev(self, bar):
        """Dev perplexity; saves best.pt on a new best; True when early stopping is due."""
        res = evaluate(self.model, self.corpus.dev, self.pad_id, self.cfg.train.eval_batch_size, self.device)
        if res["ppl"] < self.p["best_ppl"]:
            self.p["best_ppl"], self.p["bad_evals"] = res["ppl"], 0
            self.save("best.pt")
        else:
            self.p["bad_evals"] += 1
        self.log({"step": self.p["step"], "dev_ppl": res["ppl"], "dev_batch_mean_ppl": res["batch_mean_ppl"]})
        bar.write(f"step {self.p['step']}: dev perplexity {res['ppl']:.2f} (best {self.p['best_ppl']:.2f}, "
                  f"{self.p['bad_evals']}/{self.cfg.train.tolerance} without improvement)")
        self.plot()
        return self.p["bad_evals"] >= self.cfg.train.tolerance

    def print_samples(self, bar):
        stoi = {w: i for i, w in enumerate(self.corpus.itos)}
        prefixes = [[stoi[c]] for c in SAMPLE_STARTS if c in stoi]
        self.model.eval()
        poems = decoding.sample(self.model, self.corpus.itos, prefixes, self.cfg.gen, self.device, self.sample_gen)
        self.model.train()
        bar.write(f"step {self.p['step']} samples: " + " | ".join(poems))

    def end_epoch(self):
        self.p["epoch"] += 1
        self.p["batch_in_epoch"] = 0
        if self.cfg.train.save_every and self.p["epoch"] % self.cfg.train.save_every == 0:
            self.save(f"epoch_{self.p['epoch']}.pt")

    def save(self, name):
        save_checkpoint(os.path.join(self.cfg.train.ckpt_dir, name), self.model, self.opt, self.cfg,
                        self.corpus.itos, self.p)

    def log(self, record):
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def plot(self):
        plot_metrics(self.metrics_path, self.cfg.train.figures_dir)


class Diverged(Exception):
    """The loss became NaN or infinite."""


def plot_metrics(metrics_path, figures_dir):
    """figures/loss.png (train loss) and figures/perplexity.png (dev perplexity) against step."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [json.loads(line) for line in open(metrics_path)]
    os.makedirs(figures_dir, exist_ok=True)
    for key, name, label in (("loss", "loss.png", "train loss (nats/token)"),
                             ("dev_ppl", "perplexity.png", "dev perplexity")):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(*zip(*pts), lw=0.8)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(os.path.join(figures_dir, name), dpi=120)
        plt.close(fig)


# ----------------------------------------------------------------------------------------------------------
# command line

def cmd_train(rest):
    args = make_parser("main.py train", "train the poetry LSTM", ["data", "model", "train"]).parse_args(rest)
    resume = vars(args).get("train.resume")
    ckpt = load_checkpoint(resume) if resume else None
    cfg = config_from_args(args, Config.from_dict(ckpt["config"]) if ckpt else Config())   # flags given win
    check_config(cfg)
    try:
        train(cfg, ckpt)
    except Diverged as e:
        print(f"error: {e}; training stopped, best.pt is kept. Lower --lr or --clip.", file=sys.stderr)
        return 1
    return 0


def cmd_generate(rest):
    parser = make_parser("main.py generate", "write poems from a checkpoint", ["gen"])
    parser.add_argument("--max-len", dest="gen.max_gen_len", type=int, default=argparse.SUPPRESS,
                        help="same as --max-gen-len")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(rest)
    gcfg = check_config(config_from_args(args)).gen
    device = torch.device(args.device)
    model, _, itos = model_from_checkpoint(load_checkpoint(gcfg.ckpt), device)
    for k, poem in enumerate(decoding.poems_for(model, itos, gcfg, device)):
        print(("" if k == 0 else "\n") + dataUtil.format_poem(poem))
    return 0


def cmd_evaluate(rest):
    parser = make_parser("main.py evaluate", "perplexity of a checkpoint on dev and test", [])
    parser.add_argument("--ckpt", default="checkpoints/best.pt")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--raw-dir", default="")
    parser.add_argument("--samples", type=int, default=0, help="also measure N generated poems per start and mode")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(rest)
    device = torch.device(args.device)
    model, cfg, itos = model_from_checkpoint(load_checkpoint(args.ckpt), device)
    cfg.data.data_dir, cfg.data.raw_dir, cfg.data.limit_poems = args.data_dir, args.raw_dir, 0
    corpus = dataUtil.load_corpus(cfg)        # with the checkpoint's data settings
    if corpus.itos != itos:
        raise UserError(f"{args.ckpt} was trained on another vocabulary than the prepared corpus")
    pad_id = itos.index(dataUtil.PAD)
    for split in ("dev", "test"):
        r = evaluate(model, getattr(corpus, split), pad_id, 256, device)
        padded = math.exp(r["nll"] * r["tokens"] / (len(getattr(corpus, split)) * 125))
        print(f"{split:<5} perplexity {r['ppl']:.3f}  (NLL {r['nll']:.4f} nats over {r['tokens']} real tokens; "
              f"batch-mean of exp(batch loss) {r['batch_mean_ppl']:.3f}; with every poem padded to 125 and the "
              f"pads predicted perfectly, as a pads-included figure would count them, {padded:.3f})")
    if args.samples > 0:
        print_generation_metrics(model, corpus, args.samples, args.seed, device)
    return 0


GEN_MODES = [  # (label, GenConfig overrides, form the metrics judge against)
    ("unconstrained, τ=0.6", {}, None),
    ("--form 5 --lines 4", dict(form=5, lines=4), (5, 4)),
    ("--form 7 --lines 4 --rhyme", dict(form=7, lines=4, rhyme=True), (7, 4)),
    ("--form 5 --lines 8 --rhyme --tones", dict(form=5, lines=8, rhyme=True, tones=True), (5, 8)),
    ("--form 7 --acrostic (3 sets of heads)", dict(form=7), (7, 4)),
]
ACROSTICS = ["春夏秋冬", "风花雪月", "山高水长"]


def print_generation_metrics(model, corpus, n, seed, device):
    """The metrics table of poetics.measure for each mode of GEN_MODES, n poems per start (or acrostic)."""
    import poetics
    itos = corpus.itos
    tables = decoding.Tables(itos)
    table = poetics.table_for([w for w, ok in zip(itos, tables.ideograph) if ok])
    train_lines = poetics.train_line_set(corpus.decode(p) for p in corpus.train)
    print(f"\n{n} poems per start character ({SAMPLE_STARTS}) or acrostic ({' '.join(ACROSTICS)}), seed {seed}")
    print("| mode | poems | form valid | rhyme | tone agreement | distinct-1 | distinct-2 | copy rate | NLL/token |")
    print("|---|---|---|---|---|---|---|---|---|")
    examples = []
    for label, overrides, form in GEN_MODES:
        poems = []
        for k, key in enumerate(ACROSTICS if "acrostic" in label else SAMPLE_STARTS):
            g = Config().gen
            g.num, g.seed = n, seed * 1000 + k
            for name, value in overrides.items():
                setattr(g, name, value)
            g.acrostic, g.start = (key, "") if "acrostic" in label else ("", key)
            poems += decoding.poems_for(model, itos, g, device)
        m = poetics.measure(poems, train_lines, table, form)
        nll = text_nll(model, itos, poems, device)
        print(f"| {label} | {m.poems} | {m.form_valid:.1%} | {m.rhyme_rate:.1%} | {m.tone_agreement:.1%} | "
              f"{m.distinct_1:.3f} | {m.distinct_2:.3f} | {m.copy_rate:.1%} | {nll:.3f} |")
        examples.append((label, poems[0]))
    for label, poem in examples:
        print(f"\n{label}:\n{dataUtil.format_poem(poem)}")


@torch.no_grad()
def text_nll(model, itos, texts, device, batch_size=256):
    """The model's own mean NLL per token of `<bos> text <eos>` (targets: the text's characters and <eos>)."""
    ids, _ = dataUtil.encode(texts, {w: i for i, w in enumerate(itos)})
    poems = np.split(ids, np.cumsum([len(t) + 2 for t in texts])[:-1])
    return evaluate(model, poems, itos.index(dataUtil.PAD), batch_size, device)["nll"]


def cmd_experiment(rest):
    import experiments
    return experiments.cmd_experiment(rest)


def main(argv):
    commands = {"train": cmd_train, "generate": cmd_generate, "evaluate": cmd_evaluate, "experiment": cmd_experiment}
    if not argv or argv[0] not in commands:
        raise UserError(f"usage: python main.py {{{'|'.join(commands)}}} [flags]  (--help after the command)")
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(run_cli(main))
