"""Writing poems from the model: batched sampling, and constraints that guarantee a poem's form.

Form is enforced by masking the logits at every step, never by filtering afterwards, so whatever the
temperature a constrained poem has exactly the lines and characters asked for:

    --form 5|7 --lines 4|8   lines of exactly 5 or 7 characters ending ，/。 alternately; 4 or 8 lines; <eos> last
    --acrostic 春夏秋冬       line k starts with the k-th character; any of ，。？！； ends a line
    --rhyme                  even lines end in characters of one rhyme group in one tone (level by default)
    --rhyme-system           pingshui (平水韵; 词林正韵 for --cipai, the default) or xinyun (中华新韵)
    --tones                  positions 2, 4, 6 follow 二四六分明 with 粘 and 对 (a hard mask); with --cipai every
                             平/仄 its 格 in the 词谱 fixes (cipu.py; --ge N picks the 格), 中 left free
    --tone-system            classical (the corpus's own 平仄 labels, the default) or mandarin (pypinyin)
    --prefix TEXT            style priming: run through the model first, never printed

Each poem in a batch has its own `Automaton`, which says which tokens may come next and follows the tokens
chosen. Sampling options: temperature, top-k, top-p (nucleus), greedy, repetition penalty.
Deliberately left out: beam search (sampling under masks already meets every constraint).
"""
import dataclasses
import hashlib
import math
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch

import cipu
import dataUtil
import duizhang
import formats
import keywords
import poetics
import rhymebook
from config import GenConfig, UserError, suggest

END_MARKS = poetics.LINE_ENDS
HEAD_LINE = 24          # an acrostic line without --form ends by this many characters (so its poem's length is bounded)
CI_TONE = {"平": poetics.LEVEL, "仄": poetics.OBLIQUE}


# ----------------------------------------------------------------------------------------------------------
# what the user asked for, checked

@dataclass
class Spec:
    chars: int = 0          # characters per line, 0 = free
    lines: int = 0          # lines, 0 = free
    heads: str = ""         # acrostic heads
    rhyme: bool = False
    tones: bool = False
    pattern: tuple = ()     # a 词牌's lines: ((characters, end mark), ...)
    rhyme_sets: tuple = ()  # the lines that rhyme together and their tones: (((line, 平|仄), ...), ...)
    rhyme_tone: int = poetics.LEVEL     # the tone of --form's rhymes
    rhyme_first: bool = False           # --form's first line rhymes too (首句入韵; kept by revise)
    first_tone: object = None           # the tone pattern's position-2 tone of line 1, when known beforehand
    rhyme_open: tuple = ()              # ((rhyme set, (group, ...)), ...): groups a set is already in (revise)
    rhymed: str = ""                    # rhyme characters already used elsewhere in the poem (revise)
    fixed: tuple = ()                   # (((line, pos), character), ...): characters placed beforehand (keywords)
    ci_tones: tuple = ()                # --cipai --tones: per line of the pattern, its 格's 平/仄/中 per character
    group: int = -1                     # the 平水韵 group (index) the poem rhymes in, told the model (-1: open)
    rhyme_lines: tuple = ()             # a 词牌's rhyming lines (told the model, whether or not --rhyme masks)
    masks: bool = True                  # False (--no-masks): the model alone keeps the form
    pair_input: bool = True             # the 颔联/颈联 read the character they answer (format inputs' pair)

    @property
    def constrained(self):
        return bool(self.chars or self.lines or self.heads or self.pattern)


def spec_from(gcfg, cipai=None, cipu_table=None, told=False):
    """The Spec of a GenConfig (cipai: the learnt 词牌 table, needed for --cipai; cipu_table: the 词谱, read
    from pretrained/cipu.json when --cipai needs it and none is given; told: the model reads format inputs, so a
    --cipai poem follows a 格 of the 词谱 and its tones are told it); a bad combination is a UserError."""
    heads = "".join(gcfg.acrostic.split())
    heads = "".join(h if h in dataUtil.PUNCT else dataUtil.convert_chars(h)[:1] or h for h in heads)   # 春夏 as --start
    s = Spec(gcfg.form, gcfg.lines, heads, gcfg.rhyme, gcfg.tones,
             rhyme_tone=poetics.LEVEL if gcfg.rhyme_tone == "level" else poetics.OBLIQUE)
    if gcfg.ge and not gcfg.cipai or gcfg.ge < 0:
        raise UserError(f"--ge {gcfg.ge}: give --cipai NAME and a 格 number from 1 (0: the default)")
    if gcfg.cipai:
        if s.chars or s.lines or s.heads:
            raise UserError("--cipai fixes the form itself: leave out --form, --lines, --acrostic")
        entry, ge = cipai_entry(gcfg, cipai, cipu_table, s.tones or told)
        s.pattern = dataUtil.cipai_pattern(entry)
        if ge is not None and (s.tones or told):
            s.ci_tones = tuple(cut(ge.tones, [n for n, _ in s.pattern]))
        if ge is not None and s.rhyme and gcfg.rhyme_system == "pingshui":      # 词林正韵: a 入 set rhymes in 入声
            s.rhyme_open = tuple((k, ENTERING) for k, (tone, _) in enumerate(ge.rhymes) if tone == "入")
        s.rhyme_lines = tuple(sorted(line for r in entry["rhymes"] for line in r["lines"]))
        s.rhyme_sets = tuple(tuple(zip(r["lines"], r["tones"])) for r in entry["rhymes"]) if s.rhyme else ()
        if s.rhyme and not s.rhyme_sets:
            raise UserError(f"--rhyme: no rhyme positions are known for {gcfg.cipai} (its examples share no rhyme "
                            "group often enough)")
        return s
    if s.chars not in (0, 5, 7):
        raise UserError(f"--form {s.chars}: choose 5 or 7 characters per line")
    if s.lines not in (0, 4, 8):
        raise UserError(f"--lines {s.lines}: choose 4 (绝句) or 8 (律诗)")
    if s.lines and not s.chars:
        raise UserError("--lines needs --form 5 or --form 7")
    if (s.rhyme or s.tones) and not s.chars:
        given = " and ".join(f for f, on in (("--rhyme", s.rhyme), ("--tones", s.tones)) if on)
        raise UserError(f"{given} need{'s' if ' and ' not in given else ''} --form 5 or --form 7 (or --cipai for --rhyme)")
    if s.heads and s.lines and len(s.heads) != s.lines:
        raise UserError(f"--acrostic has {len(s.heads)} heads but --lines is {s.lines}; give one head per line")
    bad = [h for h in s.heads if h in dataUtil.PUNCT or not dataUtil.CLEAN_POEM.fullmatch(h)]
    if bad:
        raise UserError(f"--acrostic head {bad[0]!r} is not a Chinese character; each head opens a line")
    if s.heads and s.chars and len(s.heads) % 2:
        raise UserError(f"--acrostic has {len(s.heads)} heads; with --form, lines come in couplets: give an even "
                        "number of heads (4 for a 绝句, 8 for a 律诗)")
    if s.chars and not s.lines:
        s.lines = len(s.heads) or 4
    return s


ENTERING = tuple(g for g, bu in enumerate(rhymebook.CILIN) if bu in cipu.ENTERING_BU)   # 词林正韵's 入声 部


def cipai_entry(gcfg, cipai, table, tones):
    """(the entry {"lines", "rhymes"} in cipai.json's form that --cipai writes to, the 格 of the 词谱 it follows
    or None). The learnt pattern alone unless --tones or --ge asks for a 格, or the 词牌 is only in the 词谱;
    the 格 is --ge's, else the first whose pieces the learnt pattern follows, else the first (with its own
    pieces); a 格's rhyme sets replace the learnt ones (their tones are the 格's)."""
    learnt = gcfg.cipai if gcfg.cipai in (cipai or {}) else None
    if learnt and not tones and not gcfg.ge:
        return cipai[learnt], None
    table = table or cipu.load()
    main = cipu.resolve(table, gcfg.cipai, dataUtil.opencc_t2s())
    if main is None:
        if learnt:
            raise UserError(f"--cipai {gcfg.cipai}: the 词谱 has no 格 of it for --tones or --ge")
        raise UserError(f"--cipai {gcfg.cipai}: not a known 词牌 (python main.py generate --list-cipai)"
                        + (suggest(gcfg.cipai, list(cipai or {})) or suggest(gcfg.cipai, list(table.names))))
    names = {n for n, m in table.names.items() if m == main}
    learnt = learnt or next((k for k in cipai or {} if names & {k, *k.split("・")}), None)
    ges = table.ge[main]
    if gcfg.ge > len(ges):
        raise UserError(f"--ge {gcfg.ge}: {main} has {len(ges)} 格 in the 词谱")
    lengths = [n for n, _ in cipai[learnt]["lines"]] if learnt else []
    fitting = [g for g in ges if cipu.distance(lengths, g) == 0] if learnt else []
    ge = ges[gcfg.ge - 1] if gcfg.ge else (fitting or ges)[0]
    pattern = cipai[learnt]["lines"] if ge in fitting else [[n, mark] for n, mark in ge.pieces]
    return {"lines": pattern, "rhymes": rhyme_entries(ge, [n for n, _ in pattern])}, ge


def rhyme_entries(ge, lengths):
    """The 格's rhyme sets as cipai.json's: [{"lines": [line, ...], "tones": [平|仄, ...]}] for lines of these
    lengths (every rhyme ends one); a 中 rhyme takes its set's tone (平 for a 平仄 set)."""
    line_of = {end - 1: k for k, end in enumerate(cipu.piece_ends(lengths))}
    out = []
    for tone, at in ge.rhymes:
        fallback = "仄" if tone in ("仄", "入") else "平"
        out.append({"lines": [line_of[p] for p in at],
                    "tones": [ge.tones[p] if ge.tones[p] != "中" else fallback for p in at]})
    return out


def form_length(spec):
    """The tokens (characters and end marks) a poem of spec takes at most, or None when the model decides."""
    if spec.pattern:
        return sum(n + 1 for n, _ in spec.pattern)
    if spec.chars and spec.lines:
        return spec.lines * (spec.chars + 1)
    if spec.heads:
        return len(spec.heads) * (HEAD_LINE + 1)
    return None


def fitted(gcfg, specs, given=0):
    """gcfg with max_gen_len grown to the longest form of specs less the given tokens (+1 for <eos>): a form
    asked for is written whole, never cut at --max-gen-len (which bounds only a free poem)."""
    need = max((form_length(s) or 0 for s in specs), default=0) - given + 1
    return gcfg if need <= gcfg.max_gen_len else dataclasses.replace(gcfg, max_gen_len=need)


def cut(s, lengths):
    """s in consecutive pieces of these lengths."""
    return [s[end - n:end] for n, end in zip(lengths, cipu.piece_ends(lengths))]


def reads_formats(model):
    """Whether the model reads format inputs (stand-in models of the tests have no config)."""
    return getattr(getattr(model, "cfg", None), "format_inputs", False)


def format_for(spec):
    """The formats.Format a row of spec tells the model: a 词牌's lines and rhyming lines, or a regular 诗's
    shape with its tone pattern (spec.first_tone) and 平水韵 group (spec.group) where chosen; None when free."""
    if spec.pattern:
        tones = tuple(tuple(formats.WANT_VALUE[t] for t in line) for line in spec.ci_tones)
        return formats.Format(lengths=tuple(n for n, _ in spec.pattern), rhyme_lines=dict.fromkeys(spec.rhyme_lines, 0),
                              tones=tones)
    if spec.chars in (5, 7) and spec.lines and spec.lines % 2 == 0:
        level = spec.rhyme_tone == poetics.LEVEL
        group = spec.group if spec.group >= 0 and level else None
        fmt = formats.shi_format(spec.chars, spec.lines, spec.first_tone, group, spec.rhyme_first and level)
        return fmt if spec.pair_input else dataclasses.replace(fmt, paired=())
    return None


# ----------------------------------------------------------------------------------------------------------
# vocabulary-wide tables the masks are built from

class Tables:
    """Boolean masks over the vocabulary (numpy, V), each token's tone, and its rhyme groups in a rhyme book."""

    def __init__(self, itos, classical=None, book=None):
        self.itos, self.classical = itos, classical       # classical: {character: 平|仄|both}, or Mandarin
        self.book = book                                  # rhymebook.Book; None: 中华新韵 under these tones
        self.stoi = {w: i for i, w in enumerate(itos)}
        V = len(itos)
        self.eos = self.stoi[dataUtil.EOS]
        self.banned = [self.stoi[t] for t in (dataUtil.PAD, dataUtil.UNK, dataUtil.BOS)]
        self.ideograph = np.array([len(w) == 1 and bool(dataUtil.CLEAN_POEM.fullmatch(w)) and w not in
                                   dataUtil.PUNCT for w in itos])
        self.any = np.ones(V, bool)
        self.any[self.banned] = False
        self._tones = self._members = None
        self._enough = {}

    def characters(self):
        """The vocabulary's ideographs (what tones and rhymes are looked up for)."""
        return [w for w, ok in zip(self.itos, self.ideograph) if ok]

    def tone_tables(self):
        """(info {character: (中华新韵 group, level)}, level per token: 1 平, 0 仄, 2 both, -1 unknown), on
        first use."""
        if self._tones is None:
            info = poetics.table_for(self.characters(), self.classical)
            level = np.full(len(self.itos), -1)
            for w, (_, lv) in info.items():
                level[self.stoi[w]] = -1 if lv is None else lv
            self._tones = info, level
        return self._tones

    def rhyme_members(self):
        """{tone: (V, G) bool}: token v is in rhyme group g with that tone (poetics.LEVEL / OBLIQUE)."""
        if self._members is None:
            book = self.book or poetics.xinyun_book(self.tone_tables()[0])
            self._members = {t: np.zeros((len(self.itos), len(book.groups)), bool)
                             for t in (poetics.LEVEL, poetics.OBLIQUE)}
            for w in self.characters():
                for g, t in book.entries.get(w, ()):
                    if t in self._members:
                        self._members[t][self.stoi[w], g] = True
        return self._members

    def enough(self, tones):
        """(G,) bool: the groups with characters enough for rhymes of these tones (one distinct character
        each), so a rhyme set opened in one of them can always be finished."""
        if tones not in self._enough:
            member = self.rhyme_members()
            ok = (member[poetics.LEVEL] | member[poetics.OBLIQUE]).sum(0) >= len(tones)
            for t in set(tones):
                ok &= member[t].sum(0) >= tones.count(t)
            self._enough[tones] = ok
        return self._enough[tones]

    def group_mask(self, groups):
        """(G,) bool with the given groups of the rhyme book set."""
        mask = np.zeros(self.rhyme_members()[poetics.LEVEL].shape[1], bool)
        mask[list(groups)] = True
        return mask

    def only(self, ch):
        mask = np.zeros(len(self.itos), bool)
        mask[self.stoi[ch]] = True
        return mask


# ----------------------------------------------------------------------------------------------------------
# one poem's constraint state

class Automaton:
    """Follows one poem token by token; `allowed()` is the mask of tokens that keep it within the Spec."""

    def __init__(self, spec, tables):
        self.spec, self.t = spec, tables
        self.n_lines = len(spec.pattern) or spec.lines or len(spec.heads)
        self.line = self.pos = 0               # current line, characters so far in it
        self.first_tone = spec.first_tone      # tone chosen at line 1, position 2 (for --tones)
        self.groups = {k: tables.group_mask(gs) for k, gs in spec.rhyme_open}   # rhyme set -> its open groups
        self.rhymed = {tables.stoi[c] for c in spec.rhymed if c in tables.stoi}   # never repeated
        self.fixed = dict(spec.fixed)
        self.written = [[]]                    # the ids of each line's characters so far

    def describe(self):
        """The constraints in force, as the flags that asked for them."""
        s = self.spec
        parts = ["--cipai's pattern" if s.pattern else f"--form {s.chars}" if s.chars else "",
                 f"--lines {s.lines}" if s.lines else "", "--acrostic" if s.heads else "",
                 "--rhyme" if s.rhyme else "", "--tones" if s.tones else ""]
        return " ".join(p for p in parts if p) or "the form"

    def allowed(self):
        """Boolean mask (V,) of the tokens allowed next, or None when anything goes."""
        t, s = self.t, self.spec
        if not s.constrained or not s.masks:
            return None
        if self.n_lines and self.line >= self.n_lines:
            return t.only(dataUtil.EOS)
        if s.chars or s.pattern:
            return self.in_form()
        mask = t.any.copy()
        mask[t.eos] = False                    # a poem with a line count ends only after its last line
        if self.pos == 0:
            mask &= t.ideograph
            if s.heads:
                mask = t.only(s.heads[self.line])
            return mask
        if self.pos >= HEAD_LINE:              # the line must end now
            mask &= np.isin(np.arange(len(mask)), [t.stoi[c] for c in END_MARKS if c in t.stoi])
        if self.line == self.n_lines - 1:
            mask[[t.stoi[c] for c in "，；" if c in t.stoi]] = False    # the last line ends with 。？！
        return mask

    def in_form(self):
        """A line of fixed length, then its end mark: alternately ，。 for --form, the 词牌's own for --cipai."""
        t, s = self.t, self.spec
        chars, end = self.line_form()
        if self.pos == chars:
            return t.only(end if end in t.stoi else "，")
        if self.pos == 0 and s.heads:
            return t.only(s.heads[self.line])
        if (self.line, self.pos) in self.fixed:
            return t.only(self.fixed[self.line, self.pos])
        mask = t.ideograph                     # shared: narrowed below into new arrays, never in place
        col = self.pos + 1                     # 1-based position of the next character
        if s.tones and s.ci_tones:              # a 词: every 平/仄 its 格 fixes (中 free)
            want = s.ci_tones[self.line][self.pos]
            if want != "中":
                mask = mask & np.isin(t.tone_tables()[1], (CI_TONE[want], poetics.BOTH))
        elif s.tones and col in (2, 4, 6) and col < chars:
            _, level = t.tone_tables()           # a character read both ways fits either tone, but the
            if self.first_tone is not None:     # poem's first tone is fixed by position 2 or, failing that, 4
                want = (poetics.required_tone(self.line, col, self.first_tone), poetics.BOTH)
            else:
                want = (0, 1, poetics.BOTH) if col == 2 else (0, 1)
            mask = mask & np.isin(level, want)
        rhyme = self.rhyme_here() if s.rhyme and col == chars else None
        if rhyme is not None:
            mask = mask & self.rhyme_mask(*rhyme)
        return mask

    def line_form(self):
        """(characters, end mark) of the current line: alternately ，。 for --form, the 词牌's own for --cipai."""
        s = self.spec
        return s.pattern[self.line] if s.pattern else (s.chars, "，" if self.line % 2 == 0 else "。")

    def rhyme_here(self):
        """(rhyme set, tone here, tones of all the set's lines) when the current line ends on a rhyme, else None:
        the even lines of a --form poem (in --rhyme-tone), a 词牌's rhyme sets for --cipai."""
        if not self.spec.pattern:
            tone, first = self.spec.rhyme_tone, self.spec.rhyme_first
            rhyming = self.line % 2 == 1 or (self.line == 0 and first)
            return (0, tone, (tone,) * (self.n_lines // 2 + first)) if rhyming else None
        for k, lines in enumerate(self.spec.rhyme_sets):
            tones = tuple(poetics.CLASSICAL[tone] for _, tone in lines)
            for (line, _), tone in zip(lines, tones):
                if line == self.line:
                    return k, tone, tones
        return None

    def rhyme_mask(self, k, tone, tones):
        """Characters in rhyme set k's group (a group every rhyme of the set so far is in), in the tone asked
        for, not used yet. A set opens only in groups with characters enough for all its lines, of each tone
        they ask (Tables.enough); a character in several such groups keeps them all open until a later rhyme
        narrows them, so the mask is never empty."""
        member = self.t.rhyme_members()[tone]                 # (V, G)
        open_groups = self.groups.get(k, self.t.enough(tones))
        ok = (member & open_groups).any(1)
        ok[list(self.rhymed)] = False
        return ok

    def advance(self, tok):
        """Follow the chosen token."""
        w = self.t.itos[tok]
        if w in END_MARKS or (self.spec.pattern and w == "、"):     # a 词牌's lines may end in 、 (满江红)
            self.line, self.pos = self.line + 1, 0
            self.written.append([])
            return
        if not self.t.ideograph[tok]:
            return
        self.pos += 1
        self.written[-1].append(tok)
        level = int(self.t.tone_tables()[1][tok]) if self.spec.tones else -1
        if self.line == 0 and self.first_tone is None and level in (0, 1) and self.pos in (2, 4):
            self.first_tone = level if self.pos == 2 else 1 - level
        rhyme = self.rhyme_here() if self.spec.rhyme and self.pos == self.line_form()[0] else None
        if rhyme is not None:
            k, tone, tones = rhyme
            member = self.t.rhyme_members()[tone][tok]          # (G,)
            narrowed = member & self.groups.get(k, self.t.enough(tones))
            if narrowed.any():                                  # a given line that leaves the set (revise's
                self.groups[k] = narrowed                        # kept lines) does not close it
            self.rhymed.add(tok)


# ----------------------------------------------------------------------------------------------------------
# sampling

@torch.no_grad()
def sample(model, itos, starts, gcfg, device, generator=None, spec=None, prime=(), tables=None):
    """Generate len(starts) poems as one batch and return their texts (see sample_scored)."""
    return sample_scored(model, itos, starts, gcfg, device, generator, spec, prime, tables)[0]


@torch.no_grad()
def sample_scored(model, itos, starts, gcfg, device, generator=None, spec=None, prime=(), tables=None,
                  given=False, primes=None, mask_log=None):
    """Generate len(starts) poems as one batch: their texts (no special tokens) and each one's mean NLL per
    generated token (<eos> included) under the model's own distribution (untempered, unmasked).

    Each poem is `<bos> prime start…`: the prime ids (--prefix; primes: one list per row) set the state and are
    not returned; the start ids (--start) open the poem and pass through the constraints like generated ones
    (given: they are the user's own lines, followed but not checked against them, as revise's kept lines).
    spec and generator are one for all rows or a list with one per row (a poem's own random stream: the same
    poem whatever else is in the batch), and so is tables (rows of one vocabulary may follow different tone
    tables and rhyme books). A constraint that leaves no character to choose is a UserError naming it.
    mask_log: a list that receives, at every sampled step a mask narrowed, (at a rhyme slot, the model's own
    probability outside the mask) — how often the mask had to act (the form study)."""
    B = len(starts)
    specs = spec if isinstance(spec, list) else [spec or Spec()] * B
    row_tables = tables if isinstance(tables, list) else [tables or Tables(itos)] * B
    streams = generator if isinstance(generator, list) else None
    batch = Batch(model, gcfg, device, None if streams else generator)
    batch.mask_log = mask_log
    rows = batch.add(starts, specs, row_tables, primes or [list(prime)] * B, streams, given)
    while batch.rows:
        for row in batch.step():
            if row.error is not None:
                raise row.error
    return [dataUtil.decode(r.out, itos) for r in rows], np.array([r.nll / max(r.count, 1) for r in rows])


@dataclass
class Row:
    """One poem being written in a Batch."""
    auto: Automaton
    stream: object          # its torch.Generator, or None: the batch's
    pending: list           # [(id, is_start)] of its lead still to feed, one a step
    out: list = dataclasses.field(default_factory=list)     # its ids so far (the start's included)
    nll: float = 0.0        # summed over the generated tokens
    count: int = 0          # generated tokens
    done: bool = False
    error: object = None    # a UserError that ended it
    tag: object = None      # the caller's (the web server's request)
    fmt: object = None      # its formats.Format, told the model (None: the model has no format inputs, or free)

    def features(self):
        """(features (K,), pair id) of the position this row writes next (all unknown while its --prefix is
        still being read, or without a Format)."""
        a = self.auto
        if self.fmt is None or (self.pending and not self.pending[0][1]):     # --prefix still being read
            return np.zeros(len(formats.GROUPS), np.int64), 0
        pair = formats.pair_at(self.fmt, a.line, a.pos, a.written[a.line - 1]) if a.line > 0 else None
        return formats.row_at(self.fmt, a.line, a.pos), pair or 0


class Batch:
    """Poems written together, one token each a step. Rows join (add) and leave (finished, or drop) between
    steps, so a server keeps one batch running while requests come and go (continuous batching), and a finished
    row costs nothing more. Rows of one vocabulary; each has its own Automaton and, when given, random stream."""

    def __init__(self, model, gcfg, device, generator=None):
        self.model, self.gcfg, self.device, self.generator = model, gcfg, device, generator
        self.rows, self.logits, self.state, self.tables = [], None, None, None    # logits (B, V), state (L, B, H)
        self.mask_log = None          # a list to note how much of the model's choice each mask cut (sample_scored)

    @torch.no_grad()
    def add(self, starts, specs, tables, primes, streams=None, given=False, tags=None):
        """New rows, each fed `<bos> prime start`. An idle batch reads the part all the new rows share at once
        (the rest is fed one step at a time while the other rows sample); rows joining a running batch start
        from the zero state and are fed theirs a step at a time with the others (no forward pass of their own,
        and the same numbers: a step's matmul gives each row what it gives it alone). Returns the rows."""
        n = len(starts)
        if not n:
            return []
        for s, p, t in zip(specs, starts, tables):
            if not given and not fits(s, p, t):
                raise UserError(f"the start {''.join(t.itos[i] for i in p)!r} does not fit the form asked for")
        self.tables = self.tables or tables[0]     # one vocabulary: banned tokens, <bos>, <eos> are the same
        bos = self.tables.stoi[dataUtil.BOS]
        leads = [[(bos, False)] + [(tok, False) for tok in pr] + [(tok, True) for tok in st]
                 for pr, st in zip(primes, starts)]
        common = 0 if self.rows else min(map(len, leads))
        told = reads_formats(self.model)
        rows = [Row(Automaton(s, t), streams[b] if streams else None, lead[common:], tag=tags[b] if tags else None,
                    fmt=format_for(s) if told else None)
                for b, (s, t, lead) in enumerate(zip(specs, tables, leads))]
        lead_feats = []                                    # per row, the features after each common lead token
        unknown = (np.zeros(len(formats.GROUPS), np.int64), 0)
        for row, lead in zip(rows, leads):
            feats = []
            for k, (tok, is_start) in enumerate(lead[:common]):
                if is_start:
                    row.out.append(tok)
                    row.auto.advance(tok)
                ahead = lead[k + 1] if k + 1 < len(lead) else None      # the next token (not a copy of the rest)
                feats.append(unknown if row.fmt is None or (ahead is not None and not ahead[1]) else row.features())
            lead_feats.append(feats)
        if not self.rows:
            told_any = told and any(r.fmt is not None for r in rows)
            tokens = torch.tensor([[t for t, _ in lead[:common]] for lead in leads], device=self.device).t()  # (P, n)
            fmts = self.lead_formats(lead_feats) if told_any else None
            # The steps on which every row reads the same token with the same format inputs (a request's --prefix
            # and --start: its candidates differ at most in their drawn format) are read once, for one row, and
            # their state is shared; only the rest is read row by row (a 10,000-character prefix once, not 64x).
            same = (tokens == tokens[:, :1]).all(1)
            if fmts is not None:
                same &= (fmts[0] == fmts[0][:, :1]).all(2).all(1) & (fmts[1] == fmts[1][:, :1]).all(1)
            agree = int(same.long().cumprod(0).sum()) if n > 1 else common
            state = None
            if agree:
                logits, state = read_leads(self.model, tokens[:agree, :1],
                                           fmts and (fmts[0][:agree, :1], fmts[1][:agree, :1]))
                state = state and tuple(s.expand(-1, n, -1).contiguous() for s in state)
            if agree < common:
                logits, state = read_in_chunks(self.model, tokens[agree:], formats=fmts and (
                    fmts[0][agree:], fmts[1][agree:]), state=state)             # (1, n, V)
            else:
                logits = logits.expand(-1, n, -1).contiguous()
            self.rows, self.logits, self.state = rows, logits[-1], state
            return rows
        self.logits = torch.cat([self.logits, self.logits.new_zeros(n, self.logits.shape[1])])  # not read: forced
        self.state = self.state and tuple(torch.cat([s, s.new_zeros(s.shape[0], n, s.shape[2])], 1)
                                          for s in self.state)               # (L, B + n, H)
        self.rows = self.rows + rows
        return rows

    def note_masks(self, rows, forced, masks):
        """Append (at a rhyme slot, probability the mask took away) for each sampling row whose mask cut any."""
        probs = torch.softmax(self.logits.float(), -1).cpu().numpy()                 # (B, V), untempered
        cut = self.tables.any[None] & ~masks                                          # (B, V)
        for b, r in enumerate(rows):
            if not forced[b] and cut[b].any():
                a = r.auto
                at_rhyme = a.spec.rhyme and a.pos + 1 == a.line_form()[0] and a.rhyme_here() is not None \
                    if (a.spec.chars or a.spec.pattern) and a.line < a.n_lines else False
                self.mask_log.append((at_rhyme, float(probs[b][cut[b]].sum())))

    def lead_formats(self, lead_feats):
        """(feats (P, n, K), pair (P, n)) tensors of the rows' common lead features."""
        feats = np.array([[f for f, _ in row] for row in lead_feats], np.int64).transpose(1, 0, 2)
        pair = np.array([[p for _, p in row] for row in lead_feats], np.int64).T
        return torch.from_numpy(feats).to(self.device), torch.from_numpy(pair).to(self.device)

    def drop(self, gone):
        """Remove the rows for which gone(row) holds (a client that went away) and return them."""
        leaving = [gone(r) for r in self.rows]
        if any(leaving):
            out = [r for r, g in zip(self.rows, leaving) if g]
            self.keep([b for b, g in enumerate(leaving) if not g])
            return out
        return []

    def keep(self, idx):
        sel = torch.tensor(idx, dtype=torch.long, device=self.logits.device)
        self.rows = [self.rows[b] for b in idx]
        self.logits, self.state = self.logits[sel], self.state and tuple(s[:, sel] for s in self.state)

    @torch.no_grad()
    def step(self):
        """Every row's next token: its lead's next one, or one sampled under its constraints; the rows that
        finished (at <eos>, at max_gen_len, or with an error) leave and are returned; the rest read their
        tokens."""
        rows, t, g = self.rows, self.tables, self.gcfg
        forced = [bool(r.pending) for r in rows]
        masks = [t.any if f else r.auto.allowed() for r, f in zip(rows, forced)]     # a forced row's is not
        masks = np.stack([t.any if m is None else m for m in masks])                 # read: every row has one
        empty = ~(masks & t.any).any(1)                                               # (B, V), then (B,)
        for b in np.flatnonzero(empty):
            a = rows[b].auto
            rows[b].error = UserError(f"no character of this vocabulary fits {a.describe()} at line "
                                      f"{a.line + 1}, position {a.pos + 1}; loosen the constraints or "
                                      "use another model")
            masks[b] = t.any                               # the row ends here; its draw is not used
        if self.mask_log is not None:
            self.note_masks(rows, forced, masks)
        streams = [r.stream for r in rows]
        nxt = pick_next(self.logits, t, g, streams if streams[0] is not None else self.generator,
                        masks, [r.out for r in rows], skip=forced)                               # (B,)
        step_nll = -torch.log_softmax(self.logits.float(), -1).gather(1, nxt[:, None])[:, 0]
        nxt, step_nll = nxt.tolist(), step_nll.tolist()
        for b, r in enumerate(rows):
            if r.error is not None:
                r.done = True
            elif forced[b]:
                tok, is_start = r.pending.pop(0)
                nxt[b] = tok
                if is_start:
                    r.out.append(tok)
                    r.auto.advance(tok)
            else:
                tok = nxt[b]
                r.nll, r.count = r.nll + step_nll[b], r.count + 1
                if tok == t.eos:
                    r.done = True
                else:
                    r.out.append(tok)
                    r.auto.advance(tok)
                    r.done = r.count >= g.max_gen_len
        live = [b for b, r in enumerate(rows) if not r.done]
        finished = [r for r in rows if r.done]
        if len(live) < len(rows):
            self.keep(live)
        if self.rows:
            ids = torch.tensor([nxt[b] for b in live], device=self.device)
            extra = ()
            if any(r.fmt is not None for r in self.rows):
                told = [r.features() for r in self.rows]
                feats = torch.from_numpy(np.stack([f for f, _ in told])[None]).to(self.device)   # (1, B, K)
                pair = torch.tensor([[p for _, p in told]], device=self.device)                  # (1, B)
                extra = (feats, pair)
            logits, self.state = self.model(ids.view(1, -1), self.state, *extra)
            self.logits = logits[-1]
        return finished


@torch.no_grad()
def token_nll(model, itos, texts, device, batch=32):
    """Each text's NLL per target of `<bos> text <eos>` (a list of numpy arrays, len(text) + 1 each: the
    text's characters, then <eos>); characters outside the vocabulary count as <unk>. Up to `batch` texts a
    forward pass, padded at the end (a row's padding comes after its own tokens, so it changes nothing)."""
    ids, offsets = dataUtil.encode(texts, {w: i for i, w in enumerate(itos)})
    out = []
    for first in range(0, len(texts), batch):
        last = min(first + batch, len(texts))
        seqs = [ids[offsets[k]:offsets[k + 1]].astype(np.int64) for k in range(first, last)]
        width = max(map(len, seqs))
        padded = torch.from_numpy(np.stack([np.pad(q, (0, width - len(q))) for q in seqs])).t().to(device)
        logits, _ = model(padded[:-1])                                  # (T, B, V)
        nll = -torch.log_softmax(logits.float(), -1).gather(2, padded[1:, :, None])[:, :, 0].cpu().numpy()
        out += [nll[:len(q) - 1, b] for b, q in enumerate(seqs)]
    return out


def line_nll(model, itos, text, device, marks=poetics.LINE_ENDS):
    """The mean NLL per character of each line of text (its end mark included; <eos> counts to the last);
    lines end at marks (a 词's pieces: dataUtil.PUNCT)."""
    nll = token_nll(model, itos, [text], device)[0]
    out, start = [], 0
    for line in poetics.split_after(text, marks):
        end = start + len(line) + (1 if start + len(line) == len(text) else 0)
        out.append(float(nll[start:end].mean()))
        start += len(line)
    return out


def read_in_chunks(model, tokens, chunk=64, formats=None, state=None):
    """Run tokens (P, B) through the model `chunk` steps at a time, carrying the state (from `state` when
    given): only the last step's logits (1, B, V) are kept, so a long --prefix costs chunk x B x V logits of
    memory, not P x B x V."""
    for t in range(0, tokens.shape[0], chunk):
        extra = (formats[0][t:t + chunk], formats[1][t:t + chunk]) if formats is not None else ()
        logits, state = model(tokens[t:t + chunk], state, *extra)
    return logits[-1:], state


LEAD_CACHE = {}          # the last leads read_leads read: the CLI's batches of one request read their prime once


def read_leads(model, tokens, formats=None):
    """read_in_chunks of an idle batch's distinct leads, remembered for the next batch of the same leads and
    weights (iter_poems writes --num poems in several batches, each with the same --prefix and --start): a
    10,000-character prefix is read once a command, not once a batch. The key holds the weights' versions, the
    precision and the mode, so a model trained or cast since never reuses an old reading."""
    params = list(model.parameters()) if hasattr(model, "parameters") else []
    if tokens.shape[0] < 64 or not params:       # a short lead costs less than its key
        return read_in_chunks(model, tokens, formats=formats)
    key = (id(model), tuple(p._version for p in params), tuple(p.data_ptr() for p in params[:1]),
           getattr(model, "precision", None), getattr(model, "training", False), tokens.device, tokens.shape,
           tokens.cpu().numpy().tobytes(), None if formats is None else
           tuple(f.cpu().numpy().tobytes() for f in formats))
    if key not in LEAD_CACHE:
        LEAD_CACHE.clear()
        LEAD_CACHE[key] = read_in_chunks(model, tokens, formats=formats)
    logits, state = LEAD_CACHE[key]
    return logits.clone(), state and tuple(s.clone() for s in state)


def pick_next(logits, tables, gcfg, generator, masks=None, history=None, skip=None):
    """Next ids (B,) from logits (B, V): masked and banned tokens never; repetition penalty on the tokens
    already in each poem; then greedy, or temperature with optional top-k and top-p. masks: (B, V) bool, every
    row's allowed tokens (None: any). Rows in skip (forced by the caller) draw nothing from their own random
    stream."""
    logits = logits.to(torch.float32, copy=True)
    logits[:, tables.banned] = -math.inf
    if masks is not None:                                     # all masks in one in-place fill
        logits.masked_fill_(torch.from_numpy(~masks).to(logits.device), -math.inf)
    for b, seen in enumerate(history or ()):                 # never three of one character in a row (凄凄凄),
        if len(seen) >= 2 and seen[-1] == seen[-2] and torch.isfinite(logits[b]).sum() > 1:   # when any
            logits[b, seen[-1]] = -math.inf                                                      # other fits
    if gcfg.repetition_penalty != 1.0 and history:
        for b, seen in enumerate(history):
            if seen:
                idx = torch.tensor(sorted(set(seen)), device=logits.device)
                vals = logits[b, idx]
                logits[b, idx] = torch.where(vals > 0, vals / gcfg.repetition_penalty, vals * gcfg.repetition_penalty)
    if gcfg.greedy:
        return logits.argmax(-1)
    if gcfg.temperature != 1.0:
        logits /= max(gcfg.temperature, 1e-6)
    if gcfg.top_k > 0:
        kth = torch.topk(logits, min(gcfg.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits[logits < kth] = -math.inf
    if gcfg.top_p < 1.0:
        logits = nucleus(logits, gcfg.top_p)
    probs = torch.softmax(logits, -1)
    if isinstance(generator, list):                           # a random stream per poem: one uniform draw
        skip = skip if skip is not None else [False] * len(generator)      # each, then the inverse CDF for
        u = torch.cat([torch.zeros(1, device=probs.device) if s else       # all rows at once (a multinomial
                       torch.rand(1, generator=g, device=probs.device)     # call per row cost 0.5 ms here)
                       for g, s in zip(generator, skip)])
        return inverse_cdf(probs, u)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def inverse_cdf(probs, u):
    """Row b's token: the first whose cumulative probability exceeds u[b] x the row's total, so a token of
    probability 0 is never chosen. probs (B, V), u (B,) in [0, 1)."""
    cdf = probs.cumsum(-1)                  # a token of probability 0 adds exactly 0: never the first above
    idx = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)[:, 0]
    return idx.clamp_(max=probs.shape[-1] - 1)


def nucleus(logits, p):
    """Keep the smallest set of most likely tokens whose probability reaches p (at least one)."""
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cum = torch.softmax(sorted_logits, -1).cumsum(-1)
    drop = cum - torch.softmax(sorted_logits, -1) >= p          # tokens after the mass already reached p
    sorted_logits[drop] = -math.inf
    return torch.full_like(logits, -math.inf).scatter(-1, order, sorted_logits)


def prepared_or_shipped(name, load, data_dir):
    """The first readable table of data/processed/NAME (the corpus prepared here) and pretrained/NAME."""
    root = os.path.dirname(os.path.abspath(__file__))
    for path in (os.path.join(data_dir, "processed", name), os.path.join(root, "pretrained", name)):
        table = load(path) if os.path.isfile(path) else None
        if table:
            return table
        if os.path.lexists(path):
            print(f"warning: {path} is not a readable {name} (a folder, a pipe, or damaged: its schema does not "
                  "hold); trying the next table", file=sys.stderr)
    return None


def cipai_table(data_dir="data"):
    """{词牌: {"lines": ..., "share": ..., "examples": ..., "stanza": ...}} (dataUtil.build_cipai_table)."""
    table = prepared_or_shipped("cipai.json", dataUtil.load_cipai_table, data_dir)
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
    table = prepared_or_shipped("tones.json", dataUtil.load_tone_table, data_dir)
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
    books = prepared_or_shipped("rhymes.json", dataUtil.load_rhyme_books, data_dir)
    if not books:
        raise UserError("no readable rhyme table: python dataUtil.py prepare builds it (data/processed/rhymes.json); "
                        "or --rhyme-system xinyun")
    return books["cilin" if gcfg.cipai else "pingshui"]


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
    tables: Tables
    start: list             # ids
    prime: list             # ids
    forms: list             # [(characters, lines, poems)] a default poem's form is drawn from, or None
    words: list             # keywords
    key: tuple              # what the random streams hang on
    draws: dict = None      # the format counts a regular poem's format is drawn from (models with format inputs)
    pairs: object = None    # the 对仗 table the re-ranking reads (duizhang.load)


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
    tables = Tables(itos, classical_table(gcfg) if rhyme or tones else None, rhyme_book(gcfg) if rhyme else None)
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
    start = dataUtil.encode_start(gcfg.start, itos, tables.stoi) if gcfg.start.strip() else []
    if spec.heads and start and itos[start[0]] != spec.heads[0]:
        raise UserError("--start must begin with the first acrostic head")
    if not start and not spec.constrained:
        raise UserError("--start is empty; give the character(s) the poem begins with, e.g. --start 日")
    prime = dataUtil.encode_start(gcfg.prefix, itos, tables.stoi) if gcfg.prefix.strip() else []
    forms = None if spec.constrained or gcfg.free else default_forms(spec, start, tables, tables_cache)
    forms = [f for f in forms or () if form_length(dataclasses.replace(spec, chars=f[0], lines=f[1])) - len(start)
             < gcfg.max_gen_len] or None          # a drawn form fits --max-gen-len (a form asked for grows it)
    words = keywords.parse(gcfg.keywords, itos, dataUtil.convert_chars)
    if words and not (spec.chars or spec.pattern or forms):
        raise UserError("--keywords needs a form to place them in: --form, --cipai, or leave out --free")
    # the random streams depend on the seed, the asked-for text and the poem's number (never on --num)
    key = (gcfg.seed, str((start, spec.heads) + ((gcfg.cipai,) if gcfg.cipai else ())))
    gcfg = fitted(gcfg, [spec], len(start))
    draws = format_draws(tables_cache) if told else None
    return Request(gcfg, spec, tables, start, prime, forms, words, key, draws,
                   pairs_table(tables_cache) if gcfg.pair_rerank else None)


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
    """forms.json's counts of tone patterns, 首句入韵 and rhyme groups per form (dataUtil.format_counts)."""
    cache = {} if cache is None else cache
    if "formats" not in cache:
        cache["formats"] = prepared_or_shipped("forms.json", dataUtil.load_format_draws, "data")
    return cache["formats"]


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


def iter_poems(model, itos, gcfg, device, batch=64):
    """The CLI's generation: gcfg.num poems, each the best of gcfg.candidates samples by poetics.rerank_score,
    yielded as each batch is done (at most `batch` samples at once), so memory stays bounded and output starts
    at once however many are asked for. Without --form, --cipai or --acrostic a poem's form is drawn from the
    real poems' forms (forms.json) unless --free. Poem k of a request is the same whatever --num is."""
    req = make_request(itos, gcfg, told=reads_formats(model))
    n = gcfg.candidates
    per_batch = max(1, batch // n)
    for first in range(0, gcfg.num, per_batch):
        poems = range(first, min(first + per_batch, gcfg.num))
        r = rows_of(model, itos, req, poems, device)
        texts, nlls = sample_scored(model, itos, r.starts, req.gcfg, device, r.streams, r.specs, tables=r.tables,
                                    primes=r.primes)
        for i in range(len(poems)):
            yield best_of(texts[i * n:(i + 1) * n], nlls[i * n:(i + 1) * n], req.pairs)


def keyword_specs(model, itos, words, start, prime, specs, streams, gcfg, device, tables):
    """Each candidate's Spec with the keywords fixed in slots drawn from a draft's probabilities (keywords.py)."""
    layouts = [layout_of(s, tables, start) for s in specs]
    tone_choices = (poetics.LEVEL, poetics.OBLIQUE)
    for s, lay in {id(s): (s, lay) for s, lay in zip(specs, layouts)}.values():
        if len(words) > len(lay.widths):
            raise UserError(f"--keywords: {len(words)} words for a poem of {len(lay.widths)} lines; give fewer")
        bad = keywords.feasible(words, lay, tone_choices)
        if bad:
            raise UserError(f"--keywords {bad}: it fits no position of this form under "
                            f"{Automaton(s, tables).describe()}")
    drafts, _ = sample_scored(model, itos, [start] * len(specs), gcfg, device, streams, specs, prime, tables)
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


def best_of(texts, nlls, pairs=None):
    """The candidate with the lowest score, the others behind it (pairs: the 对仗 table, for 律诗's couplets)."""
    def terms(t, v):
        if pairs is None:
            return poetics.rerank_terms(t, float(v))
        return poetics.rerank_terms(t, float(v), duizhang.score(t, pairs), pairs.thresholds["parallel"])
    ranked = sorted((Candidate(t, ts, poetics.rerank_score(ts), []) for t, ts in ((t, terms(t, v))
                                                                                  for t, v in zip(texts, nlls))),
                    key=lambda c: c.score)
    ranked[0].others = ranked[1:]
    return ranked[0]


def default_forms(spec, start, tables, cache=None):
    """The regular forms of real poems a default poem's form is drawn from, [(characters, lines, poems)], or
    None (then the model decides the length) when no forms table is at hand; forms the start does not fit
    (a start of six characters, or one with a five-character first line) are left out. cache: a dict that
    keeps the table read (the web server's)."""
    cache = {} if cache is None else cache
    if "forms.json" not in cache:
        cache["forms.json"] = prepared_or_shipped("forms.json", dataUtil.load_forms_table, "data")
    forms = cache["forms.json"]
    return [f for f in forms or () if fits(dataclasses.replace(spec, chars=f[0], lines=f[1]), start, tables)] or None


def fits(spec, start, tables):
    """Whether the start tokens keep to spec's form."""
    a = Automaton(spec, tables)
    for tok in start:
        mask = a.allowed()
        if mask is not None and not mask[tok]:
            return False
        a.advance(tok)
    return True


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
