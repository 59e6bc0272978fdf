"""对仗: the 颔联 and 颈联 of a 律诗 written against each other — which characters answer which, learnt from the
corpus, and a judgement of any couplet. Torch-free (numpy only to build the table); docs/duizhang.md has the
method and the numbers.

    table = duizhang.load()                          # pretrained/duizhang.json (or a path); None when unreadable
    duizhang.judge(line_a, line_b, table, tones)     # one couplet: per position and a verdict (below)
    duizhang.couplets(text, table, tones)            # the four couplets of a 律诗 (None for other forms)
    duizhang.score(text, table)                      # mean answer score of the 颔联 and 颈联 (None: not a 律诗)
    duizhang.write_duizhang_table(train_texts, path) # build the table from the train split's poems, write it
    python -m studies.duizhang_study study          # the numbers of docs/duizhang.md (studies/duizhang_study.py)

What answers what. In the 颔联 and 颈联 of the train split's 律诗 (8 lines of 5 or 7 characters) a pair {x, y}
is counted where it stands aligned (O: x at position j of one line, y at position j of the other) and wherever it
meets (x anywhere in one line, y anywhere in the other: of the n² position pairs of two n-character lines, n
are aligned, so each meeting expects 1/n of an alignment; E sums them). Its score is the lift log2(O / E) in
bits: how much more often than chance the two stand at one position when they meet (at most log2 n: always
aligned). A pair answers (is kept in the table) when O >= MIN_COUNT, O > E and Dunning's log-likelihood ratio
G² of O against E is at least MIN_G2 (p < 0.001). Measured against meetings rather than against the
characters' frequencies alone, so that two characters of one subject (山 and 云 in one couplet) do not pass for
an answer: learnt from the 颔联 shifted by one position (j against j + 1) the test keeps 103 pairs, against
1,322 from the 颔联 aligned (docs/duizhang.md). Characters filling at least CLASS_MIN aligned slots are put in
CLASSES classes by the partners they answer (spherical k-means on each character's positive-PMI partner
profile: 风 雨 月 云 answer the same characters, so they share a class; numbers, colours, directions, birds,
places come out as classes of their own), and a class pair gets the lift of its members' counts (smoothed by
CLASS_PRIOR), negative where two classes meet but seldom align (a noun against a function word). A position's
score is the pair's own lift when the pair is in the table, else its classes', else None (a rare character:
not judged); an identical character scores SAME_SCORE (合掌's clearest sign). Scores are clipped to ±CLIP. The
thresholds (parallel, floor, weak) are calibrated on the train poems when the table is built (calibrate).

judge(line_a, line_b, table, tones=None) -> dict:
    positions: [{"pos": 1-based, "a", "b", "score": float | None, "source": "pair" | "class" | "same" | None,
                 "answers": bool | None (score >= ANSWER), "tones": "opposite" | "same" | None (key positions
                 2, 4, 6 only, else None)}]
    mean: mean score of the judged positions (None when none is judged)
    same_char: positions (1-based) holding one character in both lines
    tone_clash: key positions (2, 4, 6) whose tones are not opposite (tones given: a callable ch -> poetics
                LEVEL / OBLIQUE / BOTH / None, like prosody.tone_of with its tables bound, or a dict
                {ch: 平 | 仄 | both}; BOTH or unknown never clashes)
    verdict: "parallel" (mean >= the table's parallel threshold and no failing position) | "weak" | "not parallel"
             (mean below the weak threshold); failing positions: score below the table's floor, an identical
             character, a tone clash
    weakest: the positions a "weak" verdict names (the failing ones, and with a mean below the parallel threshold
             those that do not answer; else the lowest), [] otherwise
    each position also has "fails": [] or some of "same", "floor", "tones" (why it fails)
couplets(text, table, tones=None) -> [{"name": 首联 | 颔联 | 颈联 | 尾联, "expected": bool (颔联/颈联),
    "lines": (a, b), **judge(...)}] for a 律诗 (else None); the 颈联's entry has "same_structure": True when its
    characters have the classes the 颔联's have at the same places at SAME_STRUCTURE of the positions or more
    (the two couplets built alike throughout: 合掌 across couplets; no real poem of the corpus does it), False
    otherwise, None when too few characters are classed.
score(text, table) -> float | None: the mean position score over the 颔联 and 颈联 (no tones; a few dictionary
    lookups a position), for re-ranking generated poems; None unless text is a 律诗.

Deliberately left out: word segmentation and parts of speech (the classes stand in for them), 借对 and 流水对
(a 流水对 reads as weak), 排律 (10+ lines; only 8-line 律诗 are judged), synonymy within a couplet (合掌 of meaning:
answering pairs and synonyms look alike in aligned counts).
"""
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from verse import poetics
from verse.poetics import BOTH, LEVEL, OBLIQUE

FORMS = ((5, 8), (7, 8))                 # 五言律诗, 七言律诗
LU = re.compile("|".join(f"(?:[^{poetics.LINE_ENDS}]{{{n}}}，[^{poetics.LINE_ENDS}]{{{n}}}。){{4}}" for n, _ in FORMS))
NAMES = ("首联", "颔联", "颈联", "尾联")
MIDDLE = (1, 2)                          # the couplets that are written against each other
KEY_POSITIONS = (2, 4, 6)                # 1-based, where the tones of the two lines must be opposite
UNKNOWN = "□"                            # dataUtil.text_of's unknown character
MIN_COUNT = 3                            # a pair seen fewer times is never kept
MIN_G2 = 10.83                           # G² of a kept pair: p < 0.001 for one degree of freedom
CLASS_MIN = 20                           # slots a character must fill to be classed
CLASSES = 64
CLASS_PRIOR = 1.0                        # added to a class pair's observed and expected counts
KMEANS_SEED, KMEANS_ITERS = 0, 50
CLIP = 4.0                               # position scores lie in [-CLIP, CLIP] bits
SAME_SCORE = -CLIP                       # an identical character at an aligned position
SAME_STRUCTURE = 0.8                     # 颈联 built like 颔联: held-out real poems reach 0.5 at most
ANSWER = 0.0                             # a position answers when its score is at least this (above chance)
THRESHOLDS = {"parallel": 0.5, "floor": -3.3, "weak": ANSWER}   # used when a table carries none
GRID_MEAN = tuple(x / 8 for x in range(0, 17))                   # calibration's candidate parallel thresholds
FLOOR_PERCENTILE = 1                     # a position scoring below 99% of the positions of real 颔联/颈联 fails
VERSION = 1


# ----------------------------------------------------------------------------------------------------------
# reading poems

def lu_couplets(text):
    """The four couplets [(line a, line b)] of a 律诗 (8 lines of 5 or 7 characters, ，。 alternating: what
    poetics.form_of calls (5, 8) or (7, 8)), lines without their marks; None for any other text."""
    if not LU.fullmatch(text):
        return None
    n = text.index("，")
    lines = [text[k * (n + 1):k * (n + 1) + n] for k in range(8)]
    return [(lines[2 * k], lines[2 * k + 1]) for k in range(4)]


def pair_key(x, y):
    """The key of the unordered pair {x, y} in the counts and the significant pairs: x+y with x <= y."""
    return x + y if x <= y else y + x


def aligned_pairs(couplets, which=MIDDLE, shift=0):
    """(x, y) for position j of line a against position j + shift of line b, over the given couplets (indices
    into each poem's four) of every poem; positions holding an unknown character are skipped."""
    for poem in couplets:
        for k in which:
            a, b = poem[k]
            for j in range(len(a) - shift):
                x, y = a[j], b[j + shift]
                if UNKNOWN not in (x, y):
                    yield x, y


# ----------------------------------------------------------------------------------------------------------
# building the table

def count_couplets(couplets, which=MIDDLE, shift=0):
    """(aligned, expected, slots) over the given couplets of the poems: aligned {x+y (x <= y): times x and y
    stand at position j of line a and j + shift of line b}; expected {x+y: what their meeting in the two lines
    predicts: each time x stands anywhere in line a and y anywhere in line b adds (n - shift) / n², the share of
    the n² position pairs of two n-character lines that are so aligned}; slots {character: aligned slots it
    fills}. Positions holding an unknown character are skipped."""
    aligned, expected, slots = Counter(), Counter(), Counter()
    for poem in couplets:
        for k in which:
            a, b = poem[k]
            n = len(a)
            w = (n - shift) / (n * n)
            for x, y in zip(a, b[shift:]):
                if UNKNOWN not in (x, y):
                    aligned[pair_key(x, y)] += 1
                    slots[x] += 1
                    slots[y] += 1
            for x, cx in Counter(a).items():
                for y, cy in Counter(b).items():
                    if UNKNOWN not in (x, y):
                        expected[pair_key(x, y)] += w * cx * cy
    return aligned, expected, slots


def log_likelihood(observed, expected):
    """Dunning's G² of a count against its expectation (the Poisson form: 2 (O ln(O/E) - (O - E)))."""
    return 2.0 * (observed * math.log(observed / expected) - (observed - expected)) if observed else 2.0 * expected


def significant_pairs(aligned, expected, min_count=MIN_COUNT, min_g2=MIN_G2):
    """{x+y: lift log2(O / E) in bits} of the pairs aligned O >= min_count times, more often than their meetings
    in the couplets predict (E), with G² at least min_g2; identical characters are never kept."""
    out = {}
    for key, o in aligned.items():
        if o < min_count or key[0] == key[1]:
            continue
        e = expected[key]
        if o > e and log_likelihood(o, e) >= min_g2:
            out[key] = math.log2(o / e)
    return out


def partner_matrix(aligned, chars):
    """(len(chars), len(chars)) symmetric counts of the aligned pairs among chars (identical pairs left out)."""
    index = {ch: i for i, ch in enumerate(chars)}
    m = np.zeros((len(chars), len(chars)))
    for key, o in aligned.items():
        i, j = index.get(key[0]), index.get(key[1])
        if i is not None and j is not None and i != j:
            m[i, j] += o
            m[j, i] += o
    return m


def profiles(aligned, slots, chars):
    """Each character's partner profile: its positive PMI (aligned counts against the two characters' slots)
    with every other classed character, scaled to unit length."""
    m = partner_matrix(aligned, chars)
    f = np.array([slots[ch] for ch in chars], float)
    expected = np.outer(f, f) / f.sum()
    with np.errstate(divide="ignore"):
        ppmi = np.where(m > 0, np.maximum(np.log2(np.maximum(m, 1e-12) / expected), 0.0), 0.0)
    return ppmi / np.maximum(np.linalg.norm(ppmi, axis=1, keepdims=True), 1e-12)


def kmeans(x, k, seed=KMEANS_SEED, iters=KMEANS_ITERS):
    """Labels (n,) of spherical k-means (cosine) on unit rows x, k-means++ seeded: deterministic for a seed."""
    rng = np.random.default_rng(seed)
    centres = [x[0]]
    dist = 1.0 - x @ x[0]
    for _ in range(k - 1):
        p = np.maximum(dist, 0.0)
        j = rng.choice(len(x), p=p / p.sum()) if p.sum() > 0 else int(rng.integers(len(x)))
        centres.append(x[j])
        dist = np.minimum(dist, 1.0 - x @ x[j])
    c = np.array(centres)
    labels = np.argmax(x @ c.T, axis=1)
    for _ in range(iters):
        sums = np.array([x[labels == i].sum(0) if (labels == i).any() else c[i] for i in range(k)])
        c = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        new = np.argmax(x @ c.T, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def class_scores(aligned, expected, classes, k, prior=CLASS_PRIOR):
    """(k, k) log2 of the class pairs' aligned counts against what their meetings predict, both counts smoothed
    by prior (a class pair seldom seen scores near 0)."""
    o, e = np.zeros((k, k)), np.zeros((k, k))
    for counts, m in ((aligned, o), (expected, e)):
        for key, v in counts.items():
            i, j = classes.get(key[0]), classes.get(key[1])
            if i is not None and j is not None:
                m[i, j] += v
                if i != j:
                    m[j, i] += v
    return np.log2((o + prior) / (e + prior))


def classify(aligned, expected, slots, k=CLASSES, min_slots=CLASS_MIN):
    """({character: class}, (k, k) class scores) for the characters filling at least min_slots slots."""
    chars = sorted((ch for ch, n in slots.items() if n >= min_slots), key=lambda ch: (-slots[ch], ch))
    k = min(k, len(chars))
    if k < 2:
        return {}, np.zeros((1, 1))
    labels = kmeans(profiles(aligned, slots, chars), k)
    classes = {ch: int(c) for ch, c in zip(chars, labels)}
    return classes, class_scores(aligned, expected, classes, k)


def build(train_texts, k=CLASSES, min_slots=CLASS_MIN, min_count=MIN_COUNT, min_g2=MIN_G2):
    """The table (a JSON-able dict) learnt from the 颔联 and 颈联 of the 律诗 among train_texts, its thresholds
    calibrated on the same poems' couplets (calibrate)."""
    poems = [c for c in map(lu_couplets, train_texts) if c]
    aligned, expected, slots = count_couplets(poems)
    pairs = significant_pairs(aligned, expected, min_count, min_g2)
    classes, matrix = classify(aligned, expected, slots, k, min_slots)
    obj = {"version": VERSION, "poems": len(poems), "aligned_pairs": sum(aligned.values()),
           "settings": {"min_count": min_count, "min_g2": min_g2, "class_min": min_slots, "classes": len(matrix),
                        "class_prior": CLASS_PRIOR, "clip": CLIP},
           "pairs": pack_pairs(pairs), "classes": pack_classes(classes, len(matrix)),
           "class_scores": [[round(float(v), 2) for v in row] for row in matrix], "thresholds": dict(THRESHOLDS)}
    obj["thresholds"] = calibrate(poems, table_from(obj))
    return obj


def pack_pairs(pairs):
    """{x: "y1 s1 y2 s2 ..."}: each pair once (under its first character), scores in bits to 2 decimals."""
    out = {}
    for key in sorted(pairs):
        out.setdefault(key[0], []).append(f"{key[1]}{pairs[key]:.2f}")
    return {x: " ".join(v) for x, v in out.items()}


def pack_classes(classes, k):
    """[characters of class 0, of class 1, ...], each a string in order of frequency."""
    members = [[] for _ in range(k)]
    for ch, c in classes.items():
        members[c].append(ch)
    return ["".join(m) for m in members]


def write_duizhang_table(train_texts, out_path, **settings):
    """Build the table from the train split's texts (build, with its settings) and write it to out_path (JSON,
    atomically). Returns the table's dict."""
    from common import fileio
    obj = build(train_texts, **settings)
    fileio.write_text(out_path, json.dumps(obj, ensure_ascii=False, separators=(",", ":")))
    return obj


# ----------------------------------------------------------------------------------------------------------
# reading the table

@dataclass(frozen=True)
class Table:
    """pairs {x+y and y+x: lift in bits}, classes {character: class}, class_scores (tuple of tuples, bits),
    thresholds {"parallel", "floor", "weak"}, and the rest of the dict it was read from (meta: counts and
    settings)."""
    pairs: dict
    classes: dict
    class_scores: tuple
    thresholds: dict
    meta: dict


def table_from(obj):
    """A Table from the dict build() returns (or its JSON read back)."""
    pairs = {}
    for x, packed in obj["pairs"].items():
        for item in packed.split(" "):
            y, s = item[0], float(item[1:])
            pairs[x + y] = pairs[y + x] = s
    classes = {ch: c for c, members in enumerate(obj["classes"]) for ch in members}
    meta = {k: v for k, v in obj.items() if k not in ("pairs", "classes", "class_scores")}
    return Table(pairs, classes, tuple(tuple(r) for r in obj["class_scores"]),
                 {**THRESHOLDS, **obj.get("thresholds", {})}, meta)


def default_path():
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained", "duizhang.json")


def load(path=None):
    """The Table at path (default pretrained/duizhang.json); None when it is missing or unreadable."""
    try:
        with open(path or default_path(), encoding="utf-8") as f:
            obj = json.load(f)
        return table_from(obj) if obj.get("version") == VERSION else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None


def partners(table, stoi):
    """{x id: (partner ids (n,) int64, their lifts (n,) float32 in bits)}: the characters of stoi that the
    table finds answering x, for generation's 对仗 bonus (writing/decoding.py)."""
    found = {}
    for xy, lift in table.pairs.items():
        x, y = xy[0], xy[1]
        if x in stoi and y in stoi:
            found.setdefault(stoi[x], []).append((stoi[y], lift))
    return {x: (np.array([y for y, _ in ys], np.int64), np.array([s for _, s in ys], np.float32))
            for x, ys in found.items()}


# ----------------------------------------------------------------------------------------------------------
# judging

def pair_score(x, y, table):
    """(score in bits clipped to ±CLIP, source): the pair's own lift ("pair"), else its classes' ("class"), else
    (None, None); an identical character (SAME_SCORE, "same")."""
    if x == y:
        return SAME_SCORE, "same"
    s = table.pairs.get(x + y)
    if s is not None:
        return min(s, CLIP), "pair"
    i, j = table.classes.get(x), table.classes.get(y)
    if i is None or j is None:
        return None, None
    return max(-CLIP, min(CLIP, table.class_scores[i][j])), "class"


def tone_reader(tones):
    """tones as a callable ch -> LEVEL / OBLIQUE / BOTH / None: a callable as it is, a dict {ch: 平|仄|both}
    (or of those values) read through poetics.CLASSICAL, None: nothing known."""
    if tones is None:
        return lambda ch: None
    if callable(tones):
        return tones

    def tone(ch):
        t = tones.get(ch)
        return poetics.CLASSICAL[t] if t in poetics.CLASSICAL else t if t in (LEVEL, OBLIQUE, BOTH) else None
    return tone


def tone_relation(ta, tb):
    """"opposite", "same", or None (a tone unknown, or one read both ways: it fits either)."""
    if ta not in (LEVEL, OBLIQUE) or tb not in (LEVEL, OBLIQUE):
        return None
    return "opposite" if ta != tb else "same"


def judge(line_a, line_b, table, tones=None):
    """The judgement of a couplet (module docstring): each aligned position's score and tests, and a verdict.
    Lines may keep their end marks; positions beyond the shorter line are not judged."""
    tone = tone_reader(tones)
    line_a, line_b = line_a.rstrip(poetics.LINE_ENDS), line_b.rstrip(poetics.LINE_ENDS)
    positions = [position(j + 1, x, y, table, tone, len(line_a)) for j, (x, y) in enumerate(zip(line_a, line_b))]
    judged = [q["_score"] for q in positions if q["_score"] is not None]
    mean = sum(judged) / len(judged) if judged else None
    verdict = decide(mean, [q["pos"] for q in positions if q["fails"]], table.thresholds)
    out = {"positions": [{k: v for k, v in q.items() if k != "_score"} for q in positions],
           "mean": None if mean is None else round(mean, 3),
           "same_char": [q["pos"] for q in positions if "same" in q["fails"]],
           "tone_clash": [q["pos"] for q in positions if "tones" in q["fails"]], "verdict": verdict}
    out["weakest"] = weakest(out["positions"], mean, table.thresholds) if verdict == "weak" else []
    return out


def position(p, x, y, table, tone, length):
    """One aligned position (1-based p) of a couplet: its score and tests; fails lists why it fails: "same"
    (one character in both lines), "floor" (a score below the table's floor), "tones" (not opposite at a key
    position)."""
    s, source = pair_score(x, y, table) if UNKNOWN not in (x, y) else (None, None)
    rel = tone_relation(tone(x), tone(y)) if p in KEY_POSITIONS and p < length else None
    fails = ["same"] if source == "same" else ["floor"] if s is not None and s < table.thresholds["floor"] else []
    fails += ["tones"] if rel == "same" else []
    return {"pos": p, "a": x, "b": y, "score": None if s is None else round(s, 2), "source": source,
            "answers": None if s is None else s >= ANSWER, "tones": rel, "fails": fails, "_score": s}


def decide(mean, failing, th):
    """The verdict from the mean score and the failing positions."""
    if mean is None or mean < th["weak"]:
        return "not parallel"
    return "parallel" if mean >= th["parallel"] and not failing else "weak"


def weakest(positions, mean, th):
    """The positions a weak couplet is named by: the failing ones, and when its mean is below the parallel
    threshold those that do not answer too; when that names none, the lowest-scoring one."""
    named = {q["pos"] for q in positions if q["fails"]}
    if mean < th["parallel"]:
        named |= {q["pos"] for q in positions if q["answers"] is False}
    if not named:
        scored = [q for q in positions if q["score"] is not None]
        named = {min(scored, key=lambda q: q["score"])["pos"]} if scored else set()
    return sorted(named)


def couplets(text, table, tones=None):
    """The judgement of each couplet of a 律诗 (module docstring); None when text is not one."""
    found = lu_couplets(text)
    if found is None:
        return None
    out = [{"name": NAMES[k], "expected": k in MIDDLE, "lines": (a, b), **judge(a, b, table, tones)}
           for k, (a, b) in enumerate(found)]
    out[2]["same_structure"] = same_structure(found[1], found[2], table)
    return out


def structure_agreement(first, second, table):
    """Share of the positions of both lines at which the second couplet's character has the class the first
    couplet's has there, over the positions where both are classed; None when that is under half of them."""
    cls = table.classes
    found = [(cls.get(x), cls.get(y)) for i in (0, 1) for x, y in zip(first[i], second[i])]
    known = [a == b for a, b in found if a is not None and b is not None]
    return sum(known) / len(known) if known and 2 * len(known) >= len(found) else None


def same_structure(first, second, table):
    """True when the second couplet repeats the first's classes at SAME_STRUCTURE of the positions or more
    (the two couplets built alike throughout); None when too few characters are classed."""
    share = structure_agreement(first, second, table)
    return None if share is None else share >= SAME_STRUCTURE


def score(text, table):
    """Mean position score over the 颔联 and 颈联 of a 律诗 (the re-ranking term; no tones); None for other
    texts or when no position is judged. The same scores as judge's, inlined: a few dictionary lookups a
    position."""
    if not LU.fullmatch(text):
        return None
    n = text.index("，")
    pairs, classes, matrix = table.pairs, table.classes, table.class_scores
    total, count = 0.0, 0
    for start in (2 * n + 2, 4 * n + 4):
        for x, y in zip(text[start:start + n], text[start + n + 1:start + 2 * n + 1]):
            if x == y:
                if x == UNKNOWN:
                    continue
                s = SAME_SCORE
            else:
                s = pairs.get(x + y)
                if s is None:
                    i, j = classes.get(x), classes.get(y)            # an unknown character has no class
                    if i is None or j is None:
                        continue
                    s = matrix[i][j]
                s = -CLIP if s < -CLIP else CLIP if s > CLIP else s
            total += s
            count += 1
    return total / count if count else None


# ----------------------------------------------------------------------------------------------------------
# calibration and the study

def position_scores(line_a, line_b, table, shift=0):
    """Scores of position j of line_a against position j + shift of line_b (None: not judged)."""
    return [pair_score(x, y, table)[0] if UNKNOWN not in (x, y) else None for x, y in zip(line_a, line_b[shift:])]


def couplet_means(poems, table, which, shift=0):
    """[(mean score, lowest score)] of the given couplets of the poems, those with a position judged."""
    out = []
    for poem in poems:
        for k in which:
            s = [v for v in position_scores(*poem[k], table, shift) if v is not None]
            if s:
                out.append((sum(s) / len(s), min(s)))
    return out


def calibrate(poems, table):
    """Thresholds {"parallel", "floor", "weak"} on the couplets of the poems: floor is the FLOOR_PERCENTILE-th
    percentile of the scores of the 颔联/颈联's positions (lower than nearly every position of a real one: a
    position there fails); parallel, the mean score that with it maximises the share of 颔联/颈联 called parallel
    minus the share of 首联/尾联 (Youden's J: the outer couplets need not be parallel, so they stand for couplets
    not written against each other); weak is ANSWER, a couplet whose positions answer better than chance on the
    whole."""
    scores = [v for poem in poems for k in MIDDLE for v in position_scores(*poem[k], table) if v is not None]
    mid, out = couplet_means(poems, table, MIDDLE), couplet_means(poems, table, (0, 3))
    if not mid or not out:
        return dict(THRESHOLDS)
    floor = round(float(np.percentile(scores, FLOOR_PERCENTILE)), 1)

    def share(rows, t):
        return sum(m >= t and lo >= floor for m, lo in rows) / len(rows)
    _, t = max((round(share(mid, t) - share(out, t), 4), t) for t in GRID_MEAN)
    return {"parallel": t, "floor": floor, "weak": ANSWER}
