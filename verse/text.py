"""Text rules of Chinese verse that every stage shares: the marks, what counts as a character, traditional to
simplified and variant characters to their standard form (the corpus's own conversion), a start text read in,
a poem laid out in lines, a 词's shape of lines. No torch, no corpus.
"""
import functools
import re

from config import UserError
from verse import poetics


HALF_TO_FULL = str.maketrans(",.?!;:", "，。？！；：")


PUNCT = "，。？！；：、"


IDEOGRAPH = (r"\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
             r"\U00020000-\U0002ebef\U00030000-\U0003134f\U0002f800-\U0002fa1f")


CLEAN_POEM = re.compile(f"[{IDEOGRAPH}{PUNCT}]+")


SENTENCE_ENDS = "。？！；"


CI_LINE = re.compile(f"([{IDEOGRAPH}]+)([{PUNCT}])")


# Characters of their own (in the 通用规范汉字表, or with a reading of their own) that the variant table links
# to a GB 2312 character: 神祇 is not 神只, 坰 (outskirts) is no radical 冂, 甪里 is a place, 邠 a state,
# 烝 (烝民) is not 蒸, 啰 (啰唝曲) is no 罗, 祐 is a name, 襜 (a skirt) is no 裣. They stay as they are.
VARIANT_KEEP = frozenset("祇坰甪邠烝啰祐襜")


VARIANT_PHRASES = {"沈沈": "沉沉"}   # 沈 is a surname (沈佺期) and stays; doubled it is always 沉沉 (deep, dark)


def to_simplified(texts):
    """OpenCC t2s over all texts in one call (newline-joined: fast, and conversion never crosses a line).

    t2s converts by phrase, so a character it keeps in one phrase (乾 in 乾坤) can be converted once its
    neighbours changed; poems are converted again until a pass changes nothing (twice is enough here)."""
    import opencc
    t2s = opencc.OpenCC("t2s").convert
    converted = t2s("\n".join(texts)).split("\n")
    assert len(converted) == len(texts)
    for _ in range(3):
        again = [t2s(t) for t in converted]
        if again == converted:
            break
        converted = again
    return converted


def in_gb2312(ch):
    """Whether ch is one of GB 2312's 6,763 standard simplified characters (Python's own codec)."""
    try:
        ch.encode("gb2312")
        return True
    except UnicodeEncodeError:
        return False


@functools.lru_cache(maxsize=None)
def standard_form(ch):
    """The standard form of a variant character, else ch. A character outside GB 2312 whose variants (the
    `yitizi` package's table of 异体字) include exactly one GB 2312 character that t2s keeps is that variant's
    different spelling: 鴈 -> 雁 (that one character, the standard simplified form). With several such
    candidates (勅: 敕 来 徕), in VARIANT_KEEP, or in GB 2312 already, ch stays."""
    if ch in VARIANT_KEEP or in_gb2312(ch) or not CLEAN_POEM.fullmatch(ch):
        return ch
    import yitizi
    t2s = opencc_t2s()
    found = [v for v in yitizi.get(ch) if in_gb2312(v) and t2s(v) == v]
    return found[0] if len(found) == 1 else ch


@functools.lru_cache(maxsize=1)
def opencc_t2s():
    import opencc
    return opencc.OpenCC("t2s").convert


def standardise(text):
    """text with its variant characters in standard form (same length: character for character)."""
    for phrase, standard in VARIANT_PHRASES.items():
        text = text.replace(phrase, standard)
    return "".join(map(standard_form, text))


def convert_chars(text):
    """text converted character by character the way the corpus is (t2s, then the standard form)."""
    t2s = opencc_t2s()
    return "".join(standard_form(t2s(ch)) for ch in text)


def check_opening(text):
    """A UserError when a start text opens with a mark (，日): a poem opens with a character. No vocabulary
    needed, so generate says it before any model is named."""
    text = "".join(text.split())
    if text and text[0] in PUNCT + ",.?!;:":
        raise UserError(f"{text!r} opens with {text[0]!r}: a poem opens with a character, not a mark; "
                        f"give {text.lstrip(PUNCT + ',.?!;:')!r}")


def encode_start(text, itos, stoi=None):
    """The ids of a start text: traditional converted to simplified; a character outside the vocabulary,
    an empty or non-Chinese start is a UserError naming it. stoi: itos's index, when the caller has it."""
    text = "".join(text.split())
    simplified = standardise(opencc_t2s()(text))
    if not simplified.strip(PUNCT):
        raise UserError("the start text is empty; give the character(s) the poem begins with, e.g. --start 日")
    check_opening(text)
    stoi = stoi or {w: i for i, w in enumerate(itos)}
    for ch in simplified:
        if not CLEAN_POEM.fullmatch(ch):
            raise UserError(f"start character {ch!r} is not Chinese; give Chinese characters, e.g. --start 日")
        if ch not in stoi:
            raise UserError(f"start character {ch!r} is not in the vocabulary; try a more common character")
    return [stoi[ch] for ch in simplified]


def format_poem(text):
    """One line per sentence pair: a break after each of 。？！；."""
    return "\n".join(poetics.split_after(text, SENTENCE_ENDS))


def ci_pattern(text):
    """((characters, end mark), ...) of a 词's lines, or None when the text holds anything but lines."""
    parts = CI_LINE.findall(text)
    if not parts or sum(len(chars) + 1 for chars, _ in parts) != len(text):
        return None
    return tuple((len(chars), mark) for chars, mark in parts)


def cipai_pattern(entry):
    """A table entry's pattern in ci_pattern's form: ((characters, end mark), ...)."""
    return tuple((n, mark) for n, mark in entry["lines"])
