"""The engines behind `check` and `revise` that the command line and the web page share: the tables they need
loaded once, a poem checked with the model's surprise per line, and new versions of a line proposed."""
from dataclasses import dataclass

import dataUtil
import decoding
import prosody
from config import GenConfig, UserError


@dataclass
class Tables:
    """What a check needs besides the poem: tone labels, the two rhyme books, the 词牌 table (or None)."""
    labels: dict
    pingshui: object
    cilin: object
    cipai: dict


def load_tables(data_dir="data"):
    books = decoding.prepared_or_shipped("rhymes.json", dataUtil.load_rhyme_books, data_dir)
    if not books:
        raise UserError("no readable rhyme table: python dataUtil.py prepare builds it (data/processed/rhymes.json)")
    labels = decoding.classical_table(GenConfig(), data_dir) or {}
    cipai = decoding.prepared_or_shipped("cipai.json", dataUtil.load_cipai_table, data_dir)
    return Tables(labels, books["pingshui"], books["cilin"], cipai)


def check_poem(text, tables, model=None, itos=None, device="cpu"):
    """prosody.check's report of the normalised text, with each line's NLL under the model when one is given."""
    report = prosody.check(text, tables.labels, tables.pingshui, tables.cilin, tables.cipai)
    if model is not None:
        for line, nll in zip(report["lines"], decoding.line_nll(model, itos, text, device)):
            line["nll"] = round(nll, 4)
    return report
