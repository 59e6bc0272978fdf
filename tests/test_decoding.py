"""decoding and poetics: constraints hold against a model that tries to break them; rhyme and tone tables."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from writing import decoding
from writing import constraints
from verse import formats
from verse import poetics
from config import GenConfig, UserError
from conftest import ROOT

SPECIALS = ["</s>", "<unk>", "<bos>", "<eos>"]
CHARS = list("，。？！；、春夏秋冬日月山水光霜乡堂长床前明疑是地上举头望低思故白云天风花人不一江")
ITOS = SPECIALS + CHARS


class FormBreaker(torch.nn.Module):
    """Logits that favour, in order: <eos>, then ？ and ，, then 一 (a repeat-prone character), then the rest."""

    def __init__(self, itos):
        super().__init__()
        self.bias = torch.zeros(len(itos))
        for w, v in {"<eos>": 9.0, "？": 8.0, "，": 7.0, "；": 6.5, "一": 6.0, "不": 5.0, "月": 4.0}.items():
            self.bias[itos.index(w)] = v

    def forward(self, tokens, state=None):
        return self.bias.expand(*tokens.shape, -1).clone(), state


def gen(**kw):
    g = GenConfig(max_gen_len=120)
    for k, v in kw.items():
        setattr(g, k, v)
    return g


def run(g, num=16, start=""):
    spec = constraints.spec_from(g)
    prefix = [ITOS.index(c) for c in start]
    return decoding.sample(FormBreaker(ITOS), ITOS, [prefix] * num, g, torch.device("cpu"),
                           torch.Generator().manual_seed(0), spec)


@pytest.mark.parametrize("temperature", [0.3, 1.0, 5.0])
@pytest.mark.parametrize("form,lines", [(5, 4), (7, 4), (5, 8), (7, 8)])
def test_form_always_holds(form, lines, temperature):
    for poem in run(gen(form=form, lines=lines, temperature=temperature)):
        assert poetics.form_of(poem) == (form, lines), poem


def test_unconstrained_breaker_does_break_the_form():
    # the check above is meaningful: without masks this model writes no valid poem
    poems = decoding.sample(FormBreaker(ITOS), ITOS, [[ITOS.index("日")]] * 8, gen(), torch.device("cpu"),
                            torch.Generator().manual_seed(0))
    assert not any(poetics.form_of(p) for p in poems)


def test_acrostic_with_question_marks_as_line_ends():
    # the breaker prefers ？ to end a line: it must still count as a line end, one line per head
    for poem in run(gen(acrostic="春夏秋冬")):
        lines = poetics.split_lines(poem)
        assert [l[0] for l in lines] == list("春夏秋冬"), poem
        assert all(l[-1] in "，。？！；" for l in lines) and lines[-1][-1] in "。？！"


def test_acrostic_with_form():
    for poem in run(gen(acrostic="山水花月", form=7)):
        assert poetics.form_of(poem) == (7, 4) and "".join(l[0] for l in poetics.split_lines(poem)) == "山水花月"


def test_start_opens_the_first_line():
    for poem in run(gen(form=5, lines=4), start="床前明"):
        assert poem.startswith("床前明") and poetics.form_of(poem) == (5, 4)


def test_rhyme_and_tones_hold():
    table = poetics.table_for(CHARS[6:])
    for poem in run(gen(form=5, lines=8, rhyme=True, tones=True, temperature=2.0)):
        assert poetics.form_of(poem) == (5, 8) and poetics.rhymes(poem, poetics.xinyun_book(table)), poem
        assert poetics.tone_agreement(poem, table) == 1.0, poem
        ends = [l[-2] for l in poetics.split_lines(poem)[1::2]]
        assert len(set(ends)) == len(ends)               # no rhyme character repeated


def test_rhyme_groups_of_hand_checked_characters():
    info = {ch: poetics.char_info(ch) for ch in "光霜乡月知日诗时春云"}
    assert info["光"] == info["霜"] == info["乡"] == ("唐", 1)
    assert info["月"][0] != "唐" and info["月"][1] == 0
    assert info["知"][0] == info["诗"][0] == info["时"][0] == "支"      # zhi shi: the buzzing -i
    assert info["日"] == ("支", 0)
    assert info["春"][0] == info["云"][0] == "文"


def test_tone_agreement_by_hand():
    # 登鹳雀楼 follows 二四六分明 with 粘 and 对 in Mandarin tones: 日(仄)山(平) 河(平)海(仄) 穷(平)里(仄) 上(仄)层(平)
    assert poetics.tone_agreement("白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", {}) == 1.0
    # 静夜思 does not: 前 and 光 ... 3 of its 8 positions break it; it is a 古绝
    assert poetics.tone_agreement("床前明月光，疑是地上霜。举头望明月，低头思故乡。", {}) == 0.75
    assert poetics.required_tone(0, 2, 0) == 0 and poetics.required_tone(1, 2, 0) == 1
    assert poetics.required_tone(2, 2, 0) == 1 and poetics.required_tone(3, 2, 0) == 0


def test_metrics_by_hand():
    poems = ["白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "白日依山尽，白日。"]   # one even line: no rhyme
    book = poetics.xinyun_book(poetics.table_for(set("".join(poems))))
    m = poetics.measure(poems, {"白日依山尽"}, {}, book, form=(5, 4))
    assert m.form_valid == 0.5 and m.rhyme_rate == 0.5
    assert m.copy_rate == 2 / 6                          # two of six lines appear in train
    assert m.distinct_1 == 20 / 27                       # 20 + 7 characters; the second poem adds no new one


def test_top_p_and_repetition_penalty():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = decoding.nucleus(logits.clone(), 0.7)
    assert torch.isfinite(kept).tolist() == [[True, True, False, False]]
    tables = constraints.Masks(ITOS)
    g = gen(greedy=True, repetition_penalty=100.0)
    logits = FormBreaker(ITOS).bias.clone().view(1, -1)
    first = decoding.pick_next(logits, tables, g, None, None, [[]])
    second = decoding.pick_next(logits, tables, g, None, None, [[int(first)]])
    assert ITOS[int(first)] == "<eos>" and ITOS[int(second)] == "？"
    spared = decoding.pick_next(logits, tables, g, None, None, [[int(first)]], spare=[True])
    assert spared == first                               # a spared row (对仗's answering line): no penalty


def test_answering_lines_are_the_middle_couplets_second_lines():
    """Automaton.answering (what the pair bonus and --pair-spare act on) holds on exactly the 颔联's and 颈联's
    second lines (0-based 3 and 5) of a 律诗, on no line of a 绝句."""
    assert formats.answering_lines(8) == (3, 5) and formats.answering_lines(4) == ()
    spec = constraints.spec_from(gen(form=5, lines=8))
    auto = constraints.Automaton(spec, constraints.Masks(ITOS))
    assert answering_by_line(auto, 8) == [False, False, False, True, False, True, False, False]
    auto.spec = constraints.spec_from(gen(form=5, lines=4))
    assert answering_by_line(auto, 4) == [False] * 4


def answering_by_line(auto, n):
    out = []
    for k in range(n):
        auto.line = k
        out.append(auto.answering())
    return out


@pytest.mark.parametrize("kw,msg", [
    (dict(rhyme=True), "--rhyme"), (dict(tones=True), "--tones"), (dict(form=6), "--form"),
    (dict(form=5, lines=3), "--lines"), (dict(lines=4), "--lines"),
    (dict(form=5, lines=4, acrostic="春夏秋冬日"), "acrostic"),
])
def test_bad_combinations(kw, msg):
    with pytest.raises(UserError, match=msg):
        constraints.spec_from(gen(**kw))


def test_start_that_breaks_the_form_is_an_error():
    with pytest.raises(UserError, match="does not fit"):
        run(gen(form=5, lines=4), start="床前明月光疑")


def test_cli_bad_combinations_exit_2(tmp_path):
    from tests_helpers import tiny_checkpoint
    ckpt = tiny_checkpoint(tmp_path)
    for args in (["--rhyme", "--start", "日"], ["--acrostic", "春龘"], ["--form", "5", "--lines", "4", "--acrostic", "春夏"],
                 ["--form", "5", "--start", "日", "--acrostic", "月"]):
        r = subprocess.run([sys.executable, "main.py", "generate", "--ckpt", ckpt, *args], cwd=ROOT,
                           capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)


def test_a_constraint_nothing_fits_is_a_user_error_and_ends_only_its_row():
    """A row whose mask is empty (here: tables that let no character be written, as a hand-edited table could)
    ends with a UserError naming the constraint; the other rows of the batch go on to whole poems."""
    g = gen(form=5, lines=4)
    tables = constraints.Masks(ITOS)
    starved = constraints.Spec(chars=5, lines=4)
    tables_none = constraints.Masks(ITOS)
    tables_none.ideograph = tables_none.ideograph & False            # no character may be written at all
    batch = decoding.Batch(FormBreaker(ITOS), g, torch.device("cpu"), torch.Generator().manual_seed(0))
    ok, bad = batch.add([[], []], [constraints.spec_from(g), starved], [tables, tables_none], [[], []])
    while batch.rows:
        batch.step()
    assert ok.error is None and poetics.form_of(decoding.dataUtil.decode(ok.out, ITOS)) == (5, 4)
    assert isinstance(bad.error, UserError) and "fits --form 5 --lines 4 at line 1, position 1" in str(bad.error)
    with pytest.raises(UserError, match="no character of this vocabulary fits --form 5"):
        decoding.sample_scored(FormBreaker(ITOS), ITOS, [[]], g, torch.device("cpu"), None, starved, (),
                               tables_none)


@pytest.mark.parametrize("bonus", [0.0, 5.0])
def test_pair_bonus_favours_the_answer_at_the_aligned_position(bonus):
    """With 月 given as the answer to 一, a 律诗's 颔联 and 颈联 second lines hold 月 exactly where the line above
    holds 一 at the same position (never one off) and 月 is new to the poem or doubles where the line above
    doubles; no other line holds it; without the bonus no line does."""
    g = gen(form=5, lines=8, greedy=True, pair_bonus=bonus)
    yi, yue = ITOS.index("一"), ITOS.index("月")
    answers = {yi: (np.array([yue]), np.array([1.0], np.float32))}
    texts, _ = decoding.sample_scored(FormBreaker(ITOS), ITOS, [[]], g, torch.device("cpu"),
                                      torch.Generator().manual_seed(0), constraints.spec_from(g), answers=answers)
    lines = [line[:-1] for line in poetics.split_lines(texts[0])]
    assert poetics.form_of(texts[0]) == (5, 8) and "一" in lines[2] + lines[4]
    before = ""
    for k, line in enumerate(lines):
        want = []
        for j in range(5):
            doubles = j > 0 and lines[k - 1][j - 1] == lines[k - 1][j] and line[j - 1] == "月"
            want.append(bonus > 0 and k in (3, 5) and lines[k - 1][j] == "一"
                        and ("月" not in before + line[:j] or doubles))
        assert [ch == "月" for ch in line] == want, (k, lines)
        before += line
    assert "月" in "".join(lines) or not bonus


def test_the_mask_log_names_each_row_and_the_cut_on_a_rhyme_already_used():
    """The form study's mask log: one entry per rhyme slot of each row (its index in starts), the probability the
    mask cut there, and the part of it on the poem's earlier rhyme characters, by hand from FormBreaker's fixed
    distribution: nothing at the first rhyme, the first rhyme character's probability at the second."""
    g = gen(form=5, lines=4, rhyme=True)
    log = []
    texts, _ = decoding.sample_scored(FormBreaker(ITOS), ITOS, [[]] * 3, g, torch.device("cpu"),
                                      torch.Generator().manual_seed(0), constraints.spec_from(g), mask_log=log)
    p = torch.softmax(FormBreaker(ITOS).bias, -1)
    for k, text in enumerate(texts):
        rhyme = [(cut, reuse) for at, cut, row, reuse in log if at and row == k]
        ends = [line[-2] for line in poetics.split_lines(text)]          # each line's last character
        assert len(rhyme) == 2 and rhyme[0][1] == 0.0, (text, rhyme)
        assert rhyme[1][1] == pytest.approx(float(p[ITOS.index(ends[1])]), rel=1e-5)
        assert all(cut >= reuse for cut, reuse in rhyme)
    assert {row for _, _, row, _ in log} == {0, 1, 2}
