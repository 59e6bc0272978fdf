"""The 词谱 (cipu.py, pretrained/cipu.json): the table and its loader, matching a 词 to its 词牌 and 格, the check
of four famous 词 and of hand-broken versions (flagged at exactly the line and character), the build script on a
small made-up source, and generation that keeps every fixed 平/仄 of the 格."""
import json
import os
import subprocess
import sys

import pytest

from verse import cipu
from verse import prosody
from verse import rhymebook
from config import UserError
from conftest import ROOT
from verse.text import PUNCT, ci_pattern
from verse.tables import cipai_table, load_tone_table

MANJIANGHONG = ("怒发冲冠，凭栏处、潇潇雨歇。抬望眼、仰天长啸，壮怀激烈。三十功名尘与土，八千里路云和月。莫等闲、白了少年头，"
                "空悲切。靖康耻，犹未雪。臣子恨，何时灭。驾长车踏破，贺兰山缺。壮志饥餐胡虏肉，笑谈渴饮匈奴血。待从头、"
                "收拾旧山河，朝天阙。")                                                    # 岳飞
SHUIDIAO = ("明月几时有？把酒问青天。不知天上宫阙，今夕是何年。我欲乘风归去，又恐琼楼玉宇，高处不胜寒。起舞弄清影，"
            "何似在人间。转朱阁，低绮户，照无眠。不应有恨，何事长向别时圆？人有悲欢离合，月有阴晴圆缺，此事古难全。"
            "但愿人长久，千里共婵娟。")                                                      # 苏轼
SHENGSHENG = ("寻寻觅觅，冷冷清清，凄凄惨惨戚戚。乍暖还寒时候，最难将息。三杯两盏淡酒，怎敌他、晚来风急！雁过也，正伤心，"
              "却是旧时相识。满地黄花堆积。憔悴损，如今有谁堪摘？守着窗儿，独自怎生得黑！梧桐更兼细雨，到黄昏、点点滴滴。"
              "这次第，怎一个愁字了得！")                                                    # 李清照
QINGYUAN = ("东风夜放花千树，更吹落、星如雨。宝马雕车香满路。凤箫声动，玉壶光转，一夜鱼龙舞。蛾儿雪柳黄金缕，笑语盈盈暗香去。"
            "众里寻他千百度，蓦然回首，那人却在，灯火阑珊处。")                                  # 辛弃疾《元夕》
YIJIANGNAN = "江南好，风景旧曾谙。日出江花红胜火，春来江水绿如蓝。能不忆江南？"                   # 白居易
SHENGCHAZI = "去年元夜时，花市灯如昼。月上柳梢头，人约黄昏后。今年元夜时，月与灯依旧。不见去年人，泪湿春衫袖。"   # 欧阳修


@pytest.fixture(scope="module")
def tables():
    labels = load_tone_table(os.path.join(ROOT, "pretrained", "tones.json"))
    books = rhymebook.load_books(os.path.join(ROOT, "pretrained", "rhymes.json"))
    return labels, books["pingshui"], books["cilin"], cipu.load()


def check(text, tables, name=None, table=None):
    labels, pingshui, cilin, full = tables
    return prosody.check(prosody.normalise(text), labels, pingshui, cilin, None, table or full, name)


def found(report):
    return [(v["rule"], v["line"], v["char"]) for v in report["violations"]]


def only(table, name, numbers):
    """The table cut down to some 格 of one 词牌 (to judge a text against them alone)."""
    ges = [g for g in table.ge[name] if g.number in numbers]
    return cipu.Cipu({name: ges}, {name: name}, {}, "", "")


# ----------------------------------------------------------------------------------------------------------
# the table

def test_the_shipped_table(tables):
    table = tables[3]
    assert len(table.ge) == 816 and len(table.all_ge()) == 2495
    assert {g.source for g in table.all_ge()} == {"钦定词谱", "龙榆生"}
    assert table.names["大江东去"] == "念奴娇" and table.names["望江南"] == "忆江南"
    assert os.path.getsize(cipu.PATH) < 1_300_000
    notice = open(os.path.join(ROOT, "pretrained", "cipu.LICENSE"), encoding="utf-8").read()
    assert "MIT License" in table.licence and "Copyright (c) 2026 hulbji" in table.licence
    assert table.licence in notice and "couyun" in notice


def test_manjianghong_ge_1_lies_on_the_text(tables):
    """满江红 格 1 (柳永's, 钦定词谱): its tones, pieces and rhymes at their known positions — a table shifted by
    one character against its text fails here."""
    g = tables[3].ge["满江红"][0]
    assert (g.number, g.of, g.chars, g.source) == (1, 17, 93, "钦定词谱")
    assert g.first == "暮雨初收，长川静、征帆夜落。"
    assert g.tones[:11] == "中仄平平" "中中仄" "中平中仄" and g.tones[-3:] == "平平仄"
    assert g.pieces[:3] == ((4, "，"), (3, "、"), (4, "。")) and g.breaks[7] is True       # 长川静、 a 读
    assert g.rhymes == (("入", (10, 21, 35, 46, 52, 58, 67, 81, 92)),)
    chars = MANJIANGHONG.translate({ord(c): None for c in PUNCT})
    assert "".join(chars[p] for p in g.rhymes[0][1]) == "歇烈月切雪灭缺血阙"
    # 岳飞's 词 against 格 1 alone breaks it at two places only, both where 柳永's example has 平 and 龙榆生's
    # 格 (15, the same pieces) marks 中: 激 (壮怀激烈, 格 中平平仄) and 靖 (靖康耻, 格 平中仄)
    r = check(MANJIANGHONG, tables, "满江红", only(tables[3], "满江红", {1}))
    assert found(r) == [("平仄", 6, 3), ("平仄", 12, 1)]
    assert r["lines"][5]["wants"] == "中平平仄" and r["lines"][11]["wants"] == "平中仄"


def test_loader_refuses_a_damaged_table_in_one_line(tmp_path):
    good = json.load(open(cipu.PATH, encoding="utf-8"))
    entry = {"names": ["测"], "kind": "单调", "ge": [{"from": "钦定词谱", "tones": "平仄平", "pieces": "1，2。",
                                                     "rhymes": [{"tone": "仄", "at": [2]}], "first": "一二三。"}]}
    assert cipu.parse({**good, "cipai": [entry]}).ge["测"][0].breaks == {1: False}
    bad = [{**good, "format": 2}, {**good, "cipai": []},
           {**good, "cipai": [{**entry, "ge": [{**entry["ge"][0], "tones": "平仄X"}]}]},
           {**good, "cipai": [{**entry, "ge": [{**entry["ge"][0], "pieces": "1，1。"}]}]},
           {**good, "cipai": [{**entry, "ge": [{**entry["ge"][0], "rhymes": [{"tone": "仄", "at": [1]}]}]}]},
           {**good, "cipai": [{**entry, "ge": [{**entry["ge"][0], "from": "别处"}]}]},
           {**good, "cipai": [entry, {**entry, "names": ["别", "测"]}]}]
    for k, raw in enumerate(bad + ["{broken"]):
        path = tmp_path / f"{k}.json"
        path.write_text(raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False), encoding="utf-8")
        with pytest.raises(UserError) as e:
            cipu.load(str(path))
        assert "\n" not in str(e.value) and "词谱" in str(e.value), k
    with pytest.raises(UserError, match="cannot read"):
        cipu.load(str(tmp_path / "missing.json"))


def test_cipu_needs_neither_torch_nor_the_corpus():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['dataUtil'] = None; from verse import cipu; "
            "t = cipu.load(); print(len(t.ge), 'torch' in sys.modules and sys.modules['torch'] is not None)")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ["816", "False"], r.stderr


def test_the_source_folder_is_never_named():
    where = "shared/" + "third_party"
    for name in ("verse/cipu.py", "verse/prosody.py", "writing/constraints.py", "scripts/build_cipu.py", "docs/cipu.md"):
        assert where not in open(os.path.join(ROOT, name), encoding="utf-8").read(), name


# ----------------------------------------------------------------------------------------------------------
# matching

def test_pieces_match_with_a_read_left_out(tables):
    table = tables[3]
    g = table.ge["满江红"][0]
    lengths = [n for n, _ in g.pieces]
    assert cipu.distance(lengths, g) == 0
    merged = [4, 7] + lengths[3:]                         # 长川静征帆夜落: the 读 left out
    assert cipu.distance(merged, g) == 0
    assert cipu.distance([11] + lengths[3:], g) == 1       # the 句 after 暮雨初收 left out too: one differs
    assert cipu.distance([4, 3, 7] + lengths[4:], g) is None    # 落 rhymes: never inside a piece (征帆夜落临岛屿)
    assert cipu.distance([4, 3, 4] + lengths[3:-1], g) is None     # fewer characters
    moved = lengths[:-3] + [5, 3, 3]                       # 3、5，3 -> 5，3，3: a break the 格 lacks (its 读 gone)
    assert cipu.distance(moved, g) == 1
    assert cipu.distance(lengths[:-3] + [3, 2, 3, 3], g) == 1       # a break inside a piece


def test_the_popular_punctuation_of_manjianghong_still_matches(tables):
    # 驾长车，踏破贺兰山缺 (3，6) as most editions print it, where 格 1 and 15 cut 5，4: 格 3 has 3，6 but its
    # tones fit 岳飞 worse than 格 15 with its two breaks moved
    r = check(MANJIANGHONG.replace("驾长车踏破，贺兰山缺", "驾长车，踏破贺兰山缺"), tables)
    assert r["form"]["cipai"] == "满江红" and r["ok"] and r["form"]["ge"]["distance"] == 2
    assert any("句读 differ" in n for n in r["notes"])


@pytest.mark.parametrize("text,name,cipai,number", [
    (MANJIANGHONG, None, "满江红", 15), (SHUIDIAO, None, "水调歌头", 9), (SHENGSHENG, None, "声声慢", 15),
    (QINGYUAN, None, "青玉案", 2), (YIJIANGNAN, "望江南", "忆江南", 1), (MANJIANGHONG, "滿江紅", "满江红", 15)])
def test_the_four_famous_ci_are_clean(text, name, cipai, number, tables):
    """Each comes out clean against the 格 it fits best: 满江红, 水调歌头 and 声声慢 against 龙榆生's 格 (his 可平可仄
    are wider than 钦定词谱's: see the test below); 青玉案 against 钦定词谱's 格 2, the 又一体 whose fourth lines
    (玉壶光转, 那人却在) do not rhyme, with 格 1's 中 (the 又一体 is printed in its example's own tones)."""
    r = check(text, tables, name)
    assert r["form"]["name"] == "词" and r["form"]["cipai"] == cipai and r["form"]["ge"]["number"] == number
    assert r["ok"], found(r)
    assert {v["rule"] for v in r["violations"]} <= {"平仄", "出韵"}


def test_against_qinding_cipu_alone(tables):
    """Against 钦定词谱's 格 only, what a 词谱 notes: 岳飞 breaks 柳永's 格 1 at 激 and 靖 (above); 苏轼's own 格 3 of
    水调歌头 marks his 句中韵 去/宇 and 合/缺, and 合 (入声 合, 第十九部) and 缺 (入声 屑, 第十八部) are two 部 in
    词林正韵: the one rhyme flagged; 李清照 and 辛弃疾 keep 格 13 and 格 2."""
    table = tables[3]
    qinding = cipu.Cipu({m: [g for g in gs if g.source == "钦定词谱"] for m, gs in table.ge.items()}, table.names,
                        {}, "", "")
    want = {MANJIANGHONG: (1, [("平仄", 6, 3), ("平仄", 12, 1)]), SHUIDIAO: (3, [("出韵", 15, 6)]),
            SHENGSHENG: (13, []), QINGYUAN: (2, [])}
    for text, (number, flagged) in want.items():
        r = check(text, tables, table=qinding)
        assert (r["form"]["ge"]["number"], found(r)) == (number, flagged)


@pytest.mark.parametrize("text,old,new,want", [
    (MANJIANGHONG, "空悲切", "空恨切", ("平仄", 11, 2)),          # 格 平平仄: 恨 仄
    (MANJIANGHONG, "匈奴血", "匈奴国", ("出韵", 19, 7)),          # 国 第十七部, the rest 第十八部
    (SHUIDIAO, "把酒问青天", "把酒问白天", ("平仄", 2, 4)),        # 格 中仄仄平平: 白 仄
    (SHUIDIAO, "千里共婵娟", "千里共婵娥", ("出韵", 19, 5)),        # 娥 第九部, the rest 第七部
    (SHENGSHENG, "冷冷清清", "冷冷清静", ("平仄", 2, 4)),          # 格 仄仄平平: 静 仄
    (SHENGSHENG, "却是旧时相识", "却是旧时相见", ("出韵", 11, 6)),  # 见 去声: the set rhymes on 入声
    (QINGYUAN, "香满路", "香满道", ("出韵", 4, 7)),               # 道 第八部, the rest 第四部
    (QINGYUAN, "凤箫声动", "凤月声动", ("平仄", 5, 2)),            # 格 中平中仄: 月 仄
])
def test_broken_versions_are_flagged_in_place(text, old, new, want, tables):
    assert old in text
    assert found(check(text.replace(old, new), tables)) == [want]


def test_a_ci_is_never_judged_by_the_rules_of_regular_verse(tables):
    # 生查子 is eight lines of five characters, ，。 in turn: read as a 五律 unless named (it rhymes on 仄)
    assert check(SHENGCHAZI, tables)["form"]["name"] == "五言律诗"
    r = check(SHENGCHAZI, tables, "生查子")
    assert r["form"]["cipai"] == "生查子" and r["pattern"] is None
    assert {v["rule"] for v in r["violations"]} <= {"平仄", "出韵"}


def test_a_named_ci_that_fits_no_ge(tables):
    r = check(MANJIANGHONG, tables, "念奴娇")
    assert r["form"]["cipai"] == "念奴娇" and [v["rule"] for v in r["violations"]] == ["格式"]
    with pytest.raises(UserError, match="did you mean 满江红"):
        check(MANJIANGHONG, tables, "满江虹")


def test_check_command_takes_a_cipai(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "check", "--no-model", *args],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
    r = run("--cipai", "江南好", "--json", YIJIANGNAN)
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["form"]["cipai"] == "忆江南" and report["form"]["ge"]["chars"] == 27
    r = run(QINGYUAN.replace("香满路", "香满道"))
    assert r.returncode == 1 and "词 · 青玉案 (格 2 of 14, 67 字, 钦定词谱)" in r.stdout
    assert "line 4, char 7 道: 出韵" in r.stdout
    r = run("--cipai", "无此牌", YIJIANGNAN)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "无此牌" in r.stderr


# ----------------------------------------------------------------------------------------------------------
# the build script, on a made-up source

def made_up_source(tmp_path):
    """Two 词牌 in couyun's layout: 测牌 with a 格 that marks 中, one cut the same way that marks none, a 入
    rhyme set with a 叶 (a negative position), and in ci_long a copy of the first; 坏牌 whose example disagrees
    with its cut."""
    src = tmp_path / "src"
    os.makedirs(src / "ci_list")
    os.makedirs(src / "ci_long")
    index = [{"idx": 0, "names": ["测牌", "又名"], "type": ["单调", 10, ["平"]]},
             {"idx": 1, "names": ["坏牌"], "type": ["单调", 2, ["平"]]}]
    a = {"ge_lyu_str": "中平平仄仄中仄仄平平", "rhyme_pos": [9], "yun_classify": {"0": [9]},
         "ci_sep": ["天边孤月白", "江上一舟行"], "origin": "天边孤月白。江上一舟行。"}
    b = {"ge_lyu_str": "平平平仄仄仄仄仄平平", "rhyme_pos": [4, 9], "yun_classify": {"0": [4, 9]},
         "ci_sep": ["山前花落尽", "水上鸟飞迟"], "origin": "山前花落尽，水上鸟飞迟。"}
    c = {"ge_lyu_str": "平仄仄仄平仄仄", "rhyme_pos": [1, 3, 6], "yun_classify": {"0": [1, -3, 6]},
         "ci_sep": ["风急　月落　人独立"], "origin": "风急，月落、人独立。"}
    bad = {"ge_lyu_str": "平平", "rhyme_pos": [1], "yun_classify": {"0": [1]}, "ci_sep": ["春风"], "origin": "春秋。"}
    for path, obj in (("ci_index.json", index), ("ci_list/cipai_0.json", [a, b, c]), ("ci_long/cipai_0_long.json", [a]),
                      ("ci_list/cipai_1.json", [bad])):
        (src / path).write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    (src / "LICENSE").write_text("MIT License\n\nCopyright (c) test\n", encoding="utf-8")
    return src


def test_the_build_script(tmp_path):
    out = tmp_path / "t" / "cipu.json"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_cipu.py"), str(made_up_source(tmp_path)),
                        "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "1 词牌, 3 格 (3 钦定词谱, 0 龙榆生); left out 1 whose parts disagree, 1 龙榆生 格 identical" in r.stderr
    table = cipu.load(str(out))
    a, b, c = table.ge["测牌"]
    assert table.names == {"测牌": "测牌", "又名": "测牌"} and table.licence.startswith("MIT License")
    assert (a.pieces, a.rhymes, a.first) == (((5, "。"), (5, "。")), (("平", (9,)),), "天边孤月白。")
    # b marks no 中: it takes a's (cut the same way), its own rhyme at 4 keeping its 仄
    assert (b.tones, b.either_from, b.rhymes) == ("中平平仄仄中仄仄平平", 1, (("平仄", (4, 9)),))
    # c: 急 落 立 all 入声 (落's position -3 is a 叶 in couyun's marking), its 、 a 读
    assert c.rhymes == (("入", (1, 3, 6)),) and c.pieces == ((2, "，"), (2, "、"), (3, "。"))
    assert "MIT License" in (tmp_path / "t" / "cipu.LICENSE").read_text(encoding="utf-8")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ci_index.json").write_text("{x", encoding="utf-8")
    for src in ("none", "bad"):                        # no such folder; a ci_index.json that is not JSON
        r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build_cipu.py"), str(tmp_path / src),
                            "--out", str(tmp_path / "x.json")], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x.json").exists()


# ----------------------------------------------------------------------------------------------------------
# generation to a 格

@pytest.fixture(scope="module")
def ci_model():
    import torch
    from training import loop
    from training import checkpoint
    path = os.path.join(ROOT, "pretrained", "ci.pt")
    model, _, itos = checkpoint.model_from_checkpoint(checkpoint.load_checkpoint(path), torch.device("cpu"))
    return model, itos


@pytest.mark.parametrize("name,number", [("如梦令", 1), ("忆江南", 2), ("十六字令", 1)])
def test_generation_keeps_every_fixed_tone(name, number, ci_model, tables):
    """--cipai NAME --tones: every position the 格 fixes holds a character of that tone (or one read both
    ways) by the table the masks use; 如梦令 and 忆江南 (the learnt patterns: 33 and 54 字, 格 1 and 2), and 十六字令
    (苍梧谣), a 词牌 only the 词谱 has, to its 格 1's own pieces."""
    import torch
    from writing import decoding
    from writing import requests
    from writing import constraints
    from config import GenConfig
    model, itos = ci_model
    gcfg = GenConfig(cipai=name, tones=True, rhyme=True, num=2, candidates=2, seed=3)
    spec = constraints.spec_from(gcfg, cipai_table())
    ge = tables[3].ge[tables[3].names[name]][number - 1]
    assert "".join(spec.ci_tones) == ge.tones
    level = requests.tables_for(itos, gcfg, True, True).tone_tables()[1]
    stoi = {w: i for i, w in enumerate(itos)}
    for poem in requests.poems_for(model, itos, gcfg, torch.device("cpu")):
        assert [n for n, _ in ci_pattern(poem)] == [n for n, _ in spec.pattern], poem
        chars = [ch for ch in poem if ch not in PUNCT]
        for ch, want in zip(chars, ge.tones):
            assert want == "中" or level[stoi[ch]] in (constraints.CI_TONE[want], 2), (poem, ch, want)


def test_generation_requests_for_a_ge():
    from writing import constraints
    from config import GenConfig
    table = cipai_table()
    spec = constraints.spec_from(GenConfig(cipai="满江红", ge=3, tones=True), table)
    assert [n for n, _ in spec.pattern][-7:-5] == [3, 6]           # 格 3's own pieces: 览遗踪，胜读史书言语
    for bad, match in ((dict(cipai="满江红", ge=40), "has 17 格"), (dict(ge=2), "give --cipai"),
                       (dict(cipai="无此牌", tones=True), "not a known")):
        with pytest.raises(UserError, match=match):
            constraints.spec_from(GenConfig(**bad), table)
