"""The model's format inputs (model.py, --format-inputs): what each position of an encoded poem is in its form
(verse/formats.py reads it), per poem and padded into time-major batches for training, evaluation and the
studies.
"""
import numpy as np
import torch

import dataUtil
from verse import cipu, formats
from verse.tables import verse_tables
from verse.text import ci_pattern


def poem_formats(poems, itos, cfg):
    """[(feats (n+1, K), pair (n+1,))] of encoded poems (formats.features of each poem's own Format)."""
    tones, pingshui, cilin, cipai = verse_tables(dataUtil.processed_dir(cfg))
    ci = cfg.data.genre == "ci"
    reader = formats.Formatter(tones, pingshui, cilin, cipai if ci else None, ci_pattern, cipu.load() if ci else None)
    stoi = {w: i for i, w in enumerate(itos)}
    out = []
    for ids in poems:
        text = dataUtil.text_of(ids, itos)
        out.append(formats.features(text, reader(text), stoi))
    return out


def pad_formats(items, T):
    """Time-major (T, B, K) features and (T, B) pair ids of a batch (zeros, unknown, after each poem's end),
    aligned with pad_batch's inputs."""
    K = items[0][0].shape[1]
    feats = np.zeros((T, len(items), K), np.int64)
    pair = np.zeros((T, len(items)), np.int64)
    for b, (f, p) in enumerate(items):
        feats[:len(f), b], pair[:len(p), b] = f, p
    return feats, pair


def batch_formats(formats, idx, T, device, drop=(0.0, 0.0), rng=None):
    """(feats (T, B, K), pair (T, B)) tensors of poems idx from formats (a list per poem), each group dropped
    to unknown for a poem at rate drop[0], all of them at rate drop[1] (training); (None, None) without."""
    if formats is None:
        return None, None
    items = [formats[i] for i in idx]
    if max(drop) > 0:
        from verse.formats import drop_groups
        items = [drop_groups(f, p, drop[0], rng, drop[1]) for f, p in items]
    feats, pair = pad_formats(items, T)
    return torch.from_numpy(feats).to(device), torch.from_numpy(pair).to(device)


def rhyme_repeats(formats, poems, idx):
    """(t, b, candidate) int64 arrays for rhyme unlikelihood: at each rhyme slot t of poem b of the batch idx
    (time-major, aligned with pad_batch's targets: poem[1:]), each target of an earlier rhyme slot of the same
    poem other than the target at t itself, i.e. the rhyme characters the poem has used (重韵, which real poets
    write at 0.16% of the test split's rhyme slots). Slots come from the poems' own formats, never dropped."""
    from verse.formats import COLUMN
    ts, bs, cs = [], [], []
    for b, i in enumerate(idx):
        targets = poems[i][1:]                                     # (n + 1,): text ids, then <eos>
        slots = np.flatnonzero(formats[i][0][:, COLUMN["slot"]] == 2)
        for k, t in enumerate(slots):
            for c in sorted({int(targets[s]) for s in slots[:k]} - {int(targets[t])}):
                ts.append(t), bs.append(b), cs.append(c)
    return np.array(ts, np.int64), np.array(bs, np.int64), np.array(cs, np.int64)
