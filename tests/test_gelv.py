"""The rules of regular verse (gelv.py through prosody.check), as a teacher of 格律 states them: the canonical poems
of tests/fixtures/gelv_poems.tsv all 合律; 拗救 of each kind named, not flagged; 特拗 lines with 中 at position 2
make no false 粘/对; 中 takes the tone that fits; rhyme from all the rhyming lines; 三仄尾 and 重字 noted; 孤平,
三平尾 and hand-broken classics flagged at the exact character. Tables: the shipped ones (pretrained/)."""
import os

import pytest

from verse import gelv
from studies import gelv_study
from verse import prosody
from verse import rhymebook
from conftest import ROOT
from verse.tables import load_tone_table
from verse.rhymebook import load_books

DENGAO = gelv_study.DENGAO
CHUNWANG = gelv_study.CHUNWANG
SHANJU = "空山新雨后，天气晚来秋。明月松间照，清泉石上流。竹喧归浣女，莲动下渔舟。随意春芳歇，王孙自可留。"
GUANQUE = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"
CANON = dict(gelv_study.fixture_poems())
YEHUO = CANON["白居易《赋得古原草送别》"]


@pytest.fixture(scope="module")
def tables():
    shipped = os.path.join(ROOT, "pretrained")
    books = load_books(os.path.join(shipped, "rhymes.json"))
    return load_tone_table(os.path.join(shipped, "tones.json")), books["pingshui"]


def report(text, tables, **labels):
    """prosody.check's report; labels given override the table's (an injected tone: 平, 仄 or both)."""
    table, book = tables
    return prosody.check(prosody.normalise(text), {**table, **labels}, book)


def found(r, key="violations"):
    return {(v["rule"], v["line"], v["char"]) for v in r[key]}


@pytest.mark.parametrize("name", sorted(CANON))
def test_the_canonical_poems_all_keep_the_rules(name, tables):
    r = report(CANON[name], tables)
    assert r["checked"] and r["ok"], (name, r["violations"])


@pytest.mark.parametrize("name,remarks", [
    ("孟浩然《宿建德江》", {("本句自救", 1, 3)}),                      # 移舟泊烟渚: 平平仄平仄
    ("孟浩然《过故人庄》", {("本句自救", 1, 3), ("本句自救", 5, 3)}),    # 开轩面场圃 (故人具鸡黍: 仄 at 1)
    ("王之涣《凉州词》", {("本句自救", 3, 5)}),                        # 羌笛何须怨杨柳: 仄仄平平仄平仄
    ("白居易《赋得古原草送别》", {("对句相救", 4, 3)}),                 # 野火烧不尽 / 春风吹又生
    ("李商隐《登乐游原》", {("对句相救", 2, 3), ("三仄尾", 1, 3)}),      # 向晚意不适 / 驱车登古原
    ("杜甫《蜀相》", {("对句相救", 4, 5)}),                            # 映阶碧草自春色 / 隔叶黄鹂空好音
    ("孟浩然《与诸子登岘山》", {("对句相救", 2, 3), ("孤平拗救", 2, 3), ("三仄尾", 1, 3)}),   # 往来成古今
])
def test_rescues_are_named_in_notes_not_flagged(name, remarks, tables):
    r = report(CANON[name], tables)
    assert r["ok"] and remarks <= found(r, "remarks"), r["remarks"]
    assert all(any(k in n for n in r["notes"]) for k, _, _ in remarks)


def test_a_bend_nothing_answers_is_still_flagged(tables):
    r = report(YEHUO.replace("春风吹又生", "春风又复生"), tables)           # line 4 position 3 仄: no rescue
    assert found(r) == {("二四六分明", 3, 4)} and "对句相救" in r["violations"][0]["message"]


def test_special_lines_with_zhong_at_2_make_no_false_pairs(tables):
    for name, line in (("杜甫《玉台观》", 7), ("司空曙《留卢秦卿》", 3)):
        text = dict(gelv_study.NAMED)["特拗, 中 at 2: " + ("人传有笙鹤" if line == 7 else "无将故人酒")]
        r = report(text, tables, 传="both", 将="both")
        assert r["ok"] and not {v["rule"] for v in r["violations"]} & {"粘", "对"}, name
        assert ("本句自救", line, 3) in found(r, "remarks")
        assert r["lines"][line - 1]["tones"][1] == "中" and r["lines"][line - 1]["reading"] == "平平仄平仄"


def test_the_pattern_comes_from_all_the_lines(tables):
    r = report(DENGAO, tables)
    assert r["form"]["name"] == "七言律诗" and r["ok"]
    assert r["pattern"]["start"] == "仄起" and r["pattern"]["first_line_rhymes"]
    assert r["pattern"]["templates"][:2] == ["仄仄平平仄仄平", "平平仄仄仄平平"]
    assert r["lines"][0]["template"] == "仄仄平平仄仄平" and r["lines"][0]["reading"] == "平仄平平平仄平"
    assert r["rhyme"]["group"] == "上平声十灰" and r["rhyme"]["rhyming_lines"] == [1, 2, 4, 6, 8]
    # line 1's position 2 alone would say 平起 if 急 were 平; the other seven lines outvote it
    r = report(DENGAO, tables, 急="平")
    assert r["pattern"]["start"] == "仄起" and found(r) == {("对", 1, 2)}


def test_a_zhong_character_takes_the_tone_that_fits(tables):
    jinse = CANON["李商隐《锦瑟》"]
    r = report(jinse, tables, 思="both")                                # 一弦一柱思华年: 思 read 仄
    assert r["ok"] and r["lines"][1]["reading"][4] == "仄"
    assert any("思 (line 2, char 5: 仄)" in n for n in r["notes"])
    r = report(jinse, tables, 思="平")                                  # read 平 only: 思华年 三平尾
    assert found(r) == {("三平尾", 2, 5)}


def test_rhyme_is_chosen_from_all_the_rhyming_lines(tables):
    labels, _ = tables
    names = ["上平声九佳", "下平声六麻"]
    book = rhymebook.Book("pingshui", names, {"花": frozenset({(1, 1)}), "涯": frozenset({(0, 1), (1, 1)}),
                                                "蛙": frozenset({(0, 1), (1, 1)})})
    chunmu = dict(gelv_study.NAMED)["rhyme from all lines: 春暮 花涯蛙"]      # 涯 蛙 in both: 花 decides
    r = prosody.check(chunmu, labels, book)
    assert r["rhyme"]["group"] == "下平声六麻" and r["rhyme"]["rhyming_lines"] == [1, 2, 4]
    assert gelv.best_group([(1, "涯"), (3, "蛙")], book)[0] == 0          # the even lines alone: a tie, 九佳


def test_one_off_rhyme_flags_that_line_alone(tables):
    r = report(CANON["王翰《凉州词》"].replace("几人回", "几人还"), tables)
    assert found(r) == {("出韵", 4, 7)} and "上平声十灰" in r["violations"][0]["message"]
    r = report(GUANQUE.replace("海流", "海中"), tables)                   # two rhyming lines, no group: both
    assert found(r) == {("出韵", 2, 5), ("出韵", 4, 5)}


def test_line_ends_outside_the_rhyme(tables):
    r = report(CANON["杜牧《清明》"], tables)                              # 纷 (文) beside 魂 村 (元): a note
    assert r["ok"] and ("首句平收不入韵", 1, 7) in found(r, "remarks")
    r = report(GUANQUE.replace("千里目", "千里山"), tables)                # line 3 ends 平
    assert found(r) == {("出句平收", 3, 5)}


def test_three_oblique_end_and_repeats_are_notes(tables):
    r = report(CANON["杜甫《八阵图》"], tables)                            # 江流石不转
    assert r["ok"] and found(r, "remarks") == {("三仄尾", 3, 3)}
    r = report(CANON["李商隐《锦瑟》"], tables)                            # 一弦一柱: deliberate repeats
    assert r["ok"] and {("重字", 2, 2), ("重字", 2, 3)} <= found(r, "remarks")
    assert ("重字", 3, 6) not in found(report(DENGAO, tables), "remarks")        # 萧萧 is one word


@pytest.mark.parametrize("poem,want", [
    (DENGAO.replace("酒杯", "酒觞"), {("出韵", 8, 7)}),                  # 觞: 七阳, not 十灰
    (DENGAO.replace("新停", "旧停"), {("孤平", 8, 3)}),                  # 旧停浊酒杯: 仄平仄仄平
    (DENGAO.replace("悲秋", "悲泪"), {("二四六分明", 5, 4)}),            # 万里悲泪: 仄仄平仄
    (CHUNWANG.replace("恨别", "恨山"), {("对", 4, 2)}),                  # 山 平 where 仄 is due
    (CHUNWANG.replace("搔更短", "搔更多"), {("出句平收", 7, 5)}),         # line 7 ends 平
    (SHANJU.replace("莲动下渔舟", "莲动于渔舟"), {("三平尾", 6, 3)}),      # 于渔舟: 平平平
    (SHANJU.replace("清泉石上流", "碧泉石上流"), {("孤平", 4, 1)}),        # 碧泉石上流: 仄平仄仄平
    (GUANQUE.replace("黄河", "黄水"), {("对", 2, 2)}),                   # 水 仄 like 日
])
def test_hand_broken_classics_are_flagged_in_place(poem, want, tables):
    assert found(report(poem, tables)) == want


def test_lone_level_rescued_in_its_own_line(tables):
    r = report(SHANJU.replace("清泉石上流", "碧泉溪上流"), tables)          # 仄平平仄平
    assert r["ok"] and ("孤平拗救", 4, 3) in found(r, "remarks")
