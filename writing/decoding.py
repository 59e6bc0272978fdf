"""Sampling from the model under the constraints' masks: poems written as one batch, a token per row each step.

    sample_scored(model, itos, starts, gcfg, device, ...)   the batch's texts with their NLLs (the one sampler;
                                                            writing/requests.py's iter_poems calls it)
    token_nll, line_nll                                     what the model makes of given texts

Each poem in a batch has its own constraints.Automaton, which says which tokens may come next and follows the
tokens chosen. Sampling options: temperature, top-k, top-p (nucleus), greedy, repetition penalty.
Deliberately left out: beam search (sampling under masks already meets every constraint).
"""
import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

import dataUtil
from verse import formats
from verse import poetics
from config import UserError
from writing.constraints import Automaton, Masks, Spec, fits, format_for, reads_formats





# ----------------------------------------------------------------------------------------------------------
# sampling

@torch.no_grad()
def sample(model, itos, starts, gcfg, device, generator=None, spec=None, prime=(), tables=None):
    """Generate len(starts) poems as one batch and return their texts (see sample_scored)."""
    return sample_scored(model, itos, starts, gcfg, device, generator, spec, prime, tables)[0]


@torch.no_grad()
def sample_scored(model, itos, starts, gcfg, device, generator=None, spec=None, prime=(), tables=None,
                  given=False, primes=None, mask_log=None, answers=None):
    """Generate len(starts) poems as one batch: their texts (no special tokens) and each one's mean NLL per
    generated token (<eos> included) under the model's own distribution (untempered, unmasked).

    Each poem is `<bos> prime start…`: the prime ids (--prefix; primes: one list per row) set the state and are
    not returned; the start ids (--start) open the poem and pass through the constraints like generated ones
    (given: they are the user's own lines, followed but not checked against them, as revise's kept lines).
    spec and generator are one for all rows or a list with one per row (a poem's own random stream: the same
    poem whatever else is in the batch), and so is tables (rows of one vocabulary may follow different tone
    tables and rhyme books). A constraint that leaves no character to choose is a UserError naming it.
    mask_log: a list that receives, at every sampled step a mask narrowed, (at a rhyme slot, the model's own
    probability outside the mask, the row's index in starts, the part of it on characters the poem has rhymed
    on already) — how often the mask had to act, and why (the form study).
    answers: the 对仗 partners (duizhang.partners) that gcfg.pair_bonus favours on a 律诗's answering lines."""
    B = len(starts)
    specs = spec if isinstance(spec, list) else [spec or Spec()] * B
    row_tables = tables if isinstance(tables, list) else [tables or Masks(itos)] * B
    streams = generator if isinstance(generator, list) else None
    batch = Batch(model, gcfg, device, None if streams else generator, answers)
    batch.mask_log = mask_log
    rows = batch.add(starts, specs, row_tables, primes or [list(prime)] * B, streams, given)
    for k, r in enumerate(rows):
        r.tag = k                                      # the batch is this call's own: the tag names the row
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

    def __init__(self, model, gcfg, device, generator=None, answers=None):
        self.model, self.gcfg, self.device, self.generator = model, gcfg, device, generator
        self.answers = answers or {}  # 对仗: {id: (partner ids, lifts)} that gcfg.pair_bonus favours
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
        """Append (at a rhyme slot, probability the mask took away, the row's tag, the part on characters already
        rhymed on) for each sampling row whose mask cut any."""
        probs = torch.softmax(self.logits.float(), -1).cpu().numpy()                 # (B, V), untempered
        cut = self.tables.any[None] & ~masks                                          # (B, V)
        for b, r in enumerate(rows):
            if not forced[b] and cut[b].any():
                a = r.auto
                at_rhyme = a.spec.rhyme and a.pos + 1 == a.line_form()[0] and a.rhyme_here() is not None \
                    if (a.spec.chars or a.spec.pattern) and a.line < a.n_lines else False
                rhymed = sorted(a.rhymed) if at_rhyme else []
                self.mask_log.append((at_rhyme, float(probs[b][cut[b]].sum()), r.tag,
                                      float(probs[b][rhymed].sum()) if rhymed else 0.0))

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

    def answer_bonus(self, row):
        """(partner ids, nats) that gcfg.pair_bonus adds where row writes the answer to the character above it
        (the same position of the couplet's first line), or None. Partners already in the poem get none (the
        bonus never pulls a 重字 in), nor does the character just written unless the line above doubles there
        too (萧萧 answered by 滚滚)."""
        a = row.auto
        if not (self.answers and self.gcfg.pair_bonus) or a.line == 0:
            return None
        above, here = a.written[a.line - 1], a.written[a.line]
        if a.pos >= len(above) or above[a.pos] not in self.answers:
            return None
        ids, lifts = self.answers[above[a.pos]]
        doubles = a.pos > 0 and above[a.pos] == above[a.pos - 1]
        fresh = [k for k, y in enumerate(ids) if y not in row.out or (doubles and here and y == here[-1])]
        if not fresh:
            return None
        return torch.from_numpy(ids[fresh]), torch.from_numpy(lifts[fresh]) * self.gcfg.pair_bonus

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
        answering = [not f and r.auto.answering() for r, f in zip(rows, forced)]
        spare = [a and g.pair_spare for a in answering]                 # 对仗's answers may echo the poem
        bonus = [self.answer_bonus(r) if a else None for r, a in zip(rows, answering)]
        nxt = pick_next(self.logits, t, g, streams if streams[0] is not None else self.generator,
                        masks, [r.out for r in rows], skip=forced, spare=spare, bonus=bonus)     # (B,)
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
    lines end at marks (a 词's pieces: PUNCT)."""
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


def pick_next(logits, tables, gcfg, generator, masks=None, history=None, skip=None, spare=None, bonus=None):
    """Next ids (B,) from logits (B, V): masked and banned tokens never; repetition penalty on the tokens already
    in each poem (not on rows where spare is True); bonus[b] (ids, nats) added to row b's logits (对仗); then
    greedy, or temperature with optional top-k and top-p. masks: (B, V) bool, every row's allowed tokens (None:
    any). Rows in skip (forced by the caller) draw nothing from their own random stream."""
    logits = logits.to(torch.float32, copy=True)
    logits[:, tables.banned] = -math.inf
    if masks is not None:                                     # all masks in one in-place fill
        logits.masked_fill_(torch.from_numpy(~masks).to(logits.device), -math.inf)
    for b, seen in enumerate(history or ()):                 # never three of one character in a row (凄凄凄),
        if len(seen) >= 2 and seen[-1] == seen[-2] and torch.isfinite(logits[b]).sum() > 1:   # when any
            logits[b, seen[-1]] = -math.inf                                                      # other fits
    if gcfg.repetition_penalty != 1.0 and history:
        for b, seen in enumerate(history):
            if seen and not (spare and spare[b]):
                idx = torch.tensor(sorted(set(seen)), device=logits.device)
                vals = logits[b, idx]
                logits[b, idx] = torch.where(vals > 0, vals / gcfg.repetition_penalty, vals * gcfg.repetition_penalty)
    for b, extra in enumerate(bonus or ()):
        if extra is not None:
            ids, nats = extra
            logits[b, ids.to(logits.device)] += nats.to(logits.device)
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


