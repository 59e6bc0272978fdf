"""Perplexity over real tokens: what training, evaluate and the studies measure a model by.

    evaluate(model, poems, pad_id, batch_size, device)   a split's perplexity, exp(total NLL / real target tokens)
    text_nll(model, itos, texts, device)                 the same over texts
"""
import math

import numpy as np
import torch

import dataUtil
from config import UserError
from model import masked_nll
from training.inputs import batch_formats


@torch.no_grad()
def evaluate(model, poems, pad_id, batch_size, device, max_cells=16_000_000, formats=None):
    """Perplexity over a whole split, exp(total NLL / real target tokens), plus the batch-mean figure
    mean_b exp(NLL_b / n_b) that some peers report (it weighs short batches as much as long ones).
    Each batch runs in time chunks of at most max_cells logits (chunk × batch × V), carrying the LSTM state,
    so memory stays bounded whatever the batch size: 16M float32 logits are 64 MB. formats: the poems' format
    inputs (training/inputs.py's poem_formats), else none (all unknown)."""
    if not any(len(p) for p in poems):
        raise UserError("no poems to evaluate: the split is empty (--dev-frac or --test-frac 0, or too few poems)")
    was_training = model.training
    model.eval()
    total, count, batch_ppls = 0.0, 0, []
    V = model.proj.out_features
    for idx in dataUtil.length_batches([len(p) for p in poems], batch_size):
        inputs, targets = dataUtil.pad_batch([poems[i] for i in idx], pad_id)
        feats, pair = batch_formats(formats, idx, inputs.shape[0], device)
        inputs, targets = torch.from_numpy(inputs).to(device), torch.from_numpy(targets).to(device)
        chunk = max(1, max_cells // (inputs.shape[1] * V))
        nll_b, n_b, state = 0.0, 0, None
        for t in range(0, inputs.shape[0], chunk):
            sl = slice(t, t + chunk)
            logits, state = model(inputs[sl], state, *((feats[sl], pair[sl]) if feats is not None else ()))
            nll, n = masked_nll(logits, targets[t:t + chunk], pad_id)
            nll_b, n_b = nll_b + nll.item(), n_b + n
        total, count = total + nll_b, count + n_b
        batch_ppls.append(math.exp(nll_b / n_b))
    model.train(was_training)
    return {"ppl": math.exp(total / count), "nll": total / count, "tokens": count,
            "batch_mean_ppl": float(np.mean(batch_ppls))}


@torch.no_grad()
def text_nll(model, itos, texts, device, batch_size=256):
    """The model's own mean NLL per token of `<bos> text <eos>` (targets: the text's characters and <eos>)."""
    ids, _ = dataUtil.encode(texts, {w: i for i, w in enumerate(itos)})
    poems = np.split(ids, np.cumsum([len(t) + 2 for t in texts])[:-1])
    return evaluate(model, poems, itos.index(dataUtil.PAD), batch_size, device)["nll"]
