"""Keywords (`generate --keywords 春 江 花月`): every word appears verbatim in the poem, where the model finds it
likely, under every other constraint.

Method (requests.iter_poems drives it): each candidate poem is first drafted under the form asked for; one pass
of the model over the draft gives, at every position, the probability of each keyword's first character there
given the draft before it. Each keyword then takes a slot (line, position) drawn in proportion to that
probability among the slots where it fits: its characters' tones under --tones, a rhyming line's end only in a
rhyme group (one keyword character at most on a rhyme), an acrostic head or the start only where they agree,
no overlap, and a line of its own while lines remain. The candidate is then written again with the keywords
fixed in their slots (the logit mask allows only that character there) and the re-ranking keeps the best
candidate, as for any poem. Requests that cannot be met are refused up front: more words than lines, a word
longer than two characters or than a line, a character outside the vocabulary, a word that fits no slot.
"""
import numpy as np
import torch

from verse import poetics
from verse.text import CLEAN_POEM, PUNCT

MAX_WORDS, MAX_LEN = 4, 2


def check_text(text):
    """The space-separated words of text when their count, length and characters are right (no vocabulary
    needed: the command line asks this before it loads a model); a UserError names the first problem."""
    from config import UserError
    words = text.split()
    if len(words) > MAX_WORDS:
        raise UserError(f"--keywords: {len(words)} words; give 1 to {MAX_WORDS}")
    for w in words:
        for ch in w:
            if not CLEAN_POEM.fullmatch(ch) or ch in PUNCT:
                raise UserError(f"--keywords {w}: {ch!r} is not a Chinese character")
        if len(w) > MAX_LEN:
            raise UserError(f"--keywords {w}: a keyword is 1 or {MAX_LEN} characters; split longer ones")
    return words


def parse(text, itos, convert):
    """The keywords of `text` (space-separated), converted like --start (convert: traditional -> the corpus's
    characters), each character in the vocabulary; a UserError names the first problem."""
    from config import UserError
    words = [convert(w) for w in check_text(text)]
    vocab = set(itos)
    for w in words:
        for ch in w:
            if ch not in vocab:
                raise UserError(f"--keywords {w}: {ch!r} is not in the vocabulary; try a more common character")
    return words


class Layout:
    """The slots of one poem's form: characters per line, and a test of one character at (line, column)
    under a tone pattern (char_fits(line, col, ch, first) from decoding)."""

    def __init__(self, widths, char_fits, rhyme_lines, occupied):
        self.widths = widths                  # characters of each line
        self.char_fits = char_fits            # (line, 1-based col, character, first tone) -> bool
        self.rhyme_lines = rhyme_lines        # lines that end on a rhyme
        self.occupied = occupied              # {(line, pos): character} fixed already (the start)

    def slots(self, word, first, taken, used_lines, rhymes_taken):
        """[(line, pos)] where word fits, given slots taken {(line, pos)} and lines already holding a keyword
        (avoided while other lines are free)."""
        out = []
        for line, width in enumerate(self.widths):
            for pos in range(width - len(word) + 1):
                cells = [(line, pos + i) for i in range(len(word))]
                if any(c in taken for c in cells):
                    continue
                if any(c in self.occupied and self.occupied[c] != ch for c, ch in zip(cells, word)):
                    continue
                on_rhyme = [c for c in cells if c[1] == width - 1 and line in self.rhyme_lines]
                if on_rhyme and rhymes_taken:
                    continue
                if all(self.char_fits(l, p + 1, ch, first) for (l, p), ch in zip(cells, word)):
                    out.append((line, pos))
        fresh = [s for s in out if s[0] not in used_lines]
        return fresh or out


def feasible(words, layout, firsts):
    """The first word that fits no slot under any of the tone patterns firsts, else None."""
    for w in words:
        if not any(layout.slots(w, f, set(), set(), False) for f in firsts):
            return w
    return None


def place(words, layout, first, prob, generator):
    """{(line, pos): character} for all words, each slot drawn in proportion to prob(line, pos, character) (the
    draft's probability of the word's first character there), or None when they do not fit together."""
    taken, used_lines, fixed, rhymes_taken = set(), set(), {}, False
    for w in words:
        options = layout.slots(w, first, taken, used_lines, rhymes_taken)
        if not options:
            return None
        weights = torch.tensor([max(prob(l, p, w[0]), 1e-12) for l, p in options], dtype=torch.float64)
        line, pos = options[int(torch.multinomial(weights, 1, generator=generator))]
        for i, ch in enumerate(w):
            taken.add((line, pos + i))
            fixed[line, pos + i] = ch
            rhymes_taken |= pos + i == layout.widths[line] - 1 and line in layout.rhyme_lines
        used_lines.add(line)
    return fixed


def positions(poem, words):
    """[(line, position)] (0-based) of each keyword's first occurrence in the poem, None where it is missing."""
    marks = poetics.LINE_ENDS + "、"
    lines = [l.rstrip(marks) for l in poetics.split_after(poem, marks)]
    out = []
    for w in words:
        hit = next(((k, l.index(w)) for k, l in enumerate(lines) if w in l), None)
        out.append(hit)
    return out


def histogram(hits, lines, width):
    """(lines, width) counts of keyword positions."""
    h = np.zeros((lines, width), int)
    for hit in hits:
        if hit is not None and hit[0] < lines and hit[1] < width:
            h[hit] += 1
    return h
