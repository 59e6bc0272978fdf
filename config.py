"""Every setting of the project, with its default, and its command-line form.

One `Config` object (four dataclasses: data, model, train, gen) is built from the defaults, then from flags,
and passed as an argument to everything that needs a setting. Nothing reads a global. Every field is a flag
(`--batch-size 64`, `--no-use-gpu`); an unknown or misspelt flag is an error, never a silent default.

Also here: `UserError`, the exception for a user's mistake, which the command lines turn into one line on
stderr and exit code 2 (see docs/design.md, "Errors").
"""
import argparse
import dataclasses
import difflib
import math
import os
import re
import sys
from dataclasses import dataclass, field


class UserError(Exception):
    """A mistake the user can fix (bad flag, missing file, unknown character): one line, exit code 2."""


class EnvironmentFailure(Exception):
    """The machine failed the command (full disk, read-only folder): one line, exit code 1, nothing lost."""


# ----------------------------------------------------------------------------------------------------------
# settings

@dataclass
class DataConfig:
    data_dir: str = "data"            # raw/ and processed/ live under it
    raw_dir: str = ""                 # a local copy of poet.tang.*.json; empty means the --data-dir's raw/
    genre: str = "tang"               # the corpus: tang (全唐诗) | ci (宋词)
    max_len: int = 0                  # longer poems are dropped; 0 = the genre's cap (tang 125, ci 160)
    min_len: int = 4                  # shorter ones are fragments or placeholders such as 空。
    min_freq: int = 5                 # characters seen fewer times in train become <unk> (coverage > 99.8%)
    dev_frac: float = 0.05            # share of poems in the dev split
    test_frac: float = 0.05           # share of poems in the test split
    limit_poems: int = 0              # keep only the first N train poems (0 = all); for short runs
    variant_chars: str = "standard"   # 异体字 that t2s leaves: standard (鴈 -> 雁, see verse/text.py standardise) | keep


@dataclass
class ModelConfig:
    vocab_size: int = 0               # filled from the data, never typed (no flag)
    embed_dim: int = 128              # embedding width E
    hidden_size: int = 256            # LSTM width H
    num_layers: int = 2               # stacked LSTM layers
    lstm: str = "fused"               # fused (hand-derived backward, C++ time loop) | python (same, Python loop) | autograd (same loop, autograd) | cudnn (nn.LSTM's kernel)
    init_embed: str = "default"       # embedding init: default | zero | normal | xavier_normal | xavier_uniform
    init_lstm: str = "default"        # LSTM weight init, same choices
    dropout: float = 0.0              # dropout rate at the places --dropout-at names (0 = the seed's model)
    dropout_at: str = "embed,layers,output"   # comma-separated: embed | layers (between them) | output
    dropout_kind: str = "standard"    # standard (a mask per element and step) | locked (one per poem, shared by its steps)
    weight_drop: float = 0.0          # DropConnect on the recurrent weights W_h, one mask per batch (AWD-LSTM; 0 = off)
    tie_weights: bool = False         # the output layer shares the embedding (through an H -> E projection)
    format_inputs: bool = False       # the input also says where the position is in the form (verse/formats.py; the shipped recipe)


@dataclass
class TrainConfig:
    batch_size: int = 128             # poems per optimiser step
    lr: float = 1e-3                  # learning rate (peak rate with a schedule)
    optimizer: str = "adam"           # sgd | momentum | nesterov | adagrad | adadelta | adam | adamw | rmsprop
    weight_decay: float = 0.0         # L2 penalty (decoupled for adamw)
    lr_schedule: str = "constant"     # constant | plateau (x plateau-factor when dev stalls) | cosine (to 0 over the run)
    warmup_steps: int = 0             # linear warm-up from 0 to lr over this many steps (any schedule)
    plateau_patience: int = 3         # evaluations without a new best before the plateau schedule lowers lr
    plateau_factor: float = 0.5       # what the plateau schedule multiplies lr by
    epoch: int = 50                   # passes over the training poems at most
    clip: float = 5.0                 # max global gradient norm; 0 disables clipping
    pp_every: int = 100               # steps between dev-perplexity evaluations
    tolerance: int = 10               # evaluations without a new best before early stopping
    gen_every: int = 50               # steps between sample poems (0 = none)
    save_every: int = 5               # epochs between numbered checkpoints (0 = none)
    use_gpu: bool = True              # use CUDA when it is available and --device is not given
    device: str = ""                  # cpu | cuda | cuda:1; empty means cuda when available (and not --no-use-gpu)
    seed: int = 0                     # fixes initialisation, batch order and samples
    max_minutes: float = 0.0          # stop (saving last.pt) after this many minutes; 0 = no limit
    max_steps: int = 0                # stop after this many optimizer steps; 0 = no limit
    ckpt_dir: str = "checkpoints"     # the run's directory: checkpoints, metrics.jsonl, figures
    figures_dir: str = ""             # where the run's loss.png and perplexity.png go; empty means the --ckpt-dir
    resume: str = ""                  # a checkpoint to continue from (its settings; flags given win)
    init_from: str = ""               # a new run starting from this checkpoint's weights (matched by name and character)
    overwrite: bool = False           # start anew in a --ckpt-dir that holds an earlier run, deleting that run's files
    eval_batch_size: int = 256        # poems per batch when measuring perplexity
    format_drop: float = 0.2          # each format input is unknown for a whole poem at this rate in training
    format_none: float = 0.1          # ... and every one of them at this rate (the characters-only case)
    rhyme_unlikelihood: float = 0.0   # weight of a loss against reusing a rhyme character at a rhyme slot (重韵; format models; 0 = off)
    precision: str = "auto"           # matmuls in fp32 | bf16 (float32 accumulation); auto = bf16 where the CPU or GPU multiplies it natively


@dataclass
class GenConfig:
    ckpt: str = ""                    # the model; empty: checkpoints/best.pt if it exists, else pretrained/tang.pt
    start: str = ""                   # the poem begins with these characters (needed unless --form, --acrostic or --cipai)
    num: int = 1                      # how many poems
    temperature: float = 1.0          # below 1 safer and blander, above 1 wilder (re-ranking keeps the fluent ones)
    top_k: int = 0                    # sample among the k likeliest characters (0 = all)
    top_p: float = 1.0                # nucleus sampling: the likeliest characters up to this mass (1 = off)
    repetition_penalty: float = 1.03  # > 1 makes characters already in the poem less likely; 1.03 puts 重字 and doubling at real poems' rates (docs/form_study.md)
    greedy: bool = False              # always the likeliest character (one poem per start)
    seed: int = 0                     # the same seed writes the same poem; change it for another
    max_gen_len: int = 200            # a free poem's generated tokens at most; a form asked for is written whole (the limit grows to fit it), a drawn one fits it
    form: int = 0                     # characters per line: 5 | 7 (0 = free)
    lines: int = 0                    # lines with --form: 4 (绝句) | 8 (律诗)
    acrostic: str = ""                # 藏头诗: line k starts with the k-th character
    prefix: str = ""                  # style priming text, run through the model first and not printed
    rhyme: bool = False               # rhyme: --form's even lines end in one rhyme group; --cipai's rhyme sets
    rhyme_system: str = "pingshui"    # pingshui (平水韵; 词林正韵 for --cipai) | xinyun (中华新韵, modern finals)
    rhyme_tone: str = "level"         # the tone --form's rhymes are on: level (平, as 律诗/绝句) | oblique (仄)
    tones: bool = False               # 平仄 at positions 2, 4, 6 (二四六分明), with --form; with --cipai every 平/仄 of its 格 in the 词谱
    tone_system: str = "classical"    # classical (the corpus's 平仄 labels) | mandarin (pypinyin), for --tones, --rhyme
    cipai: str = ""                   # write a 宋词 to this 词牌's pattern of lines (see --list-cipai)
    ge: int = 0                       # with --cipai: follow this 格 (variant) of the 词谱, 1-based (0: the one fitting the learnt pattern, else 格 1)
    precision: str = "fp32"           # the model's matmuls in fp32 | bf16 (faster on a CPU or GPU with native bfloat16)
    candidates: int = 8               # poems sampled for each one printed; the best by fluency and defects is kept
    free: bool = False                # let the model end the poem where it likes (default: a real poem's form)
    keywords: str = ""                # words the poem must hold (1-4 words of 1-2 characters): --keywords 春 江 花月
    rhyme_group: str = ""             # the 平水韵 level group to rhyme in: 十灰, 灰 or 上平声十灰 (default: drawn as poets chose)
    masks: bool = True                # --no-masks: no mask at all, the model's format inputs alone keep the form
    pair_input: bool = True           # 对仗: a 律诗's 颔联/颈联 second line reads the character it answers (format models)
    pair_rerank: bool = True          # 对仗: re-ranking favours a 律诗 whose middle couplets answer
    pair_bonus: float = 0.3           # 对仗 (a 律诗's or 排律's middle couplets): nats added per bit of a character's lift as the answer to the one it faces; 0.3 chosen on a train quarter (docs/form_study.md)
    pair_spare: bool = False          # 对仗: the repetition penalty spares the 颔联/颈联's answering lines (lost: docs/form_study.md)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    gen: GenConfig = field(default_factory=GenConfig)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Rebuild from `to_dict()` output (as stored in a checkpoint); unknown keys are ignored, and settings
        added since (LEGACY) take the value that reproduces the checkpoints written before them."""
        cfg = cls()
        for (section, name), value in LEGACY.items():
            setattr(getattr(cfg, section), name, value)
        for section in dataclasses.fields(cls):
            part = getattr(cfg, section.name)
            names = {f.name for f in dataclasses.fields(part)}
            for k, v in (d.get(section.name) or {}).items():
                if k in names:
                    setattr(part, k, v)
        return cfg


CHOICES = {
    ("data", "genre"): ("tang", "ci"),
    ("data", "variant_chars"): ("standard", "keep"),
    ("model", "lstm"): ("fused", "python", "autograd", "cudnn"),
    ("model", "dropout_kind"): ("standard", "locked"),
    ("model", "init_embed"): ("default", "zero", "normal", "xavier_normal", "xavier_uniform"),
    ("model", "init_lstm"): ("default", "zero", "normal", "xavier_normal", "xavier_uniform"),
    ("train", "lr_schedule"): ("constant", "plateau", "cosine"),
    ("train", "optimizer"): ("sgd", "momentum", "nesterov", "adagrad", "adadelta", "adam", "adamw", "rmsprop"),
    ("gen", "form"): (0, 5, 7),
    ("gen", "tone_system"): ("classical", "mandarin"),
    ("gen", "rhyme_system"): ("pingshui", "xinyun"),
    ("gen", "rhyme_tone"): ("level", "oblique"),
    ("gen", "lines"): (0, 4, 8),
    ("train", "precision"): ("auto", "fp32", "bf16"),
    ("gen", "precision"): ("fp32", "bf16"),
}
NO_FLAG = {("model", "vocab_size")}   # computed from the data
LIST_FLAGS = {("gen", "keywords")}     # take several words, stored space-separated
# checkpoints from before a setting: trained on variants as kept, with no format inputs
LEGACY = {("data", "variant_chars"): "keep", ("model", "format_inputs"): False}
BIG = 10 ** 9
# The range of every numeric setting, checked in one place (check_config): "[a, b]" closed, "(a, b]" open at a.
# The upper ends keep a typo from asking for terabytes (a hidden size of 10^6) or for a loop without end.
RANGES = {
    ("data", "max_len"): f"[0, {10 ** 4}]", ("data", "min_len"): f"[1, {10 ** 4}]", ("data", "min_freq"): f"[1, {BIG}]",
    ("train", "format_drop"): "[0, 1]", ("train", "format_none"): "[0, 1]", ("train", "rhyme_unlikelihood"): "[0, 100]", ("data", "dev_frac"): "[0, 1)", ("data", "test_frac"): "[0, 1)", ("data", "limit_poems"): f"[0, {BIG}]",
    ("model", "embed_dim"): "[1, 4096]", ("model", "hidden_size"): "[1, 8192]", ("model", "num_layers"): "[1, 16]",
    ("model", "dropout"): "[0, 1)", ("model", "weight_drop"): "[0, 1)",
    ("train", "batch_size"): "[1, 65536]", ("train", "lr"): "(0, 100]", ("train", "weight_decay"): "[0, 10]",
    ("train", "warmup_steps"): f"[0, {BIG}]", ("train", "plateau_patience"): f"[1, {BIG}]",
    ("train", "plateau_factor"): "(0, 1)", ("train", "epoch"): f"[1, {BIG}]", ("train", "clip"): f"[0, {BIG}]",
    ("train", "pp_every"): f"[1, {BIG}]", ("train", "tolerance"): f"[1, {BIG}]", ("train", "gen_every"): f"[0, {BIG}]",
    ("train", "save_every"): f"[0, {BIG}]", ("train", "seed"): f"[0, {2 ** 63 - 1}]",
    ("train", "max_minutes"): f"[0, {BIG}]", ("train", "max_steps"): f"[0, {BIG}]",
    ("train", "eval_batch_size"): "[1, 65536]",
    ("gen", "num"): f"[1, {BIG}]", ("gen", "temperature"): "(0, 100]", ("gen", "top_k"): f"[0, {BIG}]",
    ("gen", "top_p"): "(0, 1]", ("gen", "repetition_penalty"): "(0, 100]", ("gen", "seed"): f"[0, {2 ** 63 - 1}]",
    ("gen", "max_gen_len"): f"[1, {10 ** 4}]", ("gen", "candidates"): "[1, 64]", ("gen", "ge"): "[0, 1000]",
    ("gen", "pair_bonus"): "[0, 10]",
}


def in_range(value, interval):
    """Whether value lies in an interval written "[a, b]", "(a, b]", "[a, b)" or "(a, b)"."""
    lo, hi = (int(x) if x.strip().lstrip("-").isdigit() else float(x) for x in interval[1:-1].split(","))
    return (lo < value if interval[0] == "(" else lo <= value) and (value < hi if interval[-1] == ")" else value <= hi)


def check_config(cfg):
    """Reject impossible settings before any work starts (UserError naming the flag)."""
    def flag(name):
        return "--" + name.replace("_", "-")

    for section in dataclasses.fields(cfg):
        part = getattr(cfg, section.name)
        for f in dataclasses.fields(part):
            value = getattr(part, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"{flag(f.name)} must be a finite number, not {value}")
            if isinstance(value, str) and any("\ud800" <= c <= "\udfff" for c in value):   # undecodable bytes
                raise UserError(f"{flag(f.name)} holds bytes that are not UTF-8 text")
    for (section, name), allowed in CHOICES.items():
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise UserError(f"{flag(name)} {value!r} is not one of: {', '.join(map(str, allowed))}")
    for (section, name), interval in RANGES.items():
        value = getattr(getattr(cfg, section), name)
        if not in_range(value, interval):
            raise UserError(f"{flag(name)} must be in {interval}, not {value}")
    bad = set(filter(None, cfg.model.dropout_at.split(","))) - {"embed", "layers", "output"}
    if bad:
        raise UserError(f"--dropout-at {','.join(sorted(bad))}: choose from embed, layers, output (comma-separated)")
    m = cfg.model
    if cfg.train.rhyme_unlikelihood > 0 and not m.format_inputs:
        raise UserError("--rhyme-unlikelihood needs --format-inputs (the rhyme slots are format inputs)")
    if m.lstm == "cudnn" and (m.weight_drop > 0 or m.dropout_kind == "locked"):
        raise UserError("--weight-drop and --dropout-kind locked need the hand-written LSTM, not --lstm cudnn")
    d = cfg.data
    if d.dev_frac + d.test_frac >= 1:
        raise UserError("--dev-frac and --test-frac must leave room for train (their sum below 1)")
    return cfg


# ----------------------------------------------------------------------------------------------------------
# command-line form

class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr with exit code 2 (no usage block), with "did you mean"
    for a misspelt flag."""

    def error(self, message):
        m = re.match(r"unrecognized arguments: (\S+)", message)
        if m:
            message += suggest(m.group(1).split("=")[0], [o for a in self._actions for o in a.option_strings])
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def field_help():
    """{(section, field name): its comment in this file}: the one-line help of each flag, kept next to its
    default (train's --seed and generate's --seed have their own)."""
    import inspect
    helps, section = {}, None
    for line in inspect.getsource(sys.modules[__name__]).splitlines():
        m = re.match(r"^class (\w+)Config\b", line)
        if m:
            section = m.group(1).lower()
        m = re.match(r"^    (\w+): \w+ = .*?  # (.*)$", line)
        if m and section:
            helps[section, m.group(1)] = m.group(2)
    return helps


def make_parser(prog, description, sections, only=None):
    """A parser with one flag per field of the named Config sections (e.g. ("data", "train")), or of the
    fields named in `only`."""
    parser = OneLineParser(prog=prog, description=description, allow_abbrev=False)
    defaults, helps = Config(), field_help()
    for name in sections:
        group = parser.add_argument_group(SECTION_TITLES.get(name, name))
        for f in dataclasses.fields(getattr(defaults, name)):
            if (name, f.name) not in NO_FLAG and (only is None or f.name in only):
                add_field_flag(group, name, f, getattr(getattr(defaults, name), f.name), helps.get((name, f.name), ""))
    return parser


SECTION_TITLES = {"data": "corpus", "model": "model", "train": "training", "gen": "generation"}


def shown_default(default):
    """A default as help shows it: on/off for a switch, none for empty text."""
    if isinstance(default, bool):
        return "on" if default else "off"
    return "none" if default == "" else repr(default)


def add_field_flag(group, section, f, default, text):
    """--field-name for one dataclass field. Flags not given stay out of the parsed namespace (SUPPRESS), so
    config_from_args can lay them over any base config: the defaults, or a checkpoint's config on resume."""
    flag = "--" + f.name.replace("_", "-")
    said = "(default" in text                       # the help says it itself: "(default: a real poem's form)"
    kw = dict(dest=f"{section}.{f.name}", default=argparse.SUPPRESS,
              help=(text if said else f"{text} (default: {shown_default(default)})").replace("%", "%%"))
    choices = CHOICES.get((section, f.name))
    if (section, f.name) in LIST_FLAGS:
        group.add_argument(flag, nargs="+", metavar="WORD", **kw)
    elif isinstance(default, bool):
        group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
    elif choices:
        group.add_argument(flag, type=type(default), choices=choices,
                           metavar="|".join(map(str, choices)), **kw)
    else:
        group.add_argument(flag, type=type(default), metavar=type(default).__name__.upper(), **kw)


def config_from_args(args, cfg=None):
    """Copy the flags given into a Config (a fresh one with the defaults unless cfg is given)."""
    cfg = cfg or Config()
    for key, value in vars(args).items():
        if "." in key:
            section, name = key.split(".", 1)
            setattr(getattr(cfg, section), name, " ".join(value) if isinstance(value, list) else value)
    return cfg


PRETRAINED = "pretrained/tang.pt"


TRAINED = "checkpoints/best.pt"


PRETRAINED_CI = "pretrained/ci.pt"


def pick_checkpoint(ckpt, ci=False):
    """The model to use: --ckpt when given, else (for a 宋词, ci) the shipped pretrained/ci.pt, else
    checkpoints/best.pt when it exists, else the shipped pretrained/tang.pt (relative to the project). Says on
    stderr which one."""
    if ckpt:
        return ckpt
    root = os.path.dirname(os.path.abspath(__file__))
    if ci:
        path = os.path.join(root, PRETRAINED_CI)
        if os.path.isfile(path):
            print(f"using the shipped 宋词 model: {os.path.relpath(path)} (--ckpt PATH for another)", file=sys.stderr)
            return path
        print(f"{PRETRAINED_CI} is missing: a Tang model writes to the 词牌's pattern", file=sys.stderr)
    for path, what in ((TRAINED, "your trained model"), (os.path.join(root, PRETRAINED), "the shipped model")):
        if os.path.isfile(path):
            print(f"using {what}: {os.path.relpath(path)} (--ckpt PATH for another)", file=sys.stderr)
            return path
    raise UserError(f"no model: {TRAINED} does not exist and neither does {PRETRAINED}; train first "
                    "(python main.py train) or pass --ckpt PATH")


def suggest(word, choices):
    """ "; did you mean X?" for the closest of choices, or ""."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f"; did you mean {close[0]}?" if close else ""


def run_cli(main_fn, argv=None):
    """Call main_fn(argv); a UserError becomes one line on stderr and exit code 2, a failure of the machine
    (EnvironmentFailure, OSError) one line and 1, Ctrl-C one line and 130, a closed pipe a quiet exit."""
    try:
        return main_fn(sys.argv[1:] if argv is None else argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except EnvironmentFailure as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no second error at exit
        return 0
    except OSError as e:              # a file this command writes or reads failed: the machine, not the code
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except UnicodeEncodeError as e:   # PYTHONIOENCODING=ascii and the like
        print(f"error: the output encoding ({e.encoding}) cannot show Chinese; set PYTHONIOENCODING=utf-8",
              file=sys.stderr)
        return 1
    except (MemoryError, RuntimeError) as e:
        if not isinstance(e, MemoryError) and "allocate" not in str(e):
            raise                     # a bug: its traceback
        print("error: not enough memory for this setting; choose a smaller model, batch or --num", file=sys.stderr)
        return 1


SAMPLE_STARTS = "日红山夜湖海月"      # the start characters of the samples training, evaluate and the studies write
