"""The constraints that guarantee a poem's form.

Form is enforced by masking the logits at every step, never by filtering afterwards, so whatever the
temperature a constrained poem has exactly the lines and characters asked for:

    --form 5|7 --lines 4|8   lines of exactly 5 or 7 characters ending ，/。 alternately; 4 or 8 lines; <eos> last
    --acrostic 春夏秋冬       line k starts with the k-th character; any of ，。？！； ends a line
    --rhyme                  even lines end in characters of one rhyme group in one tone (level by default)
    --rhyme-system           pingshui (平水韵; 词林正韵 for --cipai, the default) or xinyun (中华新韵)
    --tones                  positions 2, 4, 6 follow 二四六分明 with 粘 and 对 (a hard mask); with --cipai every
                             平/仄 its 格 in the 词谱 fixes (verse/cipu.py; --ge N picks the 格), 中 left free
    --tone-system            classical (the corpus's own 平仄 labels, the default) or mandarin (pypinyin)
    --prefix TEXT            style priming: run through the model first, never printed

Spec (what was asked for, checked: spec_from), Masks (vocabulary-wide masks, each token's tone and rhyme
groups) and Automaton (one poem's constraint state: which tokens may come next) live here; sampling under
them is writing/decoding.py.
"""
import dataclasses
from dataclasses import dataclass

import numpy as np

from verse import cipu
import dataUtil
from verse import formats
from verse import poetics
from verse import rhymebook
from config import UserError, suggest
from verse.text import CLEAN_POEM, PUNCT, cipai_pattern, convert_chars, opencc_t2s


END_MARKS = poetics.LINE_ENDS


HEAD_LINE = 24          # an acrostic line without --form ends by this many characters (so its poem's length is bounded)


CI_TONE = {"平": poetics.LEVEL, "仄": poetics.OBLIQUE}


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
    heads = "".join(h if h in PUNCT else convert_chars(h)[:1] or h for h in heads)   # 春夏 as --start
    s = Spec(gcfg.form, gcfg.lines, heads, gcfg.rhyme, gcfg.tones,
             rhyme_tone=poetics.LEVEL if gcfg.rhyme_tone == "level" else poetics.OBLIQUE)
    if gcfg.ge and not gcfg.cipai or gcfg.ge < 0:
        raise UserError(f"--ge {gcfg.ge}: give --cipai NAME and a 格 number from 1 (0: the default)")
    if gcfg.cipai:
        if s.chars or s.lines or s.heads:
            raise UserError("--cipai fixes the form itself: leave out --form, --lines, --acrostic")
        entry, ge = cipai_entry(gcfg, cipai, cipu_table, s.tones or told)
        s.pattern = cipai_pattern(entry)
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
    bad = [h for h in s.heads if h in PUNCT or not CLEAN_POEM.fullmatch(h)]
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
    main = cipu.resolve(table, gcfg.cipai, opencc_t2s())
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


class Masks:
    """Boolean masks over the vocabulary (numpy, V), each token's tone, and its rhyme groups in a rhyme book."""

    def __init__(self, itos, classical=None, book=None):
        self.itos, self.classical = itos, classical       # classical: {character: 平|仄|both}, or Mandarin
        self.book = book                                  # rhymebook.Book; None: 中华新韵 under these tones
        self.stoi = {w: i for i, w in enumerate(itos)}
        V = len(itos)
        self.eos = self.stoi[dataUtil.EOS]
        self.banned = [self.stoi[t] for t in (dataUtil.PAD, dataUtil.UNK, dataUtil.BOS)]
        self.ideograph = np.array([len(w) == 1 and bool(CLEAN_POEM.fullmatch(w)) and w not in
                                   PUNCT for w in itos])
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

    def answering(self):
        """Whether the next character stands in the second line of a regular 律诗's 颔联 or 颈联 (or of an 排律's
        other middle couplets), answering the one above it (对仗: formats.answering_lines)."""
        s = self.spec
        return not s.pattern and s.chars in (5, 7) and self.line in formats.answering_lines(s.lines)

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
        they ask (Masks.enough); a character in several such groups keeps them all open until a later rhyme
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


def fits(spec, start, tables):
    """Whether the start tokens keep to spec's form."""
    a = Automaton(spec, tables)
    for tok in start:
        mask = a.allowed()
        if mask is not None and not mask[tok]:
            return False
        a.advance(tok)
    return True
