"""Classical tones: the table learnt from the corpus's 平仄 labels, and --tone-system in judging and decoding."""
import json
import os

import pytest
import torch

import dataUtil
from writing import decoding
from writing import constraints
from verse import poetics
from conftest import FIXTURE_RAW, ROOT
from verse import tables
from test_decoding import CHARS, ITOS, FormBreaker, gen
from verse.tables import classical_table, load_tone_table
from verse.build import build_tone_table


def write_poems(folder, poems):
    """poems: [(id, text, labels)] -> folder/poet.tang.0.json and folder/strains/poet.tang.0.json."""
    os.makedirs(os.path.join(folder, "strains"), exist_ok=True)
    with open(os.path.join(folder, "poet.tang.0.json"), "w", encoding="utf-8") as f:
        json.dump([{"id": i, "paragraphs": [t]} for i, t, _ in poems], f, ensure_ascii=False)
    with open(os.path.join(folder, "strains", "poet.tang.0.json"), "w", encoding="utf-8") as f:
        json.dump([{"id": i, "strains": [s]} for i, _, s in poems], f, ensure_ascii=False)
    return dataUtil.raw_files(folder), dataUtil.raw_files(os.path.join(folder, "strains"))


def test_the_table_by_hand(tmp_path):
    poems = [(f"a{k}", "看國看山，", "平仄平平，") for k in range(3)]          # 看 平 x6; 國 (traditional) 仄 x3
    poems += [("b", "看國山水。", "仄平平仄。")]                                # 看 仄 x1 (1 of 7), 國 平 x1 (1 of 4)
    poems += [("c", "水看，", "平仄，"), ("d", "水看。", "仄仄。")]               # 看 仄 x2 more: 3 of 9 -> both
    poems += [("e", "風風。", "平平平。")]                                     # labels do not align: skipped
    table, counts, aligned = build_tone_table(*write_poems(tmp_path, poems))
    assert aligned == 6
    assert counts["看"] == [6, 3] and table["看"] == "both"                    # 3 / 9 >= 10%
    assert counts["国"] == [1, 3] and table["国"] == "both"                    # carried through t2s; 1 / 4
    assert counts["山"] == [4, 0] and table["山"] == "平"
    assert counts["水"] == [1, 2] and table["水"] == "both"
    assert "风" not in counts and "風" not in counts


def test_majority_below_the_share_and_too_few_labels(tmp_path):
    poems = [(f"a{k}", "国石", "仄仄") for k in range(19)] + [("b", "国", "平")]   # 国 1 平 of 20: 5% -> 仄
    table, counts, _ = build_tone_table(*write_poems(tmp_path, poems[:-1] + [("b", "国石", "平○")]))
    assert counts["国"] == [1, 19] and table["国"] == "仄" and table["石"] == "仄"
    table, counts, _ = build_tone_table(*write_poems(tmp_path, [("a", "国石", "仄仄"), ("b", "国", "仄")]))
    assert counts["国"] == [0, 2] and "国" not in table                        # under TONE_MIN_LABELS


def test_the_fixture_corpus_gives_the_known_characters(data_cfg):
    dataUtil.load_corpus(data_cfg, verbose=False)                             # prepare writes tones.json
    table = load_tone_table(os.path.join(dataUtil.processed_dir(data_cfg), "tones.json"))
    assert table["白"] == "仄" and table["一"] == "仄" and table["风"] == "平" and table["人"] == "平"
    assert poetics.char_info("白")[1] == poetics.LEVEL and poetics.char_info("一")[1] == poetics.LEVEL  # Mandarin


def test_levels_from_either_system():
    classical = {"国": "仄", "看": "both"}
    both = poetics.table_for(["国", "看", "山"], classical)
    mandarin = poetics.table_for(["国", "看", "山"])
    assert both["国"][1] == poetics.OBLIQUE and mandarin["国"][1] == poetics.LEVEL       # 入声 guó
    assert both["看"][1] == poetics.BOTH and both["山"] == mandarin["山"]                # fallback to Mandarin
    assert both["国"][0] == mandarin["国"][0]                                            # groups stay 中华新韵


def test_tone_agreement_counts_both_as_either():
    table = {"甲": (None, poetics.LEVEL), "乙": (None, poetics.OBLIQUE), "丙": (None, poetics.BOTH)}
    assert poetics.tone_agreement("甲甲甲乙甲，甲乙甲甲甲。", table) == 1.0
    assert poetics.tone_agreement("甲甲甲乙甲，甲乙甲丙甲。", table) == 1.0
    assert poetics.tone_agreement("甲甲甲乙甲，甲乙甲乙甲。", table) == 0.75
    assert poetics.tone_agreement("甲丙甲乙甲，甲乙甲甲甲。", table) == 1.0              # first tone from position 4


def test_tones_mask_follows_the_classical_table():
    classical = {c: "仄" for c in "白一不国"} | {c: "平" for c in "春秋明天风花人江"} | {"思": "both"}
    tables = constraints.Masks(ITOS, classical)
    g = gen(form=5, lines=4, tones=True, temperature=2.0)
    poems = decoding.sample(FormBreaker(ITOS), ITOS, [[]] * 24, g, torch.device("cpu"),
                            torch.Generator().manual_seed(0), constraints.spec_from(g), tables=tables)
    judged = poetics.table_for(CHARS[6:], classical)
    assert all(poetics.tone_agreement(p, judged) == 1.0 for p in poems), poems
    mandarin = poetics.table_for(CHARS[6:])
    assert any(poetics.tone_agreement(p, mandarin) < 1.0 for p in poems)    # the two systems disagree here


def test_the_table_comes_from_the_prepared_corpus_or_the_shipped_one(tmp_path, capsys, monkeypatch):
    g = gen(tone_system="mandarin")
    assert classical_table(g, str(tmp_path)) is None
    g.tone_system = "classical"
    os.makedirs(tmp_path / "processed")
    (tmp_path / "processed" / "tones.json").write_text(json.dumps({"table": {"国": "仄"}}), encoding="utf-8")
    assert classical_table(g, str(tmp_path)) == {"国": "仄"}
    shipped = load_tone_table(os.path.join(ROOT, "pretrained", "tones.json"))
    assert shipped and classical_table(g, str(tmp_path / "none")) == shipped     # no prepared corpus: the shipped
    monkeypatch.setattr(tables, "ROOT", str(tmp_path / "bare"))                  # a clone without pretrained/
    assert classical_table(g, str(tmp_path / "none")) is None
    assert "using Mandarin tones" in capsys.readouterr().err


def test_a_start_read_both_ways_at_position_2_fixes_the_tone_at_position_4():
    classical = {c: "仄" for c in "白一不国"} | {c: "平" for c in "秋明天风花人江"} | {"思": "both", "春": "平"}
    tables = constraints.Masks(ITOS, classical)
    g = gen(form=5, lines=4, tones=True, temperature=2.0)
    start = [ITOS.index("春"), ITOS.index("思")]
    poems = decoding.sample(FormBreaker(ITOS), ITOS, [start] * 16, g, torch.device("cpu"),
                            torch.Generator().manual_seed(1), constraints.spec_from(g), tables=tables)
    judged = poetics.table_for(CHARS[6:], classical)
    assert all(p.startswith("春思") and poetics.tone_agreement(p, judged) == 1.0 for p in poems), poems
