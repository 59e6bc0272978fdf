"""宋词 by 词牌: patterns learnt from examples, and generation that keeps a 词牌's pattern at any temperature."""
import json
import os
import subprocess
import sys

import pytest
import torch

import dataUtil
from writing import decoding
from writing import constraints
from verse import poetics
from config import UserError
from conftest import ROOT
from test_decoding import CHARS, ITOS, FormBreaker, gen
from verse.text import ci_pattern
from verse.tables import format_cipai, load_cipai_table, load_tone_table
from verse.build import build_cipai_table

# three 浣溪沙 follow 7。7。7。7，7。7。; a fourth breaks it; two 如梦令 are too few for min_examples 3
CI = [{"rhythmic": "浣溪沙", "paragraphs": ["一样婵娟别样清。", "眼明初识董双成。", "香风随步过帘旌。",
                                          "笑捧玉觞频劝客，浣溪沙里转新声。", "花间侧听有流莺。"]},
      {"rhythmic": "浣溪沙", "paragraphs": ["春日春风春水明。", "春山春树又春声。", "春花春草满春城。",
                                          "春去春来春又晚，春云春雨总关情。", "春愁春恨一时生。"]},
      {"rhythmic": "浣溪沙", "paragraphs": ["山下兰芽短浸溪。", "松间沙路净无泥。", "萧萧暮雨子规啼。",
                                          "谁道人生无再少，门前流水尚能西。", "休将白发唱黄鸡。"]},
      {"rhythmic": "浣溪沙", "paragraphs": ["山下兰芽短浸溪，松间沙路净无泥。"]},
      {"rhythmic": "如梦令", "paragraphs": ["昨夜雨疏风骤。"]}, {"rhythmic": "如梦令", "paragraphs": ["□□。"]}] + \
     [{"rhythmic": "失调名", "paragraphs": ["昨夜雨疏风骤。"]}] * 3       # "tune name lost": never a 词牌


def ci_file(tmp_path):
    os.makedirs(tmp_path / "songci", exist_ok=True)
    path = tmp_path / "songci" / "ci.song.0.json"
    path.write_text(json.dumps(CI, ensure_ascii=False), encoding="utf-8")
    return [str(path)]


def test_patterns_from_examples(tmp_path):
    table = build_cipai_table(ci_file(tmp_path), min_examples=3)
    assert list(table) == ["浣溪沙"]
    entry = table["浣溪沙"]
    assert entry["lines"] == [[7, "。"], [7, "。"], [7, "。"], [7, "，"], [7, "。"], [7, "。"]]
    assert entry["examples"] == 4 and entry["share"] == 0.75 and entry["stanza"] == 3
    # the three that follow it rhyme on lines 1 2 3 5 6 (清成旌声莺, 明声城情生: 庚; 溪泥啼西鸡: 齐) and never on
    # line 4 (客 晚 少): every pair of rhyming ends agrees in 3 of 3 examples
    assert entry["rhymes"] == [{"lines": [0, 1, 2, 4, 5], "tones": ["平"] * 5, "share": 1.0}]
    assert ci_pattern("□□。") is None and ci_pattern("昨夜雨疏风骤。") == ((6, "。"),)
    assert format_cipai("浣溪沙", entry) == ("浣溪沙  7。7。7。 / 7，7。7。  rhymes 1 2 3 5 6 平  "
                                                   "(4 examples, 75.0% follow it exactly)")
    xjy = {**entry, "rhymes": [{"lines": [1, 2, 3], "tones": ["平", "平", "仄"]}, {"lines": [0, 4], "tones": ["仄"] * 2}]}
    assert "  rhymes 2 3 4仄 平 | 1 5 仄  (" in format_cipai("x", xjy)


PATTERNS = {"短": {"lines": [[2, "，"], [3, "。"], [4, "？"], [1, "。"]], "share": 1.0, "examples": 50, "stanza": 0,
                   "rhymes": []},
            "长": {"lines": [[7, "。"]] * 3 + [[5, "，"], [5, "。"]] * 4, "share": 1.0, "examples": 50, "stanza": 0,
                   "rhymes": []},
            "顿": {"lines": [[3, "、"], [4, "。"], [3, "、"], [5, "，"], [3, "。"]], "share": 1.0, "examples": 50,
                   "stanza": 0, "rhymes": []}}                  # lines that end in 、, as 满江红's do


def test_rhyme_sets_by_hand():
    # 菩萨蛮-like: lines 1-2 rhyme on 仄, 3-4 on 平, in another group; a third example breaks lines 1-2
    texts = ["山上，地望。明风，灯声。", "天静，人冷。花沙，家茶。", "日月，水火。天前，年边。"]
    table = poetics.table_for(set("".join(texts)))
    book = poetics.xinyun_book(table)
    sets = poetics.rhyme_sets(texts, table, book)
    assert [s["lines"] for s in sets] == [[0, 1], [2, 3]]
    assert sets[0]["tones"] == ["仄", "仄"] and sets[1]["tones"] == ["平", "平"]
    assert sets[0]["share"] == round(2 / 3, 3) and sets[1]["share"] == 1.0
    assert poetics.ci_rhymes(texts[0], sets, book) and not poetics.ci_rhymes(texts[2], sets, book)
    assert not poetics.ci_rhymes("山上，地上。", sets, book)           # too few lines


RHYMED = {"韵": {"lines": [[2, "，"], [3, "。"], [2, "，"], [3, "。"]], "share": 1.0, "examples": 50, "stanza": 0,
                 "rhymes": [{"lines": [1, 3], "tones": ["平", "仄"], "share": 0.9},
                            {"lines": [0, 2], "tones": ["平", "平"], "share": 0.9}]},
          "无": {**PATTERNS["短"], "rhymes": []}}


@pytest.mark.parametrize("temperature", [0.3, 1.0, 5.0])
def test_cipai_rhyme_holds_with_mixed_tones(temperature):
    book = poetics.xinyun_book(poetics.table_for(CHARS[6:]))
    for rhyme in (True, False):
        g = gen(cipai="韵", rhyme=rhyme, temperature=temperature)
        poems = decoding.sample(FormBreaker(ITOS), ITOS, [[]] * 12, g, torch.device("cpu"),
                                torch.Generator().manual_seed(0), constraints.spec_from(g, RHYMED))
        ok = [poetics.ci_rhymes(p, RHYMED["韵"]["rhymes"], book) for p in poems]
        assert all(ok) if rhyme else not any(ok), poems      # the breaker alone never rhymes
        assert all(ci_pattern(p) == ((2, "，"), (3, "。"), (2, "，"), (3, "。")) for p in poems)
    with pytest.raises(UserError, match="no rhyme positions"):
        constraints.spec_from(gen(cipai="无", rhyme=True), RHYMED)


@pytest.mark.parametrize("temperature", [0.3, 1.0, 5.0])
@pytest.mark.parametrize("name", ["短", "长", "顿"])
def test_the_pattern_holds_at_any_temperature(name, temperature):
    g = gen(cipai=name, temperature=temperature)
    spec = constraints.spec_from(g, PATTERNS)
    poems = decoding.sample(FormBreaker(ITOS), ITOS, [[]] * 12, g, torch.device("cpu"),
                            torch.Generator().manual_seed(0), spec)
    want = tuple(tuple(line) for line in PATTERNS[name]["lines"])
    assert all(ci_pattern(p) == want for p in poems), poems


def test_bad_cipai_requests():
    with pytest.raises(UserError, match="did you mean 短"):
        constraints.spec_from(gen(cipai="短x"), PATTERNS)
    with pytest.raises(UserError, match="fixes the form"):
        constraints.spec_from(gen(cipai="短", form=5), PATTERNS)


def test_list_and_generate_from_the_prepared_table(tmp_path):
    from tests_helpers import tiny_checkpoint
    os.makedirs(tmp_path / "data" / "processed")
    table = {"短": {**PATTERNS["短"], "lines": [[2, "，"], [3, "。"], [4, "，"], [1, "。"]]}}   # marks of TINY_ITOS
    (tmp_path / "data" / "processed" / "cipai.json").write_text(json.dumps(table, ensure_ascii=False),
                                                               encoding="utf-8")
    ckpt = tiny_checkpoint(tmp_path)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    listed = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "generate", "--list-cipai"],
                            cwd=tmp_path, capture_output=True, text=True, env=env)
    assert listed.returncode == 0 and listed.stdout.startswith("短  2，3。4，1。"), listed.stderr
    r = subprocess.run([sys.executable, os.path.join(ROOT, "main.py"), "generate", "--ckpt", ckpt, "--cipai", "短",
                        "--num", "3"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    poems = [p.replace("\n", "") for p in r.stdout.strip().split("\n\n")]
    assert len(poems) == 3 and all(ci_pattern(p) == ((2, "，"), (3, "。"), (4, "，"), (1, "。"))
                                   for p in poems), poems


@pytest.mark.parametrize("text", ["{broken", "[1, 2]", '{"浣溪沙": {"lines": "x"}}',
                                  '{"浣溪沙": {"lines": [[7, "x"]], "share": 1, "examples": 3, "stanza": 0}}',
                                  '{"浣溪沙": {"lines": [[-1, "。"]], "share": 1, "examples": 3, "stanza": 0}}',
                                  '{"浣溪沙": {"lines": [[7, "。"]], "share": 1, "examples": 3, "stanza": 0, '
                                  '"rhymes": [{"lines": [0, 5], "tones": ["平", "平"]}]}}',
                                  '{"浣溪沙": {"lines": [[7, "。"]], "share": 1, "examples": 3, "stanza": 0, '
                                  '"rhymes": [{"lines": [0], "tones": ["上"]}]}}'])
def test_a_damaged_table_is_refused_in_one_line(tmp_path, text):
    os.makedirs(tmp_path / "processed")
    (tmp_path / "processed" / "cipai.json").write_text(text, encoding="utf-8")
    (tmp_path / "processed" / "tones.json").write_text(text, encoding="utf-8")
    assert load_cipai_table(str(tmp_path / "processed" / "cipai.json")) is None
    assert load_tone_table(str(tmp_path / "processed" / "tones.json")) is None


def test_the_ci_corpus_is_prepared_apart_from_the_tang_one(data_cfg):
    tang = dataUtil.load_corpus(data_cfg, verbose=False)
    data_cfg.data.genre = "ci"
    ci = dataUtil.load_corpus(data_cfg, verbose=False)
    texts = [ci.decode(p) for split in (ci.train, ci.dev, ci.test) for p in split]
    rules = ci.stats["rules"]                                # the fixture: 43 real 词, 3 with a missing glyph,
    assert rules["dropped_missing_glyph"] == 3                # two over the 160-character cap, one repeated
    assert rules["dropped_too_long"] == 2 and rules["dropped_duplicate"] == 1
    assert len(texts) == 43 - 3 - 2 - 1 and max(map(len, texts)) <= 160
    assert os.path.exists(os.path.join(data_cfg.data.data_dir, "processed", "ci", "corpus.npz"))
    assert ci.itos != tang.itos                              # a vocabulary of its own
    data_cfg.data.genre = "tang"
    again = dataUtil.load_corpus(data_cfg, verbose=False)   # the Tang cache is untouched
    assert again.itos == tang.itos and len(again.train) == len(tang.train)


@pytest.mark.parametrize("format_inputs", [False, True])
def test_ci_metrics_judge_pattern_and_rhyme(data_cfg, tmp_path, capsys, monkeypatch, format_inputs):
    import main
    from config import ModelConfig
    from model import PoetryLM
    data_cfg.data.genre = "ci"
    corpus = dataUtil.load_corpus(data_cfg, verbose=False)
    torch.manual_seed(0)
    model = PoetryLM(ModelConfig(vocab_size=len(corpus.itos), embed_dim=8, hidden_size=12, num_layers=1,
                                 format_inputs=format_inputs))
    table = build_cipai_table(ci_file(tmp_path), min_examples=3)           # 浣溪沙, rhyme sets learnt
    os.makedirs(os.path.join(data_cfg.data.data_dir, "processed"), exist_ok=True)
    with open(os.path.join(data_cfg.data.data_dir, "processed", "cipai.json"), "w", encoding="utf-8") as f:
        json.dump(table, f, ensure_ascii=False)
    monkeypatch.setattr(main, "CI_MODES", [("", False), ("浣溪沙", False), ("浣溪沙", True)])
    monkeypatch.setattr(main, "CI_UNMASKED", ("浣溪沙",))
    monkeypatch.setattr(main, "SAMPLE_STARTS", "春风")
    main.print_ci_metrics(model, corpus, 3, 0, torch.device("cpu"), data_dir=data_cfg.data.data_dir)
    rows = {line.split(" | ")[0]: line.split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| --cipai") or line.startswith("| unconstrained")}
    assert rows["| --cipai 浣溪沙"][1:3] == ["6", "100.0%"]                   # 3 per start, the pattern always
    assert rows["| --cipai 浣溪沙 --rhyme"][1:4] == ["6", "100.0%", "100.0%"]  # ... and its rhyme sets rhyme
    assert rows["| --cipai 浣溪沙"][3] != "100.0%"                            # an untrained model does not rhyme
    unmasked = rows.get("| --cipai 浣溪沙 --no-masks")           # a format model's own form: untrained, none
    assert unmasked[1:3] == ["6", "0.0%"] if format_inputs else unmasked is None


def test_a_table_written_before_rhyme_sets_still_loads(tmp_path):
    path = tmp_path / "cipai.json"
    path.write_text('{"浣溪沙": {"lines": [[7, "。"]], "share": 1, "examples": 3, "stanza": 0}}', encoding="utf-8")
    table = load_cipai_table(str(path))
    assert table["浣溪沙"]["rhymes"] == []
    with pytest.raises(UserError, match="no rhyme positions"):
        constraints.spec_from(gen(cipai="浣溪沙", rhyme=True), table)
