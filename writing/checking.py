"""The `check` command: one poem, or many from a file or stdin, read as a reader would (verse/reading.py), checked by
prosody.check, printed as text (each poem under its own heading, a summary at the end) or as JSON (one object;
JSON Lines, an object a line, for many).

    python main.py check "POEM" [--json] [--no-model]      one poem (piped in when no argument is given); the
                                                           model's NLL per line unless --no-model
    python main.py check FILE [--json] [--ckpt PATH]        many poems: a poem per line, or, when the text holds
    python main.py check - ...                             blank lines, poems separated by blank lines (rows
                                                           starting with # are comments); NLL only with --ckpt

Exit codes: 0 every poem keeps every rule; 1 a rule broken, or a poem not checked (not a regular 诗 nor a known
词, or unreadable among many); 2 the user's mistake (bad flags, an unreadable or oversized input, no poem in it);
3 the machine's failure (a table that cannot be read, a read error). torch is imported, and a model loaded,
only when the model's NLL is asked for.
"""
import json
import os
import stat
import sys
from dataclasses import dataclass

from verse import prosody
from verse.tables import load_tables
from verse import reading
from config import EnvironmentFailure, UserError, make_parser
from verse.text import CLEAN_POEM, PUNCT

MAX_INPUT = 16 * 2 ** 20            # bytes a file or stdin of poems may hold
MAX_ARGUMENT_STDIN = 100_000        # bytes of one poem piped in
EXIT_CLEAN, EXIT_BROKEN, EXIT_USER, EXIT_MACHINE = 0, 1, 2, 3
NLL_BATCH = 32                      # poems checked, then read by the model, together (many poems)


@dataclass
class Options:
    """The command's settings, from its flags."""
    source: str = None        # the poem's text, a file, "-" (stdin, many), or None (stdin, one)
    json: bool = False
    ckpt: str = ""
    no_model: bool = False
    device: str = "cpu"
    cipai: str = ""
    data_dir: str = "data"


def parse(rest):
    parser = make_parser("main.py check", "the 格律 check of a poem or of many (exit 0: every rule kept, 1: a rule "
                         "broken or nothing checked, 2: bad input, 3: a table or file the machine cannot read)", [])
    parser.add_argument("poem", nargs="?", default=None, help="the poem's text; or FILE, or - for stdin, holding "
                        "many (a poem a line, or poems apart by blank lines); default: one poem from stdin")
    parser.add_argument("--json", action="store_true", help="print the report as JSON (many poems: JSON Lines)")
    parser.add_argument("--ckpt", default="", help="the model whose surprise (NLL) per line is shown (one poem: "
                        "default as generate picks it; many: only when given)")
    parser.add_argument("--no-model", action="store_true", help="leave out the model's NLL per line")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default: cpu)")
    parser.add_argument("--cipai", default="", help="the 词牌 the poem follows (any of its names), checked by its "
                        "格 in the 词谱 (default: found by the poem's lines)")
    parser.add_argument("--data-dir", default="data", help="where the prepared tables live (default: data)")
    a = parser.parse_args(rest)
    return Options(a.poem, a.json, a.ckpt, a.no_model, a.device, a.cipai, a.data_dir)


def cmd_check(rest):
    """python main.py check ...: the exit code of the worst poem (see the module's docstring)."""
    opts = parse(rest)
    try:
        tables = load_tables(opts.data_dir)
        if opts.cipai:
            prosody.resolve_cipai(opts.cipai, tables.cipu, tables.cipai)       # an unknown name fails here
        if opts.source is not None and is_source(opts.source):
            return check_many(read_source(opts.source), opts, tables)
        return check_one(opts.source if opts.source is not None else read_stdin(), opts, tables)
    except BrokenPipeError:
        raise
    except (EnvironmentFailure, OSError, MemoryError) as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"error: {where}{getattr(e, 'strerror', None) or e or 'out of memory'}", file=sys.stderr)
        return EXIT_MACHINE


# ----------------------------------------------------------------------------------------------------------
# reading the input

def is_source(arg):
    """Whether the argument names poems to read (-, a file) rather than being a poem: - or an existing path, or
    text with no Chinese character that looks like a path (a missing file is then said so)."""
    if arg == "-" or os.path.exists(arg):
        return True
    chinese = any(CLEAN_POEM.fullmatch(ch) and ch not in PUNCT for ch in arg)
    return not chinese and (os.sep in arg or "/" in arg or os.path.splitext(arg)[1] != "")


def read_source(arg, limit=MAX_INPUT):
    """The text of FILE or of stdin (-): a regular file or a pipe, at most limit bytes, UTF-8 (a BOM is
    dropped); anything else a one-line UserError."""
    name = "stdin" if arg == "-" else arg
    if arg == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UserError("check -: pipe the poems in (python main.py check - < poems.txt), or give FILE")
        data = sys.stdin.buffer.read(limit + 1)
    else:
        try:
            info = os.stat(arg)
        except OSError as e:
            raise UserError(f"{arg}: {'no such file' if isinstance(e, FileNotFoundError) else e.strerror}")
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{arg}: not a regular file; give a text file of poems, or - to read stdin")
        try:
            with open(arg, "rb") as f:
                data = f.read(limit + 1)
        except OSError as e:
            raise UserError(f"{arg}: {e.strerror}")
    if len(data) > limit:
        raise UserError(f"{name} holds over {limit // 2 ** 20} MiB; check at most that much at a time")
    return decode(data, name)


def read_stdin():
    """One poem piped in (a terminal with nothing piped is a UserError: the poem is missing)."""
    if sys.stdin is None or sys.stdin.isatty():
        raise UserError("give the poem as an argument, or pipe it in (FILE or - for many poems)")
    data = sys.stdin.buffer.read(MAX_ARGUMENT_STDIN + 1)
    if len(data) > MAX_ARGUMENT_STDIN:
        raise UserError(f"the poem on stdin holds over {MAX_ARGUMENT_STDIN} bytes; for many poems: check -")
    return decode(data, "the poem on stdin")


def decode(data, name):
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{name} is not UTF-8 text (byte {e.start})")


def split_poems(text):
    """[(first row, 1-based; the poem's text)]: poems apart by blank lines when the text holds a blank line
    between two poems' rows, else a poem a row. Rows starting with # are comments."""
    rows = [(k + 1, r) for k, r in enumerate(text.splitlines()) if not r.lstrip().startswith("#")]
    filled = [k for k, (_, r) in enumerate(rows) if r.strip()]
    if not filled:
        return []
    inner = rows[filled[0]:filled[-1] + 1]
    if not any(not r.strip() for _, r in inner):
        return [(k, r) for k, r in inner]
    poems, block = [], []
    for k, r in inner + [(0, "")]:
        if r.strip():
            block.append((k, r))
        elif block:
            poems.append((block[0][0], "\n".join(r for _, r in block)))
            block = []
    return poems


# ----------------------------------------------------------------------------------------------------------
# checking


def check_text(raw, tables, cipai_name=""):
    """prosody.check's report of raw user text (read by reading.read_poem); UserError when it cannot be read."""
    def fits(text):
        return prosody.cipai_of(text, tables.cipai or {}, tables.cipu) is not None
    r = reading.read_poem(raw, fits=fits)
    return prosody.check(r.text, tables.labels, tables.pingshui, tables.cilin, tables.cipai, tables.cipu,
                         cipai_name or None, headings=r.headings, duizhang_table=tables.duizhang)


def check_one(raw, opts, tables):
    report = check_text(raw, tables, opts.cipai)
    if not opts.no_model and report["poem"]:
        add_nll([report], *load_model(opts, report))
    print(json.dumps(report, ensure_ascii=False) if opts.json else prosody.format_report(report))
    return EXIT_CLEAN if report["ok"] else EXIT_BROKEN


def check_many(text, opts, tables):
    """Each poem of the text checked and printed as it is done; the summary at the end (on stderr with --json)."""
    poems = split_poems(text)
    if not poems:
        raise UserError("no poem in the input: a poem per line, or poems apart by blank lines")
    model = load_model(opts) if opts.ckpt and not opts.no_model else None
    counts = {"clean": 0, "broken": 0, "unchecked": 0, "unreadable": 0}
    for first in range(0, len(poems), NLL_BATCH):
        reports = [check_or_error(raw, tables, opts.cipai) for _, raw in poems[first:first + NLL_BATCH]]
        if model:
            add_nll([r for r in reports if r.get("poem") and "error" not in r], *model)
        for k, ((row, _), report) in enumerate(zip(poems[first:], reports), first + 1):
            kind = ("unreadable" if "error" in report else "clean" if report["ok"] else
                    "broken" if report["checked"] else "unchecked")
            counts[kind] += 1
            print_one(k, row, report, opts.json)
    line = summary(len(poems), counts)
    print(line, file=sys.stderr if opts.json else sys.stdout)
    return EXIT_CLEAN if counts["clean"] == len(poems) else EXIT_BROKEN


def check_or_error(raw, tables, cipai_name):
    """check_text's report, or one saying why the poem could not be read."""
    try:
        return check_text(raw, tables, cipai_name)
    except UserError as e:
        return {"poem": raw, "error": str(e), "checked": False, "ok": False}


def print_one(k, row, report, as_json):
    if as_json:
        print(json.dumps({"index": k, "source_line": row, **report}, ensure_ascii=False), flush=True)
        return
    body = f"not checked: {report['error']}" if "error" in report else prosody.format_report(report)
    print(f"{'' if k == 1 else chr(10)}=== poem {k} (line {row}) ===\n{body}", flush=True)


def summary(n, counts):
    return (f"\n=== {n} poem{'s' if n != 1 else ''}: {counts['clean']} keep every rule, {counts['broken']} break a "
            f"rule, {counts['unchecked'] + counts['unreadable']} not checked ({counts['unchecked']} not a regular "
            f"form nor a known 词, {counts['unreadable']} unreadable) ===")


# ----------------------------------------------------------------------------------------------------------
# the model's surprise per line (torch from here on)

def load_model(opts, report=None):
    """(model, itos, device): --ckpt, or for one poem the model generate would pick (the 宋词 one for a 词)."""
    from config import TrainConfig
    from training import checkpoint
    ci = bool(opts.cipai) or bool(report) and report["form"]["name"] == "词"
    device = checkpoint.pick_device(TrainConfig(device=opts.device))
    model, _, itos = checkpoint.load_model(opts.ckpt, device, ci=ci)
    return model, itos, device


def add_nll(reports, model, itos, device):
    """Each line's mean NLL per character (its end mark included; <eos> counts to the last) into each report,
    the poems read NLL_BATCH a forward pass."""
    from writing import decoding
    texts = [r["poem"] for r in reports]
    for report, text, nll in zip(reports, texts, decoding.token_nll(model, itos, texts, device, NLL_BATCH)):
        start = 0
        for line, piece in zip(report["lines"], reading.split_lines(text)):
            end = start + len(piece) + (1 if start + len(piece) == len(text) else 0)
            line["nll"] = round(float(nll[start:end].mean()), 4)
            start += len(piece)
