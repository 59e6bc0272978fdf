"""对仗: the table built from the prepared corpus, and the numbers of docs/duizhang.md (verse/duizhang.py is the
table's logic; this is its command line and its study).

    python -m studies.duizhang_study build [--out PATH]          # pretrained/duizhang.json from the train split
    python -m studies.duizhang_study study [--heldout dev|test]  # the numbers of docs/duizhang.md, as JSON
"""
import argparse
import json
import sys
from collections import Counter

import numpy as np

import dataUtil
from verse.duizhang import (NAMES, SAME_STRUCTURE, aligned_pairs, build, count_couplets, couplet_means,
                            default_path, judge, load, log_likelihood, lu_couplets, significant_pairs,
                            structure_agreement, table_from, tone_reader, write_duizhang_table)
from verse.poetics import LEVEL, OBLIQUE
from verse.tables import verse_tables


def verdict_shares(poems, table, which, tones=None):
    """{verdict: share} over the given couplets of the poems."""
    counts = Counter(judge(*poem[k], table, tones)["verdict"] for poem in poems for k in which)
    total = sum(counts.values()) or 1
    return {v: round(counts[v] / total, 3) for v in ("parallel", "weak", "not parallel")}


def study(train_texts, heldout_texts, tones=None, table=None):
    """The numbers of docs/duizhang.md: the table built from train_texts (unless given); the significance
    measure's controls on the train poems; each couplet's verdict shares (with and without tones), its mean
    score aligned and shifted by one position, and how often its pairs are in the table, on the train poems (the
    calibration's), the held-out ones, and the held-out ones whose tones follow a 律诗's pattern (regulated)."""
    table = table or table_from(build(train_texts))
    train = [c for c in map(lu_couplets, train_texts) if c]
    held = [c for c in map(lu_couplets, heldout_texts) if c]
    tone = tone_reader(tones)
    strict = [c for t, c in ((t, lu_couplets(t)) for t in heldout_texts) if c and regulated(c, tone)]
    return {"table": {"poems": table.meta["poems"], "aligned_pairs": table.meta["aligned_pairs"],
                      "pairs": len(table.pairs) // 2, "classed": len(table.classes),
                      "classes": len(table.class_scores), "thresholds": table.thresholds},
            "controls": controls(train), "poems": {"train": len(train), "heldout": len(held), "regulated": len(strict)},
            "train": couplet_rows(train, table, tones), "heldout": couplet_rows(held, table, tones),
            "regulated": couplet_rows(strict, table, tones) if tones is not None else None,
            "same_structure": same_structure_share(held, table),
            "top_pairs": top_pairs(train), "classes": class_examples(table)}


def regulated(couplets, tone, fit=0.9):
    """True when the poem's positions 2, 4, 6 follow one of the two 律诗 tone patterns (粘 and 对) at fit or better
    (formats.tone_fit)."""
    from verse import formats
    lines = [line for pair in couplets for line in pair]
    return any((formats.tone_fit(lines, tone, first) or 0.0) >= fit for first in (LEVEL, OBLIQUE))


def couplet_rows(poems, table, tones):
    """{couplet name: verdict shares with and without tones, mean score aligned and shifted by one, share of
    aligned pairs in the table}."""
    def mean_of(rows):
        return round(float(np.mean([m for m, _ in rows])), 3) if rows else None
    out = {}
    for k, name in enumerate(NAMES):
        s = [table.pairs.get(x + y) for x, y in aligned_pairs(poems, (k,))]
        out[name] = {"with_tones": verdict_shares(poems, table, (k,), tones) if tones is not None else None,
                     "without_tones": verdict_shares(poems, table, (k,)),
                     "mean": mean_of(couplet_means(poems, table, (k,))),
                     "mean_shifted": mean_of(couplet_means(poems, table, (k,), 1)),
                     "in_table": round(sum(v is not None for v in s) / max(len(s), 1), 3)}
    return out


def controls(poems):
    """How many pairs the significance test keeps when learnt, as the table is, from one couplet of each train
    poem: the 颔联 and the 颈联, the 首联 and 尾联 (which need not be parallel), and the 颔联 shifted by one position
    (position j of line a against j + 1 of line b: the same characters, the alignment broken — the null)."""
    sources = {"颔联": ((1,), 0), "颈联": ((2,), 0), "首联": ((0,), 0), "尾联": ((3,), 0), "颔联 shifted": ((1,), 1)}
    out = {}
    for name, (which, shift) in sources.items():
        aligned, expected, _ = count_couplets(poems, which, shift)
        out[name] = len(significant_pairs(aligned, expected))
    return out


def same_structure_share(poems, table):
    """Over the poems whose 颔联 and 颈联 can be compared: how many, the largest and the 99th percentile of
    structure_agreement, and the share called same_structure."""
    found = [structure_agreement(p[1], p[2], table) for p in poems]
    judged = [f for f in found if f is not None]
    if not judged:
        return {"judged": 0}
    return {"judged": len(judged), "max": round(max(judged), 3), "p99": round(float(np.percentile(judged, 99)), 3),
            "same_structure": round(sum(f >= SAME_STRUCTURE for f in judged) / len(judged), 4)}


def top_pairs(poems, n=30):
    """The n kept pairs of the 颔联/颈联 of the poems with the highest G²: [(x+y, count, bits)]."""
    aligned, expected, _ = count_couplets(poems)
    kept = significant_pairs(aligned, expected)
    g2 = {k: log_likelihood(aligned[k], expected[k]) for k in kept}
    return [(k, aligned[k], round(kept[k], 2)) for k in sorted(kept, key=lambda k: (-g2[k], k))[:n]]


def class_examples(table, probes="风山白一东鸟汉不", members=16):
    """{probe: the first members of its class}."""
    by_class = {}
    for ch, c in table.classes.items():
        by_class.setdefault(c, []).append(ch)
    return {p: "".join(by_class[table.classes[p]][:members]) for p in probes if p in table.classes}


def main(argv=None):
    """python -m studies.duizhang_study build [--out PATH] | study [--heldout dev|test]: from the prepared corpus."""
    parser = argparse.ArgumentParser(prog="python -m studies.duizhang_study", description="对仗: the table and its study")
    parser.add_argument("command", choices=("build", "study"))
    parser.add_argument("--out", default=default_path(), help="build: where the table goes")
    parser.add_argument("--heldout", default="dev", choices=("dev", "test"), help="study: the held-out split")
    args = parser.parse_args(argv)
    from config import Config
    cfg = Config()
    corpus = dataUtil.load_corpus(cfg, verbose=False)
    texts = {s: [dataUtil.text_of(ids, corpus.itos) for ids in getattr(corpus, s)] for s in ("train", args.heldout)}
    if args.command == "build":
        obj = write_duizhang_table(texts["train"], args.out)
        print(f"wrote {args.out}: {len(table_from(obj).pairs) // 2} pairs, thresholds {obj['thresholds']}")
        return 0
    tones, _, _, _ = verse_tables(dataUtil.processed_dir(cfg))
    print(json.dumps(study(texts["train"], texts[args.heldout], tones, load(args.out)), ensure_ascii=False,
                     indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
