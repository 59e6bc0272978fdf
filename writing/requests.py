"""Generation requests: a GenConfig checked once and resolved (make_request), and the one way poems are written
from it (iter_poems): forms and formats drawn as real poems have them, keywords placed, each poem the best of
its candidates. generate, evaluate, revise, the page and the studies all write through iter_poems.
"""
import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np
import torch

import dataUtil
from verse import duizhang
from writing import keywords
from verse import poetics
from config import GenConfig, UserError
from writing.constraints import (CI_TONE, END_MARKS, Automaton, Masks, Spec, fits, fitted, form_length, reads_formats,
                                 spec_from)
from writing import decoding
from verse.text import convert_chars, encode_start
from verse.tables import (cipai_table, classical_table, format_draws, forms_table, pairs_table, rhyme_book,
                          rhyme_group_of)


def poems_for(model, itos, gcfg, device):
    """gcfg.num poems, with every option of GenConfig applied (a list of texts; see iter_poems)."""
    return [c.text for c in iter_poems(model, itos, gcfg, device)]


@dataclass
class Candidate:
    text: str
    terms: dict             # poetics.rerank_terms
    score: float            # poetics.rerank_score: lower is better
    others: list            # the poem's other candidates (Candidate), best first


@dataclass
class Request:
    """One generate request, checked and resolved: what each of its poems' rows is sampled from."""
    gcfg: GenConfig
    spec: Spec
    tables: Masks
    start: list             # ids
    prime: list             # ids
    forms: list             # [(characters, lines, poems)] a default poem's form is drawn from, or None
    words: list             # keywords
    key: tuple              # what the random streams hang on
    draws: dict = None      # the format counts a regular poem's format is drawn from (models with format inputs)
    pairs: object = None    # the 对仗 table the re-ranking reads (duizhang.load)
    answers: dict = None    # the 对仗 partners generation favours (duizhang.partners; with --pair-bonus)


@dataclass
class Rows:
    """The candidates of some poems, ready for sample_scored."""
    starts: list
    primes: list
    specs: list
    streams: list
    tables: list


def tables_for(itos, gcfg, rhyme, tones, cache=None):
    """The Tables for gcfg's tone table (when rhyme or tones need one) and rhyme book (when rhyme does). cache:
    a dict that keeps them across requests (the web server's), so the tables are read and built once."""
    key = (id(itos), gcfg.tone_system if rhyme or tones else "",
           (gcfg.rhyme_system, bool(gcfg.cipai)) if rhyme else "")
    if cache is not None and key in cache:
        return cache[key]
    tables = Masks(itos, classical_table(gcfg) if rhyme or tones else None, rhyme_book(gcfg) if rhyme else None)
    if cache is not None:
        cache[key] = tables
    return tables


def make_request(itos, gcfg, tables_cache=None, told=False):
    """The Request of gcfg (a UserError for anything it cannot honour). tables_cache: a dict that keeps the
    Tables built for each (tone table, rhyme book), and the forms table, across requests (the web server's).
    told: the model reads format inputs, so a regular poem's format is drawn (rows_of) and it rhymes by default."""
    spec = spec_from(gcfg, cipai_table() if gcfg.cipai else None, told=told)
    spec.masks, spec.pair_input = gcfg.masks, gcfg.pair_input
    regular = told and not gcfg.cipai and (spec.chars or not gcfg.free)
    if regular and gcfg.masks and gcfg.rhyme_system == "pingshui" and gcfg.rhyme_tone == "level":
        spec.rhyme = True                                # real regular poems rhyme nine times in ten
    tables = tables_for(itos, gcfg, spec.rhyme or regular, spec.tones, tables_cache)
    if regular and spec.rhyme and not gcfg.rhyme and not tables.enough((poetics.LEVEL,) * 5).any():
        spec.rhyme = False                               # a vocabulary without rhymes enough for a 律诗 (tests')
    if gcfg.rhyme_group:
        if not spec.rhyme or not (told or gcfg.rhyme_system == "pingshui"):
            raise UserError("--rhyme-group needs --rhyme (or a model with format inputs) and the 平水韵 "
                            "(--rhyme-system pingshui, --rhyme-tone level)")
        spec.group = rhyme_group_of(gcfg.rhyme_group, tables.book)
        spec.rhyme_open = ((0, (spec.group,)),)
    for ch in spec.heads:
        if ch not in tables.stoi:
            raise UserError(f"acrostic head {ch!r} is not in the vocabulary; choose another character")
    start = encode_start(gcfg.start, itos, tables.stoi) if gcfg.start.strip() else []
    if spec.heads and start and itos[start[0]] != spec.heads[0]:
        raise UserError("--start must begin with the first acrostic head")
    if not start and not spec.constrained:
        raise UserError("--start is empty; give the character(s) the poem begins with, e.g. --start 日")
    prime = encode_start(gcfg.prefix, itos, tables.stoi) if gcfg.prefix.strip() else []
    forms = None if spec.constrained or gcfg.free else default_forms(spec, start, tables, tables_cache)
    forms = [f for f in forms or () if form_length(dataclasses.replace(spec, chars=f[0], lines=f[1])) - len(start)
             < gcfg.max_gen_len] or None          # a drawn form fits --max-gen-len (a form asked for grows it)
    words = keywords.parse(gcfg.keywords, itos, convert_chars)
    if words and not (spec.chars or spec.pattern or forms):
        raise UserError("--keywords needs a form to place them in: --form, --cipai, or leave out --free")
    # the random streams depend on the seed, the asked-for text and the poem's number (never on --num)
    key = (gcfg.seed, str((start, spec.heads) + ((gcfg.cipai,) if gcfg.cipai else ())))
    gcfg = fitted(gcfg, [spec], len(start))
    draws = format_draws(tables_cache) if told else None
    pairs = pairs_table(tables_cache) if gcfg.pair_rerank or gcfg.pair_bonus else None
    answers = (duizhang.partners(pairs, tables.stoi) if gcfg.pair_bonus and pairs is not None and not spec.pattern
               else None)                            # a 词 never answers line by line
    return Request(gcfg, spec, tables, start, prime, forms, words, key, draws,
                   pairs if gcfg.pair_rerank else None, answers)


def drawn(weights, generator):
    w = torch.tensor([float(x) for x in weights])
    return int(torch.multinomial(w, 1, generator=generator))


def sampled_format(spec, draws, start, tables, generator):
    """spec with the rest of a regular poem's format drawn as the train poems' frequencies for its form go: the
    tone pattern (a start reaching position 2 fixes it by its tone there), 首句入韵, and the rhyme group (among
    those with rhymes enough; --rhyme-group keeps its own). A draw the start does not fit is given up."""
    counts = (draws or {}).get(f"{spec.chars},{spec.lines}")
    if counts is None:
        return spec
    first = spec.first_tone
    if first is None:
        first = drawn(counts["first"], generator)
        if len(start) >= 2 and tables.classical:
            level = tables.tone_tables()[1][start[1]]
            first = int(level) if level in (poetics.LEVEL, poetics.OBLIQUE) else first
    out = dataclasses.replace(spec, first_tone=first, rhyme_first=bool(drawn(counts["first_rhymes"], generator)))
    if spec.group < 0 and tables.book is not None:
        ok = tables.enough((poetics.LEVEL,) * (spec.lines // 2 + 1))
        groups = [(int(g), n) for g, n in sorted(counts["groups"].items()) if int(g) < len(ok) and ok[int(g)]]
        if groups:
            out.group = groups[drawn([n for _, n in groups], generator)][0]
            out.rhyme_open = ((0, (out.group,)),) if spec.rhyme else ()
    if not fits(out, start, tables):
        out = dataclasses.replace(out, rhyme_first=False, group=spec.group, rhyme_open=spec.rhyme_open)
    return out if fits(out, start, tables) else spec


def rows_of(model, itos, req, poems, device):
    """The candidates' rows of poems (numbers) of a request; keywords placed from a draft (keyword_specs)."""
    n = req.gcfg.candidates
    specs = []
    for k in poems:
        g = stream(req.key, k, -1, device)
        spec = sampled_form(req.spec, req.forms, g) if req.forms else req.spec
        specs.append(sampled_format(spec, req.draws, req.start, req.tables, g) if req.draws else spec)
    streams = [stream(req.key, k, j, device) for k in poems for j in range(n)]
    specs = [s for s in specs for _ in range(n)]
    if req.words:
        specs = keyword_specs(model, itos, req.words, req.start, req.prime, specs, streams, req.gcfg, device,
                              req.tables)
    return Rows([req.start] * len(specs), [req.prime] * len(specs), specs, streams, [req.tables] * len(specs))


def iter_poems(model, itos, gcfg, device, batch=64, tables_cache=None):
    """The CLI's generation: gcfg.num poems, each the best of gcfg.candidates samples by poetics.rerank_score,
    yielded as each batch is done (at most `batch` samples at once), so memory stays bounded and output starts
    at once however many are asked for. Without --form, --cipai or --acrostic a poem's form is drawn from the
    real poems' forms (forms.json) unless --free. Poem k of a request is the same whatever --num is."""
    req = make_request(itos, gcfg, tables_cache, told=reads_formats(model))
    n = gcfg.candidates
    per_batch = max(1, batch // n)
    for first in range(0, gcfg.num, per_batch):
        poems = range(first, min(first + per_batch, gcfg.num))
        r = rows_of(model, itos, req, poems, device)
        texts, nlls = decoding.sample_scored(model, itos, r.starts, req.gcfg, device, r.streams, r.specs,
                                             tables=r.tables, primes=r.primes, answers=req.answers)
        for i in range(len(poems)):
            yield best_of(texts[i * n:(i + 1) * n], nlls[i * n:(i + 1) * n], req.pairs)


def keyword_specs(model, itos, words, start, prime, specs, streams, gcfg, device, tables):
    """Each candidate's Spec with the keywords fixed in slots drawn from a draft's probabilities (writing/keywords.py)."""
    layouts = [layout_of(s, tables, start) for s in specs]
    tone_choices = (poetics.LEVEL, poetics.OBLIQUE)
    for s, lay in {id(s): (s, lay) for s, lay in zip(specs, layouts)}.values():
        if len(words) > len(lay.widths):
            raise UserError(f"--keywords: {len(words)} words for a poem of {len(lay.widths)} lines; give fewer")
        bad = keywords.feasible(words, lay, tone_choices)
        if bad:
            raise UserError(f"--keywords {bad}: it fits no position of this form under "
                            f"{Automaton(s, tables).describe()}")
    drafts, _ = decoding.sample_scored(model, itos, [start] * len(specs), gcfg, device, streams, specs, prime, tables)
    probs = draft_probabilities(model, itos, drafts, prime, device)          # (B, T, V) over the draft's characters
    out = []
    for b, (s, lay, draft) in enumerate(zip(specs, layouts, drafts)):
        def prob(line, pos, ch, b=b, lay=lay):
            return float(probs[b, sum(lay.widths[:line]) + line + pos, tables.stoi[ch]])
        lead = draft_first_tone(draft, tables)
        for first in (lead, 1 - lead):
            fixed = keywords.place(words, lay, first, prob, streams[b])
            if fixed is not None:
                break
        if fixed is None:
            raise UserError("--keywords: the words do not fit together in this form; give fewer or shorter ones")
        out.append(with_fixed(s, fixed, first, lay, tables))
    return out


def layout_of(spec, tables, start):
    """keywords.Layout of a Spec: line widths, which characters fit where, the rhyme lines, the start's cells."""
    widths = [n for n, _ in spec.pattern] or [spec.chars] * spec.lines
    a = Automaton(spec, tables)
    rhyme_lines = {}
    for line in range(len(widths)):
        a.line = line
        here = a.rhyme_here() if spec.rhyme else None
        if here is not None:
            rhyme_lines[line] = here
    level = tables.tone_tables()[1]

    def char_fits(line, col, ch, first):
        tok = tables.stoi.get(ch)
        if tok is None or not tables.ideograph[tok] or (spec.heads and col == 1 and spec.heads[line] != ch):
            return False
        if spec.ci_tones:
            want = spec.ci_tones[line][col - 1]
            if want != "中" and level[tok] not in (CI_TONE[want], poetics.BOTH):
                return False
        elif spec.tones and col in (2, 4, 6) and col < widths[line] and \
                level[tok] not in (poetics.required_tone(line, col, first), poetics.BOTH):
            return False
        if line in rhyme_lines and col == widths[line]:
            _, tone, tones = rhyme_lines[line]
            return bool((tables.rhyme_members()[tone][tok] & tables.enough(tones)).any())
        return True
    occupied, line, pos = {}, 0, 0
    for tok in start:
        w = tables.itos[tok]
        if w in END_MARKS or w == "、":
            line, pos = line + 1, 0
        else:
            occupied[line, pos] = w
            pos += 1
    return keywords.Layout(widths, char_fits, rhyme_lines, occupied)


@torch.no_grad()
def draft_probabilities(model, itos, drafts, prime, device):
    """(B, T, V) probabilities of each character of the drafts given what comes before it."""
    stoi = {w: i for i, w in enumerate(itos)}
    width = max(map(len, drafts))
    eos = stoi[dataUtil.EOS]
    rows = [[stoi[dataUtil.BOS], *prime, *(stoi.get(c, eos) for c in d)] + [eos] * (width - len(d)) for d in drafts]
    logits, _ = model(torch.tensor(rows, device=device).t())           # (1 + P + T, B, V)
    return torch.softmax(logits[len(prime):len(prime) + width].float(), -1).transpose(0, 1).cpu()


def draft_first_tone(draft, tables):
    """The tone pattern's position-2 tone of the draft's first line (LEVEL when unknown)."""
    level = tables.tone_tables()[1]
    line = poetics.split_lines(draft)[0] if draft else ""
    for pos, flip in ((1, 0), (3, 1)):
        tok = tables.stoi.get(line[pos]) if len(line) > pos + 1 else None
        if tok is not None and level[tok] in (poetics.LEVEL, poetics.OBLIQUE):
            return int(level[tok]) ^ flip
    return poetics.LEVEL


def with_fixed(spec, fixed, first, layout, tables):
    """spec with the keyword characters fixed; a keyword on a rhyme opens its set in that character's groups."""
    s = dataclasses.replace(spec, fixed=tuple(sorted(fixed.items())),
                            first_tone=first if spec.tones else spec.first_tone)     # a format model's drawn one
    for (line, pos), ch in fixed.items():
        if line in layout.rhyme_lines and pos == layout.widths[line] - 1:
            k, tone, tones = layout.rhyme_lines[line]
            groups = tables.rhyme_members()[tone][tables.stoi[ch]] & tables.enough(tones)
            s.rhyme_open = ((k, tuple(np.flatnonzero(groups))),)
            s.rhymed += ch
    return s


def stream(key, poem, candidate, device):
    """The random stream of one candidate of one poem of a request (candidate -1: the poem's form)."""
    digest = hashlib.blake2b(repr((key, poem, candidate)).encode(), digest_size=8).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest, "big") >> 1)


def best_of(texts, nlls, pairs=None, weights=poetics.RERANK_WEIGHTS):
    """The candidate with the lowest score, the others behind it (pairs: the 对仗 table, for 律诗's couplets;
    weights: the score's, poetics.RERANK_WEIGHTS unless a study varies them)."""
    def terms(t, v):
        if pairs is None:
            return poetics.rerank_terms(t, float(v))
        return poetics.rerank_terms(t, float(v), duizhang.score(t, pairs), pairs.thresholds["parallel"])
    ranked = sorted((Candidate(t, ts, poetics.rerank_score(ts, weights), []) for t, ts in ((t, terms(t, v))
                                                                                  for t, v in zip(texts, nlls))),
                    key=lambda c: c.score)
    ranked[0].others = ranked[1:]
    return ranked[0]


def default_forms(spec, start, tables, cache=None):
    """The regular forms of real poems a default poem's form is drawn from, [(characters, lines, poems)], or
    None (then the model decides the length) when no forms table is at hand; forms the start does not fit
    (a start of six characters, or one with a five-character first line) are left out. cache: a dict that
    keeps the table read (the web server's)."""
    forms = forms_table(cache)
    return [f for f in forms or () if fits(dataclasses.replace(spec, chars=f[0], lines=f[1]), start, tables)] or None


def sampled_form(spec, forms, generator):
    """spec with a form drawn from forms in proportion to how many real poems have it."""
    weights = torch.tensor([float(k) for _, _, k in forms])
    chars, lines, _ = forms[int(torch.multinomial(weights, 1, generator=generator))]
    return dataclasses.replace(spec, chars=chars, lines=lines)


def poems_per_key(model, itos, n, seed, device, keys, field, **settings):
    """n poems for each key (a start character or acrostic heads, set as GenConfig.<field>), with the
    other GenConfig settings given; the k-th key's poems are drawn with seed * 1000 + k."""
    poems = []
    for k, key in enumerate(keys):
        g = GenConfig()
        g.num, g.seed = n, seed * 1000 + k
        for name, value in {**settings, field: key}.items():
            setattr(g, name, value)
        poems += poems_for(model, itos, g, device)
    return poems
