"""The 格律 check (`python main.py check "POEM"`): a poem's form, each character's classical tone, its tone
pattern, its rhyme by 平水韵 (词林正韵 for a 词牌), and the rules it breaks, each at a line and position.

Tones: the tone table (tones.json), else the 平水韵 table's tones, else unknown. A character read both ways
(中: 看 思 过) takes the tone that fits; one of unknown tone is never flagged. The text is read as a reader would
(verse/reading.py: any of ，。？！；：、, a space or a new line ends a line; a title or author line is set aside). Regular
verse (五/七言 绝句, 律诗, 排律: 4, 8 or 10+ lines of 5 or 7 characters) is judged by verse/gelv.py: the poem's pattern
from all its lines, each line against its template, 拗救 named and accepted, 三仄尾 and 重字 noted, 孤平, 三平尾,
粘, 对, 二四六分明, 出句平收 and 出韵 flagged. Text that is neither regular nor a 词 is not checked (checked: false).
A 词 is matched to a 格 of the 词谱 (verse/cipu.py: 钦定词谱 and 龙榆生, by name with --cipai or by its pieces' lengths)
and judged character by character against the 格's 平/仄 (中 free), each rhyme set in one 词林正韵 部 in the
tones it wants (入声 部 for a 入 set); 粘, 对, 孤平 and 二四六 are rules of regular verse and never applied to a
词. A 词 of a learnt 词牌 (cipai.json) that fits no 格 is checked for rhyme only, by the learnt rhyme sets.
A 词's report lines are its pieces (句 and 读, as its punctuation cuts them).
"""
from dataclasses import asdict

from verse import cipu
from verse import duizhang
from verse import gelv
from verse import poetics
from verse import reading
from config import UserError, suggest
from verse.gelv import Violation
from verse.poetics import BOTH, LEVEL, OBLIQUE
from verse.text import CI_LINE, ci_pattern, cipai_pattern, opencc_t2s

TONE_MARK = {LEVEL: "平", OBLIQUE: "仄", BOTH: "中", None: "？"}       # 中: either tone
MAX_POEM = reading.MAX_POEM          # characters a check or revision accepts
NOT_CHECKED = "not a regular form: nothing was checked"
best_group = gelv.best_group         # workshop's revision infers a poem's rhyme group with it


def normalise(text, vocab=None):
    """User text as one string of lines ending in ，。？！；：、 (reading.read_poem: spaces and new lines end lines,
    empty lines dropped, a title or author line above the poem set aside, traditional characters converted;
    given a model's vocabulary, a variant it holds stays). Empty, oversized or non-Chinese text, or text with no
    line left, is a UserError naming the problem."""
    text = reading.read_poem(text, vocab).text
    if not text:
        raise UserError("the poem is empty; give its lines, e.g. \"白日依山尽，黄河入海流。\"")
    return text


def tone_of(ch, labels, book):
    """LEVEL, OBLIQUE, BOTH or None: the corpus's label, else the 平水韵 table's tones."""
    label = (labels or {}).get(ch)
    if label:
        return poetics.CLASSICAL[label]
    tones = {t for _, t in book.entries.get(ch, ())}
    return BOTH if len(tones) == 2 else tones.pop() if tones else None


form_name = reading.form_name


def check(text, labels, pingshui, cilin=None, cipai=None, cipu_table=None, cipai_name=None, headings=(),
          duizhang_table=None):
    """The report of text (already normalised: lines ending in ，。？！；：、): a dict with form, lines (text and
    tones; for regular verse also each line's template and reading), pattern, rhyme, violations (Violation as
    dicts), remarks (the same shape: named, not flagged), notes, checked (a rule was applied), headings (rows set
    aside as a title or author line) and ok (checked, nothing broken). labels: {character: 平|仄|both};
    pingshui, cilin: rhymebook.Book; cipai: the learnt 词牌 table and cipu_table the 词谱 (cipu.Cipu), to
    recognise a 词; cipai_name: the 词牌 the text is said to be (check --cipai), never read as regular verse;
    duizhang_table: the 对仗 table (duizhang.load()), to judge a 律诗's couplets (notes, never violations)."""
    lines = reading.lines_of(text)
    tones = [[tone_of(ch, labels, pingshui) for ch in l] for l in lines]
    report = {"poem": text, "form": {"name": "free", "chars": 0, "lines": len(lines), "cipai": None},
              "lines": [{"line": i + 1, "text": l, "tones": "".join(TONE_MARK[t] for t in ts)}
                        for i, (l, ts) in enumerate(zip(lines, tones))],
              "pattern": None, "rhyme": None, "violations": [], "remarks": [], "notes": [], "checked": True,
              "headings": list(headings)}
    shape = None if cipai_name else reading.shape_of(text)
    if shape:
        report["form"].update(name=form_name(*shape), chars=shape[0])
        gelv.check_regular(lines, tones, pingshui, report)
        if duizhang_table is not None:
            judge_couplets(text, labels, pingshui, duizhang_table, report)
    elif cilin is not None and (ci := check_ci(text, labels, pingshui, cilin, cipai, cipu_table, cipai_name, report)):
        lines, tones = ci                                 # a 词's lines are its pieces
    else:
        report["checked"] = False
        report["notes"].append(f"{NOT_CHECKED} (not 4, 8 or 10+ lines of 5 or 7 characters, nor a known 词牌's "
                               "pattern); tones are shown")
    either = [f"{l[p]} (line {i + 1}, char {p + 1})" for i, (l, ts) in enumerate(zip(lines, tones))
              for p, t in enumerate(ts) if t == BOTH]
    if either and not shape:
        report["notes"].append("read both ways, so either tone fits: " + ", ".join(either))
    unknown = [ch for l, ts in zip(lines, tones) for ch, t in zip(l, ts) if t is None]
    if unknown:
        report["notes"].append("tone unknown (not judged): " + "".join(dict.fromkeys(unknown)))
    report["violations"] = [asdict(v) for v in sorted(report["violations"], key=lambda v: (v.line, v.char))]
    report["remarks"] = [asdict(v) for v in sorted(report["remarks"], key=lambda v: (v.line, v.char))]
    report["notes"] = [f"line {r['line']}, char {r['char']} {r['character']}: {r['rule']} — {r['message']}"
                       for r in report["remarks"]] + report["notes"]
    if headings:
        report["notes"].insert(0, "set aside as a title or author line: " + " / ".join(headings))
    report["ok"] = report["checked"] and not report["violations"]
    return report


def judge_couplets(text, labels, pingshui, table, report):
    """report["duizhang"]: each couplet of a 律诗 judged for 对仗 (duizhang.couplets), and a note for each: the
    颔联 and 颈联 parallel or weak (its weakest positions named), the 首联 and 尾联 only when parallel (allowed,
    not asked)."""
    lines = reading.lines_of(text)
    judged = duizhang.couplets("".join(l + ("，" if k % 2 == 0 else "。") for k, l in enumerate(lines)), table,
                               lambda ch: tone_of(ch, labels, pingshui))
    if judged is None:
        return
    report["duizhang"] = [{k: c[k] for k in ("name", "expected", "verdict", "mean", "weakest")} for c in judged]
    for c in judged:
        a, b = c["lines"]
        if c["expected"] and c["verdict"] != "parallel":
            where = ", ".join(f"{p} ({a[p - 1]}/{b[p - 1]})" for p in c["weakest"])
            report["notes"].append(f"对仗: {c['name']} {c['verdict']}" + (f", weakest at position {where}" if where else ""))
        elif c["verdict"] == "parallel":
            report["notes"].append(f"对仗: {c['name']} parallel" + ("" if c["expected"] else " (allowed, not asked)"))
        if c.get("same_structure"):
            report["notes"].append("对仗: the 颈联 is built like the 颔联 throughout (合掌)")


# ----------------------------------------------------------------------------------------------------------
# 词: matched to a 格 of the 词谱 (verse/cipu.py), else to a learnt 词牌's pattern (cipai.json)

def resolve_cipai(name, cipu_table, cipai):
    """(the 词谱's main name or None, the learnt table's key or None) of a 词牌 name (any of its other names;
    traditional characters too); neither: a UserError."""
    main = cipu.resolve(cipu_table, name, opencc_t2s()) if cipu_table else None
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
    shape = ci_pattern(text)
    if found := ge_candidates(shape, cipu_table, cipai):
        return found[0][1].cipai
    return next((name for name, e in (cipai or {}).items() if cipai_pattern(e) == shape), None)


def ge_candidates(shape, cipu_table, cipai, main=None):
    """[(distance, Ge)] that a text of this shape ((length, mark), ...) may be: the 格 of 词牌 main when given;
    else of any 词牌, except that a text of equal lines (a 诗's shape: six lines of seven may be 浣溪沙) is taken
    for a 词 only when it follows a learnt 词牌's pattern mark for mark, and then by that 词牌's 格."""
    if not cipu_table or shape is None:
        return []
    lengths = [n for n, _ in shape]
    if not main and len(set(lengths)) == 1:
        learnt = next((k for k, e in (cipai or {}).items() if cipai_pattern(e) == shape), None)
        main = cipu.resolve(cipu_table, learnt) if learnt else None
        if not main:
            return []
    return cipu.matches(cipu_table, lengths, main)


def check_ci(text, labels, pingshui, cilin, cipai, cipu_table, cipai_name, report):
    """Fill the report of a 词: by its 格 when one fits, else by a learnt pattern's rhyme sets; (lines, tones)
    of its pieces, or None when the text is no 词 the tables know (and no cipai_name says it is one)."""
    shape = ci_pattern(text)
    main, learnt = resolve_cipai(cipai_name, cipu_table, cipai) if cipai_name else (None, None)
    if shape is None:
        return None
    lines = [chars for chars, _ in CI_LINE.findall(text)]
    tones = [[tone_of(ch, labels, pingshui) for ch in l] for l in lines]
    lengths = [len(l) for l in lines]
    found = ge_candidates(shape, cipu_table, cipai, main) if main or not cipai_name else []
    wants = ()
    if found:
        wants = check_ge(lines, tones, found, cilin, report, named=bool(cipai_name))
    elif not cipai_name and (name := cipai_of(text, cipai)):
        check_learnt(lines, name, cipai[name], cilin, report)
    elif learnt and cipai_pattern(cipai[learnt]) == shape:
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
        wants = f"  格 {l['wants']}" if l.get("wants") else f"  式 {l['template']}" if l.get("template") else ""
        out.append(f"{l['line']:>3} {l['text']}  {l['tones']}{wants}{nll}")
    if report["violations"]:
        out.append(f"{len(report['violations'])} violation(s):")
        out += [f"  line {v['line']}, char {v['char']} {v['character']}: {v['rule']} — {v['message']}"
                for v in report["violations"]]
    elif not report.get("checked", True):
        out.append(NOT_CHECKED)
    else:
        out.append("keeps every rule it was checked against")
    out += [f"note: {n}" for n in report["notes"]]
    return "\n".join(out)
