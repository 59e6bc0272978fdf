"""Keywords: every word appears verbatim under every other constraint, at slots drawn by the model's
probabilities; impossible requests are refused."""
import pytest
import torch

from writing import decoding
from writing import requests
from writing import keywords
from verse import poetics
from config import UserError
from test_decoding import FormBreaker, gen
from verse.tables import classical_table

CHARS = list("，。？！；、春夏秋冬日月山水光霜乡堂长床前明疑是地上举头望低思故白云天风花人不一江楼台来回杯哀")
ITOS = ["</s>", "<unk>", "<bos>", "<eos>"] + CHARS


def poems(**kw):
    g = gen(num=6, candidates=3, **kw)
    return [c.text for c in requests.iter_poems(FormBreaker(ITOS), ITOS, g, torch.device("cpu"))]


@pytest.mark.parametrize("temperature", [0.5, 3.0])
@pytest.mark.parametrize("settings", [dict(form=5, lines=4), dict(form=7, lines=8, rhyme=True, tones=True),
                                      dict(form=5, lines=4, acrostic="春夏秋冬", rhyme=True)])
def test_every_keyword_appears_under_every_constraint(settings, temperature):
    for poem in poems(start="" if "acrostic" in settings else "日", keywords="江 明月 花", temperature=temperature,
                      **settings):
        assert all(w in poem for w in ("江", "明月", "花")), poem
        assert poetics.form_of(poem) == (settings["form"], settings["lines"]), poem
        if "acrostic" in settings:
            assert [l[0] for l in poetics.split_lines(poem)] == list("春夏秋冬"), poem


def test_rhyme_and_tones_hold_with_keywords():
    table = poetics.table_for(CHARS[6:], classical_table(gen()))         # the tones generation used
    book = poetics.xinyun_book(table)
    for poem in poems(start="日", keywords="楼台 月", form=5, lines=4, rhyme=True, tones=True, rhyme_system="xinyun"):
        assert "楼台" in poem and "月" in poem and poetics.rhymes(poem, book), poem
        assert poetics.tone_agreement(poem, table) == 1.0, poem


def layout(widths=(5, 5, 5, 5), rhyme_lines=(), occupied=None, fits=lambda *a: True):
    return keywords.Layout(list(widths), fits, {l: None for l in rhyme_lines}, occupied or {})


def test_slots_follow_the_probabilities():
    gen_ = torch.Generator().manual_seed(0)
    prob = lambda line, pos, ch: 1e6 if (line, pos) == (2, 3) else 1.0        # noqa: E731
    picks = [keywords.place(["明月"], layout(), 0, prob, gen_) for _ in range(20)]
    assert all(p == {(2, 3): "明", (2, 4): "月"} for p in picks)
    flat = [next(iter(keywords.place(["花"], layout(), 0, lambda *a: 1.0, gen_))) for _ in range(200)]
    assert len(set(flat)) > 10                                                  # uniform when the model is


def test_slot_rules():
    lay = layout(occupied={(0, 0): "日"}, rhyme_lines=(1, 3))
    slots = lay.slots("江", 0, set(), set(), False)
    assert (0, 0) not in slots and (1, 4) in slots                             # the start's cell is taken
    assert (1, 4) not in lay.slots("江", 0, set(), set(), True)                # one keyword on a rhyme at most
    assert all(line != 2 for line, _ in lay.slots("江", 0, set(), {2}, False))  # a line of its own while free
    assert lay.slots("日光", 0, set(), set(), False)[0] == (0, 0)              # agrees with the start: fits
    assert keywords.place(["春", "夏", "秋"], layout(widths=(5, 5)), 0, lambda *a: 1.0,
                          torch.Generator().manual_seed(0)) is not None         # shares lines when it must


def test_keywords_land_where_the_histogram_says():
    assert keywords.positions("白日依山尽，黄河入海流。", ["河", "山尽", "雪"]) == [(1, 1), (0, 3), None]
    assert keywords.histogram([(1, 1), (0, 3), None], 2, 5).sum() == 2


@pytest.mark.parametrize("words,msg", [("春 夏 秋 冬 花", "give 1 to 4"), ("春夏秋冬", "1 or 2 characters"),
                                       ("abc", "not a Chinese"), ("雪", "not in the vocabulary")])
def test_bad_keywords_are_refused(words, msg):
    with pytest.raises(UserError, match=msg):
        poems(start="日", keywords=words, form=5, lines=4)


def test_keywords_need_a_form():
    with pytest.raises(UserError, match="needs a form"):
        poems(start="日", keywords="春", free=True)
