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
