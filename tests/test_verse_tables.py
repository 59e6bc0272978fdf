"""The tone and rhyme tables behind the check and the masks: readings from the rhyme book first (both where it
lists both), a reading the poets never use dropped, rare traditional sources and unrhymed readings out of the
rhyme groups, the gaps filled; and no text in two splits."""
import os
import re
from collections import Counter

import pytest

import dataUtil
from verse import poetics
from verse import rhymebook
from conftest import ROOT
from verse.tables import load_tone_table

LEVEL, OBLIQUE = poetics.LEVEL, poetics.OBLIQUE


@pytest.fixture(scope="module")
def shipped():
    books = rhymebook.load_books(os.path.join(ROOT, "pretrained", "rhymes.json"))
    tones = load_tone_table(os.path.join(ROOT, "pretrained", "tones.json"))
    return books["pingshui"], tones


def names(book, ch):
    """The names of ch's groups without their section: 上平声十灰 -> 十灰."""
    return {re.sub("^(上平声|下平声|上声|去声|入声)", "", book.groups[g]) for g in book.groups_of(ch)}


def test_second_readings_kept_and_label_noise_gone(shipped):
    _, tones = shipped
    for ch in "为忘令漫殷任盛障看思":
        assert tones[ch] == "both", ch                 # the book lists both readings and the poets use both
    for ch in "琵茶毫隋潜":
        assert tones[ch] == "平", ch                   # the book has 平 only (潜's 仄 is never used: dropped)
    for ch in "不国白":
        assert tones[ch] == "仄", ch


def test_rare_sources_and_readings_out_of_the_groups(shipped):
    book, _ = shipped
    wrong = {"开": "一先", "龙": "三江", "怀": "四支", "干": "一先", "花": "四纸", "旗": "五微", "才": "十五咸",
             "园": "十四寒", "抱": "十灰", "逢": "一东"}
    for ch, group in wrong.items():
        assert group not in names(book, ch), (ch, group)
    assert names(book, "开") == {"十灰"} and "二冬" in names(book, "逢") and "十四寒" in names(book, "干")
    for a, b in ("田开", "红逢"):
        assert not book.common([a, b], [LEVEL, LEVEL]), a + b
    assert "一尤" not in names(book, "不")             # 不's 平 reading dropped from its groups too


def test_gaps_filled(shipped):
    book, _ = shipped
    want = {"槎": "六麻", "衰": "十灰", "袜": "六月", "坞": "七麌", "碗": "十四旱", "盏": "十五潸", "灶": "二十号",
            "嫦": "七阳"}
    for ch, group in want.items():
        assert group in names(book, ch), ch
    assert "四支" in names(book, "衰")                  # shuāi stays


def toy_groups():
    return [("上平声一东", "東風"), ("下平声一先", "幵先"), ("上平声十灰", "開來"), ("上声一董", "董")]


def convert(s):
    return s.translate(str.maketrans("東開幵來", "东开开来"))


def test_a_source_under_one_percent_gives_no_group():
    usage = Counter({("開", "开"): 995, ("幵", "开"): 5, ("東", "东"): 50, ("來", "来"): 30})
    groups, dropped = rhymebook.build_pingshui(toy_groups(), convert, usage)
    assert "开" not in groups[1]["平"] and "开" in groups[2]["平"] and "幵" in groups[1]["平"]
    assert dropped == {"开": ["下平声一先"]}
    usage[("幵", "开")] = 11                            # 11 of 1,006: over 1%, kept
    groups, dropped = rhymebook.build_pingshui(toy_groups(), convert, usage)
    assert "开" in groups[1]["平"] and not dropped
    groups, _ = rhymebook.build_pingshui(toy_groups(), convert, Counter({("幵", "开"): 1, ("開", "开"): 9}))
    assert "开" in groups[1]["平"]                      # 10 uses: too few to judge


def test_readings_never_rhymed_on_are_dropped():
    pingshui = [{"name": "上平声一东", "平": "东红中风逢", "仄": ""}, {"name": "上平声二冬", "平": "冬逢钟龙", "仄": ""}]
    poems = [["一二三四五，", "一二三四冬，", "一二三四五，", "一二三四逢。"]] * 19 + \
            [["一二三四五，", "一二三四红，", "一二三四五，", "一二三四逢。"]] * 1
    removed = rhymebook.drop_rare_readings(pingshui, poems)
    assert removed == {"逢": [["上平声一东", 1, 20]]} and "逢" not in pingshui[0]["平"]
    pingshui[0]["平"] += "逢"
    assert rhymebook.drop_rare_readings(pingshui, poems[-2:]) == {}   # 2 votes: too few


def test_key_slots_and_book_readings_by_hand():
    # 五言绝句, 仄起 首句不入韵 pattern: 仄仄平平仄 / 平平仄仄平 / 平平平仄仄 / 仄仄仄平平 at positions 2, 4
    lines = ["白日依山尽", "黄河入海流", "欲穷千里目", "更上一层楼"]
    single = {"日": OBLIQUE, "山": LEVEL, "河": LEVEL, "海": OBLIQUE, "穷": LEVEL, "上": OBLIQUE,
              "层": LEVEL}.get
    slots = poetics.key_slots([lines], single)
    # position 4 of odd lines is left out (拗 lives there): 山 (line 1) and 里 (line 3) are not counted
    assert slots == {"日": [1, 0], "河": [0, 1], "海": [1, 0], "穷": [0, 1], "上": [1, 0], "层": [0, 1]}
    off = ["白日依山尽", "黄河入山流", "欲穷千里目", "更上一层楼"]       # the pattern holds at 4 of 5: < 90%
    assert poetics.key_slots([off], single) == {}
    book = rhymebook.Book("t", ["g"], {"为": frozenset({(0, LEVEL), (1, OBLIQUE)}),
                                       "不": frozenset({(0, LEVEL), (1, OBLIQUE)}),
                                       "琵": frozenset({(0, LEVEL)})})
    table, dropped = poetics.book_readings(book, {"琵": "both", "国": "仄"},
                                           {"为": [40, 60], "不": [99, 1], "琵": [0, 0]})
    assert table == {"为": "both", "不": "仄", "琵": "平", "国": "仄"} and dropped == {"不": ["平", 1, 100]}
    table, _ = poetics.book_readings(book, {}, {"不": [28, 1]})            # 29 slots: too few to drop
    assert table["不"] == "both"


def test_no_text_in_two_splits(data_cfg):
    # two copies of a poem that differ only by a variant character (鴈 / 雁) are one text after standardising
    cfg = data_cfg
    counts = Counter()
    poems = ["春风吹鴈过，秋月照人还。", "春风吹雁过，秋月照人还。"] + [f"第{i}首诗句，" for i in range(5)]
    splits = dataUtil.filter_split(poems, cfg, counts)
    texts = [t for s in splits.values() for t in s]
    assert texts.count("春风吹雁过，秋月照人还。") == 1 and counts["dropped_duplicate"] == 1
    corpus = dataUtil.load_corpus(cfg, verbose=False)
    seen = [{tuple(p.tolist()) for p in getattr(corpus, s)} for s in ("train", "dev", "test")]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
