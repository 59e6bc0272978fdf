"""Training the poetry LSTM (the trainer): optimiser, schedules, the run directory, the loop, and its plots.

    train(cfg)                     a whole run with early stopping (what `python main.py train` calls)
    TrainLoop(...).advance()       one optimiser step on the next batch (the studies run N of these)

Checkpoints are read and written by training/checkpoint.py, perplexity measured by training/perplexity.py.

Loss: mean cross-entropy over real target tokens only (padding is masked; it only ever follows a poem, so a
poem's predictions never see it). Dev perplexity exp(total NLL / real target tokens) every pp_every steps and
at every stop; early stopping after `tolerance` evaluations without a new best. A run lives in its own
directory (ckpt_dir): best.pt, last.pt, epoch_N.pt, metrics.jsonl, loss.png, perplexity.png. Checkpoints are
written atomically; a run never starts over another run's files unless told to (--resume or --overwrite), and
a lock keeps two live runs out of one directory. The checkpoint format is in docs/design.md ("Checkpoints").

Precision (--precision): fp32, or bf16 matmuls with float32 master weights, cell states and loss (model.py).
Deliberately left out: gradient accumulation and loss scaling (bfloat16 has float32's exponent range).
"""
import fcntl
import json
import math
import os
import re
import signal
import sys
import time

import numpy as np
import torch

import dataUtil
from writing import decoding
from common import fileio
from config import SAMPLE_STARTS, EnvironmentFailure, UserError
from training.checkpoint import SaveFailed, load_checkpoint, pick_device, save_checkpoint
from training.distributed import Dist
from training.perplexity import evaluate
from training.inputs import batch_formats, poem_formats, rhyme_repeats
from model import PoetryLM, masked_nll, set_precision, unlikelihood

# best_ppl: the best dev perplexity of any evaluation (what best.pt holds); track_ppl: the best of the scheduled
# evaluations (every pp_every steps), which alone drive early stopping and the plateau schedule, so that the
# extra evaluation at a stop never changes what a resumed run does.
PROGRESS = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_ppl": math.inf, "track_ppl": math.inf,
            "bad_evals": 0, "lr_scale": 1.0}
RUN_FILE = re.compile(r"^(best\.pt|last\.pt|metrics\.jsonl|epoch_\d+\.pt|loss\.png|perplexity\.png)$")
LEFTOVER = re.compile(r"^(.+?)(?:\.\d+)?\.tmp$")          # a killed save's temporary file (fileio.atomic_write)


class Diverged(Exception):
    """The loss became NaN or infinite."""


# ----------------------------------------------------------------------------------------------------------
# small helpers


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
# the run directory: refuse to clobber, lock, clean leftovers

class RunDir:
    """A run's directory, locked for the life of the run (a second live run into it is refused)."""

    def __init__(self, tcfg):
        self.path = tcfg.ckpt_dir
        self.figures = tcfg.figures_dir or tcfg.ckpt_dir
        try:
            os.makedirs(self.path, exist_ok=True)
            self.lock = open(os.path.join(self.path, ".lock"), "a+")
        except OSError as e:
            raise EnvironmentFailure(f"cannot use --ckpt-dir {self.path}: {e.strerror}")
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.lock.close()
            raise UserError(f"another run is training into {self.path}; wait for it or pass --ckpt-dir NEW")
        self.lock.seek(0)
        self.lock.truncate()
        self.lock.write(f"{os.getpid()}\n")
        self.lock.flush()

    def release(self):
        self.lock.close()

    def metrics(self):
        return os.path.join(self.path, "metrics.jsonl")

    def run_files(self):
        """The files in the folder that a run writes (RUN_FILE); nothing else here is ever touched."""
        return sorted(n for n in os.listdir(self.path) if RUN_FILE.match(n))

    def prepare(self, tcfg, resumed_step):
        """Refuse an earlier run's files unless resuming or overwriting; drop leftovers of killed saves (the
        run's own names + .tmp only), and metrics past the step resumed from (the abandoned continuation)."""
        for n in os.listdir(self.path):
            m = LEFTOVER.match(n)
            if m and RUN_FILE.match(m.group(1)):
                os.remove(os.path.join(self.path, n))
        earlier = self.run_files()
        foreign = resumed_step is not None and \
            os.path.dirname(os.path.abspath(tcfg.resume)) != os.path.abspath(self.path)
        if foreign and earlier and not tcfg.overwrite:          # resuming another run into this one's folder
            self.release()
            raise UserError(f"{self.path} holds another run ({', '.join(earlier)}) than {tcfg.resume}: pass "
                            "--ckpt-dir NEW (or --overwrite to replace it)")
        if foreign:
            resumed_step = None                                  # a fresh folder for the continued run
        if resumed_step is None and earlier and not tcfg.overwrite:
            self.release()
            hint = next((os.path.join(self.path, n) for n in ("last.pt", "best.pt") if n in earlier), None)
            raise UserError(f"{self.path} holds an earlier run ({', '.join(earlier)}): "
                            + (f"--resume {hint} to continue it, " if hint else "")
                            + "--overwrite to replace it, or --ckpt-dir NEW")
        if resumed_step is None:
            for n in earlier:                                    # --overwrite: the run's own files only
                os.remove(os.path.join(self.path, n))
            fileio.write_text(self.metrics(), "")
        elif os.path.exists(self.metrics()):                     # rows past the step resumed from, torn lines go
            rows = fileio.read_jsonl(self.metrics())
            keep = [r for r in rows if isinstance(r.get("step", 0), (int, float)) and r.get("step", 0) <= resumed_step]
            fileio.write_text(self.metrics(), "".join(json.dumps(r) + "\n" for r in keep))

    def best_on_disk(self):
        """The dev perplexity of the best.pt in the folder (inf when none is readable): a resumed run replaces
        best.pt only with a better model, whichever checkpoint it resumed from."""
        path = os.path.join(self.path, "best.pt")
        try:
            value = float(load_checkpoint(path).get("best_ppl", math.inf)) if os.path.exists(path) else math.inf
        except (UserError, TypeError, ValueError):
            return math.inf
        return value if value == value else math.inf


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
    optimiser, step, position in the epoch, best perplexity, early-stop counter, RNG). Returns the progress.
    Under torchrun every rank calls this; see training/distributed.py."""
    tcfg, dd = cfg.train, Dist()
    device = dd.device(pick_device(tcfg))
    dd.start(device)
    run_dir = None
    try:
        torch.manual_seed(tcfg.seed)
        corpus = load_corpus_once(cfg, dd)
        if not corpus.dev:
            raise UserError("the dev split is empty (--dev-frac 0, or too few poems); training evaluates on it "
                            "(early stopping, best.pt): give --dev-frac above 0, e.g. 0.05")
        cfg.model.vocab_size = len(corpus.itos)
        model = PoetryLM(cfg.model).to(device)
        optimizer = make_optimizer(tcfg, model.parameters())
        progress = dict(PROGRESS)
        if ckpt is not None:
            progress = resume_into(ckpt, tcfg.resume, model, optimizer, corpus.itos)
        elif tcfg.init_from:
            start_from(model, load_checkpoint(tcfg.init_from), corpus.itos, tcfg.init_from, dd.main)
        run_dir = open_run_dir(tcfg, dd, progress["step"] if ckpt is not None else None)
        loop = TrainLoop(cfg, model, optimizer, corpus, device, progress, run_dir, dd)
        if dd.main:
            print_start(cfg, device, model, corpus, progress if ckpt is not None else None, dd.world, loop.precision)
        progress = loop.run()
        loop = model = None         # PyTorch's teardown order: the DDP model goes, all ranks meet, then the group
        dd.barrier()                # (CI once saw rank 1 abort, SIGABRT, at the end of a 2-rank run; the cause
        return progress             # was not captured, see tests/test_distributed.py)
    finally:
        if run_dir:
            run_dir.release()
        dd.stop()


def load_corpus_once(cfg, dd):
    """The corpus on every rank; rank 0 prepares it first when the cache is missing (no two writers)."""
    corpus = dataUtil.load_corpus(cfg) if dd.main else None
    dd.barrier()
    return corpus if dd.main else dataUtil.load_corpus(cfg, verbose=False)


def open_run_dir(tcfg, dd, resumed_step):
    """Rank 0's locked, prepared run directory (None on the other ranks); a refusal reaches every rank."""
    run_dir, err = None, None
    if dd.main:
        try:
            run_dir = RunDir(tcfg)
            run_dir.prepare(tcfg, resumed_step)
        except (UserError, EnvironmentFailure) as e:
            err = (isinstance(e, EnvironmentFailure), str(e))
    err = dd.from_main(err)
    if err:
        raise (EnvironmentFailure if err[0] else UserError)(err[1])      # an unwritable place: exit 1
    return run_dir


def print_start(cfg, device, model, corpus, resumed, world=1, precision=("fp32", "asked for")):
    """The resolved config, one section a line, and what is trained on what in which precision."""
    for section, values in cfg.to_dict().items():
        if section != "gen":
            print(f"{section:<6}" + "  ".join(f"{k}={v}" for k, v in values.items()))
    ranks = f"{world} processes (DistributedDataParallel), " if world > 1 else ""
    print(f"device {ranks}{device}; {sum(p.numel() for p in model.parameters()):,} parameters; "
          f"{len(corpus.train)} train / {len(corpus.dev)} dev poems; precision {precision[0]} ({precision[1]})")
    if resumed:
        print(f"resumed from step {resumed['step']} (epoch {resumed['epoch']}, best dev perplexity "
              f"{resumed['best_ppl']:.2f})")


def resume_into(ckpt, path, model, optimizer, itos):
    """Load a checkpoint's weights, optimiser state and RNG; returns its progress dict."""
    if ckpt["itos"] != list(itos):
        raise UserError(f"{path} was trained on another vocabulary; prepare with its data settings or start anew")
    if ckpt.get("optimizer") is None:
        raise UserError(f"{path} holds weights only (no optimiser state): it generates and evaluates, but cannot resume")
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        older = {"track_ppl": ckpt["best_ppl"]}                                  # files from before track_ppl
        return {k: ckpt.get(k, older.get(k, default)) for k, default in PROGRESS.items()}
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot resume from {path} ({type(e).__name__}): keep the model and optimiser it had")


VOCAB_ROWS = ("embed.weight", "proj.bias", "proj.weight")      # weights with a row per character (proj.weight untied)


@torch.no_grad()
def start_from(model, ckpt, itos, path, verbose=True):
    """A new run starting from another checkpoint's weights (--init-from): every weight of the same name copied
    (shapes must agree), the rows of VOCAB_ROWS matched by character (a character the source lacks starts from the
    source's <unk> row: the source read it as <unk>), and the weights the source lacks (the format inputs) set to
    zero, so that the model starts out computing what the source computes. Returns the names zeroed."""
    source, own = ckpt["model"], model.state_dict()
    src_row = {c: i for i, c in enumerate(ckpt["itos"])}
    rows = torch.tensor([src_row.get(c, src_row.get(dataUtil.UNK, 0)) for c in itos])      # (V,) source rows
    for name, value in source.items():
        if name not in own:
            raise UserError(f"{path} holds a weight {name} this model lacks; give the model settings it was "
                            "trained with (--embed-dim, --hidden-size, --num-layers, --tie-weights, --format-inputs)")
        value = value.float()[rows] if name in VOCAB_ROWS else value.float()
        if value.shape != own[name].shape:
            raise UserError(f"{path}'s weight {name} is {tuple(value.shape)}, this model's "
                            f"{tuple(own[name].shape)}: give the model settings it was trained with")
        own[name].copy_(value)
    zeroed = [name for name in own if name not in source]
    for name in zeroed:
        own[name].zero_()
    if verbose:
        print(f"initialised from {path}: {len(source)} weights copied ({sum(c in src_row for c in itos)} of "
              f"{len(itos)} characters matched), {len(zeroed)} set to zero ({', '.join(zeroed) or 'none'})")
    return zeroed


class TrainLoop:
    """The training loop's state and its pieces: step, evaluate, sample, checkpoint, plot."""

    def __init__(self, cfg, model, optimizer, corpus, device, progress, run_dir=None, dist=None):
        self.dist = dist or Dist()
        self.net = model                                   # evaluated, sampled and saved
        self.model = self.dist.wrap(model, device)         # trained (DDP under torchrun)
        self.opt, self.cfg, self.corpus, self.device = optimizer, cfg, corpus, device
        self.p = {**PROGRESS, **progress}
        self.run_dir = run_dir
        self.pad_id = corpus.itos.index(dataUtil.PAD)
        self.lengths = [len(x) for x in corpus.train]
        self.sample_gen = torch.Generator().manual_seed(cfg.train.seed)   # sampling never moves training RNG
        self.precision = set_precision(model, cfg.train.precision, device)  # (fp32 | bf16, why)
        self.disk_best = run_dir.best_on_disk() if run_dir else math.inf
        self.batches, self.batches_epoch = None, None
        self.evaluated_step = -1
        self.formats = {}
        if cfg.model.format_inputs:                        # each poem's format inputs, read once
            self.formats = {s: poem_formats(getattr(corpus, s), corpus.itos, cfg) for s in ("train", "dev")}

    def epoch_batches(self, epoch):
        """The epoch's batch order, fixed by (seed, epoch) so that a resumed run sees the same data."""
        if self.batches_epoch != epoch:
            self.batches = dataUtil.length_batches(self.lengths, self.cfg.train.batch_size,
                                                   np.random.default_rng([self.cfg.train.seed, epoch]))
            self.batches_epoch = epoch
        return self.batches

    def advance(self, on_grads=None):
        """One optimiser step on the next batch of the epoch order; returns (loss, target tokens, seconds)."""
        batches = self.epoch_batches(self.p["epoch"])
        for group in self.opt.param_groups:
            group["lr"] = self.current_lr()
        loss, ntok, dt = self.train_step(batches[self.p["batch_in_epoch"]], on_grads)
        self.p["batch_in_epoch"] += 1
        self.p["step"] += 1
        if self.p["batch_in_epoch"] == len(batches):
            self.end_epoch()
        return loss, ntok, dt

    def current_lr(self):
        """The learning rate of the next step: lr x plateau scale x warm-up ramp x cosine factor."""
        tcfg, step = self.cfg.train, self.p["step"]
        lr = tcfg.lr * self.p["lr_scale"]
        if step < tcfg.warmup_steps:
            lr *= (step + 1) / tcfg.warmup_steps
        if tcfg.lr_schedule == "cosine":
            total = self.total_steps()
            lr *= 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        return lr

    def total_steps(self):
        tcfg = self.cfg.train
        by_epochs = tcfg.epoch * len(self.epoch_batches(0))
        return min(by_epochs, tcfg.max_steps) if tcfg.max_steps else by_epochs

    def run(self):
        from tqdm import tqdm
        tcfg, t0, stopper = self.cfg.train, time.time(), Stopper()
        reason = ""
        bar = tqdm(total=self.total_steps(), initial=self.p["step"], unit="step", dynamic_ncols=True,
                   mininterval=0.5 if sys.stderr.isatty() else 60, disable=not self.dist.main)
        try:
            while not reason and self.p["epoch"] < tcfg.epoch:
                loss, ntok, dt = self.advance()
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", best=f"{self.p['best_ppl']:.1f}", tok_s=f"{ntok / dt:.0f}",
                                epoch=self.p["epoch"], refresh=False)
                self.log({"step": self.p["step"], "epoch": self.p["epoch"], "loss": loss, "tok_s": ntok / dt,
                          "time": time.time() - t0})
                reason = self.after_step(t0, stopper, bar)
            reason = reason or "epochs done"
            if self.evaluated_step != self.p["step"]:          # every stop leaves best.pt right
                self.evaluate_dev(bar, scheduled=False)
            bar.set_postfix(best=f"{self.p['best_ppl']:.1f}", refresh=False)
        finally:                                   # a Diverged error leaves through here: no last.pt
            stopper.restore()
            bar.close()
        self.save("last.pt")
        if self.dist.main:
            print(f"stopped: {reason} at step {self.p['step']}; best dev perplexity {self.p['best_ppl']:.2f}")
        return dict(self.p, reason=reason)

    def train_step(self, idx, on_grads=None):
        """One optimiser step on the poems idx (this rank's share of them under torchrun); on_grads(model)
        sees the raw gradients before clipping. Returns (global mean loss, global target tokens, seconds)."""
        t = time.time()
        mine, real = self.dist.shard(idx)
        inputs, targets = dataUtil.pad_batch([self.corpus.train[i] for i in mine], self.pad_id)
        rng = np.random.default_rng([self.cfg.train.seed, self.p["step"]])     # the same drops on resume
        feats, pair = batch_formats(self.formats.get("train"), mine, inputs.shape[0], self.device,
                                    (self.cfg.train.format_drop, self.cfg.train.format_none), rng)
        logits, _ = self.model(torch.from_numpy(inputs).to(self.device),
                               *((None, feats, pair) if feats is not None else ()))
        nll, n = masked_nll(logits, torch.from_numpy(targets).to(self.device), self.pad_id)
        nll_all, n_all = self.dist.sum([nll.item() if real else 0.0, n if real else 0], self.device)
        if not math.isfinite(nll_all):
            raise Diverged(f"loss became {nll_all / n_all} at step {self.p['step'] + 1}")
        if self.cfg.train.rhyme_unlikelihood > 0:              # reported loss: the NLL alone
            at = [torch.from_numpy(a).to(self.device) for a in rhyme_repeats(self.formats["train"], self.corpus.train,
                                                                             mine)]     # (t, b, candidate)
            nll = nll + self.cfg.train.rhyme_unlikelihood * unlikelihood(logits, *at)
        # DDP averages gradients over ranks, so scale by the world size: the sum is the global mean's gradient
        loss = nll * (self.dist.world / n_all if real else 0.0)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if on_grads is not None:
            on_grads(self.net)
        if self.cfg.train.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.train.clip)
        self.opt.step()
        return nll_all / n_all, int(n_all), time.time() - t

    def after_step(self, t0, stopper, bar):
        """Evaluate, sample and check the stop conditions; returns a stop reason or '' (the same on all ranks)."""
        tcfg, step = self.cfg.train, self.p["step"]
        if step % tcfg.pp_every == 0:
            stop = self.evaluate_dev(bar, scheduled=True)
            self.save("last.pt")                 # a run killed between evaluations resumes from here
            if stop:
                return "early stop"
        if tcfg.gen_every and step % tcfg.gen_every == 0 and self.dist.main:
            self.print_samples(bar)
        time_up = bool(tcfg.max_minutes) and time.time() - t0 >= tcfg.max_minutes * 60 and self.dist.main
        signalled, time_up = (v > 0 for v in self.dist.sum([stopper.stop, time_up], self.device))
        if signalled:
            return "interrupted"
        if tcfg.max_steps and step >= tcfg.max_steps:
            return "max steps"
        if time_up:
            return "max minutes"
        return ""

    def evaluate_dev(self, bar, scheduled):
        """Dev perplexity (rank 0 evaluates, every rank gets its progress); saves best.pt on a new best;
        True when early stopping is due. Only scheduled evaluations count towards early stopping."""
        if self.dist.main:
            self.evaluate_on_main(bar, scheduled)
        self.p = self.dist.from_main(self.p)
        self.evaluated_step = self.p["step"]
        return self.p["bad_evals"] >= self.cfg.train.tolerance

    def evaluate_on_main(self, bar, scheduled):
        tcfg = self.cfg.train
        res = evaluate(self.net, self.corpus.dev, self.pad_id, tcfg.eval_batch_size, self.device,
                       formats=self.formats.get("dev"))
        plain = {}
        if self.formats:                     # and with every format input unknown: the characters alone
            plain = {"dev_ppl_plain": evaluate(self.net, self.corpus.dev, self.pad_id, tcfg.eval_batch_size,
                                               self.device)["ppl"]}
        if scheduled and res["ppl"] < self.p["track_ppl"]:
            self.p["track_ppl"], self.p["bad_evals"] = res["ppl"], 0
        elif scheduled:
            self.p["bad_evals"] += 1
            if tcfg.lr_schedule == "plateau" and self.p["bad_evals"] % tcfg.plateau_patience == 0:
                self.p["lr_scale"] *= tcfg.plateau_factor
        self.p["best_ppl"] = min(self.p["best_ppl"], res["ppl"])
        if res["ppl"] < self.disk_best:                 # best.pt is only ever replaced by a better model
            self.disk_best = res["ppl"]
            self.save("best.pt")
        self.log({"step": self.p["step"], "dev_ppl": res["ppl"], "dev_batch_mean_ppl": res["batch_mean_ppl"],
                  "lr": self.current_lr(), **plain})
        unknown = f", {plain['dev_ppl_plain']:.2f} with no format input" if plain else ""
        bar.write(f"step {self.p['step']}: dev perplexity {res['ppl']:.2f}{unknown} (best {self.p['best_ppl']:.2f}, "
                  f"{self.p['bad_evals']}/{self.cfg.train.tolerance} without improvement)")
        self.plot()

    def print_samples(self, bar):
        stoi = {w: i for i, w in enumerate(self.corpus.itos)}
        prefixes = [[stoi[c]] for c in SAMPLE_STARTS if c in stoi]
        self.net.eval()
        poems = decoding.sample(self.net, self.corpus.itos, prefixes, self.cfg.gen, self.device, self.sample_gen)
        self.net.train()
        bar.write(f"step {self.p['step']} samples: " + " | ".join(poems))

    def end_epoch(self):
        self.p["epoch"] += 1
        self.p["batch_in_epoch"] = 0
        if self.run_dir and self.cfg.train.save_every and self.p["epoch"] % self.cfg.train.save_every == 0:
            self.save(f"epoch_{self.p['epoch']}.pt")

    def save(self, name):
        if self.run_dir:
            save_checkpoint(os.path.join(self.run_dir.path, name), self.net, self.opt, self.cfg,
                            self.corpus.itos, self.p)

    def log(self, record):
        if self.run_dir:
            try:
                fileio.append_line(self.run_dir.metrics(), json.dumps(record))
            except OSError as e:
                raise SaveFailed(f"could not write {self.run_dir.metrics()} ({e.strerror})")

    def plot(self):
        if self.run_dir:
            try:
                plot_metrics(self.run_dir.metrics(), self.run_dir.figures)
            except OSError as e:                    # a figure is not worth stopping a run for
                print(f"warning: could not draw the figures ({e.strerror})", file=sys.stderr)


def plot_metrics(metrics_path, figures_dir):
    """loss.png (train loss) and perplexity.png (dev perplexity) against step, in figures_dir."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = fileio.read_jsonl(metrics_path)
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
        fileio.save_figure(fig, os.path.join(figures_dir, name), dpi=120)
        plt.close(fig)
