"""Poems worth keeping: the re-ranking score's terms by hand, the form sampler's distribution, poem k the same
whatever --num, never three of one character in a row, and the discriminator on cases with a known answer."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from writing import decoding
from writing import requests
from writing import constraints
from verse import poetics
from training import loop
from training import checkpoint
from config import Config, GenConfig
from conftest import ROOT
from test_decoding import ITOS, FormBreaker
from tests_helpers import TINY_ITOS, tiny_checkpoint


# ----------------------------------------------------------------------------------------------------------
# the score's terms, by hand

@pytest.mark.parametrize("text,terms", [
    ("白日依山尽，黄河入海流。", {"repeated_lines": 0, "doubled": 0, "runs": 0, "opening": 0, "repeats": 0, "pairs": 0}),
    ("萧萧落木下，滚滚长江来。", {"repeated_lines": 0, "doubled": 0, "runs": 0, "opening": 0, "repeats": 0,
                                 "pairs": 2}),                                                # reduplication
    ("月明寒月满，花落水花流。", {"repeated_lines": 0, "doubled": 2, "runs": 0, "opening": 0, "repeats": 2,
                                 "pairs": 0}),                                                # 月…月, 花…花
    ("凄凄凄夜雨，一声声不歇。", {"repeated_lines": 0, "doubled": 0, "runs": 1, "opening": 1, "repeats": 0,
                                 "pairs": 3}),                                                # 凄 three times
    ("春风吹柳绿，春风吹柳绿。春风吹柳绿，花开。", {"repeated_lines": 2, "doubled": 0, "runs": 0, "opening": 1,
                                                 "repeats": 10, "pairs": 0}),
    ("山山山山水，水。", {"repeated_lines": 0, "doubled": 0, "runs": 2, "opening": 2, "repeats": 1, "pairs": 3}),
    ("月出月落月，月明。", {"repeated_lines": 0, "doubled": 2, "runs": 0, "opening": 2, "repeats": 3, "pairs": 0}),
    ("江流天地外，山色有无中。郡邑浮前浦，波澜动远空。", {"repeated_lines": 0, "doubled": 0, "runs": 0, "opening": 0,
                                                     "repeats": 0, "pairs": 0}),
    ("明月松间照，清泉石上流。竹喧归浣女，莲动下渔舟。明月", {"repeated_lines": 0, "doubled": 0, "runs": 0,
                                                     "opening": 0, "repeats": 2, "pairs": 0}),   # 明月 again
])
def test_rerank_terms_by_hand(text, terms):
    got = poetics.rerank_terms(text, 2.5)
    assert got == {"nll": 2.5, "unparallel": 0.0, **terms}
    w = poetics.RERANK_WEIGHTS
    assert poetics.rerank_score(got) == pytest.approx(2.5 + sum(w[k] * v for k, v in terms.items()))


def test_the_best_candidate_has_the_lowest_score():
    texts = ["月明寒月满，花落水花流。", "白日依山尽，黄河入海流。", "凄凄凄夜雨，一声声不歇。"]
    best = requests.best_of(texts, np.array([2.0, 2.4, 1.9]))
    # scores: 2.0 + 2 doubled = 4.0; 2.4; 1.9 + 1 run = 2.9
    assert best.text == "白日依山尽，黄河入海流。" and best.score == pytest.approx(2.4)
    assert [c.text for c in best.others] == [texts[2], texts[0]]


def test_the_weight_on_doublings_decides_between_a_doubling_and_a_less_fluent_line():
    texts = ["萧萧落木下，滚滚长江来。", "无边落木下，不尽长江来。"]        # two doublings, none
    nlls = np.array([2.0, 2.3])
    for w, want in [(0.0, texts[0]), (0.1, texts[0]), (0.25, texts[1])]:   # 2.0 + 2w against 2.3 + 0
        weights = {**poetics.RERANK_WEIGHTS, "pairs": w}
        best = requests.best_of(texts, nlls, weights=weights)
        assert best.text == want and best.score == pytest.approx(min(2.0 + 2 * w, 2.3))


# ----------------------------------------------------------------------------------------------------------
# the forms of real poems, and the form sampler

def test_form_counts_by_hand():
    texts = ["白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",          # 五言绝句
             "床前明月光，疑是地上霜。",                                  # two lines
             "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
             "君不见黄河之水天上来，奔流到海不复回。"]                   # no regular form
    assert poetics.form_counts(texts) == {(5, 4): 2, (5, 2): 1, None: 1}


def test_the_form_sampler_draws_forms_in_proportion_to_real_poems():
    forms = [(5, 8, 600), (7, 4, 300), (5, 12, 100)]
    g = torch.Generator().manual_seed(0)
    draws = [requests.sampled_form(constraints.Spec(), forms, g) for _ in range(3000)]
    shares = {(c, n): sum((d.chars, d.lines) == (c, n) for d in draws) / 3000 for c, n, _ in forms}
    for c, n, k in forms:                                     # within 4 standard errors of the expected share
        p = k / 1000
        assert abs(shares[c, n] - p) <= 4 * (p * (1 - p) / 3000) ** 0.5, shares


def test_default_poems_take_a_real_form_and_free_ones_do_not_have_to(tmp_path, monkeypatch):
    model, _, itos = checkpoint.model_from_checkpoint(checkpoint.load_checkpoint(tiny_checkpoint(tmp_path)), "cpu")
    monkeypatch.setattr(requests, "default_forms", lambda spec, start, tables, cache=None: [(5, 4, 1), (7, 8, 1)])
    g = GenConfig(start=TINY_ITOS[10], num=6, candidates=2)
    poems = requests.poems_for(model, itos, g, "cpu")
    assert all(poetics.form_of(p) in {(5, 4), (7, 8)} for p in poems), poems
    g.free, g.max_gen_len = True, 30
    free = requests.poems_for(model, itos, g, "cpu")
    assert not all(poetics.form_of(p) in {(5, 4), (7, 8)} for p in free)   # a random model rarely keeps one


# ----------------------------------------------------------------------------------------------------------
# poem k is poem k, whatever --num

def test_poem_k_is_the_same_whatever_num(tmp_path):
    model, _, itos = checkpoint.model_from_checkpoint(checkpoint.load_checkpoint(tiny_checkpoint(tmp_path)), "cpu")
    g = GenConfig(start=TINY_ITOS[10], candidates=3, temperature=1.0)
    runs = {}
    for num in (1, 2, 5):
        g.num = num
        runs[num] = requests.poems_for(model, itos, g, "cpu")
    assert runs[1][0] == runs[2][0] == runs[5][0] and runs[2][1] == runs[5][1]
    assert len(set(runs[5])) > 1                              # and the poems differ from one another


def test_numpy_generate_poem_k_is_the_same_whatever_num(tmp_path):
    ckpt = tiny_checkpoint(tmp_path)
    outs = [subprocess.run([sys.executable, "MyLSTM_np.py", "generate", "--ckpt", ckpt, "--start", TINY_ITOS[10],
                            "--num", str(n), "--temperature", "1.0", "--max-gen-len", "12"], cwd=ROOT,
                           capture_output=True, text=True, timeout=120,
                           env={**os.environ, "PYTHONWARNINGS": "ignore"}).stdout.strip().split("\n\n")
            for n in (1, 3)]
    assert outs[0][0] == outs[1][0] and len(outs[1]) == 3


# ----------------------------------------------------------------------------------------------------------
# defects a reader sees at once

class Stutter(torch.nn.Module):
    """Logits that always favour 一 by far: a model that would write 一一一一…"""

    def forward(self, tokens, state=None):
        logits = torch.zeros(*tokens.shape, len(ITOS))
        logits[..., ITOS.index("一")] = 20.0
        return logits, state


def test_never_three_of_one_character_in_a_row():
    g = GenConfig(max_gen_len=40, temperature=1.0)
    poems = decoding.sample(Stutter(), ITOS, [[]] * 8, g, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert all("一一" in p and "一一一" not in p for p in poems), poems


def test_an_acrostic_head_may_still_repeat_when_nothing_else_fits():
    g = GenConfig(max_gen_len=40, form=5, lines=4, acrostic="一一一一")
    spec = constraints.spec_from(g)
    poems = decoding.sample(FormBreaker(ITOS), ITOS, [[]] * 4, g, torch.device("cpu"),
                            torch.Generator().manual_seed(0), spec)
    assert all(poetics.form_of(p) == (5, 4) for p in poems)


# ----------------------------------------------------------------------------------------------------------
# the discriminator, on cases with a known answer

def bigram_texts(rng, n, T, chars):
    out = []
    for _ in range(n):
        c = rng.integers(len(chars))
        s = chars[c]
        for _ in range(23):
            c = rng.choice(len(chars), p=T[c])
            s += chars[c]
        out.append(s)
    return out


def test_the_discriminator_cannot_tell_one_distribution_from_itself_and_tells_shuffled_text():
    rng = np.random.default_rng(0)
    chars = [chr(0x4e00 + i) for i in range(30)]
    T = rng.dirichlet(np.full(30, 0.1), size=30)
    a, b = bigram_texts(rng, 200, T, chars), bigram_texts(rng, 200, T, chars)
    same = poetics.discriminator_accuracy(a, b)
    assert 0.35 <= same <= 0.65, same                       # indistinguishable: about 50%
    shuffled = ["".join(rng.permutation(list(t))) for t in b]   # same characters, bigrams destroyed
    assert poetics.discriminator_accuracy(a, shuffled) >= 0.95


def test_the_discriminator_needs_enough_of_each():
    assert np.isnan(poetics.discriminator_accuracy(["春风"], ["秋月"] * 10))


def test_a_start_only_draws_forms_it_fits():
    tables = constraints.Masks(ITOS)
    forms = [(5, 4, 1), (7, 4, 1)]
    ids = [ITOS.index(c) for c in "春夏秋冬日月山"]                    # seven characters: only 七言 fits
    import unittest.mock as mock
    with mock.patch("verse.tables.prepared_or_shipped", lambda *a: forms):
        assert requests.default_forms(constraints.Spec(), ids, tables) == [(7, 4, 1)]
        five = [ITOS.index(c) for c in "春夏秋冬日，月"]              # a five-character first line: only 五言
        assert requests.default_forms(constraints.Spec(), five, tables) == [(5, 4, 1)]
        assert requests.default_forms(constraints.Spec(), [ITOS.index(c) for c in "春夏秋冬日月山水"], tables) is None
