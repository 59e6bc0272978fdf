"""The rules of regular verse (近体诗: 五言/七言 绝句, 律诗, 排律) for prosody.check, as 王力《诗词格律》 and 启功
《诗文声律论稿》 teach them: the poem's pattern is decided first, then each line is judged against its template.

The pattern. Each line is one of four shapes (五言; a 七言 line puts the opposite of the first two in front):
A 仄仄平平仄, B 平平仄仄平, C 平平平仄仄, D 仄仄仄平平. A line's shape follows from its key tone (position 2) and its
ending: the even lines end on the rhyme (平), the odd lines after the first on 仄, the first on 平 when it rhymes
(首句入韵); position 2 keeps 粘 (a couplet's first line has the tone of the line before it) and 对 (a couplet's
lines are opposite). So a poem has four patterns (平起/仄起 by line 1's position 2, 首句入韵 or not): the one
chosen is the one the key positions of all the lines together break least, never one position alone.

Judging a line against its template:
- positions 2, 4 (and 6) and the end of an odd line are strict: a wrong tone at position 2 breaks 粘 or 对, at 4 or
  6 二四六分明, a 平 end of lines 3, 5, 7 is 出句平收; positions 1, 3 (and 5) are free (一三五不论) except:
- 孤平: a 平-ending line whose last five read 仄平仄仄平; 三平尾: the last three 平 (both violations);
- 三仄尾 (the last three 仄) and 重字 (a character used twice, away from a doubling like 萧萧) are named in
  notes, not flagged: the poets used both on purpose (江流石不转; 锦瑟's 一弦一柱);
- 拗救, named in notes and accepted (in 五言 positions; 七言 adds two):
  本句自救 (特拗): 平平仄平仄 for C 平平平仄仄 (移舟泊烟渚; 七言 仄仄平平仄平仄); with 仄 at position 1 (故人具鸡黍)
  it is accepted too, and the note says 王力 asks 平 there;
  对句相救: in an A line 仄仄平平仄, position 4 (and/or 3) 仄 where 平 was due, answered by 平 at position 3 of
  the B line after it (野火烧不尽 / 春风吹又生; 向晚意不适 / 驱车登古原); a 仄 at 4 with no answer is 二四六分明;
  孤平拗救: 仄平平仄平 for B (position 3 平 rescues the 仄 at 1).
A character read both ways (中) takes the tone that fits; it is flagged only where neither tone would do. A
character of unknown tone fits either and is listed in the notes.

Rhyme: the 平水韵 group is the one most of the rhyming lines (the even lines and the first) share, then the one
most even lines share, level tone first; a line outside it is 出韵, with the group named. A first line that ends
平 outside the group is a note (a 首句入韵 slot left unrhymed, or a neighbouring group: 借邻韵). A 仄韵 poem is
judged at positions 2, 4, 6 only.
"""
from dataclasses import dataclass
from itertools import product

from verse.poetics import BOTH, LEVEL, OBLIQUE

P, Z = LEVEL, OBLIQUE
MARK = {LEVEL: "平", OBLIQUE: "仄", BOTH: "中", None: "？"}
SHAPES = {"A": (Z, Z, P, P, Z), "B": (P, P, Z, Z, P), "C": (P, P, P, Z, Z), "D": (Z, Z, Z, P, P)}
VIOLATIONS = ("粘", "对", "二四六分明", "出句平收", "孤平", "三平尾", "出韵")
REMARKS = ("本句自救", "对句相救", "孤平拗救", "三仄尾", "重字", "首句平收不入韵")


@dataclass
class Violation:
    rule: str
    line: int            # 1-based
    char: int            # 1-based position in the line
    character: str
    message: str


@dataclass
class Judged:
    """One line judged against its template: the reading taken, what it breaks, what it names."""
    reading: tuple       # a tone per character (中 resolved; None where unknown)
    faults: list         # (rule, position, message)
    remarks: list        # (rule, position, message)
    bent: bool = False   # an A line with 仄 at position 3 or 4 of its last five (its 对句 may answer it)


def shape_of(n, key, end):
    """(letter, template) of the line of n characters with tone key at position 2 and the ending given."""
    for letter, five in SHAPES.items():
        full = five if n == 5 else (1 - five[0], 1 - five[1]) + five
        if full[1] == key and full[-1] == end:
            return letter, full
    raise ValueError((n, key, end))


def poem_shapes(n, count, key, first_end, rhyme_tone=P):
    """The (letter, template) of each line when line 1 has tone key at position 2 and ends first_end."""
    other = 1 - rhyme_tone
    out = []
    for i in range(count):
        k = key if i % 4 in (0, 3) else 1 - key
        end = first_end if i == 0 else rhyme_tone if i % 2 else other
        out.append(shape_of(n, k, end))
    return out


def readings(ts):
    """Every concrete reading of a line's tones: 中 both ways; unknown stays None."""
    choices = [(P, Z) if t == BOTH else (t,) for t in ts]
    return product(*choices)


# ----------------------------------------------------------------------------------------------------------
# one line

def faults_of(r, letter, want, index, strict_end, ping):
    """What reading r breaks against template want (letter A-D), and the 拗救 it shows: (faults, remarks,
    bent). index: the line's 0-based number; strict_end: its ending is judged (odd lines after the first);
    ping: the poem rhymes on 平 (拗救, 孤平 and 三平尾 apply)."""
    n, faults, remarks = len(r), [], []
    tail = r[-5:]
    key_places = [2, 4] + ([6] if n == 7 else [])
    wrong = [p for p in key_places if r[p - 1] is not None and r[p - 1] != want[p - 1]]
    bent = False
    if ping and letter == "C" and tail[1:] == (P, Z, P, Z) and n - 1 in wrong:
        wrong.remove(n - 1)
        lead = " (王力 asks 平 at its first character)" if tail[0] == Z else ""
        remarks.append(("本句自救", n - 2, f"{''.join(MARK[t] for t in tail)} for {tone_text(want[-5:])}: "
                        f"the 仄 at position {n - 2} and 平 at {n - 1} trade places (特拗){lead}"))
    if ping and letter == "A" and (tail[2] == Z or tail[3] == Z):
        bent = True
    faults += key_faults(r, want, wrong, index)
    if ping and strict_end and r[-1] == P:
        faults.append(("出句平收", n, "a couplet's first line ends 仄 (only line 1 may end 平, to rhyme)"))
    if ping and r[-1] == P and tail == (Z, P, Z, Z, P):
        faults.append(("孤平", n - 4, f"仄平仄仄平: the one 平 besides the rhyme stands alone; position {n - 4} "
                       f"wants 平, or 平 at {n - 2} rescues it (孤平拗救)"))
    elif ping and letter == "B" and tail == (Z, P, P, Z, P):
        remarks.append(("孤平拗救", n - 2, f"仄平平仄平: the 平 at position {n - 2} rescues the 仄 at {n - 4}"))
    if ping and r[-3:] == (P, P, P):
        faults.append(("三平尾", n - 2, "the last three characters are all 平"))
    if r[-3:] == (Z, Z, Z):
        remarks.append(("三仄尾", n - 2, "the last three characters are all 仄 (allowed in a 仄-ending line; "
                        "noted)"))
    return faults, remarks, bent


def key_faults(r, want, wrong, index):
    """The strict positions of reading r off the template: position 2 breaks 粘 (or 对), 4 and 6 二四六分明; a
    line whose own 2 4 6 alternate but all the other way is one fault, at position 2."""
    if not wrong:
        return []
    pair = "对" if index % 2 == 1 or index == 0 else "粘"
    why = {"对": "a couplet's lines are opposite at position 2", "粘": "a couplet's first line has the tone of the "
           "line before it at position 2"}[pair]
    if 2 in wrong and set(wrong) == {p for p in (2, 4, 6) if p <= len(r) and r[p - 1] is not None}:
        return [(pair, 2, f"{why}; the line follows the other pattern ({tone_text(want)} is due)")]
    return [(pair if p == 2 else "二四六分明", p, f"{why}; {MARK[want[p - 1]]} is due" if p == 2 else
             f"position {p} should be {MARK[want[p - 1]]} ({tone_text(want)}; positions 2, 4, 6 alternate)")
            for p in wrong]


def judge_line(ts, letter, want, index, strict_end, ping, prefer_answer=False):
    """The best reading of tones ts against the template: fewest faults, then (prefer_answer: the line answers
    its 出句's 拗) 平 at position 3 of its last five, then fewest remarks."""
    best = None
    for r in readings(ts):
        faults, remarks, bent = faults_of(r, letter, want, index, strict_end, ping)
        cost = (len(faults), prefer_answer and r[-3] == Z, len(remarks))
        if best is None or cost < best[0]:
            best = (cost, Judged(r, faults, remarks, bent))
    return best[1]


def judge_couplet(tones, shapes, i, ping):
    """Lines i and i + 1 judged together: an A line's 拗 at position 4 (of its last five) is accepted when the B
    line after it can answer with 平 at position 3 (对句相救)."""
    out = [judge_line(tones[i], *shapes[i], i, i > 0, ping)]
    if i + 1 >= len(tones):
        return out
    first = out[0]
    answers = shapes[i + 1][0] == "B" and tones[i + 1][-3] in (P, BOTH, None)
    second = judge_line(tones[i + 1], *shapes[i + 1], i + 1, False, ping, prefer_answer=first.bent)
    n = len(tones[i])
    if first.bent and answers and second.reading[-3] != Z:
        first.faults = [f for f in first.faults if not (f[0] == "二四六分明" and f[1] == n - 1)]
        at = " and ".join(str(p) for p in (n - 2, n - 1) if first.reading[p - 1] == Z)
        second.remarks.append(("对句相救", n - 2, f"line {i + 1}'s 仄 at position {at} (平 due) is answered by "
                               f"this line's 平 at position {n - 2}"))
    elif first.bent:
        first.faults = [(rule, p, msg + (f"; a 平 at position {n - 2} of line {i + 2} would rescue it (对句相救)"
                                         if rule == "二四六分明" and p == n - 1 else "")) for rule, p, msg in first.faults]
    return out + [second]


def tone_text(ts):
    return "".join(MARK[t] for t in ts)


# ----------------------------------------------------------------------------------------------------------
# the whole poem

def judge_poem(tones, shapes, ping):
    """Every line judged: [Judged], by couplets."""
    out = []
    for i in range(0, len(tones), 2):
        out += judge_couplet(tones, shapes, i, ping)
    return out


def best_pattern(tones, rhyme_tone):
    """(key, first_end, shapes, judged) of the pattern the lines together break least (line 1 ending as it does;
    either way for a 中 end); on a tie the one with line 1's position-2 tone as key, then 首句入韵."""
    n, count = len(tones[0]), len(tones)
    ping = rhyme_tone == P
    candidates = []
    ends = (tones[0][-1],) if tones[0][-1] in (P, Z) else (rhyme_tone, 1 - rhyme_tone)
    for key, first_end in product((P, Z), ends):
        shapes = poem_shapes(n, count, key, first_end, rhyme_tone)
        judged = judge_poem(tones, shapes, ping) if ping else [judge_flat(ts, w, i) for i, (ts, (_, w)) in
                                                               enumerate(zip(tones, shapes))]
        faults = sum(len(j.faults) for j in judged)
        remarks = sum(len(j.remarks) for j in judged)
        cost = (faults, tones[0][1] not in (key, BOTH, None), first_end != rhyme_tone, remarks)
        candidates.append((cost, key, first_end, shapes, judged))
    _, key, first_end, shapes, judged = min(candidates, key=lambda c: c[0])
    return key, first_end, shapes, judged


def judge_flat(ts, want, index):
    """A 仄韵 line: positions 2, 4, 6 by the pattern's key, 孤平 and 三平尾 aside (they belong to 平韵 verse)."""
    best = None
    for r in readings(ts):
        wrong = [p for p in ([2, 4] + ([6] if len(r) == 7 else [])) if r[p - 1] is not None and r[p - 1] != want[p - 1]]
        faults = key_faults(r, want, wrong, index)
        remarks = [("三仄尾", len(r) - 2, "the last three characters are all 仄 (noted)")] if r[-3:] == (Z, Z, Z) else []
        if best is None or len(faults) < len(best.faults):
            best = Judged(r, faults, remarks)
    return best


def check_regular(lines, tones, book, report):
    """Fill report (prosody.check's) for a regular poem: pattern, each line's template and reading, rhyme,
    violations (Violation) and remarks (Violation-shaped: named, not flagged), notes."""
    v, remarks = report["violations"], report["remarks"]
    check_rhyme(lines, tones, book, report)
    tone = {"平": P, "仄": Z}.get((report["rhyme"] or {}).get("tone"), P)
    key, first_end, shapes, judged = best_pattern(tones, tone)
    for i, (l, j, (letter, want)) in enumerate(zip(lines, judged, shapes)):
        report["lines"][i].update(template=tone_text(want), shape=letter, reading=tone_text(j.reading))
        v += [Violation(rule, i + 1, p, l[p - 1], msg) for rule, p, msg in j.faults]
        remarks += [Violation(rule, i + 1, p, l[p - 1], msg) for rule, p, msg in j.remarks]
    remarks += repeats(lines)
    report["pattern"] = {"start": {P: "平起", Z: "仄起"}[key],
                         "first_line_rhymes": bool(report["rhyme"] and 1 in report["rhyme"]["rhyming_lines"]),
                         "first_line_ends": MARK[first_end], "templates": [tone_text(w) for _, w in shapes]}
    report["notes"].append("positions 1, 3, 5 are free (一三五不论) except where 孤平 or 三平尾 arise; 拗救 is "
                           "named, not flagged")
    either = [f"{l[p]} (line {i + 1}, char {p + 1}: {MARK[j.reading[p]]})" for i, (l, ts, j) in
              enumerate(zip(lines, tones, judged)) for p, t in enumerate(ts) if t == BOTH]
    if either:
        report["notes"].append("read both ways, the tone the template wants is taken: " + ", ".join(either))


def repeats(lines):
    """重字 as remarks: a character met again in the poem, away from a doubling (萧萧 滚滚 are one word)."""
    seen, out = set(), []
    for i, l in enumerate(lines):
        for p, ch in enumerate(l):
            doubled = (p > 0 and l[p - 1] == ch) or (p + 1 < len(l) and l[p + 1] == ch)
            if ch in seen and not doubled:
                out.append(Violation("重字", i + 1, p + 1, ch, f"{ch} is used earlier in the poem (allowed; noted)"))
            seen.add(ch)
    return out


# ----------------------------------------------------------------------------------------------------------
# rhyme

def best_group(ends, book, prefer=()):
    """(group, tone, lines in it) of the group of the book that most of ends [(line index, char)] share, then
    the one most of the lines in prefer share, level tone first; (None, None, []) when none has two."""
    best, best_key = (None, None, []), None
    for tone in (P, Z):
        count = {}
        for i, ch in ends:
            for g in book.groups_of(ch, tone):
                count.setdefault(g, []).append(i)
        for g, members in count.items():
            k = (len(members), sum(i in prefer for i in members), tone == P, -g)
            if best_key is None or k > best_key:
                best, best_key = (g, tone, members), k
    return best if len(best[2]) >= 2 else (None, None, [])


def check_rhyme(lines, tones, book, report):
    """The poem's group, chosen from all the rhyming lines (the even ones and the first); each even line outside
    it is 出韵; a first line ending 平 outside it is noted."""
    even = [i for i in range(1, len(lines), 2)]
    g, tone, _ = best_group([(i, lines[i][-1]) for i in [0] + even], book, prefer=set(even))
    v = report["violations"]
    if g is None:
        for i in even:
            v.append(Violation("出韵", i + 1, len(lines[i]), lines[i][-1], "no two rhyming lines end in one 平水韵 "
                               "group"))
        report["rhyme"] = {"system": "平水韵", "group": None, "tone": None, "rhyming_lines": [], "ends": []}
        return
    name = book.groups[g]
    rhyming = ([0] if g in book.groups_of(lines[0][-1], tone) else []) + even
    ends = []
    for i in rhyming:
        ch = lines[i][-1]
        ok = g in book.groups_of(ch, tone)
        groups = ", ".join(book.groups[x] for x in sorted(book.groups_of(ch))) or "no group"
        ends.append({"line": i + 1, "char": ch, "groups": sorted(book.groups[x] for x in book.groups_of(ch)),
                     "in_group": ok})
        if not ok:
            v.append(Violation("出韵", i + 1, len(lines[i]), ch, f"{ch} is not in {name} ({groups})"))
    report["rhyme"] = {"system": "平水韵", "group": name, "tone": MARK[tone], "rhyming_lines": [i + 1 for i in rhyming],
                       "ends": ends}
    first = lines[0][-1]
    if 0 not in rhyming and tone == P and tones[0][-1] == P:
        groups = ", ".join(book.groups[x] for x in sorted(book.groups_of(first))) or "no group"
        report["remarks"].append(Violation("首句平收不入韵", 1, len(lines[0]), first, f"line 1 ends 平 but {first} "
                                           f"({groups}) is not in {name}: a 首句入韵 slot left unrhymed, or a "
                                           "neighbouring group (借邻韵)"))
    if tone == Z:
        report["notes"].append("the rhyme is on 仄 (仄韵): regulated verse rhymes on 平; positions 2, 4, 6 are "
                               "checked")
