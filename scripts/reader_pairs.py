"""Pairs for a blind reader: each a real test poem and a default generated poem with the same first character and
shape, in random order, unlabelled (the reader says which is real and why); the key apart.

    python scripts/reader_pairs.py --ckpt pretrained/tang.pt --pairs 20 --out /tmp/reader
    -> /tmp/reader/pairs.md (to read), /tmp/reader/key.json (which of A/B is real; not to be shown)
"""
import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dataUtil                                              # noqa: E402
from config import GenConfig                                 # noqa: E402
from studies.base import study_model                         # noqa: E402
from verse import poetics                                    # noqa: E402
from writing import requests                                 # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", default="pretrained/tang.pt")
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="a new folder")
    args = ap.parse_args()
    if os.path.lexists(args.out):
        print(f"error: {args.out} exists; name a new folder", file=sys.stderr)
        sys.exit(2)
    _, model, itos, corpus = study_model(args.ckpt)
    rng = random.Random(args.seed)
    real = [t for t in (dataUtil.text_of(p, itos) for p in corpus.test) if poetics.form_of(t) in ((5, 4), (7, 4), (5, 8), (7, 8))]
    rng.shuffle(real)
    pairs, key = [], []
    for k, text in enumerate(real[:args.pairs]):
        chars, lines = poetics.form_of(text)
        g = GenConfig(start=text[0], form=chars, lines=lines, rhyme=True, seed=args.seed + k, num=1)
        poem = next(iter(requests.iter_poems(model, itos, g, "cpu"))).text
        real_first = rng.random() < 0.5
        pairs.append((text, poem) if real_first else (poem, text))
        key.append("A" if real_first else "B")
    os.makedirs(args.out)
    with open(os.path.join(args.out, "pairs.md"), "w", encoding="utf-8") as f:
        for k, (a, b) in enumerate(pairs, 1):
            f.write(f"## Pair {k}\n\nA: {a}\n\nB: {b}\n\n")
    with open(os.path.join(args.out, "key.json"), "w", encoding="utf-8") as f:
        json.dump(key, f)
    print(f"wrote {len(pairs)} pairs to {args.out}/pairs.md, the key to {args.out}/key.json")


if __name__ == "__main__":
    main()
