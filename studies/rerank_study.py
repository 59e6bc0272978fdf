"""The re-ranking study: candidates x temperature -> what a reader gets (python main.py experiment rerank;
writes docs/rerank_study.md).
"""
import os
import time

from common import fileio
from config import SAMPLE_STARTS, UserError, make_parser
from studies.base import study_model


def cmd_rerank(rest):
    """python main.py experiment rerank [--ckpt PATH] [--samples N] [--candidates 1,2,4,8] [--temperatures ...]"""
    parser = make_parser("main.py experiment rerank", "candidates x temperature: the default poem's measures", [])
    parser.add_argument("--ckpt", default="", help="the model (default: as generate picks it)")
    parser.add_argument("--samples", type=int, default=40, help="poems per start character and setting")
    parser.add_argument("--candidates", default="1,2,4,8", help="comma-separated candidate counts")
    parser.add_argument("--temperatures", default="0.6,0.8,1.0", help="comma-separated temperatures")
    parser.add_argument("--docs-dir", default="docs", help="where rerank_study.md goes (default: docs)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing rerank_study.md")
    args = parser.parse_args(rest)
    doc = os.path.join(args.docs_dir, "rerank_study.md")
    fileio.check_target(doc, args.overwrite)          # the committed study is replaced only when told to
    try:
        counts = [int(x) for x in args.candidates.split(",")]
        temps = [float(x) for x in args.temperatures.split(",")]
    except ValueError:
        raise UserError("--candidates and --temperatures: comma-separated numbers, e.g. 1,2,4 and 0.6,0.8")
    if not counts or not temps or min(counts) < 1 or max(counts) > 64 or not all(0 < t <= 100 for t in temps) \
            or not 1 <= args.samples <= 1000:
        raise UserError("--candidates in 1-64, --temperatures in (0, 100], --samples in 1-1000")
    path, model, itos, corpus = study_model(args.ckpt)
    rows = run_rerank(model, itos, corpus, args.samples, counts, temps)
    write_rerank_table(rows, path, args, doc)
    return 0


def run_rerank(model, itos, corpus, n, counts, temps, starts=SAMPLE_STARTS):
    """For each (candidates, temperature), n default poems per start character: their measures against the
    real dev/test poems that open with those characters."""
    from writing import requests
    from verse import poetics
    from training.perplexity import text_nll
    real = [t for t in map(corpus.decode, corpus.dev + corpus.test) if t[0] in starts]
    train_lines = poetics.train_line_set(corpus.decode(p) for p in corpus.train)
    rows = [real_row(model, itos, real)]
    for temp in temps:
        for k in counts:
            t0 = time.time()
            poems = requests.poems_per_key(model, itos, n, 0, "cpu", starts, "start", candidates=k, temperature=temp)
            rows.append(poem_row(f"{k} x τ {temp}", poems, real, train_lines, time.time() - t0,
                                 text_nll(model, itos, poems, "cpu")))
            print(f"  {rows[-1]}", flush=True)
    return rows


def real_row(model, itos, real):
    from verse import poetics
    from training.perplexity import text_nll
    return {"setting": "real poems", "poems": len(real), **poetics.shape_measures(real),
            "nll": text_nll(model, itos, real, "cpu"), "copy": float("nan"), "disc": float("nan"),
            "seconds": float("nan")}


def poem_row(label, poems, real, train_lines, seconds, nll):
    from verse import poetics
    lines = [l.rstrip(poetics.LINE_ENDS) for p in poems for l in poetics.split_lines(p)]
    return {"setting": label, "poems": len(poems), **poetics.shape_measures(poems), "nll": nll,
            "copy": poetics.mean(l in train_lines for l in lines if l),
            "disc": poetics.discriminator_accuracy(poems, real), "seconds": seconds / len(poems)}


def write_rerank_table(rows, path, args, doc):
    lines = ["# Re-ranking study", "",
             f"Command: `python main.py experiment rerank --samples {args.samples} --candidates {args.candidates} "
             f"--temperatures {args.temperatures}` on `{os.path.relpath(path)}` (this machine's CPU; {args.samples} "
             "default poems per start character 日红山夜湖海月 and setting, each the best of N candidates by "
             "`poetics.rerank_score`, its form drawn from the real poems' forms). Real: the dev/test poems that "
             "open with those characters. disc.: a logistic regression on character 1-2-grams telling the "
             "setting's poems from real ones with the same first characters, equally many (5-fold "
             "cross-validated accuracy; 50% = indistinguishable). doubled: poems with a character twice in a line "
             "away from its first use (萧萧 not counted). opening: poems whose first character comes three times or "
             "more. short: poems of 1-2 lines.", "",
             "| setting (candidates x temperature) | poems | mean length | short | doubled | opening | NLL/token | "
             "copy rate | disc. | seconds / poem |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['poems']} | {r['length']:.1f} | {r['short']:.1%} | {r['doubled']:.1%} | "
                     f"{r['opening']:.1%} | {r['nll']:.3f} | {r['copy']:.1%} | {r['disc']:.1%} | {r['seconds']:.3f} |")
    fileio.write_text(doc, "\n".join(lines).replace("nan%", "—").replace("| nan |", "| — |") + "\n")
    print(f"wrote {doc}")
