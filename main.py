"""Command line of the project: train, generate, evaluate, experiment, export, check, revise. The work is done
in training/loop.py, writing/decoding.py, writing/keywords.py, dataUtil.py, verse/prosody.py, writing/workshop.py and studies/experiments.py; nothing
imports this file.

    python main.py train [--max-minutes 60] [--resume checkpoints/last.pt] ...
    python main.py generate --start 日 [--num 4] [--temperature 0.6] [--keywords 春 江] [--form 7 --rhyme]
    python main.py evaluate [--ckpt checkpoints/best.pt] [--samples 20]
    python main.py experiment init|optim|recipe|regularizers|rerank|rhyme|keywords [--steps N] [--limit-poems N]
    python main.py export [--ckpt checkpoints/best.pt] [--out pretrained/tang.pt]
    python main.py check "POEM"|FILE|- [--json] [--cipai NAME]   (the 格律 check, of one poem or many: exit 0
                                 clean, 1 a rule broken or nothing checked, 2 bad input, 3 a table unreadable)
    python main.py revise "POEM" --line K [--num 5] [--json]
    python main.py serve [--host 127.0.0.1] [--port 8000]    (the web page)
    python main.py inspect "POEM" [--layer L] [--cells 12,87] [--out DIR]   (what the cells do: studies/lstm_inspect.py)
    python main.py experiment cells [--poems N] [--out docs/cells.md]       (which cells track the form)

    torchrun --standalone --nproc_per_node N main.py train ...    (several processes; see training/distributed.py)

generate and evaluate use --ckpt when given, else checkpoints/best.pt when it exists, else the shipped
pretrained/tang.pt, and say on stderr which. Errors a user can fix are one line and exit code 2
(docs/design.md, "Errors").
"""
import dataclasses
import math
import os
import signal
import sys

if __name__ == "__main__":        # Ctrl-C while the imports below load: one line and 130, not a traceback
    signal.signal(signal.SIGINT, lambda *_: (sys.stderr.write("interrupted\n"), os._exit(130)))
if __name__ == "__main__" and sys.argv[1:2] == ["check"]:     # the 格律 check imports torch only for a model
    from writing import checking
    from config import run_cli
    sys.exit(run_cli(checking.cmd_check, sys.argv[2:]))

import numpy as np

import dataUtil
from common import fileio
from config import (SAMPLE_STARTS, Config, GenConfig, TrainConfig, UserError, check_config, make_parser,
                    config_from_args, run_cli, suggest)
from model import set_precision
from training.checkpoint import SaveFailed, export_weights, load_checkpoint, load_model, model_from_checkpoint, pick_device
from config import pick_checkpoint
from training.perplexity import evaluate, text_nll
from writing import requests
from writing import constraints
from verse.text import check_opening, ci_pattern, cipai_pattern, format_poem
from verse.tables import cipai_table, classical_table, format_cipai, load_tables, rhyme_book
from training.inputs import poem_formats


# ----------------------------------------------------------------------------------------------------------
# command line

def cmd_train(rest):
    args = make_parser("main.py train", "train the poetry LSTM", ["data", "model", "train"]).parse_args(rest)
    resume = vars(args).get("train.resume")
    if resume and vars(args).get("train.init_from"):
        raise UserError("--resume continues a run, --init-from starts a new one from a model's weights: pass one")
    ckpt = load_checkpoint(resume) if resume else None
    base = Config.from_dict(ckpt["config"]) if ckpt else Config()
    base.train.overwrite = False              # a deletion is never inherited from the checkpoint's run
    cfg = check_config(config_from_args(args, base))                                      # flags given win
    from training.loop import Diverged, train                  # the trainer: only this command needs it
    try:
        train(cfg, ckpt)
    except Diverged as e:
        print(f"error: {e}; training stopped, best.pt is kept. Lower --lr or --clip.", file=sys.stderr)
        return 1
    except SaveFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def device_flag(parser):
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default: cpu)")


def cmd_generate(rest):
    parser = make_parser("main.py generate", "write poems from a checkpoint", ["gen"])
    device_flag(parser)
    parser.add_argument("--list-cipai", action="store_true", help="print the known 词牌 with their patterns")
    parser.add_argument("--show-scores", action="store_true",
                        help="print every candidate with its score's terms (see --candidates)")
    args = parser.parse_args(rest)
    gcfg = check_config(config_from_args(args)).gen
    if args.list_cipai:
        for name, entry in sorted(cipai_table().items(), key=lambda kv: -kv[1]["examples"]):
            print(format_cipai(name, entry))
        return 0
    constraints.spec_from(gcfg, cipai_table() if gcfg.cipai else None)   # a bad request fails before any work
    check_opening(gcfg.start)
    if gcfg.rhyme:
        rhyme_book(gcfg)
    if gcfg.keywords:
        from writing import keywords
        keywords.check_text(gcfg.keywords)
        if gcfg.free and not (gcfg.form or gcfg.cipai):
            raise UserError("--keywords needs a form to place them in: --form, --cipai, or leave out --free")
    device = pick_device(TrainConfig(device=args.device))
    model, cfg, itos = load_model(gcfg.ckpt, device, ci=bool(gcfg.cipai))
    set_precision(model, gcfg.precision, device)
    gcfg.free = gcfg.free or (cfg.data.genre == "ci" and not gcfg.cipai)   # a 词 takes its 词牌's form, not a 诗's
    for k, best in enumerate(requests.iter_poems(model, itos, gcfg, device)):
        print(("" if k == 0 else "\n") + format_poem(best.text), flush=True)
        if args.show_scores:
            for rank, c in enumerate([best] + best.others, 1):
                terms = "  ".join(f"{name} {value:.3f}" if isinstance(value, float) else f"{name} {value}"
                                  for name, value in c.terms.items())
                print(f"  [{rank}] score {c.score:.3f}  {terms}  {c.text}", flush=True)
    return 0


def cmd_evaluate(rest):
    parser = make_parser("main.py evaluate", "perplexity of a checkpoint on dev and test", [])
    parser.add_argument("--ckpt", default="", help="the model (default: checkpoints/best.pt if it exists, "
                        "else pretrained/tang.pt)")
    device_flag(parser)
    parser.add_argument("--data-dir", default=None, help="where the prepared corpus lives; given, it must exist "
                        "(default: data, prepared on first use)")
    parser.add_argument("--raw-dir", default="", help="a local copy of the raw corpus (default: data/raw)")
    parser.add_argument("--samples", type=int, default=0, help="also measure N generated poems per start and mode")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated poems (default: 0)")
    parser.add_argument("--tone-system", choices=("classical", "mandarin"), default="classical",
                        help="tones that --samples generates under and judges by (default: classical)")
    parser.add_argument("--rhyme-system", choices=("pingshui", "xinyun"), default="pingshui",
                        help="rhyme that --samples generates under and judges by: 平水韵 (词林正韵 for 词) or "
                        "中华新韵 (default: pingshui)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="the model's matmuls in fp32 or bf16 (default: fp32)")
    args = parser.parse_args(rest)
    if args.samples < 0 or not 0 <= args.seed < 2 ** 63:
        raise UserError("--samples must be >= 0 and --seed in [0, 2^63)")
    if args.data_dir is not None and not os.path.isdir(args.data_dir):     # never made (nor 60 MB fetched) here
        raise UserError(f"--data-dir {args.data_dir} is not a folder; prepare the corpus there first (python "
                        f"dataUtil.py prepare --data-dir {args.data_dir}) or leave --data-dir out")
    args.data_dir = args.data_dir or "data"
    device = pick_device(TrainConfig(device=args.device))
    path = pick_checkpoint(args.ckpt)
    model, cfg, itos = model_from_checkpoint(load_checkpoint(path), device)
    set_precision(model, args.precision, device)
    cfg.data.data_dir, cfg.data.raw_dir, cfg.data.limit_poems = args.data_dir, args.raw_dir, 0
    corpus = dataUtil.load_corpus(cfg)        # with the checkpoint's data settings
    if corpus.itos != itos:                   # a corpus prepared since (another split): its texts in the model's ids
        corpus = reencoded(corpus, itos)
        print(f"note: {path} has another vocabulary than the prepared corpus; the splits' texts are read with the "
              "checkpoint's (a character the corpus vocabulary lacks counts as unknown)", file=sys.stderr)
    pad_id = itos.index(dataUtil.PAD)
    for split in ("dev", "test"):
        poems = getattr(corpus, split)
        print(f"evaluating {split} ({len(poems)} poems) ...", file=sys.stderr, flush=True)
        r = evaluate(model, poems, pad_id, cfg.train.eval_batch_size, device)
        width = dataUtil.max_len_of(cfg)
        padded = math.exp(r["nll"] * r["tokens"] / (len(poems) * width))
        told = " with no format input" if cfg.model.format_inputs else ""
        print(f"{split:<5} perplexity {r['ppl']:.3f}{told}  NLL {r['nll']:.4f} nats/token over {r['tokens']} real "
              f"tokens\n      batch-mean of exp(batch loss) {r['batch_mean_ppl']:.3f}; pads-included figure (every "
              f"poem padded to {width}, pads predicted perfectly) {padded:.3f}", flush=True)
        if cfg.model.format_inputs:                  # and told each poem's form, as generation tells it
            k = evaluate(model, poems, pad_id, cfg.train.eval_batch_size, device,
                         formats=poem_formats(poems, itos, cfg))
            print(f"      perplexity with the format inputs {k['ppl']:.3f}  NLL {k['nll']:.4f}", flush=True)
    if args.samples > 0 and cfg.data.genre == "ci":
        print_ci_metrics(model, corpus, args.samples, args.seed, device, args.rhyme_system, args.data_dir)
    elif args.samples > 0:
        print_tone_systems(corpus, classical_table(Config().gen, args.data_dir), args.data_dir)
        print_generation_metrics(model, corpus, args.samples, args.seed, device, args.tone_system, args.rhyme_system,
                                 args.data_dir)
    return 0


def reencoded(corpus, itos):
    """corpus with its poems encoded with the vocabulary itos (the corpus's unknown characters stay so)."""
    stoi = {w: i for i, w in enumerate(itos)}
    unk = stoi[dataUtil.UNK]

    def encode(ids):
        text = dataUtil.text_of(ids, corpus.itos)
        return np.array([stoi[dataUtil.BOS]] + [stoi.get(ch, unk) for ch in text] + [stoi[dataUtil.EOS]], np.int64)
    return dataclasses.replace(corpus, itos=list(itos), **{s: list(map(encode, getattr(corpus, s)))
                                                           for s in ("train", "dev", "test")})


GEN_MODES = [  # (label, GenConfig overrides, form the metrics judge against)
    ("default (a real poem's form, best of --candidates)", {}, None),
    ("old default: --free --candidates 1 --temperature 0.6", dict(free=True, candidates=1, temperature=0.6), None),
    ("--form 5 --lines 4", dict(form=5, lines=4), (5, 4)),
    ("--form 7 --lines 4 --rhyme", dict(form=7, lines=4, rhyme=True), (7, 4)),
    ("--form 5 --lines 8 --rhyme --tones", dict(form=5, lines=8, rhyme=True, tones=True), (5, 8)),
    ("--form 7 --acrostic (3 sets of heads)", dict(form=7), (7, 4)),
]
ACROSTICS = ["春夏秋冬", "风花雪月", "山高水长"]


SAMPLE_CIPAI = ("浣溪沙", "菩萨蛮", "西江月", "水调歌头")                   # three short 词牌 and a long one
CI_MODES = [("", False)] + [(name, rhyme) for rhyme in (False, True) for name in SAMPLE_CIPAI]   # "": unconstrained
CI_UNMASKED = SAMPLE_CIPAI          # a format model's 词牌 written with --no-masks too: what it knows of the form


def judging_book(system, tones, data_dir, ci=False):
    """The rhyme book metrics judge by: 平水韵 (词林正韵 for ci) from rhymes.json, or 中华新韵 over the
    characters of tones {character: (group, level)} (poetics.table_for)."""
    from verse import poetics
    g = GenConfig(rhyme_system=system, cipai="ci" if ci else "")
    return rhyme_book(g, data_dir) or poetics.xinyun_book(tones)


def print_ci_metrics(model, corpus, n, seed, device, rhyme_system="pingshui", data_dir="data"):
    """For free generation and each 词牌 of CI_MODES, n 词 per start character: the share whose lines follow the
    词牌's pattern exactly (free generation: any 词牌's pattern of the table), the share whose rhyme sets rhyme
    (by rhyme_system), distinct-n, copy rate, NLL/token; first the same pattern and rhyme shares for the test
    split's real 词, under both rhyme systems."""
    from verse import poetics
    table = cipai_table(data_dir)
    by_pattern = {}
    for name, e in table.items():
        by_pattern.setdefault(cipai_pattern(e), name)
    classical = classical_table(Config().gen, data_dir)
    tones = poetics.table_for(constraints.Masks(corpus.itos).characters(), classical)
    books = {system: judging_book(system, tones, data_dir, ci=True) for system in ("pingshui", "xinyun")}
    book = books[rhyme_system]
    unk = corpus.itos.index(dataUtil.UNK)
    real = [corpus.decode(p) for p in corpus.test if unk not in p]        # a dropped <unk> would break a line
    named = [(t, f) for t, f in zip(real, cipai_found(real, "", table, by_pattern)) if f is not None]
    rates = ", ".join(f"{RHYME_NAMES[system, True]} "
                      f"{poetics.mean(poetics.ci_rhymes(t, table[name]['rhymes'], b) for t, name in named):.1%}"
                      for system, b in books.items())
    learnt_by = next(iter(table.values())).get("rhyme_book", "xinyun")
    print(f"\ntest split 词 (without <unk>): {len(named)} of {len(real)} ({len(named) / max(len(real), 1):.1%}) follow "
          f"a table 词牌's pattern; their rhyme sets (learnt by {learnt_by}) "
          f"rhyme (classical tones): {rates}")
    train_lines = poetics.train_line_set(corpus.decode(p) for p in corpus.train)
    print(f"\n{n} 词 per start character ({SAMPLE_STARTS}), seed {seed}")
    print("| mode | 词 | pattern valid | rhyme sets rhyme | distinct-1 | distinct-2 | copy rate | NLL/token |\n"
          "|---|---|---|---|---|---|---|---|")
    examples = []
    unmasked = [(name, False, False) for name in CI_UNMASKED] if constraints.reads_formats(model) else []
    for name, rhyme, masks in [(name, rhyme, True) for name, rhyme in CI_MODES] + unmasked:
        label = (f"--cipai {name}{' --rhyme' if rhyme else ''}{'' if masks else ' --no-masks'}" if name
                 else "unconstrained (the model's own length)")
        print(f"generating: {label} ...", file=sys.stderr, flush=True)
        poems = requests.poems_per_key(model, corpus.itos, n, seed, device, SAMPLE_STARTS, "start", cipai=name,
                                       rhyme=rhyme, free=not name, rhyme_system=rhyme_system, masks=masks)
        found = cipai_found(poems, name, table, by_pattern)
        valid = poetics.mean(f is not None for f in found)
        rhymed = poetics.mean(f is not None and poetics.ci_rhymes(p, table[f]["rhymes"], book)
                              for p, f in zip(poems, found))
        m = poetics.measure(poems, train_lines, tones, book)
        print(f"| {label} | {m.poems} | {valid:.1%} | {rhymed:.1%} | {m.distinct_1:.3f} | {m.distinct_2:.3f} | "
              f"{m.copy_rate:.1%} | {text_nll(model, corpus.itos, poems, device):.3f} |")
        examples.append((label, poems[0]))
    for label, poem in examples:
        print(f"\n{label}:\n{format_poem(poem)}")


def cipai_found(poems, name, table, by_pattern):
    """For each poem, the 词牌 whose pattern it follows exactly, else None: 词牌 name, or with name "" any
    table 词牌 (by_pattern: pattern -> 词牌)."""
    want = {cipai_pattern(table[name]): name} if name else by_pattern
    return [want.get(ci_pattern(p)) for p in poems]


RHYME_NAMES = {("pingshui", False): "平水韵", ("pingshui", True): "词林正韵", ("xinyun", False): "中华新韵",
               ("xinyun", True): "中华新韵"}


def print_tone_systems(corpus, classical, data_dir="data"):
    """How many vocabulary characters the classical table covers, and the tone agreement and rhyme rate of the
    test split's regular poems (五/七言 绝句/律诗) under each tone system and rhyme system."""
    from verse import poetics
    chars = constraints.Masks(corpus.itos).characters()
    covered = sum(ch in (classical or {}) for ch in chars)
    print(f"\nclassical tone table: {covered} of {len(chars)} vocabulary characters; "
          f"{len(chars) - covered} fall back to Mandarin")
    real = [t for t in map(corpus.decode, corpus.test) if poetics.form_of(t) in {(5, 4), (5, 8), (7, 4), (7, 8)}]
    print("| tone system | rhyme system | real 绝句/律诗 (test split) | tone agreement | rhyme (level tone) |\n"
          "|---|---|---|---|---|")
    for name, table, rhyme_system in (("classical", classical, "pingshui"), ("classical", classical, "xinyun"),
                                      ("mandarin", None, "xinyun")):
        tones = poetics.table_for(chars, table)
        m = poetics.measure(real, set(), tones, judging_book(rhyme_system, tones, data_dir))
        print(f"| {name} | {RHYME_NAMES[rhyme_system, False]} | {m.poems} | {m.tone_agreement:.1%} | "
              f"{m.rhyme_rate:.1%} |")


def print_generation_metrics(model, corpus, n, seed, device, tone_system="classical", rhyme_system="pingshui",
                             data_dir="data"):
    """The metrics table of poetics.measure for each mode of GEN_MODES, n poems per start (or acrostic),
    generated and judged under one tone system and one rhyme system."""
    from verse import poetics
    itos = corpus.itos
    base = Config().gen
    base.tone_system = tone_system
    classical = classical_table(base, data_dir)
    table = poetics.table_for(constraints.Masks(itos).characters(), classical)
    book = judging_book(rhyme_system, table, data_dir)
    train_lines = poetics.train_line_set(corpus.decode(p) for p in corpus.train)
    real = [t for t in map(corpus.decode, corpus.dev + corpus.test) if t[0] in SAMPLE_STARTS]
    print(f"\n{n} poems per start character ({SAMPLE_STARTS}) or acrostic ({' '.join(ACROSTICS)}), seed {seed}, "
          f"tone system {tone_system}, rhyme system {rhyme_system}, {Config().gen.candidates} candidates a poem by "
          f"default; real: the {len(real)} dev/test poems opening with those characters; disc. = a logistic "
          "regression on character 1-2-grams telling the mode's poems from as many real ones (5-fold "
          "cross-validated accuracy, 50% = indistinguishable)")
    print("| mode | poems | form valid | rhyme | tone agreement | distinct-1 | distinct-2 | copy rate | NLL/token | "
          "length | doubled | disc. |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    real_shape = poetics.shape_measures(real)
    print(f"| real poems | {len(real)} | | | | | | | {text_nll(model, itos, real, device):.3f} | "
          f"{real_shape['length']:.1f} | {real_shape['doubled']:.1%} | |")
    examples = []
    for label, overrides, form in GEN_MODES:
        print(f"generating: {label} ...", file=sys.stderr, flush=True)
        keys, field = (ACROSTICS, "acrostic") if "acrostic" in label else (SAMPLE_STARTS, "start")
        poems = requests.poems_per_key(model, itos, n, seed, device, keys, field, tone_system=tone_system,
                                       rhyme_system=rhyme_system, **overrides)
        m = poetics.measure(poems, train_lines, table, book, form)
        nll = text_nll(model, itos, poems, device)
        disc = poetics.discriminator_accuracy(poems, real, seed=seed) if field == "start" else float("nan")
        shape = poetics.shape_measures(poems)
        print(f"| {label} | {m.poems} | {m.form_valid:.1%} | {m.rhyme_rate:.1%} | {m.tone_agreement:.1%} | "
              f"{m.distinct_1:.3f} | {m.distinct_2:.3f} | {m.copy_rate:.1%} | {nll:.3f} | "
              f"{shape['length']:.1f} | {shape['doubled']:.1%} | "
              f"{'—' if disc != disc else f'{disc:.1%}'} |")
        examples.append((label, poems[0]))
    for label, poem in examples:
        print(f"\n{label}:\n{format_poem(poem)}")


def cmd_export(rest):
    parser = make_parser("main.py export", "a weights-only copy of a checkpoint (what pretrained/ ships)", [])
    parser.add_argument("--ckpt", default="checkpoints/best.pt", help="the checkpoint (default: checkpoints/best.pt)")
    parser.add_argument("--out", default="pretrained/tang.pt", help="where to write (default: pretrained/tang.pt)")
    parser.add_argument("--float32", action="store_true", help="keep float32 storage (default: float16)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument("--data-dir", default="data", help="where the prepared corpus and its tone table live")
    args = parser.parse_args(rest)
    if os.path.isdir(args.out) or args.out.endswith(os.sep):
        raise UserError(f"--out {args.out} is a folder; give the file to write, e.g. {os.path.join(args.out, 'tang.pt')}")
    tables = [(src, os.path.join(os.path.dirname(os.path.abspath(args.out)), name))
              for name in ("tones.json", "rhymes.json", "cipai.json", "forms.json")
              for src in [os.path.join(args.data_dir, "processed", name)] if os.path.isfile(src)]
    tables = [(src, dst) for src, dst in tables if not same_file_content(src, dst)]
    for path in [args.out] + [dst for _, dst in tables]:        # a device, FIFO or folder is never written
        fileio.check_target(path, overwrite=True)
    clash = [p for p in [args.out] + [dst for _, dst in tables] if os.path.exists(p)]
    if clash and not args.overwrite:
        raise UserError(f"{', '.join(clash)} exist(s); pass --overwrite to replace, or --out in another folder")
    copies = []
    for src, dst in tables:                       # the tone and 词牌 tables travel with the model
        with open(src, "rb") as f:
            copies.append((dst, lambda tmp, data=f.read(): open(tmp, "wb").write(data)))
    size = export_weights(args.ckpt, args.out, half=not args.float32, beside=copies)   # all written, or none
    print(f"wrote {args.out} ({size / 2**20:.1f} MiB, weights only)")
    for src, dst in tables:
        print(f"copied {src} beside it")
    return 0


def same_file_content(a, b):
    """Whether file b exists with a's exact bytes."""
    if not os.path.isfile(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def cmd_check(rest):
    from writing import checking           # the command lives there (main.py dispatches to it before torch loads)
    return checking.cmd_check(rest)


def cmd_revise(rest):
    import json
    from verse import prosody
    from writing import workshop
    parser = make_parser("main.py revise", "new versions of one line of a poem (or of its lines from one on), "
                         "ranked with the rest of the poem kept", ["gen"],
                         only={"temperature", "top_k", "top_p", "seed", "ckpt", "cipai", "rhyme_system", "tone_system",
                               "precision", "candidates"})
    parser.add_argument("poem", nargs="?", default=None, help="the poem's text (default: read from stdin)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--line", type=int, help="the line to rewrite (1-based)")
    which.add_argument("--from", dest="from_line", type=int, help="rewrite every line from this one on")
    parser.add_argument("--num", type=int, default=5, help="versions to propose (default: 5)")
    parser.add_argument("--free", action="store_true", help="lift the poem's form, rhyme and tones")
    parser.add_argument("--json", action="store_true", help="print a list of {poem, new, score, nll}")
    device_flag(parser)
    args = parser.parse_args(rest)
    gcfg = check_config(config_from_args(args)).gen
    if not 1 <= args.num <= 50:
        raise UserError("--num: 1 to 50 versions")
    raw = args.poem if args.poem is not None else read_stdin()
    text = prosody.normalise(raw)
    tables = load_tables(strict=False)
    line = args.line if args.line is not None else args.from_line
    workshop.check_request(text, line, gcfg, tables, args.free)         # before any model is named
    device = pick_device(TrainConfig(device=args.device))
    model, _, itos = load_model(gcfg.ckpt, device, ci=bool(gcfg.cipai))
    set_precision(model, gcfg.precision, device)
    text = prosody.normalise(raw, set(itos))              # a variant the model's vocabulary holds stays
    found = workshop.revise(model, itos, text, line, gcfg, tables, device, args.num, args.line is None, args.free)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in found], ensure_ascii=False))
    for k, r in enumerate(found if not args.json else []):
        print(f"[{k + 1}] score {r.score:.3f}  {r.new}\n{format_poem(r.poem)}\n")
    return 0


def read_stdin(limit=100_000):
    """The text piped in, UTF-8 with or without a BOM, at most limit bytes (more is refused, never cut: a cut
    could fall inside a character); a terminal with nothing piped is a UserError: the poem is missing."""
    if sys.stdin is None or sys.stdin.isatty():
        raise UserError("give the poem as an argument, or pipe it in")
    data = sys.stdin.buffer.read(limit + 1)
    if len(data) > limit:
        raise UserError(f"the poem on stdin holds over {limit} bytes; give one poem")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"the poem on stdin is not UTF-8 text (byte {e.start})")


def cmd_serve(rest):
    import ipaddress
    from serve import server
    parser = make_parser("main.py serve", "a local web page to write, revise and check poems", [])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this "
                        "machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument("--ckpt", default="", help="the Tang model (default: as generate picks it)")
    parser.add_argument("--ci-ckpt", default="", help="the 宋词 model (default: pretrained/ci.pt when shipped)")
    parser.add_argument("--max-batch", type=int, default=server.MAX_ROWS,
                        help=f"candidate rows generated together at most (default: {server.MAX_ROWS}; 1 serves "
                        "one request at a time)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="the models' matmuls (default: auto, bf16 where the CPU or GPU multiplies it natively: "
                        "twice the poems a second; a poem for a seed is then generate --precision bf16's)")
    device_flag(parser)
    args = parser.parse_args(rest)
    if not 0 < args.port < 65536 or not 1 <= args.max_batch <= 4096:
        raise UserError("--port in 1-65535, --max-batch in 1-4096")
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    import socket
    try:                                       # a port in use is said before the models load
        with socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((args.host, args.port))
    except OSError as e:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}")
    if not loopback:
        print(f"warning: --host {args.host} serves the page to other machines too; it has no login",
              file=sys.stderr)
    device = pick_device(TrainConfig(device=args.device))
    models = {"tang": load_model(args.ckpt, device)}
    ci_path = args.ci_ckpt or pick_checkpoint("", ci=True)
    if args.ci_ckpt or ci_path.endswith("ci.pt"):
        models["ci"] = load_model(ci_path, device)
    for model, _, _ in models.values():
        precision, why = set_precision(model, args.precision, device)
    print(f"precision {precision} ({why})", flush=True)
    engine = server.Engine({g: (m, itos) for g, (m, _, itos) in models.items()}, device, args.max_batch)
    server.serve(engine, args.host, args.port)
    return 0


def cmd_experiment(rest):
    if rest and rest[0] == "cells":            # the cells study (studies/cells_study.py)
        from studies import cells_study
        return cells_study.cmd_cells(rest[1:])
    if rest and rest[0] == "regularizers":     # studies/regularizer_study.py (it builds on experiments.py)
        from studies import regularizer_study
        return regularizer_study.cmd_regularizers(rest[1:])
    from studies import experiments
    return experiments.cmd_experiment(rest)


def cmd_inspect(rest):
    from studies import lstm_inspect     # what the LSTM's cells do over a poem
    return lstm_inspect.cmd_inspect(rest)


USAGE = """python main.py COMMAND [flags]   (python main.py COMMAND --help: its flags, each with a description)

  generate    write poems: --start 日, --form 5|7 --lines 4|8, --rhyme, --tones, --acrostic 春夏秋冬,
              --cipai 菩萨蛮 (a 宋词), --keywords 春风 明月, --num, --seed
  revise      new versions of one line of a poem (--line K), or of its lines from one on (--from K)
  check       the 格律 check of a poem: form, tones, rhyme, the rules it breaks
  serve       the web page and its JSON API on this machine (http://127.0.0.1:8000/)
  train       train the LSTM on the 全唐诗 (fetched and prepared on first use)
  evaluate    perplexity of a model on dev and test; --samples N: generation metrics
  export      a weights-only copy of a checkpoint, with its tables (what pretrained/ ships)
  experiment  the studies: init, optim, recipe, regularizers, rerank, rhyme, keywords, form, gelv
  inspect     what the LSTM's cells do over a poem: each cell's state and gates at every character

generate, revise and evaluate use --ckpt when given, else checkpoints/best.pt when it exists, else the shipped
pretrained/tang.pt (a 宋词: pretrained/ci.pt), and say on stderr which. A mistake is one line on stderr and exit
code 2; a failure of the machine (full disk, unwritable place) exit 1; Ctrl-C exit 130. More: README.md."""


def main(argv):
    commands = {"train": cmd_train, "generate": cmd_generate, "evaluate": cmd_evaluate, "experiment": cmd_experiment,
                "export": cmd_export, "check": cmd_check, "revise": cmd_revise, "serve": cmd_serve}
    commands["inspect"] = cmd_inspect
    if argv and argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if not argv or argv[0] not in commands:
        hint = suggest(argv[0], list(commands)) if argv else ""
        raise UserError(f"usage: python main.py {{{'|'.join(commands)}}} [flags]  (--help after the command){hint}")
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)     # from here run_cli and training handle it
    sys.exit(run_cli(main))
