"""The verse tables read back: from data/processed/ (the corpus prepared here), else pretrained/ (shipped).

    Tables        what a check or a revision needs besides the poem (tones, rhyme books, 词牌, 词谱, 对仗)
    load_tables   the Tables, a damaged or missing rhyme table an EnvironmentFailure (exit 3)
    verse_tables  (tones, 平水韵, 词林正韵, 词牌) for the format inputs
    cipai_table, classical_table, rhyme_book, pairs_table, forms_table, format_draws: one table each
"""
import json
import os
import sys
from dataclasses import dataclass

from config import EnvironmentFailure, UserError
from verse import cipu, duizhang, rhymebook
from verse.text import PUNCT

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_tone_table(path):
    """{character: "平" | "仄" | "both"} from a tones.json, or None when there is none or it is unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            table = dict(json.load(f)["table"])
        return table if all(v in ("平", "仄", "both") for v in table.values()) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


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


def load_format_draws(path):
    """forms.json's "formats" (format_counts), or None when unreadable or malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            draws = json.load(f)["formats"]
        ok = all(len(v["first"]) == 2 and len(v["first_rhymes"]) == 2 and v["groups"] for v in draws.values())
        return draws if ok else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


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


def verse_tables(processed):
    """(tones {character: 平|仄|both}, 平水韵 Book, 词林正韵 Book, 词牌 table) of the corpus prepared in the folder
    processed (data/processed), else the ones shipped in pretrained/; a UserError when there are none."""
    found = {}
    for name, load in (("tones.json", load_tone_table), ("rhymes.json", rhymebook.load_books),
                       ("cipai.json", load_cipai_table)):
        for folder in (processed, os.path.join(ROOT, "pretrained")):
            path = os.path.join(folder, name)
            found[name] = load(path) if os.path.isfile(path) else None
            if found[name]:
                break
    if not found["tones.json"] or not found["rhymes.json"]:
        raise UserError("no readable tones.json / rhymes.json for the format inputs: python dataUtil.py prepare")
    books = found["rhymes.json"]
    return found["tones.json"], books["pingshui"], books["cilin"], found["cipai.json"] or {}


def prepared_or_shipped(name, load, data_dir, strict=False):
    """The first readable table of data/processed/NAME (the corpus prepared here) and pretrained/NAME, or None.
    A file there that is not one: a warning and the next, or with strict (the check) an EnvironmentFailure."""
    for path in (os.path.join(data_dir, "processed", name), os.path.join(ROOT, "pretrained", name)):
        table = load(path) if os.path.isfile(path) else None
        if table:
            return table
        if os.path.lexists(path) and strict:
            raise EnvironmentFailure(f"{path} is not a readable {name} (a folder, a pipe, or damaged); python "
                                     "dataUtil.py prepare rebuilds it")
        if os.path.lexists(path):
            print(f"warning: {path} is not a readable {name} (a folder, a pipe, or damaged: its schema does not "
                  "hold); trying the next table", file=sys.stderr)
    return None


def cipai_table(data_dir="data"):
    """{词牌: {"lines": ..., "share": ..., "examples": ..., "stanza": ...}} (verse/build.py's build_cipai_table)."""
    table = prepared_or_shipped("cipai.json", load_cipai_table, data_dir)
    if not table:
        raise UserError("no readable 词牌 table: python dataUtil.py prepare builds it (data/processed/cipai.json)")
    return table


def format_cipai(name, entry):
    """'浣溪沙  7。7。7。 / 7，7。7。  rhymes 1 2 3 5 6 平  (776 examples, 93.8% follow it exactly)': the lines
    of each rhyme set (1-based) with its commoner tone, a line of the other tone marked with it."""
    lines = [f"{n}{mark}" for n, mark in entry["lines"]]
    k = entry["stanza"]
    shape = "".join(lines[:k]) + " / " + "".join(lines[k:]) if k else "".join(lines)
    sets = []
    for s in entry.get("rhymes", []):
        main = max(sorted(set(s["tones"])), key=s["tones"].count)
        sets.append(" ".join(f"{i + 1}{'' if t == main else t}" for i, t in zip(s["lines"], s["tones"])) + f" {main}")
    rhymes = f"  rhymes {' | '.join(sets)}" if sets else ""
    return f"{name}  {shape}{rhymes}  ({entry['examples']} examples, {entry['share']:.1%} follow it exactly)"


def classical_table(gcfg, data_dir="data"):
    """The classical tone table {character: 平|仄|both} when gcfg asks for it: the prepared corpus's
    (data/processed/tones.json), else the one shipped beside the pretrained model; None means Mandarin."""
    if gcfg.tone_system != "classical":
        return None
    table = prepared_or_shipped("tones.json", load_tone_table, data_dir)
    if table:
        return table
    print("warning: no classical tone table (python dataUtil.py prepare builds it); using Mandarin tones",
          file=sys.stderr)
    return None


def rhyme_book(gcfg, data_dir="data"):
    """The rhyme book --rhyme-system asks for: 平水韵, or 词林正韵 with --cipai, from the prepared corpus's
    rhymes.json, else the one shipped beside the pretrained model; None for xinyun (中华新韵 is computed from
    the tones in force)."""
    if gcfg.rhyme_system == "xinyun":
        return None
    books = prepared_or_shipped("rhymes.json", rhymebook.load_books, data_dir)
    if not books:
        raise UserError("no readable rhyme table: python dataUtil.py prepare builds it (data/processed/rhymes.json); "
                        "or --rhyme-system xinyun")
    return books["cilin" if gcfg.cipai else "pingshui"]


def rhyme_group_of(name, book):
    """The index of the 平水韵 level group named (十灰, 灰, 上平声十灰, 一东, 东); a UserError naming the choices."""
    level = [g for g, n in enumerate(book.groups) if n.startswith(("上平声", "下平声"))]
    spelt = {g: {book.groups[g], book.groups[g][3:], book.groups[g][-1]} for g in level}
    found = [g for g in level if name.strip() in spelt[g]]
    if len(found) != 1:
        raise UserError(f"--rhyme-group {name!r}: not one 平水韵 level group; choose one of "
                        + " ".join(book.groups[g][3:] for g in level))
    return found[0]


def pairs_table(cache=None):
    """The 对仗 table (duizhang.json: prepared, else shipped), read once per cache."""
    cache = {} if cache is None else cache
    if "duizhang.json" not in cache:
        cache["duizhang.json"] = prepared_or_shipped("duizhang.json", duizhang.load, "data")
    return cache["duizhang.json"]


def format_draws(cache=None):
    """forms.json's counts of tone patterns, 首句入韵 and rhyme groups per form (verse/build.py's format_counts)."""
    cache = {} if cache is None else cache
    if "formats" not in cache:
        cache["formats"] = prepared_or_shipped("forms.json", load_format_draws, "data")
    return cache["formats"]


@dataclass
class Tables:
    """What a check needs besides the poem (the CLI's and, through workshop, the page's; loaded without torch)."""
    labels: dict
    pingshui: object
    cilin: object
    cipai: dict
    cipu: object = None
    duizhang: object = None      # the 对仗 table (duizhang.load())


def load_tables(data_dir="data", strict=True):
    """The Tables of data/processed (prepared here), else pretrained/ (shipped). strict (the check command): no
    rhyme table, or a damaged table, is an EnvironmentFailure (exit 3); else (revise and the page) no rhyme
    table is a UserError and a damaged table is passed over with a warning."""
    books = prepared_or_shipped("rhymes.json", rhymebook.load_books, data_dir, strict)
    if not books and strict:
        raise EnvironmentFailure("no readable rhyme table (data/processed/rhymes.json, pretrained/rhymes.json); "
                                 "python dataUtil.py prepare builds it")
    if not books:
        raise UserError("no readable rhyme table: python dataUtil.py prepare builds it (data/processed/rhymes.json)")
    labels = prepared_or_shipped("tones.json", load_tone_table, data_dir, strict)
    if not labels:
        print("warning: no tone table (tones.json): tones from the rhyme table alone" if strict else
              "warning: no classical tone table (python dataUtil.py prepare builds it); using Mandarin tones",
              file=sys.stderr)
    cipai = prepared_or_shipped("cipai.json", load_cipai_table, data_dir, strict)
    try:
        table = cipu.load()
    except UserError as e:                     # a shipped table the machine cannot read
        if not strict:
            raise
        raise EnvironmentFailure(str(e))
    pairs = prepared_or_shipped("duizhang.json", duizhang.load, data_dir, strict)
    return Tables(labels or {}, books["pingshui"], books["cilin"], cipai, table, pairs)


def forms_table(cache=None):
    """The regular forms of real poems [(characters, lines, poems)] (forms.json: prepared, else shipped), or
    None; read once per cache (a dict: the web server's)."""
    cache = {} if cache is None else cache
    if "forms.json" not in cache:
        cache["forms.json"] = prepared_or_shipped("forms.json", load_forms_table, "data")
    return cache["forms.json"]
