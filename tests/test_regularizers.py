"""AWD-LSTM's regularisers: locked dropout, DropConnect on the recurrent weights, the weight average; each
against a hand value or autograd."""
import math

import pytest
import torch

from config import Config, ModelConfig, UserError, check_config
from model import LockedDropout, PoetryLM
from studies.regularizer_study import WeightAverage


def test_locked_dropout_shares_one_mask_over_time_and_is_the_identity_in_eval():
    torch.manual_seed(0)
    drop = LockedDropout(0.5)
    x = torch.rand(6, 4, 10) + 1.0                      # (T, B, D), no zeros of its own
    y = drop(x)
    mask = y / x                                        # 0 or 2 everywhere
    assert set(mask.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(mask, mask[:1].expand_as(mask))  # the same mask at every step
    assert not torch.equal(mask[:, 0], mask[:, 1])      # but its own for each poem
    drop.eval()
    assert torch.equal(drop(x), x)


def test_standard_dropout_changes_its_mask_from_step_to_step():
    torch.manual_seed(0)
    m = PoetryLM(ModelConfig(vocab_size=30, embed_dim=6, hidden_size=8, dropout=0.5, dropout_at="embed"))
    x = torch.rand(6, 4, 6) + 1.0
    mask = m.drop_embed(x) / x
    assert not torch.equal(mask, mask[:1].expand_as(mask))


def tiny(**kw):
    return ModelConfig(vocab_size=30, embed_dim=6, hidden_size=8, num_layers=2, **kw)


def test_weight_drop_masks_only_the_recurrent_columns_once_per_call():
    torch.manual_seed(0)
    m = PoetryLM(tiny(weight_drop=0.5))
    layer = m.lstm.layers[1]
    W = layer.dropped_weight()
    D = layer.input_size
    assert torch.equal(W[:, :D], layer.W[:, :D])
    ratio = W[:, D:] / layer.W[:, D:]
    assert set(ratio.unique().tolist()) == {0.0, 2.0}
    assert 0.3 < (ratio == 0).float().mean() < 0.7
    m.eval()
    assert layer.dropped_weight() is layer.W


@pytest.mark.parametrize("kind", ["standard", "locked"])
def test_weight_drop_gradients_of_the_fused_backward_match_autograd(kind):
    """The same masks (same seed) in the hand-derived backward and in autograd's: the same loss and gradients,
    and the dropped recurrent weights get exactly zero gradient from the recurrent product."""
    cfg = tiny(weight_drop=0.4, dropout=0.3, dropout_kind=kind)
    torch.manual_seed(1)
    fused = PoetryLM(cfg).double()
    ref = PoetryLM(ModelConfig(**{**cfg.__dict__, "lstm": "autograd"})).double()
    ref.load_state_dict(fused.state_dict())
    tokens = torch.randint(0, 30, (7, 3))
    losses = []
    for m in (fused, ref):
        torch.manual_seed(5)
        loss = m(tokens)[0].logsumexp(-1).sum()
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[0], losses[1], atol=1e-10, rtol=0)
    for (name, p), q in zip(fused.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-10, rtol=0, msg=name)
    torch.manual_seed(5)                                 # the masks of that forward, drawn again
    fused.drop_embed(torch.zeros(7, 3, 6, dtype=torch.float64))
    keep = fused.lstm.layers[0].dropped_weight() != 0
    D = fused.lstm.layers[0].input_size
    assert (fused.lstm.layers[0].W.grad[:, D:][~keep[:, D:]] == 0).all()


def test_weight_drop_off_in_eval_gives_the_plain_model():
    torch.manual_seed(0)
    dropped = PoetryLM(tiny(weight_drop=0.5))
    plain = PoetryLM(tiny())
    plain.load_state_dict(dropped.state_dict())
    tokens = torch.randint(0, 30, (5, 2))
    dropped.eval(), plain.eval()
    torch.testing.assert_close(dropped(tokens)[0], plain(tokens)[0], atol=0, rtol=0)


def test_weight_average_by_hand_and_swapped_restores_the_trained_weights():
    lin = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    avg = WeightAverage(lin, decay=0.9)
    expected = 0.0
    for n, w in enumerate([1.0, 2.0, 3.0, 4.0], start=1):
        with torch.no_grad():
            lin.weight.fill_(w)
        avg.update(lin)
        d = min(0.9, (1 + n) / (10 + n))                # 2/11, 3/12, 4/13, 5/14
        expected = d * expected + (1 - d) * w
    assert avg.avg[0].item() == pytest.approx(expected, abs=1e-6)
    with avg.swapped(lin):
        assert lin.weight.item() == pytest.approx(expected, abs=1e-6)
    assert lin.weight.item() == 4.0


@pytest.mark.parametrize("setting", [{"weight_drop": 0.2}, {"dropout_kind": "locked"}])
def test_cudnn_backend_refuses_what_it_cannot_run(setting):
    cfg = Config()
    cfg.model.lstm = "cudnn"
    for k, v in setting.items():
        setattr(cfg.model, k, v)
    with pytest.raises(UserError, match="hand-written LSTM"):
        check_config(cfg)


def test_bad_regulariser_values_are_refused():
    for k, v, msg in [("weight_drop", 1.0, "--weight-drop must be in"), ("dropout_kind", "gauss", "--dropout-kind")]:
        cfg = Config()
        setattr(cfg.model, k, v)
        with pytest.raises(UserError, match=msg):
            check_config(cfg)


# ----------------------------------------------------------------------------------------------------------
# rhyme unlikelihood: a loss against reusing a rhyme character (重韵)

def test_rhyme_repeats_names_the_earlier_rhyme_characters_of_the_same_poem_by_hand():
    import numpy as np
    from training.inputs import rhyme_repeats
    from verse.formats import COLUMN, GROUPS

    def poem(targets, slots):                            # encoded <bos> targets…; feats row t: target t
        feats = np.zeros((len(targets), len(GROUPS)), np.int64)
        feats[:, COLUMN["slot"]] = 1
        feats[slots, COLUMN["slot"]] = 2
        return np.array([1] + targets), (feats, np.zeros(len(targets), np.int64))

    # poem 0: rhymes 7, 8, 7 at slots 1, 3, 5; poem 1: rhymes 9, 9 at slots 0, 2; poem 2: no rhyme slot
    p0, f0 = poem([5, 7, 5, 8, 5, 7, 2], [1, 3, 5])
    p1, f1 = poem([9, 5, 9, 2], [0, 2])
    p2, f2 = poem([5, 5, 2], [])
    t, b, c = rhyme_repeats([f2, f0, f1], [p2, p0, p1], [1, 2, 0])
    # poem 0 is batch row 0: slot 3 may not reuse 7; slot 5 may not reuse 8 (its own 7 is the real target)
    # poem 1 is batch row 1: slot 2's target is 9 itself, so nothing is named
    assert list(zip(t.tolist(), b.tolist(), c.tolist())) == [(3, 0, 7), (5, 0, 8)]


def test_unlikelihood_by_hand_and_its_gradient():
    from model import unlikelihood
    logits = torch.zeros(2, 1, 4, dtype=torch.float64, requires_grad=True)    # (T, B, V)
    with torch.no_grad():
        logits[1, 0, 2] = math.log(3.0)                   # p = (1, 1, 3, 1) / 6 at t = 1
    t, b, c = torch.tensor([1, 1, 0]), torch.tensor([0, 0, 0]), torch.tensor([2, 0, 3])
    loss = unlikelihood(logits, t, b, c)
    want = -(math.log(1 - 3 / 6) + math.log(1 - 1 / 6) + math.log(1 - 1 / 4))
    assert loss.item() == pytest.approx(want, abs=1e-12)
    assert torch.autograd.gradcheck(lambda x: unlikelihood(x, t, b, c), (logits,))
    assert unlikelihood(logits, t[:0], b[:0], c[:0]).item() == 0.0


def test_a_training_step_adds_the_weighted_unlikelihood_gradient(tmp_path):
    """The raw gradients of one step with --rhyme-unlikelihood w are those without it plus w times the gradient
    of the unlikelihood (over the batch's rhyme repeats) divided by the batch's target tokens."""
    import copy
    import dataUtil
    from model import unlikelihood
    from training import loop
    from training.inputs import batch_formats, rhyme_repeats
    from test_model_train import tiny_cfg
    cfg = tiny_cfg(tmp_path)
    cfg.model.format_inputs = True
    cfg.train.format_drop = cfg.train.format_none = 0.0
    cfg.train.precision = "fp32"
    corpus = dataUtil.load_corpus(cfg)
    cfg.model.vocab_size = len(corpus.itos)
    torch.manual_seed(0)
    model = PoetryLM(cfg.model).double()
    idx = list(range(len(corpus.train)))
    grads = {}
    for w in (0.0, 2.0):
        cfg.train.rhyme_unlikelihood = w
        m = copy.deepcopy(model)
        tl = loop.TrainLoop(cfg, m, torch.optim.SGD(m.parameters(), lr=0.0), corpus, torch.device("cpu"), {})
        tl.train_step(idx, on_grads=lambda net: grads.__setitem__(w, [p.grad.clone() for p in net.parameters()]))
    t, b, c = rhyme_repeats(tl.formats["train"], corpus.train, idx)
    assert len(t) > 0                                     # the fixture's poems reuse rhyme characters
    inputs, targets = dataUtil.pad_batch([corpus.train[i] for i in idx], corpus.itos.index(dataUtil.PAD))
    feats, pair = batch_formats(tl.formats["train"], idx, inputs.shape[0], "cpu")
    m = copy.deepcopy(model)
    ul = unlikelihood(m(torch.from_numpy(inputs), None, feats, pair)[0], *map(torch.from_numpy, (t, b, c)))
    ul.backward()
    n = int((targets != corpus.itos.index(dataUtil.PAD)).sum())
    for g2, g0, p in zip(grads[2.0], grads[0.0], m.parameters()):
        torch.testing.assert_close(g2 - g0, 2.0 * p.grad / n, atol=1e-10, rtol=1e-6)


def test_rhyme_unlikelihood_needs_format_inputs():
    cfg = Config()
    cfg.train.rhyme_unlikelihood = 1.0
    with pytest.raises(UserError, match="--format-inputs"):
        check_config(cfg)
