"""The 格律 check (`python main.py check "POEM"`): a poem's form, each character's classical tone, its tone
pattern, its rhyme by 平水韵 (词林正韵 for a 词牌), and the rules it breaks, each at a line and position.

Tones: the corpus's own 平仄 labels (tones.json, how the Tang poets used each character), else the 平水韵 table's
tones, else unknown. A character read both ways (看 思 过) fits either tone and is never flagged; nor is one of
unknown tone. Rules for regular verse (五/七言 绝句, 律诗, 排律), as the handbooks state them (王力《诗词格律》):
- 二四六分明: positions 2, 4 (and 6 in 七言) of a line alternate in tone; positions 1, 3, 5 are free (一三五不论)
  except where the next two rules bite;
- 对: the second line of a couplet is opposite the first at position 2; 粘: the first line of a couplet has the
  tone of the line before it at position 2;
- 孤平: a line ending in 平 whose last five characters read 仄平仄仄平 (its only 平 besides the rhyme is alone);
- 三平尾 / 三仄尾: the last three characters all 平 / all 仄;
- 出韵: a rhyming line (the even lines, and the first when it rhymes: 首句入韵) ends outside the poem's group;
- 重字: a character used twice in the poem, away from a doubling (萧萧 滚滚 are one word).
A 词 is matched to a 格 of the 词谱 (cipu.py: 钦定词谱 and 龙榆生, by name with --cipai or by its pieces' lengths)
and judged character by character against the 格's 平/仄 (中 free), each rhyme set in one 词林正韵 部 in the
tones it wants (入声 部 for a 入 set); 粘, 对, 孤平 and 二四六 are rules of regular verse and never applied to a
词. A 词 of a learnt 词牌 (cipai.json) that fits no 格 is checked for rhyme only, by the learnt rhyme sets.
A 词's report lines are its pieces (句 and 读, as its punctuation cuts them).
"""
from dataclasses import asdict, dataclass

import cipu
import dataUtil
import poetics
from config import UserError, suggest
from poetics import BOTH, LEVEL, OBLIQUE

TONE_MARK = {LEVEL: "平", OBLIQUE: "仄", BOTH: "中", None: "？"}       # 中: either tone
FORM_NAMES = {4: "绝句", 8: "律诗"}


@dataclass
class Violation:
    rule: str
    line: int            # 1-based
    char: int            # 1-based position in the line
    character: str
    message: str


MAX_POEM = 400          # characters a check or revision accepts


def normalise(text, vocab=None):
    """User text as one string of lines ending in ，。？！；、: half-width marks made full, spaces dropped, a
    row without an end mark given ，/。 in turn, traditional characters converted the way the corpus is (given a
    model's vocabulary, a variant the vocabulary holds stays: a model trained on variants as kept wrote it).
    Empty, oversized or non-Chinese text is a UserError naming the problem."""
    rows = ["".join(r.split()) for r in text.translate(dataUtil.HALF_TO_FULL).splitlines()]
    out = ""
    for r in (r for r in rows if r):
        if r[-1] not in dataUtil.PUNCT:
            r += "，" if len(poetics.split_lines(out + r + "，")) % 2 == 1 else "。"
        out += r
    if not out.strip(dataUtil.PUNCT):
        raise UserError("the poem is empty; give its lines, e.g. \"白日依山尽，黄河入海流。\"")
    if len(out) > MAX_POEM:
        raise UserError(f"the poem has {len(out)} characters; at most {MAX_POEM} are checked")
    bad = next((ch for ch in out if not dataUtil.CLEAN_POEM.fullmatch(ch)), None)
    if bad is not None:
        raise UserError(f"{bad!r} is neither a Chinese character nor ，。？！；、: give the poem's text alone")
    if out[0] in dataUtil.PUNCT:
        raise UserError("the poem starts with a punctuation mark; give its lines")
    simplified = dataUtil.opencc_t2s()(out)
    if vocab is None:
        return dataUtil.standardise(simplified)
    return "".join(ch if ch in vocab else dataUtil.standard_form(ch) for ch in simplified)


def tone_of(ch, labels, book):
    """LEVEL, OBLIQUE, BOTH or None: the corpus's label, else the 平水韵 table's tones."""
    label = (labels or {}).get(ch)
    if label:
        return poetics.CLASSICAL[label]
    tones = {t for _, t in book.entries.get(ch, ())}
    return BOTH if len(tones) == 2 else tones.pop() if tones else None


def form_name(chars, lines):
    kind = FORM_NAMES.get(lines, "排律" if lines >= 10 else "")
    return f"{'五' if chars == 5 else '七'}言{kind}" if kind else ""


def check(text, labels, pingshui, cilin=None, cipai=None, cipu_table=None, cipai_name=None):
    """The report of text (already normalised: lines ending in ，。？！；): a dict with form, lines (text and
    tones), pattern, rhyme, violations (Violation as dicts), notes and ok. labels: {character: 平|仄|both};
    pingshui, cilin: rhymebook.Book; cipai: the learnt 词牌 table and cipu_table the 词谱 (cipu.Cipu), to
    recognise a 词; cipai_name: the 词牌 the text is said to be (check --cipai), never read as regular verse."""
    lines = [l[:-1] for l in poetics.split_lines(text)]
    tones = [[tone_of(ch, labels, pingshui) for ch in l] for l in lines]
    report = {"poem": text, "form": {"name": "free", "chars": 0, "lines": len(lines), "cipai": None},
              "lines": [{"line": i + 1, "text": l, "tones": "".join(TONE_MARK[t] for t in ts)}
                        for i, (l, ts) in enumerate(zip(lines, tones))],
              "pattern": None, "rhyme": None, "violations": [], "notes": []}
    shape = poetics.form_of(text)
    if not cipai_name and shape and shape[0] in (5, 7) and shape[1] % 2 == 0 and form_name(*shape):
        report["form"].update(name=form_name(*shape), chars=shape[0])
        check_regular(lines, tones, pingshui, report)
    elif cilin is not None and (ci := check_ci(text, labels, pingshui, cilin, cipai, cipu_table, cipai_name, report)):
        lines, tones = ci                                 # a 词's lines are its pieces
    else:
        report["notes"].append("free form: not a regular 绝句/律诗/排律 nor a known 词牌's pattern, so no rule "
                               "applies; tones are shown")
    either = [f"{l[p]} (line {i + 1}, char {p + 1})" for i, (l, ts) in enumerate(zip(lines, tones))
              for p, t in enumerate(ts) if t == BOTH]
    if either:
        report["notes"].append("read both ways, so either tone fits: " + ", ".join(either))
    unknown = [ch for l, ts in zip(lines, tones) for ch, t in zip(l, ts) if t is None]
    if unknown:
        report["notes"].append("tone unknown (not judged): " + "".join(dict.fromkeys(unknown)))
    report["violations"] = [asdict(v) for v in sorted(report["violations"], key=lambda v: (v.line, v.char))]
    report["ok"] = not report["violations"]
    return report


# ----------------------------------------------------------------------------------------------------------
# regular verse

def key_tone(ts):
    """A line's tone at position 2, or the opposite of position 4's when 2 reads both ways; None if unknown."""
    if ts[1] in (LEVEL, OBLIQUE):
        return ts[1], 2
    if len(ts) > 4 and ts[3] in (LEVEL, OBLIQUE):
        return 1 - ts[3], 4
    return None, 2


def check_regular(lines, tones, book, report):
    v = report["violations"]
    keys = [key_tone(ts) for ts in tones]
    for i, (l, ts) in enumerate(zip(lines, tones)):
        for a, b in ((2, 4), (4, 6)):
            if b <= len(ts) and ts[a - 1] in (LEVEL, OBLIQUE) and ts[a - 1] == ts[b - 1]:
                v.append(Violation("二四六分明", i + 1, b, l[b - 1], f"positions {a} and {b} are both "
                                   f"{TONE_MARK[ts[b - 1]]}; they should differ"))
        k, pos = keys[i]
        if i % 2 == 1 and k is not None and k == keys[i - 1][0]:
            v.append(Violation("对", i + 1, pos, l[pos - 1], f"the couplet's lines should be opposite at "
                               f"position 2; both are {TONE_MARK[k] if pos == 2 else TONE_MARK[1 - k]}"))
        if i % 2 == 0 and i > 0 and k is not None and keys[i - 1][0] is not None and k != keys[i - 1][0]:
            v.append(Violation("粘", i + 1, pos, l[pos - 1], f"a couplet's first line should follow the line "
                               f"before it at position 2 ({TONE_MARK[keys[i - 1][0]]})"))
        tail = ts[-5:]
        if tail[4] in (LEVEL, BOTH) and tail[3] == OBLIQUE and tail[0] == OBLIQUE and tail[2] == OBLIQUE \
                and tail[1] in (LEVEL, BOTH):
            p = len(ts) - 4
            v.append(Violation("孤平", i + 1, p, l[p - 1], "仄平仄仄平: the one 平 besides the rhyme stands alone; "
                               f"position {p} wants 平 (or 拗救 with position {p + 2})"))
        for tone, rule in ((LEVEL, "三平尾"), (OBLIQUE, "三仄尾")):
            if all(t == tone for t in ts[-3:]):
                v.append(Violation(rule, i + 1, len(ts) - 2, l[-3], f"the last three characters are all "
                                   f"{TONE_MARK[tone]}"))
    check_repeats(lines, v)
    first = keys[0][0]
    check_rhyme(lines, book, report)
    report["pattern"] = {"start": {LEVEL: "平起", OBLIQUE: "仄起"}.get(first, "unknown"),
                         "first_line_rhymes": bool(report["rhyme"] and 1 in report["rhyme"]["rhyming_lines"])}
    report["notes"].append("positions 1, 3, 5 are free (一三五不论) except where 孤平 or 三平尾/三仄尾 arise")


def check_repeats(lines, v):
    seen = set()
    for i, l in enumerate(lines):
        for p, ch in enumerate(l):
            doubled = (p > 0 and l[p - 1] == ch) or (p + 1 < len(l) and l[p + 1] == ch)
            if ch in seen and not doubled:
                v.append(Violation("重字", i + 1, p + 1, ch, f"{ch} is used earlier in the poem"))
            seen.add(ch)


def best_group(ends, book):
    """(group, tone, lines in it) of the group of the book that most of ends [(line index, char)] share, level
    tone first on a tie; (None, None, []) when none has two."""
    best = (None, None, [])
    for tone in (LEVEL, OBLIQUE):
        count = {}
        for i, ch in ends:
            for g in book.groups_of(ch, tone):
                count.setdefault(g, []).append(i)
        for g, members in sorted(count.items()):
            if len(members) > len(best[2]):
                best = (g, tone, members)
    return best if len(best[2]) >= 2 else (None, None, [])


def check_rhyme(lines, book, report):
    """The poem's group is the one most even lines end in; the first line rhymes when it ends in it too."""
    even = [(i, l[-1]) for i, l in enumerate(lines) if i % 2 == 1]
    g, tone, members = best_group(even, book)
    v = report["violations"]
    if g is None:
        for i, ch in even:
            v.append(Violation("出韵", i + 1, len(lines[i]), ch, "no two even lines end in one 平水韵 group"))
        report["rhyme"] = {"system": "平水韵", "group": None, "tone": None, "rhyming_lines": [], "ends": []}
        return
    rhyming = ([0] if g in book.groups_of(lines[0][-1], tone) else []) + [i for i, _ in even]
    ends = []
    for i in rhyming:
        ch = lines[i][-1]
        ok = g in book.groups_of(ch, tone)
        ends.append({"line": i + 1, "char": ch, "groups": sorted(book.groups[x] for x in book.groups_of(ch)),
                     "in_group": ok})
        if not ok:
            v.append(Violation("出韵", i + 1, len(lines[i]), ch, f"{ch} is not in {book.groups[g]} "
                               f"({', '.join(book.groups[x] for x in sorted(book.groups_of(ch))) or 'no group'})"))
    report["rhyme"] = {"system": "平水韵", "group": book.groups[g], "tone": TONE_MARK[tone],
                       "rhyming_lines": [i + 1 for i in rhyming], "ends": ends}
    if tone == OBLIQUE:
        report["notes"].append("the rhyme is on 仄 (仄韵): regulated verse rhymes on 平; the tone rules are checked "
                               "anyway")


# ----------------------------------------------------------------------------------------------------------
# 词: matched to a 格 of the 词谱 (cipu.py), else to a learnt 词牌's pattern (cipai.json)

def resolve_cipai(name, cipu_table, cipai):
    """(the 词谱's main name or None, the learnt table's key or None) of a 词牌 name (any of its other names;
    traditional characters too); neither: a UserError."""
    main = cipu.resolve(cipu_table, name, dataUtil.opencc_t2s()) if cipu_table else None
    aliases = {name} | ({n for n, m in cipu_table.names.items() if m == main} if main else set())
    learnt = next((k for k in cipai or {} if aliases & {k, *k.split("・")}), None)
    if main is None and learnt is None:
        known = list(cipai or {}) + list(cipu_table.names if cipu_table else ())
        raise UserError(f"--cipai {name}: not a 词牌 of the 词谱 nor of the learnt table" + suggest(name, known))
    return main, learnt


def cipai_of(text, cipai, cipu_table=None, cipai_name=None):
    """The 词牌 a 词 is (its main name): cipai_name's when given, else the first whose 格 (cipu_table) or learnt
    pattern (cipai) the text's pieces follow; None when none."""
    if cipai_name:
        main, learnt = resolve_cipai(cipai_name, cipu_table, cipai)
        return main or learnt
    shape = dataUtil.ci_pattern(text)
    if found := ge_candidates(shape, cipu_table, cipai):
        return found[0][1].cipai
    return next((name for name, e in (cipai or {}).items() if dataUtil.cipai_pattern(e) == shape), None)


def ge_candidates(shape, cipu_table, cipai, main=None):
    """[(distance, Ge)] that a text of this shape ((length, mark), ...) may be: the 格 of 词牌 main when given;
    else of any 词牌, except that a text of equal lines (a 诗's shape: six lines of seven may be 浣溪沙) is taken
    for a 词 only when it follows a learnt 词牌's pattern mark for mark, and then by that 词牌's 格."""
    if not cipu_table or shape is None:
        return []
    lengths = [n for n, _ in shape]
    if not main and len(set(lengths)) == 1:
        learnt = next((k for k, e in (cipai or {}).items() if dataUtil.cipai_pattern(e) == shape), None)
        main = cipu.resolve(cipu_table, learnt) if learnt else None
        if not main:
            return []
    return cipu.matches(cipu_table, lengths, main)


def check_ci(text, labels, pingshui, cilin, cipai, cipu_table, cipai_name, report):
    """Fill the report of a 词: by its 格 when one fits, else by a learnt pattern's rhyme sets; (lines, tones)
    of its pieces, or None when the text is no 词 the tables know (and no cipai_name says it is one)."""
    shape = dataUtil.ci_pattern(text)
    main, learnt = resolve_cipai(cipai_name, cipu_table, cipai) if cipai_name else (None, None)
    if shape is None:
        return None
    lines = [chars for chars, _ in dataUtil.CI_LINE.findall(text)]
    tones = [[tone_of(ch, labels, pingshui) for ch in l] for l in lines]
    lengths = [len(l) for l in lines]
    found = ge_candidates(shape, cipu_table, cipai, main) if main or not cipai_name else []
    wants = ()
    if found:
        wants = check_ge(lines, tones, found, cilin, report, named=bool(cipai_name))
    elif not cipai_name and (name := cipai_of(text, cipai)):
        check_learnt(lines, name, cipai[name], cilin, report)
    elif learnt and dataUtil.cipai_pattern(cipai[learnt]) == shape:
        check_learnt(lines, learnt, cipai[learnt], cilin, report)
    elif cipai_name:
        shape_violation(lines, main, learnt, cipu_table, cipai, report)
    else:
        return None
    report["form"]["name"] = "词"
    report["lines"] = [{"line": i + 1, "text": l, "tones": "".join(TONE_MARK[t] for t in ts)}
                       for i, (l, ts) in enumerate(zip(lines, tones))]
    for row, w in zip(report["lines"], wants):
        row["wants"] = w                                  # the 格's 平/仄/中 for the line
    return lines, tones


def check_ge(lines, tones, found, cilin, report, named):
    """The 格 the text fits best — fewest breaks of tone and rhyme and of the pieces' breaks — and the
    text judged against it (cipu.judge): each break a violation at its line and character. Returns the 格's
    tones cut as the lines are."""
    chars = "".join(lines)
    flat = [t for ts in tones for t in ts]
    scored = []
    for k, (d, g) in enumerate(found):
        judged = cipu.judge(g, chars, flat, cilin)
        scored.append(((d + len(judged[0]), d, k), g, judged))       # a differing break counts as a break
    (_, d, _), ge, (breaks, sets, unjudged) = min(scored, key=lambda x: x[0])
    where = line_positions(lines)                           # character -> (line, char), both 1-based
    report["violations"] += [Violation(b.rule, *where[b.at], chars[b.at], b.message) for b in breaks]
    report["form"].update(cipai=ge.cipai, ge={"number": ge.number, "of": ge.of, "chars": ge.chars,
                                              "source": ge.source, "first": ge.first, "distance": d})
    report["rhyme"] = {"system": "词林正韵", "sets": [
        {"lines": [where[p][0] for p in s["at"]], "group": s["group"], "tone": s["tone"]} for s in sets]}
    notes = report["notes"]
    notes.append(f"{ge.cipai}, {ge.label()} (its example: {ge.first}): each character against the 格's 平/仄, 中 "
                 "free; 粘, 对, 孤平 and 二四六 are not rules of a 词")
    if d:
        notes.append(f"the text's 句读 differ from the 格's at {d} break(s): judged character by character")
    others = sorted({g.cipai for e, g in found if e == d} - {ge.cipai}) if not named else []
    if others:
        notes.append("its lines fit these 词牌 too (--cipai NAME to choose): " + "、".join(others[:8]))
    if unjudged:
        notes.append("rhyme not judged (not in 词林正韵): " + "".join(dict.fromkeys(unjudged)))
    return split_like(ge.tones, lines)


def line_positions(lines):
    """[(line, char)] of each character of the joined lines, both 1-based."""
    return [(i + 1, p + 1) for i, l in enumerate(lines) for p in range(len(l))]


def split_like(s, lines):
    """s cut into pieces as long as the lines."""
    out, at = [], 0
    for l in lines:
        out.append(s[at:at + len(l)])
        at += len(l)
    return out


def shape_violation(lines, main, learnt, cipu_table, cipai, report):
    """A 词 said to be a 词牌 whose lines it does not follow: one violation at the first line that differs from
    the nearest 格 (or the learnt pattern)."""
    lengths = [len(l) for l in lines]
    if main:
        ge, k = cipu.nearest_shape(cipu_table, lengths, main)
        theirs, name = [n for n, _ in ge.pieces], f"{main} {ge.label()}"
    else:
        theirs, name = [n for n, _ in cipai[learnt]["lines"]], f"{learnt}'s learnt pattern"
        k = next((i for i, (a, b) in enumerate(zip(lengths, theirs)) if a != b), min(len(lengths), len(theirs)) - 1)
    here = f"{theirs[k]} characters here" if k < len(theirs) else "no more lines"
    report["form"]["cipai"] = main or learnt
    report["violations"].append(Violation("格式", k + 1, 1, lines[k][0], f"no 格 of {main or learnt} has these "
                                          f"lines ({sum(lengths)} 字); the nearest, {name}, has {here}, not "
                                          f"{lengths[k]}"))


def check_learnt(lines, name, entry, cilin, report):
    """Each learnt rhyme set of 词牌 name (its cipai.json entry) in one 词林正韵 部, each line in its tone; a line
    that leaves it is 出韵."""
    report["form"]["cipai"] = name
    ends = [l[-1] for l in lines]
    v, sets = report["violations"], []
    for s in entry.get("rhymes", []):
        at = s["lines"]
        want = [poetics.CLASSICAL[t] for t in s["tones"]]
        count = {}
        for i, t in zip(at, want):
            for g in cilin.groups_of(ends[i], t):
                count.setdefault(g, []).append(i)
        g, members = max(sorted(count.items()), key=lambda kv: len(kv[1]), default=(None, []))
        for i in at:
            if i not in members:
                v.append(Violation("出韵", i + 1, len(lines[i]), ends[i], f"{ends[i]} leaves the rhyme set's "
                                   f"{cilin.groups[g] if g is not None else '部'}"))
        sets.append({"lines": [i + 1 for i in at], "group": cilin.groups[g] if g is not None else None})
    report["rhyme"] = {"system": "词林正韵", "sets": sets}
    report["notes"].append("not a 格 of the 词谱: checked for rhyme only, by the rhyme sets learnt from its examples")


# ----------------------------------------------------------------------------------------------------------
# the report as text

def format_report(report):
    """The report as a reader sees it: the form line, each line with its tones (and NLL), the violations."""
    form, rhyme, pattern = report["form"], report["rhyme"] or {}, report["pattern"] or {}
    head = form["name"] if not form["cipai"] else f"词 · {form['cipai']}"
    if form.get("ge"):
        g = form["ge"]
        head += f" (格 {g['number']} of {g['of']}, {g['chars']} 字, {g['source']})"
    if pattern:
        head += f", {pattern['start']}, 首句{'入韵' if pattern['first_line_rhymes'] else '不入韵'}"
    if rhyme.get("group"):
        head += f"; rhyme {rhyme['system']} {rhyme['group']} ({rhyme['tone']})"
    elif rhyme.get("sets"):
        head += f"; rhyme {rhyme['system']}: " + " | ".join(
            f"lines {' '.join(map(str, s['lines']))} {s['group'] or '—'}{' ' + s['tone'] if s.get('tone') else ''}"
            for s in rhyme["sets"])
    out = [head]
    for l in report["lines"]:
        nll = f"  NLL {l['nll']:.2f}" if l.get("nll") is not None else ""
        wants = f"  格 {l['wants']}" if l.get("wants") else ""
        out.append(f"{l['line']:>3} {l['text']}  {l['tones']}{wants}{nll}")
    if report["violations"]:
        out.append(f"{len(report['violations'])} violation(s):")
        out += [f"  line {v['line']}, char {v['char']} {v['character']}: {v['rule']} — {v['message']}"
                for v in report["violations"]]
    else:
        out.append("keeps every rule it was checked against")
    out += [f"note: {n}" for n in report["notes"]]
    return "\n".join(out)
