"""`python main.py experiment form`: what a model with format inputs knows of the form, real poems beside it.

Rows: the test split's real poems that open with the start characters; the default poem (masks on: rhyme for a
format model); `--no-masks` (the format inputs alone keep the form). Measures per row: exact form (the form
asked for), even-line rhyme (平水韵, level), 重字 (a character met again in the poem, a doubling 萧萧 counted
once), doubling (two identical characters side by side), mean length, tone agreement with the target pattern
(positions 2, 4, 6 as the drawn pattern wants them), the discriminator (poetics.discriminator_accuracy), NLL per
token, and how often the masks had to act (the model's own probability outside the mask, at rhyme slots and
at all masked steps); then the re-ranking's weight on doublings swept over one set of default candidates. Also
the test perplexity with every format input unknown and with them known, over all targets and over characters
only (marks and <eos> excluded), as papers that count that way report it.
"""
import os
import time

import numpy as np
import torch

import dataUtil
from writing import decoding
from writing import requests
from writing import constraints
from common import fileio
from verse import duizhang
from verse import formats
from verse import poetics
from config import SAMPLE_STARTS, GenConfig, UserError, make_parser
from verse.text import PUNCT
from verse.tables import pairs_table, verse_tables
from training.inputs import poem_formats



def repeats(text):
    """Whether a character comes back in the poem (a doubling counts once) and whether two identical characters
    stand side by side."""
    chars = [c for c in text if c not in poetics.LINE_ENDS + "、："]
    runs = [c for k, c in enumerate(chars) if k == 0 or chars[k - 1] != c]
    return len(set(runs)) < len(runs), any(a == b for a, b in zip(chars, chars[1:]))


def tone_hits(text, fmt, tone):
    """(agreeing, judged) positions where fmt's target tone is 平 or 仄 and the character's tone is known."""
    hit = total = 0
    for i, line in enumerate(l[:-1] for l in poetics.split_lines(text)):
        targets = fmt.tones[i] if fmt is not None and i < len(fmt.tones) else ()
        for ch, want in zip(line, targets):
            t = tone(ch)
            if want in (1, 2) and t is not None:
                total += 1
                hit += t == poetics.BOTH or formats.TONE_VALUE[t] == want
    return hit, total


def measures(poems, book, tone, fmts=None, wanted=None):
    """The row's shares over poems (fmts/wanted: each poem's Format and (chars, lines) asked for)."""
    reps = [repeats(p) for p in poems]
    hits = [tone_hits(p, f, tone) for p, f in zip(poems, fmts)] if fmts else []
    return {"poems": len(poems),
            "form": poetics.mean(poetics.form_of(p) == w for p, w in zip(poems, wanted)) if wanted else float("nan"),
            "rhyme": poetics.mean(poetics.rhymes(p, book) for p in poems),
            "repeat": poetics.mean(r for r, _ in reps), "double": poetics.mean(d for _, d in reps),
            "length": poetics.mean(map(len, poems)),
            "tones": sum(h for h, _ in hits) / max(sum(t for _, t in hits), 1) if hits else float("nan")}


def sampled(model, itos, gcfg, n_per_start, device="cpu", seed0=0):
    """For each start character (seed seed0 + its index): [(candidate texts, their NLLs, their specs)] of each of
    its n_per_start poems, the request's 对仗 table, and its mask log (decoding.sample_scored's; the row index
    of candidate j of poem i is i * candidates + j)."""
    for k, ch in enumerate(SAMPLE_STARTS):
        log = []
        g = GenConfig(**{**vars(gcfg), "start": ch, "seed": seed0 + k, "num": n_per_start})
        req = requests.make_request(itos, g, told=constraints.reads_formats(model))
        r = requests.rows_of(model, itos, req, range(n_per_start), device)
        texts, nlls = decoding.sample_scored(model, itos, r.starts, g, device, r.streams, r.specs, tables=r.tables,
                                             primes=r.primes, mask_log=log, answers=req.answers)
        c = g.candidates
        yield [(texts[i * c:(i + 1) * c], nlls[i * c:(i + 1) * c], r.specs[i * c:(i + 1) * c])
               for i in range(n_per_start)], req.pairs, log


def generated(model, itos, gcfg, n_per_start, device="cpu"):
    """(poems, their Formats, the forms asked for, the mask log of every candidate, that of the kept poems
    alone) of n_per_start default poems per start; a log holds (at a rhyme slot, probability cut, the part of
    it on characters already rhymed on)."""
    poems, fmts, wanted, log, kept_log = [], [], [], [], []
    for groups, pairs, start_log in sampled(model, itos, gcfg, n_per_start, device):
        kept = set()
        for i, (texts, nlls, specs) in enumerate(groups):
            best = requests.best_of(texts, nlls, pairs)
            j = texts.index(best.text)
            kept.add(i * len(texts) + j)
            poems.append(best.text)
            fmts.append(constraints.format_for(specs[j]))
            wanted.append((specs[j].chars, specs[j].lines))
        log += [(at, p, reuse) for at, p, _, reuse in start_log]
        kept_log += [(at, p, reuse) for at, p, row, reuse in start_log if row in kept]
    return poems, fmts, wanted, log, kept_log


PAIRS_SWEEP = (0.0, 0.1, 0.15, 0.25)      # the re-ranking's weight on doublings (poetics.RERANK_WEIGHTS["pairs"])


def pairs_sweep(model, itos, n_per_start, candidates):
    """[(weight, 重字 share, doubling share, poems)]: the same default candidates (seeds 1000 on, none of the
    study's rows' poems) re-ranked with each weight on doublings in place of the shipped one."""
    groups = [g for gs, pairs, _ in sampled(model, itos, GenConfig(candidates=candidates), n_per_start, seed0=1000)
              for g in ((*g, pairs) for g in gs)]
    rows = []
    for w in PAIRS_SWEEP:
        weights = {**poetics.RERANK_WEIGHTS, "pairs": w}
        reps = [repeats(requests.best_of(texts, nlls, pairs, weights).text) for texts, nlls, _, pairs in groups]
        rows.append((w, poetics.mean(r for r, _ in reps), poetics.mean(d for _, d in reps), len(reps)))
        print(f"  re-ranking weight on doublings {w:g}: 重字 {rows[-1][1]:.1%}, doubling {rows[-1][2]:.1%}", flush=True)
    return rows


def real_rhyme_cut(model, itos, texts, read, book):
    """At the rhyme slots of the real poems among texts whose group is known, each read with its own format
    inputs (teacher forcing): (the model's mean probability outside the told 平水韵 group's level characters,
    its mean probability on the poem's earlier rhyme characters (重韵), slots): what a rhyme mask would cut in
    the poets' own contexts, the reference for the generated rows' "mask acted"."""
    stoi = {w: i for i, w in enumerate(itos)}
    member = constraints.Masks(itos, book=book).rhyme_members()[poetics.LEVEL]     # (V, G), as the mask reads
    cut, reuse = [], []
    for text in texts:
        fmt = read(text)
        if fmt is None or not any(fmt.rhyme_lines.values()):
            continue
        rhymed = []
        feats, pair = formats.features(text, fmt, stoi)                          # (n + 1, K), (n + 1,)
        ids, _ = dataUtil.encode([text], stoi)                                   # <bos> text <eos>
        with torch.no_grad():
            logits, _ = model(torch.from_numpy(ids[:-1])[:, None], feats=torch.from_numpy(feats)[:, None],
                              pair=torch.from_numpy(pair)[:, None])              # (n + 1, 1, V)
        probs = torch.softmax(logits[:, 0].float(), -1).numpy()
        for t in np.flatnonzero(feats[:, formats.COLUMN["slot"]] == 2):
            g = feats[t, formats.COLUMN["group"]] - 1
            if 0 <= g < len(book.groups):
                cut.append(float(probs[t][~member[:, g]].sum()))
                reuse.append(float(probs[t][sorted(set(rhymed))].sum()) if rhymed else 0.0)
            rhymed.append(int(ids[t + 1]))                                       # the target at slot t
    nan = float("nan")
    return (poetics.mean(cut) if cut else nan), (poetics.mean(reuse) if reuse else nan), len(cut)


def rhyme_acted(log):
    """(the mean probability the masks cut at rhyme slots, the mean part of it on characters already rhymed on)
    over a mask log's entries (nan: none)."""
    cut = [(p, reuse) for at, p, reuse in log if at]
    nan = float("nan")
    return (poetics.mean(p for p, _ in cut), poetics.mean(r for _, r in cut)) if cut else (nan, nan)


def perplexities(model, itos, corpus, cfg):
    """Test perplexity with format inputs unknown and known, over all targets and over characters only."""
    from training.perplexity import evaluate
    pad = itos.index(dataUtil.PAD)
    told = poem_formats(corpus.test, itos, cfg) if constraints.reads_formats(model) else None
    out = {"unknown": evaluate(model, corpus.test, pad, 256, "cpu")["ppl"]}
    if told is not None:
        out["known"] = evaluate(model, corpus.test, pad, 256, "cpu", formats=told)["ppl"]
    chars = [np.where(np.isin(np.array(itos)[p], list(PUNCT) + [dataUtil.EOS]), pad, p) for p in corpus.test]
    keep = [np.concatenate([[p[0]], c[1:]]) for p, c in zip(corpus.test, chars)]       # targets: characters only
    out["unknown_chars"] = char_ppl(model, corpus.test, keep, pad, None)
    if told is not None:
        out["known_chars"] = char_ppl(model, corpus.test, keep, pad, told)
    return out


@torch.no_grad()
def char_ppl(model, poems, targets_of, pad, told):
    """Perplexity over the ideograph targets only: the inputs are the poems, the targets with marks as pad."""
    from model import masked_nll
    from training.inputs import batch_formats
    total, count = 0.0, 0
    model.eval()
    for idx in dataUtil.length_batches([len(p) for p in poems], 256):
        inputs, _ = dataUtil.pad_batch([poems[i] for i in idx], pad)
        _, targets = dataUtil.pad_batch([targets_of[i] for i in idx], pad)
        feats, pair = batch_formats(told, idx, inputs.shape[0], "cpu")
        logits, _ = model(torch.from_numpy(inputs), None, *((feats, pair) if feats is not None else ()))
        nll, n = masked_nll(logits, torch.from_numpy(targets), pad)
        total, count = total + nll.item(), count + n
    return float(np.exp(total / count))


def run(model, itos, corpus, cfg, n, candidates):
    tones, book, _, _ = verse_tables(dataUtil.processed_dir(cfg))
    tone = lambda ch: poetics.CLASSICAL.get(tones.get(ch))           # noqa: E731
    read = formats.Formatter(tones, book)
    from training.perplexity import text_nll
    real = [t for t in (dataUtil.text_of(p, itos) for p in corpus.test) if t[0] in SAMPLE_STARTS and read(t) is not None]
    outside, reuse, _ = real_rhyme_cut(model, itos, real, read, book)
    rows = [{"setting": "real test poems", **measures(real, book, tone, [read(t) for t in real]),
             "nll": text_nll(model, itos, real, "cpu"), "disc": float("nan"), "acted": (outside + reuse, reuse),
             "acted_kept": float("nan"), "acted_all": float("nan")}]
    for label, masks in (("default", True), ("--no-masks", False)):
        t0 = time.time()
        gcfg = GenConfig(candidates=candidates, masks=masks)
        poems, fmts, wanted, log, kept_log = generated(model, itos, gcfg, n)
        rows.append({"setting": label, **measures(poems, book, tone, fmts, wanted),
                     "nll": text_nll(model, itos, poems, "cpu"), "disc": poetics.discriminator_accuracy(poems, real),
                     "acted": rhyme_acted(log), "acted_kept": rhyme_acted(kept_log)[0],
                     "acted_all": poetics.mean(p for _, p, _ in log) if log else float("nan"),
                     "seconds": (time.time() - t0) / len(poems), "sample": poems[:4]})
        print(f"  {label}: {rows[-1]['rhyme']:.1%} rhyme, {rows[-1]['form']:.1%} form", flush=True)
    return rows, perplexities(model, itos, corpus, cfg)


# ----------------------------------------------------------------------------------------------------------
# 对仗: the middle couplets of 律诗, real and written, with and without the pair input and the re-ranking term

PAIR_BONUS_SWEEP = (0.1, 0.2, 0.5, 1.0)
COUPLET_SETTINGS = (("default", {}), ("no pair input", {"pair_input": False}),
                    ("no 对仗 re-ranking", {"pair_rerank": False}), ("no pair bonus", {"pair_bonus": 0.0}),
                    ("none of the three", {"pair_input": False, "pair_rerank": False, "pair_bonus": 0.0}),
                    ("--no-masks", {"masks": False}),
                    ("penalty spared on the answering lines", {"pair_spare": True}),
                    ("no repetition penalty", {"repetition_penalty": 1.0}),
                    *((f"pair bonus {v:g}", {"pair_bonus": v}) for v in PAIR_BONUS_SWEEP))


def lushi(model, itos, n_per_start, candidates, settings, tables_cache):
    """n_per_start 律诗 per start character (五言 and 七言 in turn), written with the GenConfig settings."""
    poems = []
    for k, ch in enumerate(SAMPLE_STARTS):
        g = GenConfig(start=ch, seed=k, num=n_per_start, form=(5, 7)[k % 2], lines=8, candidates=candidates,
                      **settings)
        poems += [c.text for c in requests.iter_poems(model, itos, g, "cpu", tables_cache=tables_cache)]
    return poems


def split_tables(train_texts):
    """The train split in three parts, in order: the 对仗 table generation reads in this study (re-ranking and
    pair bonus) from the first half, and the significant pairs alone (no classes) of the third quarter (what the
    bonus was chosen on) and of the last quarter (the held-out measure: neither table nor weight fitted on it; the
    model itself trained on all of train)."""
    n = len(train_texts)
    table = duizhang.table_from(duizhang.build(train_texts[:n // 2]))
    return table, pairs_of(train_texts[n // 2:3 * n // 4]), pairs_of(train_texts[3 * n // 4:])


def pairs_of(texts):
    poems = [c for c in map(duizhang.lu_couplets, texts) if c]
    aligned, expected, _ = duizhang.count_couplets(poems)
    return duizhang.significant_pairs(aligned, expected)


def couplet_measures(poems, real, table, tuning, heldout):
    """Mean 对仗 score of the 颔联 and 颈联 (duizhang.score), the share called parallel, the shares of their aligned
    pairs in the tuning and held-out quarters' pairs, 重字, and the discriminator against real 律诗."""
    scores = [v for v in (duizhang.score(p, table) for p in poems) if v is not None]
    aligned = [duizhang.pair_key(x, y)
               for x, y in duizhang.aligned_pairs([c for c in map(duizhang.lu_couplets, poems) if c])]
    return {"poems": len(poems), "score": float(np.mean(scores)) if scores else float("nan"),
            "parallel": poetics.mean(v >= table.thresholds["parallel"] for v in scores),
            "tuning": poetics.mean(k in tuning for k in aligned), "heldout": poetics.mean(k in heldout for k in aligned),
            "repeat": poetics.mean(repeats(p)[0] for p in poems),
            "disc": poetics.discriminator_accuracy(poems, real) if poems is not real else float("nan")}


def couplet_study(model, itos, corpus, n, candidates):
    """Rows of couplet_measures: real test 律诗, then each of COUPLET_SETTINGS; and a few couplets side by side."""
    table = pairs_table()
    first_half, tuning, heldout = split_tables([dataUtil.text_of(p, itos) for p in corpus.train])
    real = [t for t in (dataUtil.text_of(p, itos) for p in corpus.test) if duizhang.LU.fullmatch(t)]
    rows = [{"setting": "real test 律诗", **couplet_measures(real, real, table, tuning, heldout), "sample": real[:3]}]
    for label, settings in COUPLET_SETTINGS:
        poems = lushi(model, itos, n, candidates, settings, {"duizhang.json": first_half})
        rows.append({"setting": label, **couplet_measures(poems, real, table, tuning, heldout), "sample": poems[:3]})
        print(f"  律诗 {label}: 对仗 {rows[-1]['score']:.2f}, parallel {rows[-1]['parallel']:.1%}", flush=True)
    return rows


def couplet_lines(rows, args):
    out = ["", "## 对仗: the 颔联 and 颈联 of 律诗", "",
           f"{args.couplets} 律诗 per start character and setting (五言 and 七言 in turn), each the best of "
           f"{args.candidates} candidates; real: the test split's 律诗. 对仗 score: the mean position score of the "
           "颔联 and 颈联 (duizhang.score, the re-ranking's term); parallel: the share at or above the table's "
           "`parallel` threshold. The train split is cut in three, in order: generation here reads a 对仗 table "
           "built from its first half alone (re-ranking and pair bonus); tuning pairs: the share of the middle "
           "couplets' aligned character pairs that the third quarter alone finds significant (the pair bonus "
           "was chosen on it); held-out pairs: the same by the last quarter (neither the table nor the weight was "
           "fitted on it; the model itself was trained on the whole train split; quarters in corpus order). "
           "Pair input: the second line of each middle couplet reads the character it answers; re-ranking: "
           "the 对仗 term of the candidates' score; pair bonus: nats per bit of the table's lift added to the "
           "partners of the character answered. The repetition penalty acts on every line by default; the rows "
           "with it spared on the answering lines, and with no penalty at all, show what it costs there.", "",
           "| setting | poems | 对仗 score | parallel | tuning pairs | held-out pairs | 重字 | disc. |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['setting']} | {r['poems']} | {r['score']:.3f} | {pct(r['parallel'])} | {pct(r['tuning'])} "
                   f"| {pct(r['heldout'])} | {pct(r['repeat'])} | {pct(r['disc'])} |")
    out.append("")
    for r in rows:
        out += [f"{r['setting']}, middle couplets:", ""]
        for c in filter(None, map(duizhang.lu_couplets, r["sample"])):         # --no-masks: not always a 律诗
            out += [f"    {a}，{b}。" for a, b in c[1:3]] + [""]
    return out


def sweep_lines(sweep, real, args):
    out = ["## Doublings: the re-ranking's weight on them", "",
           f"{args.sweep_samples} default poems per start character (seeds 1000-{999 + len(SAMPLE_STARTS)}, not the "
           f"table's), each the best of {args.candidates} candidates, the same candidates re-ranked with each weight "
           "on a doubling (poetics.RERANK_WEIGHTS[\"pairs\"], per pair of identical characters side by side) in "
           f"place of the shipped {poetics.RERANK_WEIGHTS['pairs']:g}. Real test poems: 重字 {pct(real['repeat'])}, "
           f"doubling {pct(real['double'])}.", "",
           "| weight on doublings | poems | 重字 | doubling |", "|---|---|---|---|"]
    out += [f"| {w:g} | {n} | {pct(rep)} | {pct(dbl)} |" for w, rep, dbl, n in sweep]
    return out + [""]


def pct(v):
    return "—" if v != v else f"{v:.1%}"


def write(rows, ppl, path, ckpt, args, couplets=(), sweep=()):
    out = ["# What the format inputs teach: the form study", "",
           f"Command: `python main.py experiment form --ckpt {ckpt} --samples {args.samples} --candidates "
           f"{args.candidates} --couplets {args.couplets} --sweep-samples {args.sweep_samples}` (this machine's CPU). {args.samples} poems per start character {SAMPLE_STARTS}, each the best "
           "of the candidates, its form, tone pattern, 首句入韵 and rhyme group drawn as the train poems' go; real: "
           "the test split's regular poems with those first characters. Tone agreement: positions whose target "
           "(the drawn pattern's 2, 4, 6 and line ends) the character's classical tone keeps. Mask acted: the "
           "model's own probability outside the mask, at rhyme slots of every candidate (of it 重韵: on characters the poem "
           "has already rhymed on, which the mask bans) / of the poems kept / at every masked step; for the real "
           "poems, what a rhyme mask would cut in the poets' own contexts, each poem read with its own format inputs "
           "(outside the told group's level characters, or on an earlier rhyme character of the poem).", "",
           "| setting | poems | exact form | even-line rhyme | 重字 | doubling | length | tone agreement | NLL/token "
           "| disc. | mask acted (rhyme) | of it 重韵 | (rhyme, kept poems) | mask acted (all) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['setting']} | {r['poems']} | {pct(r['form'])} | {pct(r['rhyme'])} | {pct(r['repeat'])} | "
                   f"{pct(r['double'])} | {r['length']:.1f} | {pct(r['tones'])} | {r['nll']:.3f} | {pct(r['disc'])} | "
                   f"{pct(r['acted'][0])} | {pct(r['acted'][1])} | {pct(r['acted_kept'])} | {pct(r['acted_all'])} |")
    out += ["", "Test perplexity over real tokens: " + ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in ppl.items())
            + " (unknown: every format input unknown, as a model without them reads; chars: characters only, marks "
              "and <eos> excluded).", ""]
    for r in rows[1:]:
        out += [f"{r['setting']}, the first poems:", ""] + [f"    {p}" for p in r["sample"]] + [""]
    if sweep:
        out += sweep_lines(sweep, rows[0], args)
    if couplets:
        out += couplet_lines(couplets, args)
    fileio.write_text(path, "\n".join(out) + "\n")
    print(f"wrote {path}")


def cmd_form(rest):
    """python main.py experiment form [--ckpt PATH] [--samples N] [--candidates N] [--out docs/form_study.md]"""
    parser = make_parser("main.py experiment form", "what the format inputs teach (rhyme, form, repeats)", [])
    parser.add_argument("--ckpt", default="", help="the model (default: as generate picks it)")
    parser.add_argument("--samples", type=int, default=20, help="poems per start character and setting")
    parser.add_argument("--candidates", type=int, default=8, help="candidates per poem")
    parser.add_argument("--couplets", type=int, default=4, help="律诗 per start character and 对仗 setting (0: none)")
    parser.add_argument("--sweep-samples", type=int, default=32, help="poems per start character of the re-ranking "
                        "sweep on doublings (0: none)")
    parser.add_argument("--out", default="docs/form_study.md", help="the study's Markdown (default: docs/form_study.md)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(rest)
    if not 1 <= args.samples <= 1000 or not 1 <= args.candidates <= 64 or not 0 <= args.couplets <= 1000 \
            or not 0 <= args.sweep_samples <= 1000:
        raise UserError("--samples in 1-1000, --candidates in 1-64, --couplets and --sweep-samples in 0-1000")
    if os.path.lexists(args.out) and not args.overwrite:
        raise UserError(f"{args.out} exists; pass --overwrite to replace it or --out another file")
    from studies.base import study_model
    path, model, itos, corpus = study_model(args.ckpt)
    from config import Config
    from training.checkpoint import load_checkpoint
    cfg = Config.from_dict(load_checkpoint(path)["config"])
    rows, ppl = run(model, itos, corpus, cfg, args.samples, args.candidates)
    sweep = pairs_sweep(model, itos, args.sweep_samples, args.candidates) if args.sweep_samples else ()
    couplets = couplet_study(model, itos, corpus, args.couplets, args.candidates) if args.couplets else ()
    write(rows, ppl, args.out, os.path.relpath(path), args, couplets, sweep)
    return 0
