"""Which poems of the corrected dev/test splits an earlier split put in train, and perplexity without them.

Before cache version 4, repeats were judged on the text before its variant characters were standardised, so one
text could stand in train under one spelling and in test under another. The corrected split judges repeats after
standardising (dataUtil.filter_split). A model trained on the earlier split (the shipped ones before the format
inputs, and any run started from them with --init-from) has seen the texts listed here. This script rebuilds the
earlier split from the raw corpus, counts the overlap, and, for each --ckpt, prints the test perplexity over the
whole corrected test split and over it without the overlap.

    python scripts/split_overlap.py [--genre tang|ci] [--ckpt PATH ...]
"""
import argparse
import os
import sys
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dataUtil                                   # noqa: E402
from verse.text import standardise, to_simplified  # noqa: E402
from config import Config, UserError              # noqa: E402


def earlier_train(texts, cfg):
    """The earlier split's train texts (standardised): repeats judged before standardising, each kept text in the
    split its hash gives."""
    seen, train = set(), set()
    cut = 1.0 - cfg.data.dev_frac - cfg.data.test_frac
    for t in texts:
        if cfg.data.min_len <= len(t) <= dataUtil.max_len_of(cfg) and t not in seen:
            seen.add(t)
            if dataUtil.stable_unit(t) < cut:
                train.add(standardise(t))
    return train


def overlap(cfg):
    """{split: indices of its corrected-split poems that the earlier split put in train}."""
    files = dataUtil.source_files(cfg, dataUtil.ensure_raw(cfg))
    cleaned = [c for c in (dataUtil.clean_poem(t, Counter()) for t in dataUtil.read_raw(files)) if c is not None]
    texts = to_simplified(cleaned)
    splits, before = dataUtil.filter_split(texts, cfg, Counter()), earlier_train(texts, cfg)
    return {s: [i for i, t in enumerate(splits[s]) if t in before] for s in ("dev", "test")}


def perplexities(path, corpus, seen):
    """Test perplexity of a checkpoint (format inputs unknown) over the corrected test split and without `seen`."""
    from main import reencoded
    from training.checkpoint import load_checkpoint, model_from_checkpoint
    from training.perplexity import evaluate
    model, cfg, itos = model_from_checkpoint(load_checkpoint(path), "cpu")
    c = corpus if corpus.itos == itos else reencoded(corpus, itos)
    pad = itos.index(dataUtil.PAD)
    seen = set(seen)
    clean = [p for i, p in enumerate(c.test) if i not in seen]
    return evaluate(model, c.test, pad, 256, "cpu")["ppl"], evaluate(model, clean, pad, 256, "cpu")["ppl"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genre", choices=("tang", "ci"), default="tang")
    parser.add_argument("--ckpt", action="append", default=[], help="a model to evaluate (repeatable)")
    args = parser.parse_args(argv)
    cfg = Config()
    cfg.data.genre = args.genre
    try:
        seen = overlap(cfg)
        corpus = dataUtil.load_corpus(cfg, verbose=False)
        for s, idx in seen.items():
            print(f"{args.genre} {s}: {len(idx)} of {len(getattr(corpus, s))} poems were in the earlier split's train")
        for path in args.ckpt:
            every, clean = perplexities(path, corpus, seen["test"])
            print(f"{path}: test perplexity {every:.2f} (all {len(corpus.test)}), {clean:.2f} "
                  f"(without the {len(seen['test'])})")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
