"""Build the project's 词谱 table (pretrained/cipu.json, read by verse/cipu.py) from the 凑韵 (couyun) project's
ci_pu tables (MIT): its ci_index.json, ci_list/cipai_N.json (钦定词谱's 格) and ci_long/cipai_N_long.json
(龙榆生's).

    python scripts/build_cipu.py SOURCE_DIR --out pretrained/cipu.json [--rhymes pretrained/rhymes.json]

SOURCE_DIR is wherever a copy of those tables lies (with its LICENSE, whose notice goes into the table and
beside it, as pretrained/cipu.LICENSE for pretrained/cipu.json). Kept
of each 格: its tones (ge_lyu_str), its pieces (from ci_sep, each ended by the example's own mark: ， 、 or 。
for ？！ too), its rhyme sets (yun_classify, positions made non-negative: couyun marks a 叶 with a minus), the
example's first line; dropped: the example's whole text, its traditional form, pinyin, display strings. A 格
whose pieces, example and tones disagree is left out (said on stderr), as is a 龙榆生 格 identical to one of
钦定词谱's. A rhyme set's tone is the one its positions want, 入 when that is 仄 and the example's rhymes
are all 入声 by 词林正韵 (--rhymes, the project's rhymes.json). Prints what it kept and the file's size.
"""
import argparse
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from verse import cipu  # noqa: E402
from common import fileio  # noqa: E402
from verse import rhymebook  # noqa: E402
from config import UserError, run_cli  # noqa: E402

HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
ENDS = {"，": "，", "、": "、", "。": "。", "？": "。", "！": "。", "；": "，"}
SOURCE = "钦定词谱 (1715) and 龙榆生《唐宋词格律》, from the 凑韵 (couyun) project's ci_pu tables (MIT licence)"


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def pieces_of(g):
    """'4，3、4。...' from the example's cut (ci_sep: lines, pieces split by a full-width space) and its own
    marks (origin), or None when the two disagree."""
    pieces = [p for line in g["ci_sep"] for p in line.split("\u3000") if p]
    marks = re.findall(f"(?:{HAN.pattern})+([^\u3400-\u9fff]*)", g["origin"])
    if len(marks) != len(pieces) or "".join(pieces) != "".join(HAN.findall(g["origin"])):
        return None
    ends = [ENDS.get(m.strip()[:1], "") for m in marks]
    if "" in ends:
        return None
    return "".join(f"{len(p)}{e}" for p, e in zip(pieces, ends))


def set_tone(tones, at, chars, entering):
    """平, 仄, 平仄, or 入 (a 仄 set whose example rhymes, chars, all have an entering(ch) reading)."""
    wanted = {tones[p] for p in at} - {"中"}
    if wanted == {"平"}:
        return "平"
    if wanted == {"仄"}:
        return "入" if all(entering(chars[p]) for p in at) else "仄"
    return "平仄"


def ge_of(g, source, entering):
    """The compact 格 of one couyun entry, or None when its parts disagree."""
    tones, pieces = g["ge_lyu_str"], pieces_of(g)
    chars = "".join(HAN.findall(g["origin"]))
    if pieces is None or len(chars) != len(tones) or set(tones) - set("平仄中"):
        return None
    sets = [sorted({abs(p) for p in at}) for _, at in sorted(g["yun_classify"].items(), key=lambda kv: abs(int(kv[0])))]
    sets = sorted((s for s in sets if s), key=lambda s: s[0])
    first = re.match(r"[^。？！]*[。？！]?", g["origin"]).group(0)
    out = {"from": source, "tones": tones, "pieces": pieces,
           "rhymes": [{"tone": set_tone(tones, s, chars, entering), "at": s} for s in sets], "first": first}
    try:
        cipu.parse_ge("?", 1, 1, out)                   # pieces cut the tones, rhymes end pieces
    except ValueError:
        return None
    return out


def inherit_either(ges):
    """A 格 that marks no 中 (钦定词谱 prints a 又一体 in its example's own tones, its 可平可仄 given for the 正体)
    takes the 中 of the first 格 before it that is cut into the same pieces and marks some (its rhymes keep their
    tones); returns how many did. Each such 格 says which it took them from ("either_from", 1-based)."""
    n = 0
    for k, g in enumerate(ges):
        if "中" in g["tones"]:
            continue
        lengths = re.findall(r"\d+", g["pieces"])
        donor = next((j for j, d in enumerate(ges[:k]) if "中" in d["tones"] and re.findall(r"\d+", d["pieces"]) == lengths), None)
        if donor is not None:
            rhymes = {p for s in g["rhymes"] for p in s["at"]}            # a rhyme keeps its own tone
            g["tones"] = "".join("中" if d == "中" and p not in rhymes else t
                                 for p, (t, d) in enumerate(zip(g["tones"], ges[donor]["tones"])))
            g["either_from"] = donor + 1
            n += 1
    return n


def entering_test(rhymes_path):
    """ch -> whether 词林正韵 (the project's rhymes.json) has ch in an 入声 部."""
    books = rhymebook.load_books(rhymes_path)
    if not books:
        raise UserError(f"{rhymes_path}: not a readable rhymes.json (python dataUtil.py prepare builds one)")
    book = books["cilin"]
    entering = {g for g, name in enumerate(book.groups) if name in cipu.ENTERING_BU}
    return lambda ch: bool(book.groups_of(ch) & entering)


def build(source_dir, entering):
    """(the table as a dict, counts {kept, bad, duplicate})."""
    counts = {"cipai": 0, "kept": 0, "bad": 0, "duplicate": 0, "钦定词谱": 0, "龙榆生": 0, "inherit": 0}
    entries = []
    for e in read_json(os.path.join(source_dir, "ci_index.json")):
        ges, seen = [], set()
        for name, source in ((f"ci_list/cipai_{e['idx']}.json", "钦定词谱"), (f"ci_long/cipai_{e['idx']}_long.json", "龙榆生")):
            path = os.path.join(source_dir, name)
            for g in read_json(path) if os.path.isfile(path) else []:
                out = ge_of(g, source, entering)
                key = out and (out["tones"], out["pieces"], json.dumps(out["rhymes"]))
                counts["bad" if out is None else "duplicate" if key in seen else source] += 1
                if out is not None and key not in seen:
                    seen.add(key)
                    ges.append(out)
        counts["inherit"] += inherit_either(ges)
        if ges:
            entries.append({"names": e["names"], "kind": e["type"][0], "ge": ges})
    counts["cipai"], counts["kept"] = len(entries), sum(len(x["ge"]) for x in entries)
    with open(os.path.join(source_dir, "LICENSE"), encoding="utf-8") as f:
        licence = f.read().strip()
    return {"format": cipu.FORMAT, "source": SOURCE, "licence": licence, "cipai": entries}, counts


LICENCE_HEAD = ("cipu.json is derived from the 凑韵 (couyun) project's ci_pu tables (钦定词谱 and 龙榆生《唐宋词格律》\n"
                "as machine-readable tables), which carry this licence:\n\n")


def licence_path(out):
    """pretrained/cipu.json -> pretrained/cipu.LICENSE"""
    return os.path.splitext(out)[0] + ".LICENSE"


def dumps(table):
    """Compact JSON, one 词牌 a line (a diff shows which changed)."""
    head = {k: v for k, v in table.items() if k != "cipai"}
    rows = ",\n".join(json.dumps(e, ensure_ascii=False, separators=(",", ":")) for e in table["cipai"])
    return json.dumps(head, ensure_ascii=False)[:-1] + ', "cipai": [\n' + rows + "\n]}\n"


def main(argv):
    p = argparse.ArgumentParser(prog="scripts/build_cipu.py", description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="the folder holding couyun's ci_index.json, ci_list/, ci_long/ and LICENSE")
    p.add_argument("--out", default=os.path.join(ROOT, "pretrained", "cipu.json"), help="the table to write")
    p.add_argument("--rhymes", default=os.path.join(ROOT, "pretrained", "rhymes.json"),
                   help="the rhymes.json whose 词林正韵 says which rhymes are 入声")
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.source, "ci_index.json")):
        raise UserError(f"{args.source}: no ci_index.json there (give the folder of couyun's ci_pu tables)")
    entering = entering_test(args.rhymes)
    try:
        table, counts = build(args.source, entering)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise UserError(f"{args.source}: not the couyun ci_pu tables this script reads ({type(e).__name__}: {e})")
    text = dumps(table)
    cipu.parse(json.loads(text))                         # what cipu.load will read
    fileio.write_text(args.out, text)
    fileio.write_text(licence_path(args.out), LICENCE_HEAD + table["licence"] + "\n")
    print(f"{counts['cipai']} 词牌, {counts['kept']} 格 ({counts['钦定词谱']} 钦定词谱, {counts['龙榆生']} 龙榆生); "
          f"left out {counts['bad']} whose parts disagree, {counts['duplicate']} 龙榆生 格 identical to 钦定词谱's; "
          f"{counts['inherit']} 格 without 中 took an earlier 格's; "
          f"{args.out}: {len(text.encode('utf-8')):,} bytes (and {licence_path(args.out)})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
