"""dataUtil: cleaning rules against hand-written expectations, drop counts, split, vocabulary, cache, export."""
import hashlib
import json
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

import dataUtil
from config import Config, UserError
from conftest import FIXTURE_RAW, ROOT
from verse.text import format_poem, standardise, to_simplified

# fixture poem id -> its cleaned, simplified text, written by hand from the raw text
EXPECTED = {
    # two （一作「…」） variant readings
    "58a66aff-d6a6-4e67-b96b-a9887ee4b7ea": "逻人横鸟道，江祖出鱼梁。水急客舟疾，山花拂面香。",
    # a note nested in a note that is never closed: it runs to the end
    "e43e3f24-d8e4-4f73-b656-528d2ce3677e": "慧眼近空心，非关髑髅孔。对面说不识，饶你母姓董。",
    # a long note with 〖1〗 markers inside, followed by a stray 。
    "026ded1c-0b0c-40bb-8f00-8ef1d6819b1e": "鹤立蛇行势未休，五天文字鬼神愁。儒门弟子无人识，穿耳胡僧笑点头。",
    # [爽]: a restored character keeps its character
    "26bda590-69ee-4667-88e4-07e217c0ebaf": "爽节在重九，物华新雨余。清秋黄叶下，菊散金潭初。万实行就稔，百工欣所如。"
                                            "欢心畅遐迩，殊俗同车书。至化自敦睦，佳辰宜宴胥。锵锵间丝竹，济济罗簪裾。"
                                            "此乐匪足耽，此诚期永孚。",
    # 《长恨曲》 titles keep their characters
    "f129bf81-4ca2-41c1-912e-4348dfb7956e": "缀玉联珠六十年，谁教冥路作诗仙。浮云不系名居易，造化无为字乐天。"
                                            "童子解吟长恨曲，胡儿能唱琵琶篇。文章已满行人耳，一度思卿一怆然。",
    # 「…」 quotation across paragraphs, closing on a stray 。
    "2394591e-ff44-4c8f-bc7a-12c3d8dea07f": "勒马问樵夫，前村酒有无？杜康家在此，一任君来沽。",
    # ？ inside a line
    "86952cb3-b622-4398-a56a-01dd39f6c6ec": "芳辰追逸趣，禁苑信多奇。桥形通汉上，峰势接云危。烟霞交隐映，花鸟自参差。"
                                            "何如肆辙迹？万里赏瑶池。",
    # half-width , . and an ASCII (…) note (the fixture's one edited poem)
    "fixture-halfwidth": "秦川雄帝宅，函谷壮皇居。绮殿千寻起，离宫百雉余。连甍遥接汉，飞观迥凌虚。云日隐层阙，风烟出绮疏。",  # 疎 -> 疏: a variant t2s keeps
}
DROPPED = {
    "527b27aa-af81-41ed-b7f4-31c4eb7bb57f": "dropped_missing_glyph",     # 冰□已鏤津
    "5d3d7e2a-a3e2-49a1-8715-885be099d975": "dropped_composed_glyph",    # {臨/手}
    "fixture-empty": "dropped_empty",                                   # no paragraphs
}
N_PLAIN = 19   # untouched real poems in the fixture


def fixture_poems():
    poems = []
    for name in ("poet.tang.0.json", "poet.tang.1000.json"):
        poems += json.load(open(os.path.join(FIXTURE_RAW, name), encoding="utf-8"))
    return {p["id"]: "".join(p["paragraphs"]) for p in poems}


def clean_one(text):
    counts = Counter()
    out = dataUtil.clean_poem(text, counts)
    return standardise(to_simplified([out])[0]) if out is not None else None, counts


@pytest.mark.parametrize("pid", sorted(EXPECTED))
def test_tricky_poem_cleans_to_hand_written_text(pid):
    assert clean_one(fixture_poems()[pid])[0] == EXPECTED[pid]


@pytest.mark.parametrize("pid", sorted(DROPPED))
def test_dropped_poems_name_their_rule(pid):
    out, counts = clean_one(fixture_poems()[pid])
    assert out is None and counts[DROPPED[pid]] == 1


def test_rules_in_isolation():
    c = Counter()
    assert dataUtil.clean_poem("春眠（一作「春」（又作「夏」））不觉晓。", c) == "春眠不觉晓。"
    assert dataUtil.clean_poem("Ｂ乱后碧井废，时清瑶殿深。", c) is None
    assert dataUtil.clean_poem("白日依山尽，黄河入海流。（注〖1〗）", c) == "白日依山尽，黄河入海流。"
    assert dataUtil.clean_poem("空山⿰木新雨后。", c) is None
    assert c == Counter({"note_removed": 2, "dropped_other_symbol": 1, "dropped_composed_glyph": 1})


def test_no_convertible_traditional_character_survives():
    # 乾 stays 乾 inside 乾坤 for t2s, and becomes 干 once its phrase neighbour changed; we reach a fixed point
    import opencc
    t2s = opencc.OpenCC("t2s").convert
    out = to_simplified(["乾坤萬里眼，時序百年心。", "徵君去不還，於此見乾愁。"])
    assert all(t2s(t) == t for t in out)
    assert out[0] == "乾坤万里眼，时序百年心。"


def test_prepare_counts_and_texts(data_cfg):
    data_cfg.data.dev_frac = data_cfg.data.test_frac = 0.0      # all in train: every character decodes
    corpus = dataUtil.prepare(data_cfg, verbose=False)
    s = corpus.stats
    assert s["poems_read"] == 34
    r = s["rules"]
    assert (r["dropped_missing_glyph"], r["dropped_composed_glyph"], r["dropped_other_symbol"]) == (1, 1, 1)
    assert (r["dropped_empty"], r["dropped_too_long"], r["dropped_too_short"], r["dropped_duplicate"]) == (1, 1, 1, 1)
    # notes: 李白, 無住, 唐明皇, the duplicate, the half-width poem
    assert r["note_removed"] == 5 and r["marker_removed"] == 0 and r["halfwidth_mapped"] == 1
    kept = N_PLAIN + len(EXPECTED)
    assert sum(s["kept"].values()) == kept == 27
    texts = [corpus.decode(p) for p in corpus.train]
    assert set(EXPECTED.values()) <= set(texts) and len(set(texts)) == kept
    assert r["variant_chars_changed"] >= 1 and r["variant_poems_changed"] >= 1       # 疎 at least
    keep = dataUtil.prepare(data_cfg_with(data_cfg, variant_chars="keep"), verbose=False)
    assert "疎" in {c for p in keep.train for c in keep.decode(p)} and keep.stats["rules"]["variant_chars_changed"] == 0


def data_cfg_with(cfg, **data):
    import copy
    c = copy.deepcopy(cfg)
    for k, v in data.items():
        setattr(c.data, k, v)
    return c


@pytest.mark.parametrize("text,want", [
    ("鴈飞猨啸廻", "雁飞猿啸回"),          # variants t2s leaves, each with one standard form
    ("沈沈夜", "沉沉夜"),                  # doubled 沈 is always 沉沉 ...
    ("沈约诗", "沈约诗"),                  # ... the surname stays
    ("神祇", "神祇"),                      # a character of its own (VARIANT_KEEP)
    ("勅", "勅"),                          # several standard candidates (敕 来 徕): left as it is
    ("春风，雁。", "春风，雁。"),           # standard text and punctuation unchanged
])
def test_standardise_maps_variants_to_their_standard_form(text, want):
    assert standardise(text) == want and len(want) == len(text)


def test_the_split_is_keyed_on_the_text_before_standardising(data_cfg):
    variant = "鴈飞秋水远，猨啸夜山空。"
    splits = dataUtil.filter_split([variant], data_cfg, Counter())
    unit = dataUtil.stable_unit(variant)                    # the hash of the unstandardised text decides
    cut = 1 - data_cfg.data.dev_frac - data_cfg.data.test_frac
    want = "train" if unit < cut else "dev" if unit < 1 - data_cfg.data.test_frac else "test"
    assert splits[want] == ["雁飞秋水远，猿啸夜山空。"]


def test_split_is_a_pure_function_of_the_text(data_cfg):
    text = EXPECTED["fixture-halfwidth"]
    h = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")
    assert dataUtil.stable_unit(text) == h / 2 ** 64
    texts = list(EXPECTED.values()) * 2
    a = dataUtil.filter_split(texts, data_cfg, Counter())
    b = dataUtil.filter_split(texts[::-1], data_cfg, Counter())
    assert {k: set(v) for k, v in a.items()} == {k: set(v) for k, v in b.items()}
    assert sum(map(len, a.values())) == len(EXPECTED)


def test_vocabulary_is_built_from_train_only(data_cfg):
    corpus = dataUtil.prepare(data_cfg, verbose=False)
    train_chars = {c for p in corpus.train for c in corpus.decode(p)}
    assert set(corpus.itos) == train_chars | set(dataUtil.SPECIALS)
    assert corpus.itos[:2] == ["</s>", "<unk>"]
    unk = corpus.itos.index("<unk>")
    assert any(unk in p for p in corpus.dev + corpus.test)
    assert not any(unk in p for p in corpus.train)
    # the fastNLP Vocabulary agrees with the saved list
    assert [corpus.vocab.to_word(i) for i in range(len(corpus.vocab))] == corpus.itos


def test_min_freq_drops_rare_characters(data_cfg):
    data_cfg.data.min_freq = 3
    corpus = dataUtil.prepare(data_cfg, verbose=False)
    counts = Counter(c for p in corpus.train for c in corpus.decode(p))
    chars = set(corpus.itos) - set(dataUtil.SPECIALS)
    assert chars == {c for c, n in counts.items() if n >= 3}


def test_encode_decode_round_trip_and_layout(data_cfg):
    corpus = dataUtil.prepare(data_cfg, verbose=False)
    bos, eos = corpus.itos.index("<bos>"), corpus.itos.index("<eos>")
    for p in corpus.train:
        assert p[0] == bos and p[-1] == eos and p.dtype == np.int32
        ids, _ = dataUtil.encode([corpus.decode(p)], corpus.stoi)
        assert ids.tolist() == p.tolist()


def test_cache_is_reused_and_rebuilt_on_change(data_cfg, monkeypatch):
    first = dataUtil.load_corpus(data_cfg, verbose=False)
    monkeypatch.setattr(dataUtil, "prepare", lambda *a, **k: pytest.fail("cache should have been reused"))
    again = dataUtil.load_corpus(data_cfg, verbose=False)
    assert again.itos == first.itos and [p.tolist() for p in again.train] == [p.tolist() for p in first.train]
    monkeypatch.undo()
    data_cfg.data.min_freq = 2
    smaller = dataUtil.load_corpus(data_cfg, verbose=False)
    assert len(smaller.itos) < len(first.itos)


def test_length_batches_group_similar_lengths():
    lengths = [9, 31, 12, 30, 10, 29, 11, 32]
    fixed = dataUtil.length_batches(lengths, 3)
    assert [b.tolist() for b in fixed] == [[0, 4, 6], [2, 5, 3], [1, 7]]
    shuffled = dataUtil.length_batches(lengths, 3, np.random.default_rng(0))
    assert sorted(map(sorted, (b.tolist() for b in shuffled))) == sorted(map(sorted, (b.tolist() for b in fixed)))


def test_pad_batch_pads_after_the_poem():
    inputs, targets = dataUtil.pad_batch([np.array([2, 5, 6, 3]), np.array([2, 7, 3])], pad_id=0)
    assert inputs.tolist() == [[2, 2], [5, 7], [6, 3]]
    assert targets.tolist() == [[5, 7], [6, 3], [3, 0]]


def test_corrupt_json_is_a_user_error(tmp_path, data_cfg):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "poet.tang.0.json").write_text('[{"paragraphs": ["白日依山尽，', encoding="utf-8")
    data_cfg.data.raw_dir = str(raw)
    with pytest.raises(UserError, match="poet.tang.0.json"):
        dataUtil.prepare(data_cfg, verbose=False)


def test_missing_raw_dir_is_a_user_error(tmp_path, data_cfg):
    data_cfg.data.raw_dir = str(tmp_path / "nowhere")
    with pytest.raises(UserError, match="--raw-dir"):
        dataUtil.load_corpus(data_cfg, verbose=False)


def test_export_npz_layout(data_cfg, tmp_path):
    corpus = dataUtil.prepare(data_cfg, verbose=False)
    kept, skipped = dataUtil.export_npz(corpus, str(tmp_path / "tang.npz"), "all", width=40)
    z = np.load(tmp_path / "tang.npz", allow_pickle=True)
    data, word2ix, ix2word = z["data"], z["word2ix"].item(), z["ix2word"].item()
    fits = [p for p in corpus.train + corpus.dev + corpus.test if len(p) <= 40]
    assert data.shape == (kept, 40) and kept == len(fits) and skipped == 27 - kept
    row, poem = data[0], fits[0]
    assert ix2word[int(row[-1])] == "<EOP>" and ix2word[int(row[-len(poem)])] == "<START>"
    assert (row[:-len(poem)] == word2ix["</s>"]).all()
    assert "".join(ix2word[int(i)] for i in row[-len(poem) + 1:-1]) == corpus.decode(poem)


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_cli_prepare_prints_stats_and_bad_flag_exits_2(data_cfg):
    r = run_cli("dataUtil.py", "prepare", "--raw-dir", FIXTURE_RAW, "--data-dir", data_cfg.data.data_dir)
    assert r.returncode == 0 and "poems read          34" in r.stdout
    stats = json.load(open(os.path.join(data_cfg.data.data_dir, "processed", "stats.json"), encoding="utf-8"))
    assert stats["poems_read"] == 34
    bad = run_cli("dataUtil.py", "prepare", "--min-freqq", "3")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--min-freqq" in bad.stderr
    missing = run_cli("dataUtil.py", "prepare", "--raw-dir", "/nonexistent/raw")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr


def test_format_poem_breaks_after_each_sentence_pair():
    assert format_poem("白日依山尽，黄河入海流。欲穷千里目？更上一层楼") == "白日依山尽，黄河入海流。\n欲穷千里目？\n更上一层楼"


# ----------------------------------------------------------------------------------------------------------
# faults: a damaged cache, a read-only folder, an incomplete raw folder, a killed fetch

@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_cache_is_rebuilt(data_cfg, damage, capsys):
    first = dataUtil.load_corpus(data_cfg, verbose=False)
    path = os.path.join(dataUtil.processed_dir(data_cfg), "corpus.npz")
    blob = bytearray(open(path, "rb").read())
    if damage == "truncate":
        blob = blob[:len(blob) // 2]
    else:
        blob[len(blob) // 2] ^= 0xFF                      # a flipped byte: zip's CRC check fails
    open(path, "wb").write(bytes(blob))
    again = dataUtil.load_corpus(data_cfg, verbose=False)
    assert again.itos == first.itos and all(np.array_equal(a, b) for a, b in zip(again.train, first.train))
    assert dataUtil.read_cache(path, dataUtil.cache_key(data_cfg, dataUtil.ensure_raw(data_cfg))) is not None


def test_a_read_only_data_folder_still_gives_the_corpus(data_cfg, monkeypatch, capsys):
    def refuse(*args, **kw):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(np, "savez", refuse)
    corpus = dataUtil.load_corpus(data_cfg, verbose=False)
    assert len(corpus.train) > 0 and "could not write the corpus cache" in capsys.readouterr().err


def fake_fetch(dest):
    os.makedirs(os.path.join(dest, dataUtil.STRAINS), exist_ok=True)
    for name in dataUtil.EXPECTED_RAW:
        with open(os.path.join(dest, name), "w", encoding="utf-8") as f:
            json.dump([{"id": "x", "paragraphs": ["白日依山尽，黄河入海流。"]}], f, ensure_ascii=False)
        with open(os.path.join(dest, dataUtil.STRAINS, name), "w", encoding="utf-8") as f:
            json.dump([{"id": "x", "strains": ["仄仄平平仄，平平仄仄平。"]}], f, ensure_ascii=False)
    os.makedirs(os.path.join(dest, dataUtil.SONGCI), exist_ok=True)
    for name in dataUtil.EXPECTED_CI:
        with open(os.path.join(dest, dataUtil.SONGCI, name), "w", encoding="utf-8") as f:
            json.dump([{"rhythmic": "浣溪沙", "paragraphs": ["一样婵娟别样清。"]}], f, ensure_ascii=False)


def test_an_incomplete_raw_folder_is_fetched_again_and_stale_partials_go(tmp_path, monkeypatch):
    cfg = Config()
    cfg.data.data_dir = str(tmp_path)
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in sorted(dataUtil.EXPECTED_RAW)[:-1]:            # one file missing, as after "delete it"
        (raw / name).write_text("[]", encoding="utf-8")
    (tmp_path / ".raw-partial-old").mkdir()                   # a killed fetch's leftover
    monkeypatch.setattr(dataUtil.shutil, "which", lambda name: None)
    monkeypatch.setattr(dataUtil, "fetch_github", fake_fetch)
    files = dataUtil.ensure_raw(cfg)
    assert {os.path.basename(f) for f in files} == dataUtil.EXPECTED_RAW
    assert "白日" in open(files[0], encoding="utf-8").read()   # the fresh, complete copy replaced the old one
    assert not list(tmp_path.glob(".raw-partial-*"))


def test_a_carried_cache_serves_without_the_raw_files(data_cfg, monkeypatch):
    first = dataUtil.load_corpus(data_cfg, verbose=False)           # prepared from the fixture's raw files
    data_cfg.data.raw_dir = ""                                       # data/raw does not exist here

    def no_network(raw_dir):
        raise AssertionError("fetched although the prepared cache was there")
    monkeypatch.setattr(dataUtil, "fetch_raw", no_network)
    again = dataUtil.load_corpus(data_cfg, verbose=False)
    assert again.itos == first.itos and len(again.train) == len(first.train)
    data_cfg.data.min_freq = 2                                       # other settings: the cache does not serve
    with pytest.raises(AssertionError, match="fetched"):
        dataUtil.load_corpus(data_cfg, verbose=False)
