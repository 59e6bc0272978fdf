"""Reading a poem's text as a reader would (prosody.normalise, `check`): the end of a line is any of ，。？！；：、
(or its half-width form), a space or a new line; empty lines (，，) are dropped; a title or author line above the
poem ("静夜思" / "李白" / "唐·李白" / "《登高》 杜甫") is recognised and set aside; traditional characters are
converted the way the corpus is. Also the shape test every caller shares: a regular 诗 is 4, 8 or 10+ (even)
lines of 5 or 7 characters, whatever marks end them (a 绝句 printed with ？ or ！ or commas throughout is one).
"""
from dataclasses import dataclass, field

from config import UserError
from verse.text import CLEAN_POEM, HALF_TO_FULL, PUNCT, opencc_t2s, standard_form, standardise

MARKS = PUNCT                      # ，。？！；：、 each end a line
STOPS = "，。？！；、"                        # marks that never stand inside a title or author line
DECOR = "《》〈〉【】[]［］（）()〔〕「」『』·•・‧—–-－/／|｜"   # what a title or author line may hold besides characters
MAX_HEADINGS = 4                          # rows (or space-separated pieces) above a poem that may be its title
MAX_HEADING = 30                          # characters of one such row
MAX_POEM = 400                            # characters a check or revision accepts
FORM_NAMES = {4: "绝句", 8: "律诗"}


@dataclass
class Reading:
    text: str                              # the poem's lines, each ending in a mark ('' when no line is left)
    headings: list = field(default_factory=list)      # the rows set aside as a title or author line


def read_poem(text, vocab=None, fits=None):
    """The Reading of user text. Leading rows that look like a title or author line are set aside when the rest
    reads as a regular 诗 (or fits(text), e.g. a known 词牌), or when the poem's lines carry marks and they do
    not. Empty text is a UserError; so are characters that are neither Chinese nor marks in the poem, and a
    poem over MAX_POEM characters. vocab: see convert."""
    units = [u for row in text.translate(HALF_TO_FULL).splitlines() for u in row.split()]
    if not units:
        raise UserError("the poem is empty; give its lines, e.g. \"白日依山尽，黄河入海流。\"")
    k = heading_count(units, fits)
    body = join_lines(units[k:])
    bad = next((ch for ch in body if not CLEAN_POEM.fullmatch(ch)), None)
    if bad is not None:
        raise UserError(f"{bad!r} is neither a Chinese character nor ，。？！；：、: give the poem's text alone")
    if len(body) > MAX_POEM:
        raise UserError(f"the poem has {len(body)} characters; at most {MAX_POEM} are checked")
    return Reading(convert(body, vocab) if body else "", [convert(u, None) for u in units[:k]])


def heading_count(units, fits=None):
    """How many leading units are a title or author line: the fewest after which the rest reads as a regular
    诗 (or fits), else as many as plainly are headings (bracketed or dotted, or unmarked above marked lines)."""
    lead = 0
    while lead < min(MAX_HEADINGS, len(units) - 1) and heading_like(units[lead]):
        lead += 1
    for k in range(lead + 1):
        rest = join_lines(units[k:])
        if shape_of(rest) or (fits and rest and fits(convert(rest, None))):
            return k
    marked = [any(ch in STOPS for ch in u) for u in units]
    k = 0
    while k < lead and (any(ch in DECOR for ch in units[k]) or (not marked[k] and all(marked[k + 1:]))):
        k += 1
    return k


def heading_like(unit):
    """Whether a unit could be a title or author line: short, no line-end mark, characters and DECOR only."""
    return (len(unit) <= MAX_HEADING and not any(ch in STOPS for ch in unit.rstrip("：")) and
            all(ch in DECOR or ch == "：" or CLEAN_POEM.fullmatch(ch) for ch in unit))


def join_lines(units):
    """The units as one string of lines each ending in a mark: empty lines dropped, a unit without an end mark
    given ，/。 in turn (by the count of lines so far)."""
    out, count = [], 0
    for u in units:
        for piece in split_lines(u, keep_open=True):
            if piece[-1] not in MARKS:
                piece += "，" if count % 2 == 0 else "。"
            out.append(piece)
            count += 1
    return "".join(out)


def split_lines(text, keep_open=False):
    """Lines with their end mark, empty ones dropped: '白日依山尽，，黄河入海流。' -> ['白日依山尽，', '黄河入海流。'].
    keep_open: a last piece without a mark is kept (else dropped)."""
    pieces, cur = [], ""
    for ch in text:
        cur += ch
        if ch in MARKS:
            if len(cur) > 1:
                pieces.append(cur)
            cur = ""
    return pieces + ([cur] if cur and keep_open else [])


def lines_of(text):
    """The lines of normalised text without their marks."""
    return [l[:-1] for l in split_lines(text)]


def shape_of(text):
    """(characters per line, lines) when text is a regular 诗: 4, 8 or 10+ (even) lines, all of 5 or all of 7
    characters, whatever marks end them; else None."""
    lines = lines_of(text)
    n = len(lines[0]) if lines else 0
    if n in (5, 7) and all(len(l) == n for l in lines) and form_name(n, len(lines)):
        return n, len(lines)
    return None


def form_name(chars, lines):
    kind = FORM_NAMES.get(lines, "排律" if lines >= 10 and lines % 2 == 0 else "")
    return f"{'五' if chars == 5 else '七'}言{kind}" if kind else ""


def convert(text, vocab=None):
    """Traditional characters converted the way the corpus is (given a model's vocabulary, a variant the
    vocabulary holds stays: a model trained on variants as kept wrote it)."""
    simplified = opencc_t2s()(text)
    if vocab is None:
        return standardise(simplified)
    return "".join(ch if ch in vocab else standard_form(ch) for ch in simplified)
