"""Format inputs: what the model is told about the position it is about to write (SongNet's idea, for an LSTM).

At input step t the model reads token t and the features of position t+1, the one it predicts:

    input      <bos>  白   日   依   山   尽   ，   黄  ...  流   。   <eos>?
    predicts    白    日   依   山   尽   ，   黄   河  ...  。  <eos>
    left        6     5    4    3    2    1    6    5  ...   1    1        characters left in the line + 1 (1: a mark)
    line        1     1    1    1    1    1    2    2  ...   4   EOS       the line being written (1-based)
    slot        1     1    1    1    2    1    1    1  ...   1    1        2: a rhyme slot (the last character of a rhyming line)
    tone        3     2    3    1    2    -    3    1  ...   -    -        1 平 2 仄 3 either (positions 2, 4, 6, and line ends)

and, for the whole poem: lines (how many), group (the rhyme group: 平水韵 for 诗, a 词林正韵 部 per rhyme set for
词), and pair (in a line that should answer the one before it — the 颔联 and 颈联 of a 律诗 — the character at
the same position of that line). Every value 0 means unknown: its embedding is zero, so a model given no
features reads characters alone. `features` is the one function that aligns them; a test shifts it by one.

A poem's Format comes from the real poem in training (`format_of`: its shape, the group its rhyming lines
share, the tone pattern its positions 2/4/6 follow best) and from the request in generation. Torch-free.
"""
from dataclasses import dataclass, field

import numpy as np

from verse import poetics
from verse.poetics import BOTH, LEVEL, OBLIQUE

GROUPS = ("left", "line", "lines", "slot", "group", "tone")     # the columns of features(), then pair
COLUMN = {g: k for k, g in enumerate(GROUPS)}
SIZES = {"left": 33, "line": 34, "lines": 33, "slot": 3, "group": 1 + 106 + 19, "tone": 4}
OFFSETS = dict(zip(GROUPS, np.cumsum([0] + [SIZES[g] for g in GROUPS[:-1]]).tolist()))
TOTAL = sum(SIZES.values())
CILIN_BASE = 106                  # group values: 1 + 平水韵 group (0..105), 1 + 106 + 词林正韵 部 (0..18)
EOS_LINE = 33                     # the line value when <eos> is predicted
TONE_VALUE = {LEVEL: 1, OBLIQUE: 2, BOTH: 3}
WANT_VALUE = {"平": 1, "仄": 2, "中": 3}         # a 词谱 格's marks
PATTERN_FIT = 0.8                 # a 诗 follows the nearer tone pattern at this share of positions 2/4/6, or no pattern


@dataclass
class Format:
    """What is known of a poem's form: its line lengths, which lines rhyme (and in which group value of
    SIZES['group'], 0 unknown), each character position's target tone (1 平 2 仄 3 either, 0 unknown), and
    which lines answer the one before (对仗). Empty fields mean unknown."""
    lengths: tuple = ()               # characters per line
    rhyme_lines: dict = field(default_factory=dict)   # {line index: group value} of the rhyming lines
    tones: tuple = ()                 # per line, a tuple of per-character target tone values
    paired: tuple = ()                # line indices whose characters answer the line before's


def row_at(fmt, i, j):
    """The features (len(GROUPS),) of position j of line i (0-based; j == the line's length: its end mark;
    i == the number of lines: <eos>) of a poem of Format fmt. Training (features) and generation (decoding's
    rows) both read them here."""
    row = np.zeros(len(GROUPS), np.int64)
    n = len(fmt.lengths)
    row[COLUMN["lines"]] = 1 + min(n, 31)
    if i >= n:
        row[COLUMN["left"]], row[COLUMN["line"]] = 1, EOS_LINE
        return row
    L = fmt.lengths[i]
    ahead = next((k for k in sorted(fmt.rhyme_lines) if k >= i), None)        # the rhyme this line writes toward
    tones = fmt.tones[i] if i < len(fmt.tones) else ()
    row[COLUMN["left"]] = 1 + min(L - j, 31) if j < L else 1
    row[COLUMN["line"]] = 1 + min(i, 31)
    row[COLUMN["slot"]] = 2 if (j == L - 1 and i in fmt.rhyme_lines) else 1
    row[COLUMN["group"]] = fmt.rhyme_lines.get(ahead, 0) if ahead is not None else 0
    row[COLUMN["tone"]] = tones[j] if j < min(L, len(tones)) else 0
    return row


def pair_at(fmt, i, j, before):
    """The character (whatever before holds: text or ids) that position j of line i answers: the same
    position of the line before (`before`), when line i is one that answers it; else None."""
    if fmt is None or i not in fmt.paired or i >= len(fmt.lengths) or j >= fmt.lengths[i] or j >= len(before):
        return None
    return before[j]


def features(text, fmt, stoi=None):
    """(n + 1, len(GROUPS)) int64 features and (n + 1,) pair character ids for `<bos> text`, text being n
    tokens (characters and marks; the last target is <eos>): row t describes target t (text[t], or <eos> for
    t = n). fmt None or empty: all unknown. stoi maps pair characters to ids (0, unknown, without it)."""
    n = len(text)
    out = np.zeros((n + 1, len(GROUPS)), np.int64)
    pair = np.zeros(n + 1, np.int64)
    if fmt is None or not fmt.lengths:
        return out, pair
    lines = poetics.split_after(text, poetics.LINE_ENDS + "、")
    pos = 0
    for i, piece in enumerate(lines):
        for j in range(len(piece)):
            if i < len(fmt.lengths):
                out[pos + j] = row_at(fmt, i, j)
            ch = pair_at(fmt, i, j, lines[i - 1]) if i > 0 else None
            pair[pos + j] = stoi.get(ch, 0) if ch is not None and stoi is not None else 0
        pos += len(piece)
    out[n] = row_at(fmt, len(fmt.lengths), 0)
    return out, pair


def drop_groups(feats, pair, rate, rng, none_rate=0.0):
    """feats and pair with each feature group (and pair) set to unknown with probability rate, for the whole
    poem, or all of them with probability none_rate (training's dropout of formats, so that the model also
    writes with any of them missing, and reads a poem with none as well as a characters-only model)."""
    keep = rng.random(len(GROUPS) + 1) >= rate
    if none_rate > 0 and rng.random() < none_rate:
        keep[:] = False
    return feats * keep[:-1], pair * keep[-1]


# ----------------------------------------------------------------------------------------------------------
# the Format of a 诗

def shi_tones(chars, lines, first, rhyme_lines):
    """Target tones of a regular poem: positions 2, 4, 6 by 二四六分明 with 粘 and 对 from `first` (line 1's
    position-2 tone); a rhyming line ends 平, another line ends 仄; every other position either (3)."""
    out = []
    for k in range(lines):
        t = [3] * chars
        for p in (2, 4, 6):
            if p < chars:
                t[p - 1] = TONE_VALUE[poetics.required_tone(k, p, first)]
        t[-1] = 1 if k in rhyme_lines else 2
        out.append(tuple(t))
    return tuple(out)


def shi_format(chars, lines, first=None, group=None, first_rhymes=False):
    """The Format of a regular 诗 of `lines` lines of `chars` characters: rhyming on the even lines (and the
    first when first_rhymes) in 平水韵 group index `group` (None: rhyme unknown), tone pattern from `first`
    (None: tones unknown), the 颔联/颈联 (and an 排律's middle couplets) answering."""
    rhyme = {}
    if group is not None:
        rhyme = {k: 1 + group for k in range(lines) if k % 2 == 1 or (k == 0 and first_rhymes)}
    tones = shi_tones(chars, lines, first, rhyme or {k for k in range(1, lines, 2)}) if first is not None else ()
    return Format(lengths=(chars,) * lines, rhyme_lines=rhyme, tones=tones, paired=answering_lines(lines))


def answering_lines(lines):
    """The 0-based lines of a regular 诗 of `lines` lines that answer the line before: the second lines of the
    颔联 and 颈联 (and of an 排律's other middle couplets); none in a 绝句."""
    return tuple(range(3, lines - 2, 2)) if lines >= 8 else ()


def tone_fit(lines, tone, first):
    """Share of positions 2, 4, 6 (before the last character) of lines whose tone (tone(ch): LEVEL, OBLIQUE,
    BOTH or None) follows the pattern from `first`; None when none is known."""
    hits, judged = poetics.pattern_hits(lines, tone, first)
    return hits / judged if judged else None


def shi_group(lines, book):
    """(group index, first line rhymes) when every even line ends in one level group of book (the first line's
    end decides between several), else (None, False)."""
    even = [book.groups_of(l[-1], LEVEL) for l in lines[1::2]]
    common = set.intersection(*even) if even else set()
    if not common:
        return None, False
    with_first = common & book.groups_of(lines[0][-1], LEVEL)
    return min(with_first or common), bool(with_first)


def format_of(text, tone, book):
    """The Format a real 诗 follows, read from the poem: None unless it is regular (5 or 7 characters a line,
    an even number of lines); its rhyme when all even lines share a level group of book, its tone pattern when
    positions 2/4/6 follow the nearer pattern at PATTERN_FIT or better. tone(ch): LEVEL, OBLIQUE, BOTH or None."""
    shape = poetics.form_of(text)
    if not shape or shape[0] not in (5, 7) or shape[1] % 2:
        return None
    lines = [l[:-1] for l in poetics.split_lines(text)]
    group, first_rhymes = shi_group(lines, book)
    fits = {f: tone_fit(lines, tone, f) for f in (LEVEL, OBLIQUE)}
    first = max(fits, key=lambda f: fits[f] or 0.0)
    first = first if (fits[first] or 0.0) >= PATTERN_FIT else None
    return shi_format(shape[0], shape[1], first, group, first_rhymes)


# ----------------------------------------------------------------------------------------------------------
# the Format of a 词 (its 词牌's lines and rhyme sets: dataUtil's cipai table)

def ci_format(entry, ends=None, book=None):
    """The Format of a 词 of the 词牌 entry (cipai.json: lines [(characters, mark)], rhymes [{lines, tones}]):
    its line lengths and rhyme slots; each rhyme set's 词林正韵 部 from ends (the poem's line-end characters)
    when they share one in book, else unknown (0). Tones unknown (the 词谱 gives them where it is known)."""
    rhyme = {}
    for s in entry.get("rhymes", []):
        value = 0
        if ends is not None and book is not None and max(s["lines"]) < len(ends):
            wants = [poetics.CLASSICAL[t] for t in s["tones"]]
            common = book.common([ends[i] for i in s["lines"]], wants)
            value = 1 + CILIN_BASE + min(common) if common else 0
        rhyme.update({i: value for i in s["lines"]})
    return Format(lengths=tuple(n for n, _ in entry["lines"]), rhyme_lines=rhyme)


def ge_format(ge, text, cilin):
    """The Format of a 词 that follows 格 ge (cipu.Ge) piece for piece: its pieces, the 格's tone per character,
    its rhyme slots, each rhyme set's 词林正韵 部 where the text's rhymes share one (else unknown)."""
    lengths = tuple(n for n, _ in ge.pieces)
    ends = {sum(lengths[:k + 1]) - 1: k for k in range(len(lengths))}            # last character -> piece
    chars = [ch for ch in text if ch not in poetics.LINE_ENDS + "、："]
    rhyme = {}
    for tone, at in ge.rhymes:
        common = cilin.common([chars[p] for p in at]) if cilin is not None else set()
        if tone == "入":
            common = {g for g in common if g >= 14}                             # 部 15-19: the 入声
        value = 1 + CILIN_BASE + min(common) if common else 0
        rhyme.update({ends[p]: value for p in at if p in ends})
    tones, pos = [], 0
    for n in lengths:
        tones.append(tuple(WANT_VALUE[t] for t in ge.tones[pos:pos + n]))
        pos += n
    return Format(lengths=lengths, rhyme_lines=rhyme, tones=tuple(tones))


class Formatter:
    """Formats of real poems, read with the project's tables: tone {character: 平|仄|both}, the 平水韵 and
    词林正韵 books, the 词牌 table (for 词: a 词 whose lines follow a 词牌's pattern gets that 词牌's form)."""

    def __init__(self, tones, pingshui, cilin=None, cipai=None, ci_pattern=None, cipu=None):
        self.tone = lambda ch: poetics.CLASSICAL.get(tones.get(ch))
        self.pingshui, self.cilin = pingshui, cilin
        self.by_pattern = {}
        for name, entry in (cipai or {}).items():
            self.by_pattern.setdefault(tuple(map(tuple, entry["lines"])), entry)
        self.ci_pattern = ci_pattern
        self.ges = {}                                   # piece lengths -> the 词谱's 格 cut that way
        for ge in (cipu.all_ge() if cipu is not None else ()):
            self.ges.setdefault(tuple(n for n, _ in ge.pieces), []).append(ge)

    def __call__(self, text):
        fmt = format_of(text, self.tone, self.pingshui)
        if fmt is None and self.ges:
            fmt = self.by_ge(text)
        if fmt is None and self.by_pattern and self.ci_pattern is not None:
            entry = self.by_pattern.get(self.ci_pattern(text))
            if entry is not None:
                fmt = ci_format(entry, poetics.line_ends(text), self.cilin)
        return fmt

    def by_ge(self, text):
        """The Format of the 格 cut exactly as text's pieces whose tones the text keeps best (None: none is)."""
        pieces = poetics.split_after(text, poetics.LINE_ENDS + "、")
        lengths = tuple(len(p) - (p[-1] in poetics.LINE_ENDS + "、") for p in pieces)
        ges = self.ges.get(lengths)
        if not ges:
            return None
        chars = [ch for ch in text if ch not in poetics.LINE_ENDS + "、："]
        tones = [self.tone(ch) for ch in chars]

        def kept(ge):
            return sum(t in (BOTH, None) or w == "中" or (w == "平") == (t == LEVEL) for t, w in zip(tones, ge.tones))
        return ge_format(max(ges, key=kept), text, self.cilin)
