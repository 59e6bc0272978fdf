"""The 格律 check: well-known regulated poems come out clean; hand-broken versions are flagged at the right
line and position; the command's exit codes, JSON and input handling."""
import json
import os
import subprocess
import sys

import pytest

import dataUtil
import prosody
import rhymebook
from config import UserError
from conftest import ROOT

DENGAO = ("风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。"
          "万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。")
SHANJU = "空山新雨后，天气晚来秋。明月松间照，清泉石上流。竹喧归浣女，莲动下渔舟。随意春芳歇，王孙自可留。"
GUANQUE = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"


@pytest.fixture(scope="module")
def tables():
    raw = rhymebook.build_books(dataUtil.convert_chars)
    labels = dataUtil.load_tone_table(os.path.join(ROOT, "pretrained", "tones.json"))
    return labels, rhymebook.book_from("pingshui", raw["pingshui"]), rhymebook.book_from("cilin", raw["cilin"])


def found(text, tables):
    labels, pingshui, _ = tables
    return {(v["rule"], v["line"], v["char"]) for v in prosody.check(text, labels, pingshui)["violations"]}


@pytest.mark.parametrize("poem", [DENGAO, SHANJU, GUANQUE])
def test_well_known_regulated_poems_are_clean(poem, tables):
    assert found(poem, tables) == set()


def test_the_report_of_dengao(tables):
    labels, pingshui, _ = tables
    r = prosody.check(DENGAO, labels, pingshui)
    assert r["form"]["name"] == "七言律诗" and r["ok"]
    assert r["pattern"] == {"start": "仄起", "first_line_rhymes": True}       # 急 仄; 哀 rhymes with 回
    assert r["rhyme"]["group"] == "上平声十灰" and r["rhyme"]["rhyming_lines"] == [1, 2, 4, 6, 8]
    assert r["lines"][0]["tones"] == "平仄平平平仄平"
    assert any("一三五不论" in n for n in r["notes"]) and any("长 (line 4, char 3)" in n for n in r["notes"])


@pytest.mark.parametrize("poem,want", [
    (DENGAO.replace("酒杯", "酒觞"), {("出韵", 8, 7)}),                  # 觞: 七阳, not 十灰
    (SHANJU.replace("莲动下渔舟", "莲动于渔舟"), {("三平尾", 6, 3)}),      # 于渔舟: 平平平
    (SHANJU.replace("清泉石上流", "碧泉石上流"), {("孤平", 4, 1)}),        # 碧泉石上流: 仄平仄仄平
    (GUANQUE.replace("黄河", "黄水"), {("对", 2, 2), ("二四六分明", 2, 4), ("粘", 3, 2)}),   # 水 仄 like 日
    (GUANQUE.replace("一层楼", "一山楼"), {("重字", 4, 4)}),               # 山 again (依山)
    (GUANQUE.replace("海流", "海中"), {("出韵", 4, 5), ("出韵", 2, 5)}),    # 中 东, 楼 尤: no group shared
])
def test_broken_versions_are_flagged_in_place(poem, want, tables):
    assert found(poem, tables) == want


def test_doubling_is_not_a_repeat_and_three_oblique_ends_are_flagged(tables):
    assert ("重字", 3, 6) not in found(DENGAO, tables)                         # 萧萧 is one word
    assert found(GUANQUE.replace("千里", "万里"), tables) == {("三仄尾", 3, 3)}          # 万里目: 仄仄仄


def test_a_ci_is_checked_for_rhyme_by_cilin(tables):
    labels, pingshui, cilin = tables
    from test_rhyme import MANJIANGHONG
    table = {"满江红": {"lines": [list(p) for p in dataUtil.ci_pattern(MANJIANGHONG)], "share": 1, "examples": 1,
                        "stanza": 0, "rhymes": [{"lines": [2, 5, 7, 10, 12, 14, 16, 18, 21], "tones": ["仄"] * 9}]}}
    r = prosody.check(MANJIANGHONG, labels, pingshui, cilin, table)
    assert r["form"]["cipai"] == "满江红" and r["ok"] and r["rhyme"]["sets"][0]["group"] == "第十八部"
    r = prosody.check(MANJIANGHONG.replace("匈奴血", "匈奴国"), labels, pingshui, cilin, table)
    assert [(v["rule"], v["line"], v["char"]) for v in r["violations"]] == [("出韵", 19, 7)]


def test_normalise_input():
    assert prosody.normalise("白日依山盡\n黃河入海流\n") == "白日依山尽，黄河入海流。"
    assert prosody.normalise("白日依山尽, 黄河入海流.") == "白日依山尽，黄河入海流。"
    for bad, msg in (("", "empty"), ("   \n", "empty"), ("hello world", "neither"), ("，白日", "starts with"),
                     ("白" * 401, "at most")):
        with pytest.raises(UserError, match=msg):
            prosody.normalise(bad)


def run(*args, stdin=None):
    return subprocess.run([sys.executable, "main.py", "check", *args], cwd=ROOT, capture_output=True, text=True,
                          input=stdin, timeout=120)


def test_the_command_exit_codes_json_and_stdin():
    ok = run("--no-model", "--json", DENGAO)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["form"]["name"] == "七言律诗" and report["violations"] == []
    bad = run("--no-model", "--json", stdin=DENGAO.replace("酒杯", "酒觞"))
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["violations"] == [
        {"rule": "出韵", "line": 8, "char": 7, "character": "觞", "message": "觞 is not in 上平声十灰 (下平声七阳)"}]
    for args in (("--no-model", "abc"), ("--no-model", "")):
        r = run(*args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    text = run(GUANQUE)                                        # with the shipped model: NLL per line
    assert text.returncode == 0 and text.stdout.count("NLL") == 4, text.stdout + text.stderr
