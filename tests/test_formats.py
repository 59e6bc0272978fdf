"""Format inputs: aligned with the position predicted (a shift by one fails), read the same in training and in
generation, unknown when dropped; models without them load and run unchanged."""
import dataclasses

import numpy as np
import pytest
import torch

import dataUtil
from writing import decoding
from writing import constraints
from writing import requests
from verse import formats
from verse import poetics
from config import Config, GenConfig, UserError
from model import PoetryLM
from verse.tables import pairs_table, rhyme_group_of, verse_tables

ZAOFA = "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"   # 李白《早发白帝城》, 平起 首句入韵
DENGAO = ("风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。"
          "万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。")
COL = formats.COLUMN


@pytest.fixture(scope="module")
def reader():
    tones, pingshui, cilin, _ = verse_tables(dataUtil.processed_dir(Config()))
    return formats.Formatter(tones, pingshui, cilin), pingshui


def test_rows_describe_the_position_predicted(reader):
    read, book = reader
    fmt = read(ZAOFA)
    feats, _ = formats.features(ZAOFA, fmt)
    assert feats.shape == (len(ZAOFA) + 1, len(formats.GROUPS))
    # row t predicts ZAOFA[t]: row 0 (input <bos>) the first character, 5 characters left (+1)
    assert list(feats[:8, COL["left"]]) == [8, 7, 6, 5, 4, 3, 2, 1]    # 朝辞白帝彩云间 then the mark
    assert feats[7, COL["tone"]] == 0 and feats[8, COL["line"]] == 2   # row 7 predicts ，; row 8 line 2's 千
    slots = [t for t in range(len(ZAOFA)) if feats[t, COL["slot"]] == 2]
    assert [ZAOFA[t] for t in slots] == ["间", "还", "山"]            # 首句入韵: 间 rhymes with 还 山
    assert book.groups[feats[0, COL["group"]] - 1] == "上平声十五删"
    assert feats[-1, COL["line"]] == formats.EOS_LINE and feats[-1, COL["slot"]] == 0
    # tone targets: positions 2, 4, 6 of line 1 (辞 平, 帝 仄, 云 平), line 3 ends 仄 (住), 4 the rhyme 平
    assert feats[1, COL["tone"]] == formats.TONE_VALUE[poetics.LEVEL]
    assert feats[3, COL["tone"]] == formats.TONE_VALUE[poetics.OBLIQUE]
    assert feats[5, COL["tone"]] == formats.TONE_VALUE[poetics.LEVEL]
    assert feats[ZAOFA.index("住"), COL["tone"]] == formats.TONE_VALUE[poetics.OBLIQUE]
    assert feats[0, COL["tone"]] == 3                                  # position 1: either


def test_a_shift_by_one_is_caught(reader):
    read, _ = reader
    feats, _ = formats.features(ZAOFA, read(ZAOFA))
    shifted = np.roll(feats, 1, axis=0)
    slots = [ZAOFA[t] for t in range(len(ZAOFA)) if shifted[t, COL["slot"]] == 2]
    assert slots != ["间", "还", "山"]
    assert list(shifted[:8, COL["left"]]) != [8, 7, 6, 5, 4, 3, 2, 1]


def test_pair_is_the_aligned_character_of_the_line_answered(reader):
    read, _ = reader
    fmt = read(DENGAO)
    stoi = {ch: i + 10 for i, ch in enumerate(dict.fromkeys(DENGAO))}
    _, pair = formats.features(DENGAO, fmt, stoi)
    lines = poetics.split_lines(DENGAO)
    start4 = sum(map(len, lines[:3]))                                 # line 4 (不尽长江滚滚来) answers line 3
    assert [pair[start4 + j] for j in range(7)] == [stoi[c] for c in "无边落木萧萧下"]
    assert pair[start4 + 7] == 0 and not pair[:start4].any()          # its mark, and lines 1-3, answer nothing
    start6 = sum(map(len, lines[:5]))
    assert [pair[start6 + j] for j in range(7)] == [stoi[c] for c in "万里悲秋常作客"]
    assert not pair[sum(map(len, lines[:7])):].any()                  # 尾联: free


def test_dropped_groups_become_unknown():
    feats = np.ones((4, len(formats.GROUPS)), np.int64)
    pair = np.ones(4, np.int64)
    f, p = formats.drop_groups(feats, pair, 1.0, np.random.default_rng(0))
    assert not f.any() and not p.any()
    f, p = formats.drop_groups(feats, pair, 0.0, np.random.default_rng(0))
    assert (f == 1).all() and (p == 1).all()


def tiny(format_inputs=True):
    cfg = Config()
    cfg.model.vocab_size, cfg.model.embed_dim, cfg.model.hidden_size = 30, 8, 8
    cfg.model.format_inputs = format_inputs
    torch.manual_seed(0)
    return PoetryLM(cfg.model).eval()


def test_unknown_features_are_the_characters_alone():
    m = tiny()
    tokens = torch.randint(0, 30, (6, 3))
    zeros = torch.zeros(6, 3, len(formats.GROUPS), dtype=torch.long)
    a, _ = m(tokens)
    b, _ = m(tokens, None, zeros, torch.zeros(6, 3, dtype=torch.long))
    assert torch.equal(a, b)
    known = zeros.clone()
    known[..., COL["left"]] = 3
    c, _ = m(tokens, None, known, torch.zeros(6, 3, dtype=torch.long))
    assert not torch.allclose(a, c)


def test_old_checkpoints_have_no_format_inputs():
    cfg = Config.from_dict({"model": {"vocab_size": 30}})            # a config written before the setting
    assert cfg.model.format_inputs is False
    old = PoetryLM(cfg.model)
    assert not any(k.startswith("formats.") for k in old.state_dict())
    assert Config().model.format_inputs is False                       # the seed's model; the recipe turns them on


class Recorder(torch.nn.Module):
    """A stand-in model with format inputs that records the features it is given, step by step."""

    def __init__(self, itos):
        super().__init__()
        self.cfg = dataclasses.replace(Config().model, format_inputs=True)
        self.V, self.seen = len(itos), []

    def forward(self, tokens, state=None, feats=None, pair=None):
        self.seen.append((tokens.clone(), None if feats is None else feats.clone(), pair))
        return torch.zeros(*tokens.shape, self.V), state


def test_generation_tells_what_training_reads(reader):
    read, book = reader
    text = ZAOFA
    itos = dataUtil.SPECIALS + tuple(dict.fromkeys(text))
    itos = list(itos)
    fmt = read(text)
    tables = constraints.Masks(itos)
    spec = constraints.Spec(chars=7, lines=4, first_tone=poetics.LEVEL, group=fmt.rhyme_lines[1] - 1,
                         rhyme_first=True)
    assert constraints.format_for(spec) == fmt
    m = Recorder(itos)
    ids = [itos.index(c) for c in text]
    batch = decoding.Batch(m, GenConfig(), "cpu")
    batch.add([ids], [spec], [tables], [[]], given=True)
    while batch.rows:
        batch.step()
    feats = torch.cat([f for _, f, _ in m.seen if f is not None])[:, 0].numpy()       # (steps, K)
    want, _ = formats.features(text, fmt)
    assert np.array_equal(feats[:len(want)], want)


def test_rhyme_group_spellings(reader):
    _, book = reader
    g = book.groups.index("上平声十灰")
    for name in ("十灰", "灰", "上平声十灰"):
        assert rhyme_group_of(name, book) == g
    with pytest.raises(UserError):
        rhyme_group_of("十一", book)
    with pytest.raises(UserError):
        rhyme_group_of("董", book)                             # 上声: not a level group


MANJIANGHONG = ("怒发冲冠，凭栏处、潇潇雨歇。抬望眼、仰天长啸，壮怀激烈。三十功名尘与土，八千里路云和月。莫等闲、白了少年头，"
                "空悲切。靖康耻，犹未雪。臣子恨，何时灭。驾长车踏破，贺兰山缺。壮志饥餐胡虏肉，笑谈渴饮匈奴血。待从头、"
                "收拾旧山河，朝天阙。")


def test_a_ci_is_told_its_ge():
    from verse import cipu
    tones, pingshui, cilin, _ = verse_tables(dataUtil.processed_dir(Config()))
    read = formats.Formatter(tones, pingshui, cilin, cipu=cipu.load())
    fmt = read(MANJIANGHONG)
    feats, _ = formats.features(MANJIANGHONG, fmt)
    slots = [MANJIANGHONG[t] for t in range(len(MANJIANGHONG)) if feats[t, COL["slot"]] == 2]
    assert slots == list("歇烈月切雪灭缺血阙")                          # the 格's rhymes, at the characters
    assert cilin.groups[feats[0, COL["group"]] - 1 - formats.CILIN_BASE] == "第十八部"
    chars = [c for c in MANJIANGHONG if c not in poetics.LINE_ENDS + "、"]
    told = [feats[t, COL["tone"]] for t in range(len(MANJIANGHONG)) if MANJIANGHONG[t] in chars
            and MANJIANGHONG[t] not in poetics.LINE_ENDS + "、"]
    ge = next(g for g in read.ges[fmt.lengths] if formats.ge_format(g, MANJIANGHONG, cilin) == fmt)
    assert told == [formats.WANT_VALUE[t] for t in ge.tones]         # every character's 平/仄/中, in order


def test_a_poem_is_sometimes_read_with_no_format_input():
    feats = np.ones((4, len(formats.GROUPS)), np.int64)
    pair = np.ones(4, np.int64)
    rng = np.random.default_rng(0)
    drawn = [formats.drop_groups(feats, pair, 0.0, rng, 0.5) for _ in range(200)]
    none = sum(not f.any() and not p.any() for f, p in drawn)
    assert 70 < none < 130 and all(f.all() or not f.any() for f, _ in drawn)      # all or nothing at rate 0


def test_pair_input_and_pair_reranking_can_be_turned_off(reader):
    read, _ = reader
    spec = constraints.Spec(chars=7, lines=8, first_tone=poetics.LEVEL, group=0)
    assert constraints.format_for(spec).paired == (3, 5)                         # lines 4 and 6 answer 3 and 5
    assert constraints.format_for(dataclasses.replace(spec, pair_input=False)).paired == ()
    itos = list(dataUtil.SPECIALS + tuple(dict.fromkeys(DENGAO)))
    for pair_input, pair_rerank, bonus in ((True, True, 0.3), (False, False, 0.0), (False, False, 0.3)):
        g = GenConfig(start="风", form=7, lines=8, pair_input=pair_input, pair_rerank=pair_rerank, pair_bonus=bonus)
        req = requests.make_request(itos, g, told=True)
        assert req.spec.pair_input is pair_input and (req.pairs is not None) is pair_rerank
        assert (req.answers is not None) is (bonus > 0)
        if bonus:               # every pair of the table within the vocabulary, by id, with its lift
            table = pairs_table()
            want = {xy: v for xy, v in table.pairs.items() if xy[0] in itos and xy[1] in itos}
            got = {itos[x] + itos[y]: float(v) for x, (ys, vs) in req.answers.items() for y, v in zip(ys, vs)}
            assert want and got == pytest.approx(want)
