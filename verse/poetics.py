"""What makes a 绝句 / 律诗: line forms, rhyme groups, level and oblique tones, and the metrics that check them;
and which line ends of a 词牌 rhyme together, learnt from its examples (rhyme_sets).

Rhyme is judged by a rhyme book (rhymebook.Book: each character's groups, each with a tone): 平水韵 for 诗 and
词林正韵 for 词 by default (rhymebook), or 中华新韵, the modern 14-group standard computed here from each
character's Mandarin final with pypinyin (xinyun_book). Tones come from one of two systems (`--tone-system`):
- classical (the default): each character's 平 / 仄 as the corpus's own labels give it (dataUtil's tone table,
  learnt from the 平仄 annotations of 52,929 Tang poems): entering-tone characters (入声: 国 白 石 一) are 仄, as in
  Tang verse, and characters read both ways (看 思 过) fit either position;
- mandarin: Mandarin tones from pypinyin, 1-2 level (平) and 3-4 oblique (仄), where 入声 characters that are
  level in Mandarin count as level.
Characters the classical table lacks (too few labels) fall back to Mandarin. A 平水韵 rhyme's tone is its
group's (上平/下平 level, 上/去/入 oblique); a 中华新韵 rhyme's is the tone system's.

The tone pattern used is the classical 二四六分明 rule: within a line positions 2, 4, 6 alternate; the two
lines of a couplet are opposite (对) and the first line of a couplet repeats the one before it (粘).
Also here: the terms a generated candidate is ranked by (rerank_terms), the forms real poems take
(form_counts), and an adversarial measure — the cross-validated accuracy of a logistic regression on character
n-grams telling generated poems from real ones (discriminator_accuracy).

Deliberately left out: 孤平 and 三平尾 checks, and positions 1, 3, 5 (which tradition leaves free).
"""
from dataclasses import dataclass

import numpy as np

from verse import rhymebook

LINE_ENDS = "，。？！；"
REGULAR_FORMS = {(5, 4), (5, 8), (7, 4), (7, 8)}    # (characters, lines) of 绝句 and 律诗: what the studies judge
RHYME_GROUPS = {          # 中华新韵: group -> pypinyin finals (strict, ü written v)
    "麻": ("a", "ia", "ua"), "波": ("o", "e", "uo"), "皆": ("ie", "ve"), "开": ("ai", "uai"),
    "微": ("ei", "uei"), "豪": ("ao", "iao"), "尤": ("ou", "iou"), "寒": ("an", "ian", "uan", "van"),
    "文": ("en", "in", "uen", "vn"), "唐": ("ang", "iang", "uang"), "庚": ("eng", "ing", "ueng", "ong", "iong"),
    "齐": ("i", "er", "v"), "支": ("-i",), "姑": ("u",),
}
FINAL_TO_GROUP = {f: g for g, finals in RHYME_GROUPS.items() for f in finals}
BUZZING_I = {"zhi", "chi", "shi", "ri", "zi", "ci", "si"}          # their "i" is the 支 group's -i


# ----------------------------------------------------------------------------------------------------------
# one character

def char_info(ch):
    """(rhyme group or None, 1 level / 0 oblique / None unknown) of one character."""
    from pypinyin import Style, lazy_pinyin
    full = lazy_pinyin(ch, errors="ignore")
    if not full:
        return None, None
    final = "-i" if full[0] in BUZZING_I else lazy_pinyin(ch, style=Style.FINALS)[0]
    tone = lazy_pinyin(ch, style=Style.TONE3, neutral_tone_with_five=True)[0][-1:]
    level = {"1": 1, "2": 1, "3": 0, "4": 0}.get(tone)
    return FINAL_TO_GROUP.get(final), level


OBLIQUE, LEVEL, BOTH = 0, 1, 2        # a character's tone; BOTH: it reads either way (看, 思, 过)
CLASSICAL = {"仄": OBLIQUE, "平": LEVEL, "both": BOTH}


def table_for(chars, classical=None):
    """{character: (group, level)} for every character given (pypinyin is called once per character). The
    rhyme group is always 中华新韵's; the level comes from the classical table {character: 平|仄|both}
    (verse/build.py's build_tone_table) when it has the character, else from Mandarin."""
    out = {}
    for ch in chars:
        group, level = char_info(ch)
        out[ch] = (group, CLASSICAL[classical[ch]] if classical and ch in classical else level)
    return out


def xinyun_book(table):
    """中华新韵 as a rhymebook.Book over the characters of table {character: (group, level)} (table_for): a
    character read both ways rhymes in either tone, one of unknown tone in its group with tone None."""
    names = list(RHYME_GROUPS)
    entries = {}
    for ch, (group, level) in table.items():
        if group is not None:
            tones = (LEVEL, OBLIQUE) if level == BOTH else (level,)
            entries[ch] = frozenset((names.index(group), t) for t in tones)
    return rhymebook.Book("xinyun", names, entries)


def required_tone(line, pos, first):
    """Level (1) or oblique (0) required at 1-based position pos (2, 4 or 6) of 0-based line, given the tone
    `first` chosen at position 2 of line 0. 粘 and 对 give line k's position-2 tone as first when k % 4 is 0 or 3."""
    t2 = first if line % 4 in (0, 3) else 1 - first
    return t2 if pos in (2, 6) else 1 - t2


def pattern_hits(lines, tone, first, places=None):
    """(hits, judged): the one count of how well lines follow the tone pattern whose line 1 has `first` at
    position 2. places: [(line, position)], by default positions 2, 4, 6 before each line's last character;
    tone(ch): LEVEL or OBLIQUE (a hit when it is the one wanted), BOTH (a hit either way), None (not judged)
    or anything else (judged, never a hit)."""
    if places is None:
        places = [(k, p) for k, l in enumerate(lines) for p in (2, 4, 6) if p < len(l)]
    hits = judged = 0
    for k, p in places:
        t = tone(lines[k][p - 1])
        if t is not None:
            judged += 1
            hits += t in (BOTH, required_tone(k, p, first))
    return hits, judged


# ----------------------------------------------------------------------------------------------------------
# each character's readings: the rhyme book's first, the poets' usage to drop one they never use

READING_MIN_SLOTS = 30      # a character is judged by where poets put it once it fills this many key positions
READING_MIN_SHARE = 0.02    # a reading used in under 2% of them is dropped (不 平: 5 of 1,409)
PATTERN_FIT = 0.9           # a poem's key positions follow its pattern this well, or it is not counted


def key_slots(poems, single):
    """{character: [times in a 仄 slot, times in a 平 slot]} over the regular poems (4 or 8 lines of 5 or 7
    characters; each a list of lines without end marks): the slots are positions 2, 4, 6 as the poem's tone
    pattern wants them, the pattern being the one its single-reading characters (single(ch) -> LEVEL, OBLIQUE
    or None) follow, in poems that follow it at PATTERN_FIT or better. The last key position of an odd line
    (4 in 五言, 6 in 七言) is left out: 拗 and its rescue live there (野火烧不尽)."""
    slots = {}
    for lines in poems:
        if len(lines) not in (4, 8) or any(len(l) != len(lines[0]) or len(l) not in (5, 7) for l in lines):
            continue
        places = [(k, p) for k, l in enumerate(lines) for p in (2, 4, 6)
                  if p < len(l) and not (k % 2 == 0 and p == len(l) - 1)]
        fit = {}
        for first in (LEVEL, OBLIQUE):
            hits, judged = pattern_hits(lines, single, first, places)       # single readings: never BOTH
            fit[first] = hits / judged if judged else 0.0
        first = max(fit, key=fit.get)
        if fit[first] < PATTERN_FIT:
            continue
        for k, p in places:
            slots.setdefault(lines[k][p - 1], [0, 0])[required_tone(k, p, first)] += 1
    return slots


def book_readings(book, labels, slots, min_slots=READING_MIN_SLOTS, min_share=READING_MIN_SHARE):
    """({character: 平|仄|both}, {character: [dropped tone, its slots, all slots]}): each character's tones as
    the rhyme book lists them (both where it lists both: 为 wéi/wèi, 看, 思), a reading dropped when the poets
    put the character in that tone's key slots (key_slots) under min_share of at least min_slots times
    (不 stays 仄); characters the book lacks take the corpus's label (labels {character: 平|仄|both})."""
    table, dropped = dict(labels), {}
    names = {LEVEL: "平", OBLIQUE: "仄"}
    for ch, entries in book.entries.items():
        tones = {t for _, t in entries if t in names}
        if not tones:
            continue
        oblique, level = slots.get(ch, (0, 0))
        n = oblique + level
        if len(tones) == 2 and n >= min_slots:
            for tone, used in ((LEVEL, level), (OBLIQUE, oblique)):
                if used < min_share * n:
                    tones.discard(tone)
                    dropped[ch] = [names[tone], used, n]
        table[ch] = "both" if len(tones) == 2 else names[tones.pop()]
    return table, dropped


# ----------------------------------------------------------------------------------------------------------
# a whole poem

def split_lines(text):
    """Lines with their end mark: '白日依山尽，黄河入海流。' -> ['白日依山尽，', '黄河入海流。']."""
    return split_after(text, LINE_ENDS)


def split_after(text, marks):
    """Pieces of text, each ending at one of marks (the last may not): 'a，b。c' -> ['a，', 'b。', 'c']."""
    pieces, cur = [], ""
    for ch in text:
        cur += ch
        if ch in marks:
            pieces.append(cur)
            cur = ""
    return pieces + ([cur] if cur else [])


def form_of(text):
    """(characters per line, lines) when every line has the same length and the ends alternate ，。; else None."""
    lines = split_lines(text)
    if not lines or any(l[-1] not in LINE_ENDS for l in lines):
        return None
    n = len(lines[0]) - 1
    ok = all(len(l) - 1 == n and l[-1] == ("，" if k % 2 == 0 else "。") for k, l in enumerate(lines))
    ok = ok and all(ch not in LINE_ENDS for l in lines for ch in l[:-1])
    return (n, len(lines)) if ok else None


def rhymes(text, book, tone=None):
    """True when the even lines (2nd, 4th, ...), at least two of them, end in characters of one rhyme group of
    the book, in the tone given (default level)."""
    ends = [l[-2] for l in split_lines(text)[1::2] if len(l) >= 2]
    tone = LEVEL if tone is None else tone
    return len(ends) >= 2 and bool(book.common(ends, [tone] * len(ends)))


def tone_agreement(text, table):
    """Share of positions 2, 4, 6 (where the line has them, before its last character) whose tone follows
    二四六分明 with 粘 and 对, taking line 1's position 2 as given; None when nothing can be judged."""
    lines = [l.rstrip(LINE_ENDS) for l in split_lines(text)]
    if not lines or len(lines[0]) < 2:
        return None

    def level(ch):
        return (table.get(ch) or char_info(ch))[1]
    first = level(lines[0][1])
    if first == BOTH and len(lines[0]) > 4 and level(lines[0][3]) in (LEVEL, OBLIQUE):
        first = 1 - level(lines[0][3])                      # position 4 is the opposite of position 2
    if first not in (LEVEL, OBLIQUE):
        return None
    hits, judged = pattern_hits(lines, lambda ch: "unknown" if level(ch) is None else level(ch), first)
    return hits / judged if judged else None          # a tone unknown counts against the poem here


# ----------------------------------------------------------------------------------------------------------
# rhyme in a 词: which line ends rhyme together, learnt from a 词牌's examples

RHYME_SHARE = 0.5     # two line ends rhyme when they share a group in half the examples (chance: about 1 in 8)


def line_ends(text, marks=LINE_ENDS + "、"):
    """The last character of each line of a 词 (its lines end at ，。？！；、)."""
    return [l[-2] for l in split_after(text, marks) if len(l) >= 2 and l[-1] in marks]


def rhyme_sets(texts, table, book, min_share=RHYME_SHARE):
    """texts: examples of one 词牌 that all follow one pattern. Line ends i and j rhyme when they share a
    group of the rhyme book (in any tone: 平 and 仄 of one 词林正韵 部 rhyme together in a 词) in at least
    min_share of the examples; the rhyme sets are the connected groups of such line ends (two or more).
    Returns [{"lines": [i, ...], "tones": ["平" | "仄", ...], "share": s}]: each line's tone is the one most of
    its ends have in the examples by table {character: (group, level)} (a set may mix them: 西江月 ends its
    stanzas on 仄 in the rhyme of its 平 lines), share is the mean agreement of the set's pairs."""
    ends = [line_ends(t) for t in texts]
    n = len(ends[0]) if ends else 0
    ends = [e for e in ends if len(e) == n]
    groups = [[book.groups_of(ch) for ch in e] for e in ends]

    def agree(i, j):
        return mean(bool(g[i] & g[j]) for g in groups)
    pair = {(i, j): agree(i, j) for i in range(n) for j in range(i + 1, n)}
    root = list(range(n))

    def find(i):
        while root[i] != i:
            i = root[i]
        return i
    for (i, j), s in pair.items():
        if s >= min_share:
            root[find(j)] = find(i)
    members = {}
    for i in range(n):
        members.setdefault(find(i), []).append(i)
    sets = []
    for lines in (m for m in members.values() if len(m) >= 2):
        level = [mean((table.get(e[i]) or char_info(e[i]))[1] in (LEVEL, BOTH) for e in ends) for i in lines]
        shares = [pair[i, j] for i in lines for j in lines if i < j]
        sets.append({"lines": lines, "tones": ["平" if lv >= 0.5 else "仄" for lv in level],
                     "share": round(mean(shares), 3)})
    return sets


def ci_rhymes(text, sets, book):
    """True when every rhyme set's line ends are in one group of the book, each in its line's tone."""
    ends = line_ends(text)
    for s in sets:
        if max(s["lines"]) >= len(ends):
            return False
        if not book.common([ends[i] for i in s["lines"]], [CLASSICAL[t] for t in s["tones"]]):
            return False
    return True


# ----------------------------------------------------------------------------------------------------------
# metrics over many poems

@dataclass
class Metrics:
    poems: int
    form_valid: float
    rhyme_rate: float
    tone_agreement: float
    distinct_1: float
    distinct_2: float
    copy_rate: float


def measure(poems, train_lines, table, book, form=None):
    """Metrics of generated poems: tones by table {character: (group, level)}, rhyme by the rhyme book. form
    (chars, lines) is the form asked for; None means any regular form (5 or 7 characters, 4 or 8 lines).
    train_lines is the set of lines (without end marks) of the train poems."""
    regular = {(5, 4), (5, 8), (7, 4), (7, 8)} if form is None else {tuple(form)}
    valid = [form_of(p) in regular for p in poems]
    tones = [t for t in (tone_agreement(p, table) for p in poems) if t is not None]
    chars = [[c for c in p if c not in LINE_ENDS + "：、"] for p in poems]
    uni = [c for cs in chars for c in cs]
    bi = [(a, b) for cs in chars for a, b in zip(cs, cs[1:])]
    lines = [l.rstrip(LINE_ENDS) for p in poems for l in split_lines(p)]
    return Metrics(
        poems=len(poems), form_valid=mean(valid), rhyme_rate=mean([rhymes(p, book) for p in poems]),
        tone_agreement=mean(tones), distinct_1=len(set(uni)) / max(len(uni), 1),
        distinct_2=len(set(bi)) / max(len(bi), 1), copy_rate=mean([l in train_lines for l in lines if l]))


def mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs) if xs else 0.0


def train_line_set(texts):
    return {l.rstrip(LINE_ENDS) for t in texts for l in split_lines(t)}


# ----------------------------------------------------------------------------------------------------------
# re-ranking candidates, and the real poems' forms

# per defect; repeats and unparallel chosen on 84 default poems of the format model at step 1,677 (8 candidates
# each): 重字 78.6% -> 38.1% (real test poems 37.9%); pairs (doublings) 0.1, chosen for the shipped model by the
# form study's sweep on seeds of its own (docs/form_study.md: doubling at real poems' rate, 0.25 kept it at half)
RERANK_WEIGHTS = {"nll": 1.0, "repeated_lines": 1.0, "doubled": 1.0, "runs": 1.0, "opening": 0.5,
                  "repeats": 0.5, "pairs": 0.1, "unparallel": 3.0}


def rerank_terms(text, nll, parallel=None, parallel_at=0.5):
    """The terms of a candidate's score (lower is better): nll, the model's mean NLL per token of the poem
    (fluency); repeated_lines, lines that occur earlier in the poem; doubled, characters met a second time in
    one line, away from their first use (萧萧 and other reduplication, two in a row, are not counted); runs,
    three or more of one character in a row (凄凄凄); opening, uses of the poem's first character beyond two
    (月 opening a poem and coming back in every line); repeats, characters met again anywhere in the poem (重字:
    a doubling 萧萧 counts once); pairs, two identical characters side by side (萧萧); unparallel, how far a
    律诗's middle couplets fall short of parallel (parallel: duizhang.score of the text, None for other forms;
    parallel_at: the table's threshold)."""
    lines = [l.rstrip(LINE_ENDS + "、") for l in split_lines(text)]
    lines = [l for l in lines if l]
    doubled = runs = 0
    for l in lines:
        for k, ch in enumerate(l):
            seen_before = ch in l[:k]
            doubled += seen_before and not (k > 0 and l[k - 1] == ch)
            runs += k >= 2 and l[k - 2] == l[k - 1] == ch
    opening = max(0, text.count(text[0]) - 2) if text else 0
    words = [ch for l in lines for k, ch in enumerate(l) if k == 0 or l[k - 1] != ch]     # a doubling once
    pairs = sum(a == b for l in lines for a, b in zip(l, l[1:]))
    return {"nll": nll, "repeated_lines": len(lines) - len(set(lines)), "doubled": doubled, "runs": runs,
            "opening": opening, "repeats": len(words) - len(set(words)), "pairs": pairs,
            "unparallel": max(0.0, parallel_at - parallel) if parallel is not None else 0.0}


def rerank_score(terms, weights=RERANK_WEIGHTS):
    return sum(weights[k] * terms[k] for k in weights)


def shape_measures(poems):
    """What a reader sees at once, over a set of poems: mean length (characters with punctuation), and the
    shares of poems of 1-2 lines, with a doubled character in a line, with the opening character overused."""
    terms = [rerank_terms(p, 0.0) for p in poems]
    return {"length": mean(map(len, poems)), "short": mean(len(split_lines(p)) <= 2 for p in poems),
            "doubled": mean(t["doubled"] > 0 for t in terms), "opening": mean(t["opening"] > 0 for t in terms)}


def form_counts(texts):
    """{(characters per line, lines): poems} over the poems of a regular shape — every line 5 or 7 characters,
    ，。 alternating, an even number of lines — and the count of the others under None."""
    counts = {}
    for t in texts:
        f = form_of(t)
        key = f if f is not None and f[0] in (5, 7) and f[1] % 2 == 0 else None
        counts[key] = counts.get(key, 0) + 1
    return counts


# ----------------------------------------------------------------------------------------------------------
# an adversarial measure: can a simple classifier tell generated poems from real ones?

def ngram_matrix(texts, n_max=2):
    """Rows: texts as L2-normalised counts of their character n-grams (n = 1 .. n_max, punctuation included)."""
    grams = [[t[i:i + n] for n in range(1, n_max + 1) for i in range(len(t) - n + 1)] for t in texts]
    index = {g: k for k, g in enumerate(sorted({g for gs in grams for g in gs}))}
    X = np.zeros((len(texts), max(len(index), 1)), np.float64)
    for row, gs in zip(X, grams):
        for g in gs:
            row[index[g]] += 1
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def logistic_fit(X, y, l2=1e-3, steps=400):
    """L2-regularised logistic regression by gradient descent (rows of X have unit norm, so a step of
    1 / (1/4 + l2) is safe): weights (D,) and bias."""
    w, b = np.zeros(X.shape[1]), 0.0
    lr = 1.0 / (0.25 + l2)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(X @ w + b)))
        g = p - y
        w -= lr * (X.T @ g / len(y) + l2 * w)
        b -= lr * g.mean()
    return w, b


def matched_by_first_character(generated, real, rng):
    """Equally many generated and real texts for each first character (the smaller count of the two), so the
    opening character alone tells nothing."""
    pick_g, pick_r = [], []
    for ch in sorted({t[0] for t in generated if t} & {t[0] for t in real if t}):
        g = [t for t in generated if t[0] == ch]
        r = [t for t in real if t[0] == ch]
        k = min(len(g), len(r))
        pick_g += [g[i] for i in rng.permutation(len(g))[:k]]
        pick_r += [r[i] for i in rng.permutation(len(r))[:k]]
    return pick_g, pick_r


def discriminator_accuracy(generated, real, folds=5, seed=0):
    """Cross-validated accuracy of logistic regression on character 1-2-grams telling generated texts (label 1)
    from real ones (label 0), equally many of each for each first character: 0.5 means indistinguishable, 1.0
    always told apart; NaN when fewer than `folds` pairs match."""
    rng = np.random.default_rng(seed)
    gen, real = matched_by_first_character(generated, real, rng)
    k = len(gen)
    if k < folds:
        return float("nan")
    texts = gen + real
    y = np.array([1.0] * k + [0.0] * k)
    X = ngram_matrix(texts)
    order = rng.permutation(2 * k)
    correct = 0
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        w, b = logistic_fit(X[train], y[train])
        correct += int(((X[test] @ w + b > 0) == (y[test] > 0.5)).sum())
    return correct / (2 * k)
