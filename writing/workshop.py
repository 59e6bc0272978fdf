"""The engines behind `check` and `revise` that the command line and the web page share: the tables they need
loaded once, a poem checked with the model's surprise per line, and new versions of a line proposed."""
from dataclasses import dataclass

from writing import decoding
from writing import requests
from writing import constraints
from verse import poetics
from verse import prosody
from config import UserError
from verse.text import PUNCT, ci_pattern, cipai_pattern, encode_start




def reads_as_ci(text, tables, cipai_name=None):
    """Whether a poem is a 词 — said to be one (cipai_name), or by a known 词牌's pattern and no regular 诗 —
    (the 宋词 model reads it then)."""
    found = prosody.cipai_of(text, tables.cipai or {}, tables.cipu, cipai_name)
    return found is not None and (bool(cipai_name) or poetics.form_of(text) is None)


def check_poem(text, tables, model=None, itos=None, device="cpu", cipai_name=None):
    """prosody.check's report of the normalised text, with each line's NLL under the model when one is given;
    cipai_name: the 词牌 it is said to follow (check --cipai)."""
    report = prosody.check(text, tables.labels, tables.pingshui, tables.cilin, tables.cipai, tables.cipu, cipai_name,
                           duizhang_table=tables.duizhang)
    if model is not None:
        marks = PUNCT if report["form"]["name"] == "词" else poetics.LINE_ENDS    # a 词's lines: pieces
        for line, nll in zip(report["lines"], decoding.line_nll(model, itos, text, device, marks)):
            line["nll"] = round(nll, 4)
    return report


# ----------------------------------------------------------------------------------------------------------
# revision: new versions of one line (or of the lines from one on), the rest of the poem kept

TONE_KEEP = 0.8          # the other lines follow one tone pattern at this share or more: the new line must too


@dataclass
class Revision:
    poem: str            # the whole poem with the new line(s)
    new: str             # the new line(s) alone
    score: float         # poetics.rerank_score of the whole poem: lower is better
    nll: float           # the model's mean NLL per token of the whole poem


def revise(model, itos, text, line, gcfg, tables, device, num=5, from_line=False, free=False, tables_cache=None):
    """num new versions of line `line` (1-based) of the normalised text, or of every line from it on
    (from_line), best first. Sampled given the lines before it under the poem's own form, rhyme group and tone
    pattern (inferred from the other lines; free lifts them), and ranked by the whole poem's score with the
    lines after it kept, so they have their say. gcfg supplies the sampling settings, seed and --cipai;
    tables_cache is requests.tables_for's."""
    pieces = check_request(text, line, gcfg, tables, free)
    stoi = set(itos)
    missing = next((ch for ch in text if ch not in stoi), None)
    if missing:
        raise UserError(f"{missing!r} is not in the model's vocabulary: the model cannot read the poem")
    masks = requests.tables_for(itos, gcfg, True, True, tables_cache)
    spec = constraints.Spec() if free else inferred_spec(text, pieces, line, from_line, gcfg, tables, masks)
    spec.lines = spec.lines if spec.pattern else (len(pieces) if from_line else line)
    if spec.pattern and not from_line:
        spec.pattern = spec.pattern[:line]
    if free and from_line:
        spec.lines = 0
    prefix = "".join(pieces[:line - 1])
    fed = "".join(model_marks(pieces[:line - 1], gcfg.cipai))          # what the automaton ends a line at
    start = encode_start(fed, itos) if prefix else []
    keep = "" if from_line else "".join(pieces[line:])
    n = max(4 * num, gcfg.candidates)
    key = (gcfg.seed, text, line, from_line)
    gcfg = constraints.fitted(gcfg, [spec], len(start))       # the lines asked for are written whole, never cut
    texts, _ = decoding.sample_scored(model, itos, [start] * n, gcfg, device,
                                      [requests.stream(key, 0, j, device) for j in range(n)], [spec] * n, (), masks,
                                      given=True)
    seen, out = set(), []
    for t in texts:
        new = t[len(prefix):]
        if new in seen or new == "".join(pieces[line - 1:len(pieces) if from_line else line]):
            continue
        seen.add(new)
        out.append(prefix + new + keep)
    nlls = [float(x.mean()) for x in decoding.token_nll(model, itos, out, device)]
    ranked = sorted((Revision(p, p[len(prefix):len(p) - len(keep)], poetics.rerank_score(poetics.rerank_terms(p, v)), v)
                     for p, v in zip(out, nlls)), key=lambda r: r.score)
    return ranked[:num]


def check_request(text, line, gcfg, tables, free=False):
    """The poem's lines when a revision of line `line` can be asked of it (no model needed): the line exists,
    and unless free the poem is regular or follows --cipai's pattern; else a UserError."""
    pieces = split_poem(text, gcfg.cipai)
    if not 1 <= line <= len(pieces):
        raise UserError(f"--line {line}: the poem has {len(pieces)} lines")
    if free:
        return pieces
    if gcfg.cipai:
        entry = (tables.cipai or {}).get(gcfg.cipai)
        if entry is None:
            raise UserError(f"--cipai {gcfg.cipai}: not a known 词牌 (python main.py generate --list-cipai)")
        if ci_pattern(text) != cipai_pattern(entry):
            raise UserError(f"the poem does not follow {gcfg.cipai}'s pattern of lines; --free rewrites it anyway")
        return pieces
    if not poem_shape(pieces):
        raise UserError("not a regular poem (5 or 7 characters a line, an even number of lines): "
                        "--cipai NAME for a 词, or --free to rewrite the line freely")
    return pieces


def split_poem(text, cipai):
    """The poem's lines with their end marks: a 诗's end at any of ，。？！；：、 as check reads it (a ： ends a
    line, never sits inside one), a 词's at ，。？！； and 、."""
    return poetics.split_after(text, poetics.LINE_ENDS + ("、" if cipai else "：、"))


def poem_shape(pieces):
    """(characters per line, lines) when the lines are a regular 诗's: all of 5 or all of 7 characters, an even
    number of them, each ending in a mark (whichever); else None."""
    lines = [p[:-1] for p in pieces if p[-1] in PUNCT]
    n = len(lines[0]) if lines else 0
    ok = len(lines) == len(pieces) and len(lines) % 2 == 0 and n in (5, 7) and all(len(l) == n for l in lines)
    return (n, len(lines)) if ok else None


def model_marks(pieces, cipai):
    """The lines as the model and the automaton read them: a 诗's line ending in ： or 、 ends in ，/。 by its place
    (the automaton counts lines at ，。？！；); a 词's as they are."""
    if cipai:
        return pieces
    return [p if p[-1] in poetics.LINE_ENDS else p[:-1] + ("，" if k % 2 == 0 else "。") for k, p in enumerate(pieces)]


def inferred_spec(text, pieces, line, from_line, gcfg, tables, masks):
    """The Spec that keeps the poem's form, rhyme and tones for the lines rewritten."""
    rewritten = set(range(line - 1, len(pieces) if from_line else line))
    if gcfg.cipai:
        entry = tables.cipai[gcfg.cipai]                  # check_request has seen it is there and followed
        spec = constraints.Spec(pattern=cipai_pattern(entry), rhyme=bool(entry["rhymes"]))
        spec.rhyme_sets = tuple(tuple(zip(r["lines"], r["tones"])) for r in entry["rhymes"])
        ends = poetics.line_ends(text)
        kept = [(k, [(ends[i], poetics.CLASSICAL[t]) for i, t in s if i not in rewritten])
                for k, s in enumerate(spec.rhyme_sets)]
        opened = [(k, tuple(open_groups([c for c, _ in ks], masks.book, [t for _, t in ks]))) for k, ks in kept if ks]
        spec.rhyme_open = tuple((k, gs) for k, gs in opened if gs)      # a set with no group found stays open
        spec.rhymed = "".join(ends[i] for s in spec.rhyme_sets for i, _ in s if i > max(rewritten))
        return spec
    shape = poem_shape(pieces)
    lines = [p[:-1] for p in pieces]
    spec = constraints.Spec(chars=shape[0], lines=shape[1], rhyme=True)
    kept_even = [(i, l[-1]) for i, l in enumerate(lines) if i % 2 == 1 and i not in rewritten]
    g, tone, _ = prosody.best_group([(i, l[-1]) for i, l in enumerate(lines) if i % 2 == 1], masks.book)
    if g is None:
        spec.rhyme = False                            # the poem does not rhyme: nor need the new line
    else:
        spec.rhyme_tone, spec.group = tone, g           # the group a format model is told, too
        spec.rhyme_first = g in masks.book.groups_of(lines[0][-1], tone)
        spec.rhyme_open = ((0, (g,)),) if kept_even or (spec.rhyme_first and 0 not in rewritten) else ()
        spec.rhymed = "".join(ch for i, ch in kept_even if i > max(rewritten))   # the prefix's own come as read
    first, share = tone_pattern(lines, rewritten, masks)
    if share >= TONE_KEEP:
        spec.tones, spec.first_tone = True, first
    return spec


def open_groups(chars, book, tones):
    """The groups all chars share in their tones; failing that, those most of them are in."""
    common = book.common(chars, tones)
    if common or not chars:
        return sorted(common)
    g, _, _ = prosody.best_group(list(enumerate(chars)), book)
    return [g] if g is not None else []


def tone_pattern(lines, rewritten, masks):
    """(position-2 tone of line 1, share of the kept lines' positions 2/4/6 that follow it) for the better of
    the two patterns."""
    info = masks.tone_tables()[0]
    places = [(k, p) for k, l in enumerate(lines) if k not in rewritten for p in (2, 4, 6) if p < len(l)]

    def tone(ch):                                          # a character read both ways is not judged here
        level = info.get(ch, (None, None))[1]
        return level if level in (poetics.LEVEL, poetics.OBLIQUE) else None
    best = (None, 0.0)
    for first in (poetics.LEVEL, poetics.OBLIQUE):
        hits, total = poetics.pattern_hits(lines, tone, first, places)
        if total >= 4 and hits / total > best[1]:
            best = (first, hits / total)
    return best
