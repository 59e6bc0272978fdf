"""The 词谱: every 词牌's 格 (its variants) as 钦定词谱 (1715) and 龙榆生《唐宋词格律》 give them — the pieces
(句 and 读) a 格 is cut into, the tone each character wants (平, 仄, or 中: either), and which characters rhyme
together — read from pretrained/cipu.json, matched to a 词's text, and a text judged against a 格.

pretrained/cipu.json is derived by scripts/build_cipu.py from the 凑韵 (couyun) project's ci_pu tables (MIT
licence: the file carries the notice; docs/cipu.md says what it holds and how it was built). Its schema:

    {"format": 1, "source": str, "licence": str, "cipai": [
        {"names": [main name, other names...], "kind": "双调",
         "ge": [{"from": "钦定词谱" | "龙榆生", "tones": "中仄平平...",      one of 平仄中 per character
                 "pieces": "4，3、4。...",    each piece's length and its end: ， a 句, 、 a 读, 。 a line's end
                 "rhymes": [{"tone": "平" | "仄" | "入" | "平仄", "at": [10, 21, ...]}],   0-based characters
                 "first": "暮雨初收，长川静、征帆夜落。",       the example's first line
                 "either_from": 1}, ...]}, ...]}       (optional) the 格 whose 中 a 格 marking none took

A rhyme set's tone: 平 or 仄 where the 格 fixes every end to one tone, 平仄 where it mixes them (三声通叶: one
部's 平 and 仄 rhyme together), 入 where the set is 仄 and the 格's example rhymes on 入声 only (then the ends
are judged in 词林正韵's 入声 部, 15-19).

Matching (matches) compares the text's pieces, as its punctuation (，。？！；：、) cuts them, with each 格's: the
same characters in all, a rhyme never inside a piece, and the breaks between pieces the same, except that a 读
the text leaves out (凭栏处潇潇雨歇 for 凭栏处、潇潇雨歇) is no difference; `distance` counts the breaks that
differ otherwise (a text punctuated as another edition does it). Judging (judge) needs no corpus and no model:
the characters' tones and a 词林正韵 Book come from the caller.

Torch-free and corpus-free: it imports config and poetics' tone constants only.
"""
import json
import os
import re
from dataclasses import dataclass

from config import UserError
from verse.poetics import BOTH, LEVEL, OBLIQUE

PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained", "cipu.json")
FORMAT = 1
SOURCES = ("钦定词谱", "龙榆生")
SET_TONES = ("平", "仄", "入", "平仄")
PIECE = re.compile(r"(\d+)([，、。])")
WANT = {"平": LEVEL, "仄": OBLIQUE, "中": None}         # None: either tone
ENTERING_BU = ("第十五部", "第十六部", "第十七部", "第十八部", "第十九部")   # 词林正韵's 入声 部
LOOSE_BREAKS = 2        # a text matched by its pattern alone may differ from a 格 at this many breaks
MARK = {LEVEL: "平", OBLIQUE: "仄"}


@dataclass(frozen=True)
class Ge:
    """One 格 of a 词牌."""
    cipai: str          # the 词牌's main name
    number: int         # 1-based among the 词牌's 格
    of: int             # how many 格 the 词牌 has
    source: str         # 钦定词谱 | 龙榆生
    tones: str          # 平 / 仄 / 中 per character
    pieces: tuple       # ((length, end mark), ...), marks ，、。
    rhymes: tuple       # ((tone, (0-based character, ...)), ...)
    first: str          # the example's first line, punctuated
    either_from: int = 0    # the 格 whose 中 this one took (one that marks none of its own), or 0

    @property
    def chars(self):
        return len(self.tones)

    @property
    def breaks(self):
        """{break: is a 读}: the character counts after which a piece ends (the last piece's end left out)."""
        out, at = {}, 0
        for n, mark in self.pieces[:-1]:
            at += n
            out[at] = mark == "、"
        return out

    def label(self):
        taken = f", 中 as 格 {self.either_from}" if self.either_from else ""
        return f"格 {self.number} of {self.of}, {self.chars} 字, {self.source}{taken}"


@dataclass
class Cipu:
    """The table: 词牌 main name -> its 格, and every name (other names too) -> the main name."""
    ge: dict
    names: dict
    kinds: dict
    source: str
    licence: str

    def all_ge(self):
        return [g for ges in self.ge.values() for g in ges]


# ----------------------------------------------------------------------------------------------------------
# reading the table

def load(path=PATH):
    """The Cipu of a cipu.json; a missing or malformed file is a one-line UserError."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        return parse(raw)
    except OSError as e:
        raise UserError(f"{path}: cannot read the 词谱 table ({e.strerror}); scripts/build_cipu.py builds it")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{path} is not a readable 词谱 table ({e}); scripts/build_cipu.py rebuilds it")


def parse(raw):
    """A Cipu from the decoded JSON; a ValueError (or KeyError, TypeError) names what is wrong."""
    if raw["format"] != FORMAT:
        raise ValueError(f"format {raw['format']!r}, not {FORMAT}")
    ge, names, kinds = {}, {}, {}
    for entry in raw["cipai"]:
        main = entry["names"][0]
        if not all(isinstance(n, str) and n for n in entry["names"]) or not entry["ge"]:
            raise ValueError(f"{main}: empty names or no 格")
        for n in entry["names"]:
            if names.setdefault(n, main) != main:
                raise ValueError(f"{n} names two 词牌")
        kinds[main] = str(entry.get("kind", ""))
        ge[main] = [parse_ge(main, k + 1, len(entry["ge"]), g) for k, g in enumerate(entry["ge"])]
    if not ge:
        raise ValueError("no 词牌")
    return Cipu(ge, names, kinds, str(raw["source"]), str(raw["licence"]))


def parse_ge(main, number, of, g):
    tones, pieces = g["tones"], tuple((int(n), m) for n, m in PIECE.findall(g["pieces"]))
    where = f"{main} 格 {number}"
    if not tones or set(tones) - set(WANT):
        raise ValueError(f"{where}: tones must be 平/仄/中")
    if "".join(f"{n}{m}" for n, m in pieces) != g["pieces"] or sum(n for n, _ in pieces) != len(tones) \
            or any(n < 1 for n, _ in pieces):
        raise ValueError(f"{where}: pieces {g['pieces']!r} do not cut its {len(tones)} characters")
    ends = {e - 1 for e in piece_ends(n for n, _ in pieces)}
    rhymes = []
    for s in g["rhymes"]:
        at = tuple(s["at"])
        if s["tone"] not in SET_TONES or not at or not all(isinstance(p, int) and p in ends for p in at):
            raise ValueError(f"{where}: a rhyme set must have a tone of {SET_TONES} and piece ends")
        rhymes.append((s["tone"], at))
    either = g.get("either_from", 0)
    if g["from"] not in SOURCES or not isinstance(g["first"], str) or either not in range(number):
        raise ValueError(f"{where}: from must be one of {SOURCES}, first a string, either_from an earlier 格")
    return Ge(main, number, of, g["from"], tones, pieces, tuple(rhymes), g["first"], either)


def piece_ends(lengths):
    """Cumulative ends of pieces of these lengths: (4, 3, 4) -> [4, 7, 11]."""
    out, at = [], 0
    for n in lengths:
        at += n
        out.append(at)
    return out


def resolve(table, name, convert=None):
    """The main name of 词牌 `name` (any of its names; a name joined with ・ as 木兰花・玉楼春 by any part;
    traditional characters through convert, e.g. OpenCC t2s), or None."""
    for n in (name, *((convert(name),) if convert else ())):
        for part in (n, *n.split("・")):
            if part in table.names:
                return table.names[part]
    return None


# ----------------------------------------------------------------------------------------------------------
# matching a text to a 格

def distance(lengths, ge):
    """How far the text's pieces (their lengths) are from the 格's: None when the characters differ in number
    or a rhyme falls inside a piece of the text; else the breaks that differ, a 读 left out not counted."""
    if sum(lengths) != ge.chars:
        return None
    text = set(piece_ends(lengths)[:-1])
    if any(p + 1 not in text and p + 1 != ge.chars for _, at in ge.rhymes for p in at):
        return None
    breaks = ge.breaks
    return len(text - breaks.keys()) + sum(1 for b, dou in breaks.items() if not dou and b not in text)


def matches(table, lengths, name=None, loose=LOOSE_BREAKS):
    """[(distance, Ge)] nearest first (ties in the table's order): the 格 of 词牌 `name` (a main name) that the
    text's piece lengths can follow at all, or without a name every 格 within `loose` breaks of them."""
    pool = table.ge[name] if name else table.all_ge()
    found = [(d, g) for g in pool if (d := distance(lengths, g)) is not None and (name or d <= loose)]
    return sorted(found, key=lambda x: x[0])


def nearest_shape(table, lengths, name):
    """(Ge, 0-based piece of the text) of the 词牌's 格 whose piece lengths agree with the text's longest from
    the start, and the first text piece that differs: what to show when no 格 fits."""
    best = (-1, None)
    for g in table.ge[name]:
        theirs = [n for n, _ in g.pieces]
        same = next((k for k, (a, b) in enumerate(zip(lengths, theirs)) if a != b), min(len(lengths), len(theirs)))
        if same > best[0]:
            best = (same, g)
    return best[1], min(best[0], len(lengths) - 1)


# ----------------------------------------------------------------------------------------------------------
# judging a text against a 格

@dataclass
class Break:
    rule: str           # 平仄 | 出韵
    at: int             # 0-based character of the text
    message: str


def judge(ge, chars, tones, book):
    """(breaks, sets, unjudged) of a text against a 格. chars: the text's characters without punctuation
    (ge.chars of them); tones: each one's LEVEL, OBLIQUE, BOTH or None (unknown); book: 词林正韵
    (rhymebook.Book). A 中 position, a character read both ways and one of unknown tone are never broken;
    sets: [{"tone", "at", "group"}] per rhyme set, group the 部 its ends are judged in (None: none found);
    unjudged: rhyme characters the book does not hold."""
    breaks = [b for p, (ch, t) in enumerate(zip(chars, tones)) if (b := tone_break(ge, p, ch, t))]
    sets, unjudged = [], []
    for tone, at in ge.rhymes:
        g, bad, unknown = rhyme_group(tone, [(p, chars[p], WANT[ge.tones[p]]) for p in at], book)
        sets.append({"tone": tone, "at": list(at), "group": book.groups[g] if g is not None else None})
        unjudged += unknown
        for p in bad:
            where = f"{book.groups[g]}{'' if tone != '入' else ' (入声)'}" if g is not None else "one 部"
            mine = ", ".join(book.groups[x] for x in sorted(book.groups_of(chars[p]))) or "none"
            breaks.append(Break("出韵", p, f"{chars[p]} is not in {where} with the set's other ends (its 部: {mine})"))
    return sorted(breaks, key=lambda b: b.at), sets, unjudged


def tone_break(ge, p, ch, tone):
    want = WANT[ge.tones[p]]
    if want is None or tone in (BOTH, None) or tone == want:
        return None
    return Break("平仄", p, f"{ch} is {MARK[tone]}; {ge.cipai} {ge.label()} wants {MARK[want]} here")


def rhyme_group(set_tone, ends, book):
    """(部, [bad positions], [characters not in the book]) of one rhyme set's ends [(position, character, tone
    wanted or None)]: the 部 most ends are in, each in the tone its position wants (a 入 set only among the
    入声 部; ties to the lower 部); an end the book holds but not in that 部 and tone is bad."""
    allowed = set(range(len(book.groups)))
    if set_tone == "入":
        allowed = {g for g, name in enumerate(book.groups) if name in ENTERING_BU} or allowed
    count = {}
    for p, ch, t in ends:
        for g in book.groups_of(ch, t) & allowed:
            count.setdefault(g, []).append(p)
    g = max(sorted(count), key=lambda x: len(count[x]), default=None)
    known = [(p, ch) for p, ch, _ in ends if book.groups_of(ch)]
    bad = [p for p, _ in known if g is None or p not in count[g]]
    return g, bad, [ch for _, ch, _ in ends if not book.groups_of(ch)]
