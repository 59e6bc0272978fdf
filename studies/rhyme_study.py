"""The rhyme study (`python main.py experiment rhyme`): what the 平水韵 table holds once converted to simplified
characters, how its tones agree with the corpus's own 平仄 labels, how often real poems rhyme under each rhyme
system, and which 词牌 rhyme sets 词林正韵 changes. Needs the prepared corpus (both genres) and its tables;
no model. Writes docs/rhyme_study.md.
"""
import os
from collections import Counter

import dataUtil
from common import fileio
from verse import poetics
from verse import rhymebook
from config import Config, UserError, make_parser
from verse.text import PUNCT, ci_pattern, cipai_pattern, convert_chars
from verse.tables import load_tone_table
from verse.rhymebook import load_books
from verse.build import TONE_BOTH_SHARE, TONE_MIN_LABELS, build_cipai_table



def cmd_rhyme(rest):
    parser = make_parser("main.py experiment rhyme", "the rhyme books against the corpus", [])
    parser.add_argument("--data-dir", default="data", help="where the prepared corpus lives (default: data)")
    parser.add_argument("--docs-dir", default="docs", help="where rhyme_study.md goes (default: docs)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing rhyme_study.md")
    args = parser.parse_args(rest)
    fileio.check_target(os.path.join(args.docs_dir, "rhyme_study.md"), args.overwrite)   # before any work
    cfg = Config()
    cfg.data.data_dir = args.data_dir
    processed = dataUtil.processed_dir(cfg)
    books = load_books(os.path.join(processed, "rhymes.json"))
    labels = load_tone_table(os.path.join(processed, "tones.json"))
    if not books or not labels:
        raise UserError(f"no readable rhymes.json / tones.json in {processed}: python dataUtil.py prepare")
    tang = dataUtil.load_corpus(cfg)
    cfg.data.genre = "ci"
    ci = dataUtil.load_corpus(cfg)
    import json
    with open(os.path.join(processed, "rhymes.json"), encoding="utf-8") as f:
        learnt = json.load(f).get("learnt", {})
    old = old_rule_tables(processed, tang)
    sections = [tables_section(processed, tang, books["pingshui"], labels, old),
                conversion_section(books["pingshui"]) + learnt_lines(learnt),
                agreement_section(books["pingshui"], old[0]), tang_section(tang, books, labels),
                check_section(tang, books, labels), ci_section(ci, books, labels, cfg)]
    doc = os.path.join(args.docs_dir, "rhyme_study.md")
    fileio.write_text(doc, "\n".join(["# Rhyme study", "", "Command: `python main.py experiment rhyme` (no model; "
                                      "the prepared corpus and its tables). Source: " + rhymebook.SOURCE + ".", ""]
                                     + [line for s in sections for line in s + [""]]))
    print(f"wrote {doc}")
    return 0


def old_rule_tables(processed, tang):
    """(tones, 平水韵 Book) as the earlier rules made them: the corpus's majority labels (both at a 10% minority),
    and every group of every traditional source, with the learnt characters but nothing dropped."""
    import json
    import opencc
    with open(os.path.join(processed, "tones.json"), encoding="utf-8") as f:
        counts = json.load(f)["counts"]
    share, least = TONE_BOTH_SHARE, TONE_MIN_LABELS
    tones = {ch: "both" if min(a, b) >= share * (a + b) else ("平" if a > b else "仄")
             for ch, (a, b) in counts.items() if a + b >= least}
    groups, _ = rhymebook.build_pingshui(rhymebook.read_package_table(rhymebook.package_table_path(),
                                                                      opencc.OpenCC("t2s").convert), convert_chars)
    texts = [tang.decode(p) for p in tang.train]
    rhymebook.learn_missing(groups, [poetics.split_lines(t) for t in texts])
    return tones, rhymebook.book_from("pingshui", groups)


def tables_section(processed, tang, book, tones, old):
    """What the table rules drop and add (thresholds, lists), and how many of the 3,000 commonest characters
    change against the earlier rules."""
    import json
    with open(os.path.join(processed, "rhymes.json"), encoding="utf-8") as f:
        raw = json.load(f)
    with open(os.path.join(processed, "tones.json"), encoding="utf-8") as f:
        dropped_tones = json.load(f).get("dropped_readings", {})
    gone = raw.get("dropped", {})
    freq = Counter(ch for p in tang.train for ch in tang.decode(p) if ch not in PUNCT)
    top = [ch for ch, _ in freq.most_common(3000)]
    old_tones, old_book = old
    tone_changed = [ch for ch in top if old_tones.get(ch) != tones.get(ch)]
    group_changed = [ch for ch in top if old_book.entries.get(ch) != book.entries.get(ch)]
    kinds = Counter((old_tones.get(ch), tones.get(ch)) for ch in tone_changed)
    short = lambda n: n.replace("上平声", "").replace("下平声", "").replace("上声", "").replace("去声", "").replace("入声", "")  # noqa: E731
    return ["## The tables' rules (tones.json, rhymes.json)", "",
            f"Tones: each character's readings from the 平水韵 first (both tones where it lists both); a reading "
            f"dropped when the poets put the character in that tone's key slots (positions 2, 4, 6 of regular poems "
            f"whose single-reading characters fix the pattern at {poetics.PATTERN_FIT:.0%}+, the last key position "
            f"of an odd line left out) under {poetics.READING_MIN_SHARE:.0%} of at least {poetics.READING_MIN_SLOTS} "
            f"times (single-reading characters stand in the other tone's slots 0.2% of the time); the corpus's "
            f"labels only for characters the book lacks. {len(dropped_tones)} readings dropped, e.g. "
            + ", ".join(f"{ch} {t} ({u} of {n})" for ch, (t, u, n) in list(sorted(dropped_tones.items(),
                                                                                key=lambda kv: -kv[1][2]))[:12]) + ".",
            "",
            f"Rhyme groups: a traditional source written for under {rhymebook.SOURCE_MIN_SHARE:.0%} of a simplified "
            f"character's uses (characters used {rhymebook.SOURCE_MIN_USES}+ times) gives it no group: "
            + ", ".join(f"{ch} {'/'.join(map(short, gs))}" for ch, gs in sorted(gone.get("rare_source", {}).items())) + ". "
            f"A level group a character rhymes in under {rhymebook.RARE_READING_SHARE:.0%} of at least "
            f"{rhymebook.RARE_READING_VOTES} rhyming poems is dropped: "
            + ", ".join(f"{ch} {short(g)} ({v}/{n})" for ch, rows in sorted(gone.get("rare_reading", {}).items())
                        for g, v, n in rows) + ". "
            f"A tone the poets never use leaves its groups ({len(gone.get('unused_tone', {}))} characters, 不 out of "
            "十一尤). Added by hand (rhymebook.BY_HAND): "
            + ", ".join(f"{ch} {short(g)}" for ch, g in raw.get("by_hand", {}).items()) + ".", "",
            f"Against the earlier rules (majority labels; every source's every group), of the 3,000 commonest train "
            f"characters {len(tone_changed)} change tone ("
            + ", ".join(f"{a}→{b} {n}" for (a, b), n in kinds.most_common()) + f") and {len(group_changed)} their "
            "groups."]


def conversion_section(book):
    """Counts of the converted table: characters, those in several groups, in both tones, and the simplified
    characters several traditional ones land on."""
    path = rhymebook.package_table_path()
    import opencc
    groups = rhymebook.read_package_table(path, opencc.OpenCC("t2s").convert)
    traditional = {ch for _, chars in groups for ch in chars}
    merged = {}
    for ch in traditional:
        merged.setdefault(convert_chars(ch), set()).add(ch)
    merged = {s: t for s, t in merged.items() if len(t - {s}) >= 1 and len(t | {s}) >= 3}
    several = [ch for ch, e in book.entries.items() if len({g for g, _ in e}) > 1]
    both = [ch for ch, e in book.entries.items() if len({t for _, t in e}) > 1]
    example = lambda ch: f"{ch} ({' '.join(book.groups[g] for g, _ in sorted(book.entries[ch]))})"   # noqa: E731
    return ["## The table, converted", "",
            f"{len(book.groups)} groups, {len(traditional)} distinct characters as the package lists them; "
            f"{len(book.entries)} keys after conversion (each traditional character and its simplified standard "
            "form, converted one character at a time the way the corpus is: OpenCC t2s, then `dataUtil."
            "standard_form`).", "",
            f"- in several groups: {len(several)} keys (a second reading, or several traditional characters on one "
            f"simplified): e.g. {', '.join(example(c) for c in '看思过干台' if c in book.entries)}",
            f"- in groups of both tones (平 and 仄): {len(both)} keys",
            f"- simplified characters that two or more other traditional characters land on: {len(merged)}, e.g. "
            + ", ".join(f"{s} ← {''.join(sorted(t - {s}))}" for s, t in sorted(merged.items())[:12])]


def learnt_lines(learnt):
    return ["", f"The package's table lacks some common characters (啼 迹 惭 炉 樽 沉 …). `rhymebook.learn_missing` "
            f"places them by the train split's poems that rhyme on them (a poem whose even lines all share a group "
            f"but for one missing character votes for it; at least {rhymebook.LEARN_VOTES} votes, "
            f"{rhymebook.LEARN_SHARE:.0%} agreeing): {len(learnt)} characters (character: group, votes / poems):", "",
            " ".join(f"{ch}:{g} {n}/{k}" for ch, (g, n, k) in sorted(learnt.items(), key=lambda kv: -kv[1][1]))]


def agreement_section(book, labels, shown=80):
    agree, compared, wrong = rhymebook.label_agreement(book, labels)
    lacking = sum(ch not in book.entries for ch in labels)
    tone_names = {"平": "平", "仄": "仄", "both": "both", "平仄": "both"}
    kinds = Counter((label, tone_names.get(tones, tones)) for _, label, tones in wrong)
    wrong = sorted(wrong, key=lambda w: (w[1] == "both", len(w[2]), w[0]))    # opposite single tones first
    return (["## Tones: the table against the corpus's 平仄 labels", "",
            f"Of the {len(labels)} characters of the corpus's tone table (tones.json: the majority of each "
            f"character's labels in the 平仄-annotated Tang poems, 'both' when the rarer tone has ≥ "
            f"{TONE_BOTH_SHARE:.0%}), {compared} are in the 平水韵 table ({lacking} are not). The tones "
            f"agree (the table's set of tones equals the label's) for **{agree} ({agree / compared:.1%})**.", "",
            "| corpus label | 平水韵 tones | characters |", "|---|---|---|"]
            + [f"| {a} | {b} | {n} |" for (a, b), n in kinds.most_common()] + [
            "", f"The disagreements, first {min(shown, len(wrong))} of {len(wrong)} (character: label → table; "
            "opposite tones first). Most are characters with a second reading that the labels rarely see (the "
            "table lists every reading; the labels count how Tang poets used the character). That is why tones.json "
            "now takes the book's readings first and drops one only by where the poets put the character (the rules "
            "above); this comparison is of the labels alone:", "",
            " ".join(f"{ch}:{label}→{tones}" for ch, label, tones in wrong[:shown])])


def tang_section(corpus, books, labels):
    """Rhyme rates of the test split's regular 绝句/律诗 under each system and tone table."""
    real = [t for t in map(corpus.decode, corpus.test) if poetics.form_of(t) in poetics.REGULAR_FORMS]
    chars = {ch for t in real for ch in t}
    rows = []
    for tone_name, table in (("classical", labels), ("mandarin", None)):
        tones = poetics.table_for(chars, table)
        for name, book in (("平水韵", books["pingshui"]), ("中华新韵", poetics.xinyun_book(tones))):
            if name == "平水韵" and tone_name == "mandarin":
                continue                                # a 平水韵 rhyme's tone is its group's
            level = [poetics.rhymes(t, book, poetics.LEVEL) for t in real]
            oblique = [poetics.rhymes(t, book, poetics.OBLIQUE) for t in real]
            either = [a or b for a, b in zip(level, oblique)]
            rows.append(f"| {name} | {tone_name if name == '中华新韵' else '(the group’s)'} | {len(real)} | "
                        f"{poetics.mean(level):.1%} | {poetics.mean(oblique):.1%} | {poetics.mean(either):.1%} |")
    dengao = "风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。"
    tones = poetics.table_for(set(dengao), labels)
    verdict = {name: poetics.rhymes(dengao, book) for name, book in
               (("平水韵", books["pingshui"]), ("中华新韵", poetics.xinyun_book(tones)))}
    return (["## Real 绝句/律诗: how often the even lines rhyme", "",
            "The test split's regular poems (5 or 7 characters, 4 or 8 lines). A poem rhymes when all its even "
            "lines end in one group of the book, in the tone given; level is what 律诗/绝句 ask; oblique are the "
            "仄韵 poems.", "",
            "| rhyme system | tones | poems | rhyme, level | rhyme, oblique | either |", "|---|---|---|---|---|---|"]
            + rows + ["", f"杜甫《登高》 (哀 回 来 台 杯, all 十灰): rhymes under 平水韵 {verdict['平水韵']}, under "
                      f"中华新韵 {verdict['中华新韵']} (中华新韵 puts 回 杯 in 微, 哀 来 台 in 开)."])


RULES = ("二四六分明", "对", "粘", "孤平", "三平尾", "三仄尾", "出韵", "重字")
CLASSICS = {"杜甫《登高》": "风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。万里悲秋常作客，百年多病独登台。"
            "艰难苦恨繁霜鬓，潦倒新停浊酒杯。",
            "王维《山居秋暝》": "空山新雨后，天气晚来秋。明月松间照，清泉石上流。竹喧归浣女，莲动下渔舟。随意春芳歇，王孙自可留。",
            "王之涣《登鹳雀楼》": "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
            "杜甫《春望》": "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。烽火连三月，家书抵万金。白头搔更短，浑欲不胜簪。"}


def check_section(corpus, books, labels):
    """The 格律 check (prosody.check) over the test split's regular poems: the share keeping each rule."""
    from verse import prosody
    real = [t for t in map(corpus.decode, corpus.test) if poetics.form_of(t) in poetics.REGULAR_FORMS]
    broken = [{v["rule"] for v in prosody.check(t, labels, books["pingshui"])["violations"]} for t in real]
    rows = [f"| {rule} | {poetics.mean(rule not in b for b in broken):.1%} |" for rule in RULES]
    classics = [f"- {name}: " + (", ".join(f"{v['rule']} at line {v['line']} char {v['char']}" for v in r["violations"])
                                 or "no violation")
                for name, text in CLASSICS.items() for r in [prosody.check(text, labels, books["pingshui"])]]
    return (["## The 格律 check on real poems", "",
             f"`python main.py check` (verse/prosody.py) over the test split's {len(real)} regular 绝句/律诗 (the Tang corpus "
             "holds regulated verse and 古体 of the same shapes, so not every poem is meant to keep these rules). "
             "Share of poems with no violation of each rule:", "", "| rule | poems keeping it |", "|---|---|"]
            + rows + [f"| all of them | {poetics.mean(not b for b in broken):.1%} |", "", "Well-known regulated "
                      "poems:", ""] + classics)


def ci_section(corpus, books, labels, cfg):
    """Rhyme sets learnt by 词林正韵 against those learnt by 中华新韵, and the real 词 that rhyme under each."""
    files = dataUtil.ci_files(dataUtil.raw_dir_of(cfg))
    if not files:
        return ["## 词", "", "(no raw 宋词 here: python dataUtil.py prepare --genre ci fetches them)"]
    new = build_cipai_table(files, labels, books["cilin"])
    old = build_cipai_table(files, labels, None)
    unk = corpus.itos.index(dataUtil.UNK)
    real = [corpus.decode(p) for p in corpus.test if unk not in p]
    by_pattern = {}
    for name, e in new.items():
        by_pattern.setdefault(cipai_pattern(e), name)
    named = [(t, by_pattern[p]) for t in real for p in [ci_pattern(t)] if p in by_pattern]
    tones = poetics.table_for({ch for t, _ in named for ch in t}, labels)
    xinyun = poetics.xinyun_book(tones)
    rate = {(s, b): poetics.mean(poetics.ci_rhymes(t, table[n]["rhymes"], book) for t, n in named)
            for s, table in (("cilin", new), ("xinyun", old)) for b, book in (("cilin", books["cilin"]),
                                                                               ("xinyun", xinyun))}
    changed = [n for n in new if sets_of(new[n]) != sets_of(old[n])]
    return (["## 词: rhyme sets by 词林正韵", "",
            "词林正韵's 19 部 (rhymebook.CILIN, after 戈载《词林正韵》, 1821): 部 1-14 merge the level, rising and "
            "departing 平水韵 groups of one rhyme, 部 15-19 the entering ones. 灰 贿 队 泰 are split between 部 3 and "
            "5, 佳 卦 between 5 and 10, 元 阮 愿 between 6 and 7: by Mandarin final (ai/uai to 部 5; a/ia/ua to 部 "
            "10; en/in/uen/ün to 部 6).", "",
            f"The test split's 词 that follow a table 词牌's pattern exactly: {len(named)}. Share whose rhyme sets "
            "rhyme (every set's ends in one group, each in its line's tone):", "",
            "| rhyme sets learnt by | judged by 词林正韵 | judged by 中华新韵 |", "|---|---|---|",
            f"| 词林正韵 (now) | {rate['cilin', 'cilin']:.1%} | {rate['cilin', 'xinyun']:.1%} |",
            f"| 中华新韵 (before) | {rate['xinyun', 'cilin']:.1%} | {rate['xinyun', 'xinyun']:.1%} |", "",
            f"{len(changed)} of {len(new)} 词牌 get other rhyme sets (1-based lines, tone):", ""]
            + [f"- {n}: {fmt_sets(old[n]) or 'none'} → {fmt_sets(new[n]) or 'none'}" for n in changed])


def sets_of(entry):
    return [(r["lines"], r["tones"]) for r in entry["rhymes"]]


def fmt_sets(entry):
    return " | ".join(" ".join(f"{i + 1}{t}" for i, t in zip(r["lines"], r["tones"])) for r in entry["rhymes"])
