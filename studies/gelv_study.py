"""The 格律 validation study (`python main.py experiment gelv`): how the regular-verse checker (verse/gelv.py, through
prosody.check) judges (a) the test split's regular poems (五/七言 绝句/律诗 of the prepared corpus) and (b) 67
well-known regulated poems typed for the purpose (tests/fixtures/gelv_poems.tsv: 唐诗三百首 and other anthologies'
近体), against the checker before this work (its figures recorded once, BEFORE); a table of named cases (拗救 of
each kind, 特拗, two readings, the punctuation a poem is printed with) and what the check says, then and now; and
the time `check FILE --no-model` takes for a thousand poems. No model needed. Writes docs/gelv_study.md.
"""
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter

from writing import checking
import dataUtil
from common import fileio
from verse import poetics
from config import Config, UserError, make_parser
from verse.tables import load_tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "gelv_poems.tsv")
RULES = ("粘", "对", "二四六分明", "出句平收", "孤平", "三平尾", "出韵", "三仄尾", "重字")
NOTED = ("三仄尾", "重字")                    # violations before, notes now
TIMED = 1000                               # poems in the timed `check FILE` run
# The checker before (verse/prosody.py at commit e98a8ec, tables as shipped there), run once on the same poems:
# poems with no violation, and poems with at least one violation of each rule.
BEFORE_COMMIT = "e98a8ec"
BEFORE = {
    "test": {"poems": 1743, "ok": 727, "rules": {"粘": 208, "对": 180, "二四六分明": 469, "孤平": 26, "三平尾": 77,
                                                 "出韵": 100, "三仄尾": 213, "重字": 575}},
    "fixture": {"poems": 67, "ok": 37, "rules": {"粘": 2, "对": 2, "二四六分明": 14, "三仄尾": 4, "重字": 14}},
}
DENGAO = ("风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。万里悲秋常作客，百年多病独登台。"
          "艰难苦恨繁霜鬓，潦倒新停浊酒杯。")
CHUNWANG = "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。烽火连三月，家书抵万金。白头搔更短，浑欲不胜簪。"
HUANGHELOU = ("昔人已乘黄鹤去，此地空余黄鹤楼。黄鹤一去不复返，白云千载空悠悠。晴川历历汉阳树，芳草萋萋鹦鹉洲。"
              "日暮乡关何处是？烟波江上使人愁！")
NAMED = [  # (case, text) — the 拗救 kinds, 特拗, two readings, rhyme, the forms a poem is printed in
    ("本句自救 (五言): 移舟泊烟渚", "移舟泊烟渚，日暮客愁新。野旷天低树，江清月近人。"),
    ("本句自救 (五言, line 5): 开轩面场圃", "故人具鸡黍，邀我至田家。绿树村边合，青山郭外斜。开轩面场圃，把酒话桑麻。"
                                 "待到重阳日，还来就菊花。"),
    ("本句自救 (七言): 羌笛何须怨杨柳", "黄河远上白云间，一片孤城万仞山。羌笛何须怨杨柳，春风不度玉门关。"),
    ("对句相救 (4th): 野火烧不尽 / 春风吹又生", "离离原上草，一岁一枯荣。野火烧不尽，春风吹又生。远芳侵古道，晴翠接荒城。"
                                      "又送王孙去，萋萋满别情。"),
    ("对句相救 (3rd, 4th): 向晚意不适 / 驱车登古原", "向晚意不适，驱车登古原。夕阳无限好，只是近黄昏。"),
    ("对句相救 (七言 5th): 映阶碧草自春色", "丞相祠堂何处寻，锦官城外柏森森。映阶碧草自春色，隔叶黄鹂空好音。"
                                 "三顾频烦天下计，两朝开济老臣心。出师未捷身先死，长使英雄泪满襟。"),
    ("孤平拗救 + 对句相救: 人事有代谢 / 往来成古今", "人事有代谢，往来成古今。江山留胜迹，我辈复登临。水落鱼梁浅，天寒梦泽深。"
                                         "羊公碑字在，读罢泪沾襟。"),
    ("特拗, 中 at 2: 人传有笙鹤", "浩劫因王造，平台访古游。彩云萧史驻，文字鲁恭留。宫阙通群帝，乾坤到十洲。"
                           "人传有笙鹤，时过此山头。"),
    ("特拗, 中 at 2: 无将故人酒", "知有前期在，难分此夜中。无将故人酒，不及石尤风。"),
    ("两读 + 重字: 锦瑟 (思 read 仄)", "锦瑟无端五十弦，一弦一柱思华年。庄生晓梦迷蝴蝶，望帝春心托杜鹃。沧海月明珠有泪，"
                                 "蓝田日暖玉生烟。此情可待成追忆，只是当时已惘然。"),
    ("三仄尾: 江流石不转", "功盖三分国，名成八阵图。江流石不转，遗恨失吞吴。"),
    ("rhyme from all lines: 春暮 花涯蛙", "门外无人问落花，绿阴冉冉遍天涯。林莺啼到无声处，青草池塘独听蛙。"),
    ("one off rhyme: 凉州词 with 几人还", "葡萄美酒夜光杯，欲饮琵琶马上催。醉卧沙场君莫笑，古来征战几人还。"),
    ("首句借邻韵: 清明 纷 / 魂 村", "清明时节雨纷纷，路上行人欲断魂。借问酒家何处有，牧童遥指杏花村。"),
    ("hand-broken 登高: 旧停 (孤平)", DENGAO.replace("新停", "旧停")),
    ("hand-broken 春望: 恨山 (对)", CHUNWANG.replace("恨别", "恨山")),
    ("黄鹤楼 with ？ and ！", HUANGHELOU),
    ("静夜思 with title and author lines", "静夜思\n唐·李白\n床前明月光，疑是地上霜。\n举头望明月，低头思故乡。"),
    ("静夜思 with spaces, no marks", "床前明月光 疑是地上霜 举头望明月 低头思故乡"),
    ("half-width marks, commas throughout", "白日依山尽,黄河入海流,欲穷千里目,更上一层楼."),
    ("empty lines only", "，，，"),
    ("free text", "今天天气很好我们去公园玩吧"),
]
# What the checker before said of each named case (python main.py check --no-model at BEFORE_COMMIT).
BEFORE_NAMED = {
    '本句自救 (五言): 移舟泊烟渚': '五言绝句 (上平声十一真), **二四六分明 1,4**',
    '本句自救 (五言, line 5): 开轩面场圃': '五言律诗 (下平声六麻), **二四六分明 1,4, 二四六分明 5,4**',
    '本句自救 (七言): 羌笛何须怨杨柳': '七言绝句 (上平声十五删), **二四六分明 3,6**',
    '对句相救 (4th): 野火烧不尽 / 春风吹又生': '五言律诗 (下平声八庚), **重字 2,3, 二四六分明 3,4, 重字 7,1**',
    '对句相救 (3rd, 4th): 向晚意不适 / 驱车登古原': '五言绝句 (上平声十三元), **三仄尾 1,3, 二四六分明 1,4**',
    '对句相救 (七言 5th): 映阶碧草自春色': '七言律诗 (下平声十二侵), 合律',
    '孤平拗救 + 对句相救: 人事有代谢 / 往来成古今': '五言律诗 (下平声十二侵), **三仄尾 1,3, 二四六分明 1,4**',
    '特拗, 中 at 2: 人传有笙鹤': '五言律诗 (下平声十一尤), **粘 7,4, 对 8,4**',
    '特拗, 中 at 2: 无将故人酒': '五言绝句 (上平声一东), **粘 3,4, 对 4,2**',
    '两读 + 重字: 锦瑟 (思 read 仄)': '七言律诗 (下平声一先), **重字 2,2, 重字 2,3, 重字 6,6**',
    '三仄尾: 江流石不转': '五言绝句 (上平声七虞), **三仄尾 3,3**',
    'rhyme from all lines: 春暮 花涯蛙': '七言绝句 (下平声六麻), **重字 3,5**',
    'one off rhyme: 凉州词 with 几人还': '七言绝句, **出韵 2,7, 出韵 4,7**',
    '首句借邻韵: 清明 纷 / 魂 村': '七言绝句 (上平声十三元), 合律',
    'hand-broken 登高: 旧停 (孤平)': '七言律诗 (上平声十灰), **孤平 8,3**',
    'hand-broken 春望: 恨山 (对)': '五言律诗 (下平声十二侵), **对 4,2, 重字 4,2, 二四六分明 4,4, 粘 5,2**',
    '黄鹤楼 with ？ and ！': 'free form (exit 0: "keeps every rule")',
    '静夜思 with title and author lines': "error (exit 2): '·' is neither a Chinese character nor ，。？！；、: give the poem's text alone",
    '静夜思 with spaces, no marks': 'free form (exit 0: "keeps every rule")',
    'half-width marks, commas throughout': 'free form (exit 0: "keeps every rule")',
    'empty lines only': 'error (exit 2): the poem is empty; give its lines, e.g. "白日依山尽，黄河入海流。"',
    'free text': 'free form (exit 0: "keeps every rule")',
}


def cmd_gelv(rest):
    parser = make_parser("main.py experiment gelv", "the 格律 checker on real and canonical poems, before and after",
                         [])
    parser.add_argument("--data-dir", default="data", help="where the prepared corpus lives (default: data)")
    parser.add_argument("--docs-dir", default="docs", help="where gelv_study.md goes (default: docs)")
    args = parser.parse_args(rest)
    cfg = Config()
    cfg.data.data_dir = args.data_dir
    tables = load_tables(args.data_dir)
    corpus = dataUtil.load_corpus(cfg, verbose=False)
    real = [t for t in map(corpus.decode, corpus.test) if poetics.form_of(t) in poetics.REGULAR_FORMS]
    canon = fixture_poems()
    after = {"test": tally(real, tables), "fixture": tally([t for _, t in canon], tables)}
    seconds = timed_run(real + [t for _, t in canon], args.data_dir)
    doc = os.path.join(args.docs_dir, "gelv_study.md")
    sections = [head_section(), table_section(after), fixture_section(canon, tables), named_section(tables),
                timing_section(seconds)]
    fileio.write_text(doc, "\n".join(line for s in sections for line in s + [""]))
    print(f"wrote {doc}")
    return 0


def fixture_poems(path=FIXTURE):
    """[(author《title》, text)] of the fixture file (author, title, text a row, tab-separated; # comments)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for row in f:
            if row.strip() and not row.startswith("#"):
                author, title, text = row.rstrip("\n").split("\t")
                out.append((f"{author}《{title}》", text))
    if not out:
        raise UserError(f"{path} holds no poems")
    return out


def check(text, tables):
    return checking.check_text(text, tables)


def tally(poems, tables):
    """{"poems", "ok", "rules": {rule: poems breaking it}, "remarks": {rule: poems showing it}}."""
    reports = [check(t, tables) for t in poems]
    return {"poems": len(poems), "ok": sum(r["ok"] for r in reports),
            "rules": Counter(x for r in reports for x in {v["rule"] for v in r["violations"]}),
            "remarks": Counter(x for r in reports for x in {v["rule"] for v in r["remarks"]})}


def summarise(report):
    """One cell of the named-case table: the form, 合律 or the violations (rule line,char), and the remarks."""
    form = report["form"]["name"]
    if not report.get("checked", form != "free") or form == "free":
        return "free: **nothing checked**" if "checked" in report else "free form (exit 0: \"keeps every rule\")"
    bad = ", ".join(f"{v['rule']} {v['line']},{v['char']}" for v in report["violations"])
    told = [v for v in report.get("remarks", []) if v["rule"] != "重字"]
    repeats = sum(v["rule"] == "重字" for v in report.get("remarks", []))
    named = ", ".join(f"{v['rule']} {v['line']},{v['char']}" for v in told)
    group = (report.get("rhyme") or {}).get("group")
    cell = f"{form}{f' ({group})' if group else ''}, " + (f"**{bad}**" if bad else "合律")
    return cell + (f"; notes: {named}" if named else "") + (f"; 重字 ×{repeats} noted" if repeats else "")


# ----------------------------------------------------------------------------------------------------------
# the document

def head_section():
    return ["# 格律 study: the regular-verse checker on real and canonical poems", "",
            "Command: `python main.py experiment gelv` (no model; the prepared corpus and the tables `check` uses: "
            "data/processed, else pretrained/). The checker: verse/gelv.py (the pattern from all the lines, each line "
            "against its template, 拗救 named and accepted, 中 read the way that fits, rhyme from all the rhyming "
            "lines) through prosody.check, the text read by verse/reading.py. *Before*: the checker at commit "
            f"{BEFORE_COMMIT} (verse/prosody.py's own rules: a line's key tone guessed from position 2, or the opposite "
            "of 4; 拗 flagged; 三仄尾 and 重字 violations; rhyme from the even lines alone), run once on the same "
            "poems with the same tables."]


def table_section(after):
    rows = ["| | test split: before | test split: after | canonical 67: before | canonical 67: after |",
            "|---|---|---|---|---|"]
    share = {k: v["ok"] / v["poems"] for k, v in after.items()}
    was = {k: v["ok"] / v["poems"] for k, v in BEFORE.items()}
    rows.append(f"| poems | {BEFORE['test']['poems']} | {after['test']['poems']} | {BEFORE['fixture']['poems']} | "
                f"{after['fixture']['poems']} |")
    rows.append(f"| **合律 (no violation)** | {was['test']:.1%} | **{share['test']:.1%}** | {was['fixture']:.1%} | "
                f"**{share['fixture']:.1%}** |")
    for rule in RULES:
        now = {k: after[k]["remarks" if rule in NOTED else "rules"].get(rule, 0) for k in after}
        tag = " (now a note)" if rule in NOTED else ""
        rows.append(f"| {rule}{tag} | {BEFORE['test']['rules'].get(rule, 0)} | {now['test']} | "
                    f"{BEFORE['fixture']['rules'].get(rule, 0)} | {now['fixture']} |")
    for rule in ("本句自救", "对句相救", "孤平拗救", "首句平收不入韵"):
        rows.append(f"| {rule} (named, accepted) | — | {after['test']['remarks'].get(rule, 0)} | — | "
                    f"{after['fixture']['remarks'].get(rule, 0)} |")
    return (["## Poems called 合律, and poems breaking each rule", "",
             "The test split's regular poems (五/七言 绝句/律诗; the corpus holds 古体 of these shapes too, which "
             "need not keep the rules) and the 67 canonical poems of tests/fixtures/gelv_poems.tsv. A rule's row "
             "counts the poems with at least one break of it (a note's: the poems where it is noted).", ""] + rows)


def fixture_section(canon, tables):
    lines = []
    for name, text in canon:
        r = check(text, tables)
        if not r["ok"] or any(v["rule"] in ("本句自救", "对句相救", "孤平拗救") for v in r["remarks"]):
            lines.append(f"- {name}: {summarise(r)}")
    failed = sum(not check(t, tables)["ok"] for _, t in canon)
    return (["## The canonical poems", "", f"{len(canon) - failed} of {len(canon)} are called 合律 now. Those that "
             "are not, and those whose 拗救 is named:", ""] + lines)


def named_section(tables):
    rows = ["| case | before | after |", "|---|---|---|"]
    for case, text in NAMED:
        try:
            now = summarise(check(text, tables))
        except UserError as e:
            now = f"error: {e}"
        rows.append(f"| {case} | {BEFORE_NAMED.get(case, '—')} | {now} |")
    return (["## Named cases", "", "Each case as `python main.py check --no-model` reads it (positions are line,char; "
             "bold: a violation).", ""] + rows)


def timed_run(poems, data_dir):
    """Seconds `python main.py check FILE --no-model --json` takes for TIMED poems (the study's own, repeated)."""
    sample = [poems[k % len(poems)] for k in range(TIMED)]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "poems.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(sample) + "\n")
        start = time.perf_counter()
        done = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "check", path, "--no-model", "--json",
                               "--data-dir", data_dir], capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - start
    if done.stdout.count("\n") != TIMED:
        raise RuntimeError(f"check FILE printed {done.stdout.count(chr(10))} reports for {TIMED} poems: {done.stderr}")
    return seconds


def timing_section(seconds):
    return ["## A thousand poems", "", f"`python main.py check FILE --no-model --json` on {TIMED} regular poems (a "
            f"poem a line): **{seconds:.1f} s** wall time on this machine, start-up and table loading included "
            "(no torch import, no model)."]
