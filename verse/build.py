"""The verse tables built from the prepared corpus (what `python dataUtil.py prepare` writes beside it, into
data/processed/): classical tones, the rhyme books, the forms of real poems, the 词牌, the 对仗 pairs. The corpus
hands in its files and train poems; nothing here imports it (verse/tables.py reads the tables back).
"""
import os
import sys
from collections import Counter

from common import fileio
from verse import poetics, rhymebook
from common.fileio import read_records
from verse.tables import load_tone_table, verse_tables
from verse.text import CLEAN_POEM, PUNCT, ci_pattern, convert_chars, standardise, to_simplified


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


def write_tone_table(folder, files, labels, train_texts, usage, verbose=True):
    """data/processed/tones.json: each character's classical tones, the rhyme book's readings first
    (poetics.book_readings: a reading the poets never put in a key slot of the train poems dropped), the
    corpus's 平仄 labels (raw/strains) for the characters the book lacks. Returns the dropped readings
    {character: [tone, ...]}, or None when there are no labels or the file cannot be written."""
    books = rhyme_books(train_texts, usage)
    if not labels or not books:
        return None
    corpus_table, counts, aligned = build_tone_table(files, labels)
    book = rhymebook.book_from("pingshui", books["pingshui"])
    single = {ch: ts.pop() for ch, e in book.entries.items() if len(ts := {t for _, t in e}) == 1}
    lines = [[l[:-1] for l in poetics.split_lines(t)] for t in train_texts]
    slots = poetics.key_slots(lines, single.get)
    table, dropped = poetics.book_readings(book, corpus_table, slots)
    path = os.path.join(folder, "tones.json")
    try:
        fileio.write_json(path, {"source": "the 平水韵 readings (rhymes.json), the poets' key slots, the corpus's labels",
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


def write_rhyme_table(folder, train_texts, usage=None, dropped=None, verbose=True):
    """data/processed/rhymes.json (rhyme_books); returns its path, or None (with a warning)."""
    path = os.path.join(folder, "rhymes.json")
    books = rhyme_books(train_texts, usage, dropped)
    try:
        if books is None:
            return None
        fileio.write_json(path, books)
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


def write_forms_table(folder, train_texts):
    """data/processed/forms.json: how many train poems have each regular form (5/7 characters, an even number
    of lines) and how many have another shape."""
    counts = poetics.form_counts(train_texts)
    forms = sorted([[c, n, k] for (c, n), k in ((f, k) for f, k in counts.items() if f is not None)])
    try:
        fileio.write_json(os.path.join(folder, "forms.json"), {"forms": forms, "other": counts.get(None, 0),
                                                              "formats": format_counts(folder, train_texts)})
    except OSError as e:
        print(f"warning: could not write forms.json ({e.strerror})", file=sys.stderr)


def format_counts(folder, train_texts):
    """{"chars,lines": {"first": [仄起, 平起], "first_rhymes": [no, yes], "groups": {平水韵 group index: poems}}}
    over the regular train poems whose tone pattern and rhyme are known (formats.format_of): what a default
    poem's format is drawn from."""
    from verse import formats
    tones, pingshui, _, _ = verse_tables(folder)
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


def write_duizhang_table(folder, train_texts, verbose=True):
    """data/processed/duizhang.json: which characters answer which in real 律诗's middle couplets (verse/duizhang.py)."""
    from verse import duizhang
    path = os.path.join(folder, "duizhang.json")
    try:
        duizhang.write_duizhang_table(train_texts, path)
    except OSError as e:
        print(f"warning: could not write {path} ({e.strerror})", file=sys.stderr)
        return
    if verbose:
        print(f"对仗 table         {path}", file=sys.stderr)


CIPAI_MIN_EXAMPLES = 50       # 73 词牌 have this many examples


NOT_A_CIPAI = {"失调名"}       # "tune name lost": fragments of unknown 词牌 filed under one heading


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


def write_cipai_table(folder, files, verbose=True):
    """data/processed/cipai.json from raw/songci, when the 宋词 are there; returns its path or None."""
    if not files:
        return None
    books = rhymebook.load_books(os.path.join(folder, "rhymes.json")) or {}
    table = build_cipai_table(files, load_tone_table(os.path.join(folder, "tones.json")),
                              books.get("cilin"))
    path = os.path.join(folder, "cipai.json")
    try:
        fileio.write_json(path, table)
    except OSError as e:
        print(f"warning: could not write {path} ({e.strerror})", file=sys.stderr)
        return None
    if verbose:
        print(f"词牌                 {len(table)} with at least {CIPAI_MIN_EXAMPLES} examples", file=sys.stderr)
    return path


def write_tables(folder, tang_files, labels, ci_files, train_texts, usage, verbose=True):
    """Every table into folder (data/processed/), in the order they depend on each other: tones, rhymes (which
    drop the tones the poets never use), 词牌 (rhymed by 词林正韵), forms, 对仗. labels: the 平仄 label files
    (raw/strains), ci_files: the 宋词 (raw/songci); usage: rhymebook.source_usage of the corpus."""
    dropped = write_tone_table(folder, tang_files, labels, train_texts, usage, verbose)
    write_rhyme_table(folder, train_texts, usage, dropped, verbose)
    write_cipai_table(folder, ci_files, verbose)
    write_forms_table(folder, train_texts)
    write_duizhang_table(folder, train_texts, verbose)
