"""The check command and how it reads a poem: line ends of every kind, title and author lines, empty lines; text
that is no regular form is not checked (exit 1, never "keeps every rule"); many poems from a file or stdin, as
text with a summary or as JSON Lines; bounded, UTF-8 reads; exit codes 0 / 1 / 2 / 3; no torch without a model.
The 词 half of the check (by the learnt table here) and the rules of regular verse (tests/test_gelv.py)."""
import json
import os
import re
import subprocess
import sys

import pytest

from writing import checking
from verse import prosody
from config import UserError
from conftest import ROOT
from verse.text import ci_pattern
from verse.tables import load_tables

DENGAO = ("风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。"
          "万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。")
GUANQUE = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"
JINGYESI = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
JINSE = ("锦瑟无端五十弦，一弦一柱思华年。庄生晓梦迷蝴蝶，望帝春心托杜鹃。沧海月明珠有泪，蓝田日暖玉生烟。"
         "此情可待成追忆，只是当时已惘然。")
BAZHENTU = "功盖三分国，名成八阵图。江流石不转，遗恨失吞吴。"
HUANGHELOU = ("昔人已乘黄鹤去，此地空余黄鹤楼。黄鹤一去不复返，白云千载空悠悠。晴川历历汉阳树，芳草萋萋鹦鹉洲。"
              "日暮乡关何处是？烟波江上使人愁！")
FREE = "今天天气很好我们去公园玩吧"


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return load_tables(str(tmp_path_factory.mktemp("none")))          # no data/processed: the shipped


def read(text, tables):
    return checking.check_text(text, tables)


@pytest.mark.parametrize("text,form,headings", [
    (HUANGHELOU, "七言律诗", []),                                              # ？ and ！ end lines
    ("静夜思\n李白\n" + JINGYESI, "五言绝句", ["静夜思", "李白"]),
    ("静夜思\n唐·李白\n床前明月光\n疑是地上霜\n举头望明月\n低头思故乡\n", "五言绝句", ["静夜思", "唐·李白"]),
    ("《静夜思》 李白\n" + JINGYESI, "五言绝句", ["《静夜思》", "李白"]),
    ("登鹳雀楼\n王之涣\n" + GUANQUE, "五言绝句", ["登鹳雀楼", "王之涣"]),
    ("床前明月光 疑是地上霜 举头望明月 低头思故乡", "五言绝句", []),               # spaces end lines
    ("床前明月光,疑是地上霜.举头望明月?低头思故乡!", "五言绝句", []),              # half-width marks
    ("白日依山尽，黄河入海流，欲穷千里目，更上一层楼；", "五言绝句", []),            # commas throughout, ；
    ("白日依山尽，，黄河入海流。，欲穷千里目：更上一层楼、", "五言绝句", []),         # empty lines, ： 、
    ("白日依山盡\n黃河入海流\n", "free", []),                                   # two lines: not a 绝句
])
def test_a_poem_is_read_as_a_reader_would(text, form, headings, tables):
    r = read(text, tables)
    assert r["form"]["name"] == form and r["headings"] == headings
    assert r["checked"] == (form != "free")
    if headings:
        assert "set aside as a title or author line: " + " / ".join(headings) in r["notes"][0]
        assert "keeps every rule" not in prosody.format_report(r) or r["ok"]


def test_normalise_input():
    assert prosody.normalise("白日依山盡\n黃河入海流\n") == "白日依山尽，黄河入海流。"
    assert prosody.normalise("白日依山尽, 黄河入海流.") == "白日依山尽，黄河入海流。"
    assert prosody.normalise("，，白日依山尽，，黄河入海流") == "白日依山尽，黄河入海流。"
    assert prosody.normalise("静夜思\n李白\n" + JINGYESI) == JINGYESI
    for bad, msg in (("", "empty"), ("   \n", "empty"), ("，，，", "empty"), ("hello world", "neither"),
                     ("白" * 401, "at most"), ("白日依山尽<b>", "neither")):
        with pytest.raises(UserError, match=msg):
            prosody.normalise(bad)


def test_text_that_is_no_regular_form_is_not_checked(tables):
    for text in ("，，，", FREE, "白日依山尽，黄河入海流。"):
        r = read(text, tables)
        assert not r["checked"] and not r["ok"] and r["violations"] == []
        out = prosody.format_report(r)
        assert "not a regular form: nothing was checked" in out and "keeps every rule" not in out


def test_a_ci_is_checked_for_rhyme_by_cilin(tables):
    from test_rhyme import MANJIANGHONG
    table = {"满江红": {"lines": [list(p) for p in ci_pattern(MANJIANGHONG)], "share": 1, "examples": 1,
                        "stanza": 0, "rhymes": [{"lines": [2, 5, 7, 10, 12, 14, 16, 18, 21], "tones": ["仄"] * 9}]}}
    r = prosody.check(MANJIANGHONG, tables.labels, tables.pingshui, tables.cilin, table)
    assert r["form"]["cipai"] == "满江红" and r["ok"] and r["rhyme"]["sets"][0]["group"] == "第十八部"
    r = prosody.check(MANJIANGHONG.replace("匈奴血", "匈奴国"), tables.labels, tables.pingshui, tables.cilin, table)
    assert [(v["rule"], v["line"], v["char"]) for v in r["violations"]] == [("出韵", 19, 7)]


def test_poems_apart_by_lines_or_blank_lines():
    assert checking.split_poems("a\n\nb\n") == [(1, "a"), (3, "b")]
    assert checking.split_poems("# comment\na\nb\n\n") == [(2, "a"), (3, "b")]
    assert checking.split_poems("t\nx\ny\n\n\nz\nw") == [(1, "t\nx\ny"), (6, "z\nw")]
    assert checking.split_poems("\n\n# only\n") == []


def test_reads_are_bounded_and_utf8(tmp_path):
    path = tmp_path / "p.txt"
    path.write_bytes("\ufeff".encode() + GUANQUE.encode())
    assert checking.read_source(str(path)) == GUANQUE                          # a BOM is dropped
    with pytest.raises(UserError, match="holds over"):
        checking.read_source(str(path), limit=10)
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(UserError, match="not UTF-8"):
        checking.read_source(str(path))
    for arg, msg in ((str(tmp_path), "not a regular file"), (str(tmp_path / "none.txt"), "no such file")):
        assert checking.is_source(arg)
        with pytest.raises(UserError, match=msg):
            checking.read_source(arg)
    assert not checking.is_source(GUANQUE) and not checking.is_source("hello")


# ----------------------------------------------------------------------------------------------------------
# the command

def run(*args, stdin=None, python=()):
    return subprocess.run([sys.executable, *python, "main.py", "check", *args], cwd=ROOT, capture_output=True,
                          text=True, input=stdin, timeout=180)


def test_the_command_exit_codes_json_and_stdin():
    ok = run("--no-model", "--json", DENGAO)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["form"]["name"] == "七言律诗" and report["violations"] == [] and report["checked"]
    bad = run("--no-model", "--json", stdin=DENGAO.replace("酒杯", "酒觞"))
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["violations"] == [
        {"rule": "出韵", "line": 8, "char": 7, "character": "觞", "message": "觞 is not in 上平声十灰 (下平声七阳)"}]
    for args in (("--no-model", "abc"), ("--no-model", ""), ("--no-model", "no/such/file.txt")):
        r = run(*args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    text = run(GUANQUE)                                        # with the shipped model: NLL per line
    assert text.returncode == 0 and text.stdout.count("NLL") == 4, text.stdout + text.stderr


def test_notes_are_not_violations_and_nothing_checked_is_exit_1():
    for poem, note in ((JINSE, "重字"), (BAZHENTU, "三仄尾")):
        r = run("--no-model", poem)
        assert r.returncode == 0 and f": {note} — " in r.stdout and "keeps every rule" in r.stdout, r.stdout
    for text in ("，，，", FREE):
        r = run("--no-model", text)
        assert r.returncode == 1 and "not a regular form: nothing was checked" in r.stdout
        assert "keeps every rule" not in r.stdout


def test_many_poems_from_a_file_as_json_lines(tmp_path):
    path = tmp_path / "poems.txt"
    path.write_text("# three poems, one a line\n" + "\n".join([GUANQUE, DENGAO.replace("新停", "旧停"), FREE]) + "\n",
                    encoding="utf-8")
    r = run(str(path), "--json")                               # many poems: no model unless --ckpt
    assert r.returncode == 1 and "NLL" not in r.stdout
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(x["index"], x["source_line"], x["ok"], x["checked"]) for x in rows] == [
        (1, 2, True, True), (2, 3, False, True), (3, 4, False, False)]
    assert [(v["rule"], v["line"], v["char"]) for v in rows[1]["violations"]] == [("孤平", 8, 3)]
    assert {"form", "violations", "notes", "remarks", "lines"} <= set(rows[0])
    assert "3 poems: 1 keep every rule, 1 break a rule, 1 not checked" in r.stderr
    path.write_text(GUANQUE + "\n" + JINSE + "\n", encoding="utf-8")
    assert run(str(path), "--json").returncode == 0
    r = run(str(path), "--json", "--ckpt", os.path.join(ROOT, "pretrained", "tang.pt"))     # NLL when asked
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 0 and [sum("nll" in l for l in x["lines"]) for x in rows] == [4, 8]


def test_many_poems_from_stdin_apart_by_blank_lines():
    poems = "静夜思\n李白\n床前明月光\n疑是地上霜\n举头望明月\n低头思故乡\n\n登鹳雀楼\n" + GUANQUE + "\n\nabc\n"
    r = run("-", "--no-model", stdin=poems)
    assert r.returncode == 1, r.stderr
    assert "=== poem 1 (line 1) ===\n五言绝句" in r.stdout and "=== poem 2 (line 8) ===\n五言绝句" in r.stdout
    assert "set aside as a title or author line: 静夜思 / 李白" in r.stdout
    assert "=== poem 3 (line 11) ===\nnot checked: 'a' is neither" in r.stdout
    assert r.stdout.rstrip().endswith("=== 3 poems: 1 keep every rule, 1 break a rule, 1 not checked (0 not a "
                                      "regular form nor a known 词, 1 unreadable) ===")


def test_a_damaged_table_is_exit_3(tmp_path):
    (tmp_path / "processed").mkdir()
    (tmp_path / "processed" / "rhymes.json").write_text("{not json", encoding="utf-8")
    r = run("--no-model", "--data-dir", str(tmp_path), GUANQUE)
    assert r.returncode == 3 and r.stderr.count("\n") == 1 and "rhymes.json" in r.stderr, r.stderr


def test_check_without_a_model_never_imports_torch(tmp_path):
    path = tmp_path / "poems.txt"
    path.write_text(GUANQUE + "\n" + DENGAO + "\n", encoding="utf-8")
    for args in (("--no-model", GUANQUE), (str(path),)):
        r = run(*args, python=("-X", "importtime"))
        imported = set(re.findall(r"\|\s+([\w.]+)$", r.stderr, re.M))
        assert r.returncode == 0 and "verse.prosody" in imported and not {"torch", "model", "writing.decoding"} & imported


def test_the_help_names_the_exit_codes():
    r = run("--help")
    assert r.returncode == 0 and all(s in r.stdout for s in ("exit 0", "1: a rule", "2: bad input", "3: a table"))
