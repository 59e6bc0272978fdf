"""对仗 (duizhang.py): 杜甫《登高》 is parallel in all four couplets; a broken copy is named at the broken position;
the alignment is position by position (shifting it by one ruins the score); the significance test, the classes
and the build on a small synthetic corpus; score() agrees with judge(); the module and its table need no torch."""
import json
import os
import random
import subprocess
import sys

import pytest

from verse import duizhang
from verse import poetics
from conftest import ROOT
from verse.tables import load_tone_table

DENGAO = ("风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。"
          "万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。")
FAMOUS = [DENGAO,
          "空山新雨后，天气晚来秋。明月松间照，清泉石上流。竹喧归浣女，莲动下渔舟。随意春芳歇，王孙自可留。",
          "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。烽火连三月，家书抵万金。白头搔更短，浑欲不胜簪。",
          "细草微风岸，危樯独夜舟。星垂平野阔，月涌大江流。名岂文章著，官应老病休。飘飘何所似，天地一沙鸥。",
          "青山横北郭，白水绕东城。此地一为别，孤蓬万里征。浮云游子意，落日故人情。挥手自兹去，萧萧班马鸣。",
          "客路青山外，行舟绿水前。潮平两岸阔，风正一帆悬。海日生残夜，江春入旧年。乡书何处达，归雁洛阳边。",
          "丞相祠堂何处寻，锦官城外柏森森。映阶碧草自春色，隔叶黄鹂空好音。三顾频烦天下计，两朝开济老臣心。"
          "出师未捷身先死，长使英雄泪满襟。",
          "剑外忽传收蓟北，初闻涕泪满衣裳。却看妻子愁何在，漫卷诗书喜欲狂。白日放歌须纵酒，青春作伴好还乡。"
          "即从巴峡穿巫峡，便下襄阳向洛阳。"]
GUANQUE = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"


@pytest.fixture(scope="module")
def table():
    t = duizhang.load()
    assert t is not None, "pretrained/duizhang.json is missing or unreadable"
    return t


@pytest.fixture(scope="module")
def tones():
    return load_tone_table(os.path.join(ROOT, "pretrained", "tones.json"))


def test_dengao_is_parallel_in_all_four_couplets(table, tones):
    found = duizhang.couplets(DENGAO, table, tones)
    assert [c["name"] for c in found] == ["首联", "颔联", "颈联", "尾联"]
    assert [c["expected"] for c in found] == [False, True, True, False]
    assert [c["verdict"] for c in found] == ["parallel"] * 4, [(c["name"], c["mean"], c["weakest"]) for c in found]
    assert all(not c["same_char"] and not c["tone_clash"] for c in found)
    assert found[1]["lines"] == ("无边落木萧萧下", "不尽长江滚滚来")
    assert found[2]["same_structure"] is False


def test_a_character_that_does_not_answer_is_named_at_its_position(table, tones):
    broken = DENGAO.replace("长江", "地江")                  # 落 (to fall) against 地 (the earth): position 3
    c = duizhang.couplets(broken, table, tones)[1]
    assert c["verdict"] == "weak" and c["weakest"] == [3], c
    at = c["positions"][2]
    assert (at["a"], at["b"]) == ("落", "地") and at["answers"] is False and at["fails"] == ["floor"]
    assert [d["verdict"] for k, d in enumerate(duizhang.couplets(broken, table, tones)) if k != 1] == ["parallel"] * 3
    both = duizhang.couplets(DENGAO.replace("长江", "长去"), table, tones)[1]     # 木 against 去, both 仄
    assert both["weakest"] == [4] and both["positions"][3]["fails"] == ["floor", "tones"]


def test_an_identical_character_and_a_tone_clash_are_named(table, tones):
    same = duizhang.couplets(DENGAO.replace("不尽", "无尽"), table, tones)[1]      # 无 against 无: 合掌's sign
    assert same["same_char"] == [1] and same["verdict"] != "parallel" and same["positions"][0]["fails"] == ["same"]
    assert 1 in same["weakest"] or same["verdict"] == "not parallel"
    clash = duizhang.couplets(DENGAO.replace("不尽", "不穷"), table, tones)[1]     # 边 穷 both 平 at position 2
    assert clash["tone_clash"] == [2] and clash["verdict"] == "weak" and 2 in clash["weakest"]
    assert duizhang.couplets(DENGAO.replace("不尽", "不穷"), table)[1]["tone_clash"] == []   # no tones: not judged


def test_tones_as_a_dict_or_a_callable(table, tones):
    def tone(ch):
        return poetics.CLASSICAL.get(tones.get(ch))
    a, b = "无边落木萧萧下", "不尽长江滚滚来"
    assert duizhang.judge(a, b, table, tones) == duizhang.judge(a, b, table, tone)
    assert [p["tones"] for p in duizhang.judge(a, b, table, tone)["positions"]] == [
        None, "opposite", None, "opposite", None, "opposite", None]
    assert duizhang.judge(a + "，", b + "。", table, tone) == duizhang.judge(a, b, table, tone)


def test_shifting_the_alignment_by_one_lowers_the_score(table):
    aligned, shifted = [], []
    for text in FAMOUS:
        for k in duizhang.MIDDLE:
            a, b = duizhang.lu_couplets(text)[k]
            aligned += [s for s in duizhang.position_scores(a, b, table) if s is not None]
            shifted += [s for s in duizhang.position_scores(a, b, table, shift=1) if s is not None]
    mean = sum(aligned) / len(aligned)
    assert mean > 0.8 and mean - sum(shifted) / len(shifted) > 1.5, (mean, sum(shifted) / len(shifted))
    a, b = "无边落木萧萧下", "不尽长江滚滚来"
    assert duizhang.judge(a, b, table)["verdict"] == "parallel"
    assert duizhang.judge(a[:-1], b[1:], table)["verdict"] != "parallel"      # j of a against j + 1 of b


def test_score_is_the_mean_of_the_middle_couplets_positions(table):
    for text in FAMOUS:
        found = duizhang.couplets(text, table)
        scores = [p["score"] for c in found[1:3] for p in c["positions"] if p["score"] is not None]
        assert duizhang.score(text, table) == pytest.approx(sum(scores) / len(scores), abs=0.01)
    assert duizhang.score(DENGAO, table) > duizhang.score(DENGAO.replace("长江", "地江"), table)
    for other in (GUANQUE, DENGAO[:-1], DENGAO.replace("，", "。", 1), "", DENGAO + DENGAO):
        assert duizhang.score(other, table) is None and duizhang.couplets(other, table) is None


def test_the_significance_test():
    kept = duizhang.significant_pairs({"云风": 10, "山水": 2, "人客": 5, "天天": 9}, {"云风": 1.0, "山水": 0.1,
                                                                                   "人客": 4.0, "天天": 1.0})
    assert set(kept) == {"云风"} and kept["云风"] == pytest.approx(3.3219, abs=1e-3)   # log2(10 / 1)
    assert duizhang.log_likelihood(10, 1.0) > duizhang.MIN_G2 > duizhang.log_likelihood(5, 4.0)


def synthetic_poems(n=300, seed=0):
    """律诗 whose 颔联/颈联 answer by group (nature, verbs, numbers: the same group at each position) and whose
    outer couplets are drawn at random."""
    rng = random.Random(seed)
    groups = ["风云雨雪月花山水", "来去飞落开生归入", "一千万三百两五九"]
    shape = [0, 1, 2, 0, 1]
    every = "".join(groups)

    def line(pattern):
        return "".join(rng.choice(groups[g]) for g in pattern)

    def free():
        return "".join(rng.choice(every) for _ in shape)
    poems = []
    for _ in range(n):
        lines = [free(), free(), line(shape), line(shape), line(shape), line(shape), free(), free()]
        poems.append("".join(l + ("，" if k % 2 == 0 else "。") for k, l in enumerate(lines)))
    return poems


def test_build_learns_the_classes_and_pairs_of_a_synthetic_corpus(tmp_path):
    path = tmp_path / "duizhang.json"
    obj = duizhang.write_duizhang_table(synthetic_poems(), str(path), k=3)
    table = duizhang.load(str(path))
    assert table is not None and obj["poems"] == 300 and table.meta["aligned_pairs"] == 300 * 2 * 5
    cls = table.classes
    for group in ("风云雨雪月花山水", "来去飞落开生归入", "一千万三百两五九"):
        assert len({cls[ch] for ch in group}) == 1, group                # each group one class
    assert len({cls["风"], cls["来"], cls["一"]}) == 3
    assert duizhang.pair_score("风", "云", table)[0] > 0 > duizhang.pair_score("风", "来", table)[0]
    poem = synthetic_poems(1, seed=1)[0]
    lines = poetics.split_lines(poem)
    rotated = [l[1:-1] + l[0] + l[-1] for l in lines]                   # each line rotated by one
    shifted = "".join(lines[:2] + [lines[2], rotated[3], lines[4], rotated[5]] + lines[6:])
    assert duizhang.score(poem, table) > 0 > duizhang.score(shifted, table)
    assert set(table.thresholds) == {"parallel", "floor", "weak"}


def test_same_structure_flags_a_neck_couplet_built_like_the_chin(table):
    lines = poetics.split_lines(DENGAO)
    copied = "".join(lines[:4] + [lines[2].replace("无边", "无穷"), lines[3]] + lines[6:])
    assert duizhang.couplets(copied, table)[2]["same_structure"] is True
    assert duizhang.couplets(DENGAO, table)[2]["same_structure"] is False


def test_the_shipped_table_is_small_readable_and_needs_no_torch(table):
    path = os.path.join(ROOT, "pretrained", "duizhang.json")
    assert os.path.getsize(path) < 300_000
    with open(path, encoding="utf-8") as f:
        obj = json.load(f)
    assert obj["version"] == duizhang.VERSION and len(table.class_scores) == obj["settings"]["classes"]
    assert len(table.pairs) // 2 > 1000 and len(table.classes) > 1000
    code = ("import sys; sys.modules['torch'] = None; from verse import duizhang; t = duizhang.load(); "
            f"print(duizhang.couplets({DENGAO!r}, t)[1]['verdict'], round(duizhang.score({DENGAO!r}, t), 3)); "
            f"print(duizhang.table_from(duizhang.build([{DENGAO!r}] * 30, k=4)).thresholds)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "parallel"


def test_an_unreadable_table_is_none(tmp_path):
    assert duizhang.load(str(tmp_path / "missing.json")) is None
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    assert duizhang.load(str(tmp_path / "bad.json")) is None
