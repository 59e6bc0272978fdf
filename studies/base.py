"""What the studies share: the model a study measures, with the corpus it was trained on."""
import torch

import dataUtil
from config import pick_checkpoint
from training.checkpoint import load_checkpoint, model_from_checkpoint


def study_model(ckpt):
    """(path, model on the CPU, its vocabulary, the whole prepared corpus with its data settings) of the model
    generate would pick for --ckpt ckpt."""
    path = pick_checkpoint(ckpt)
    model, cfg, itos = model_from_checkpoint(load_checkpoint(path), torch.device("cpu"))
    cfg.data.limit_poems = 0
    return path, model, itos, dataUtil.load_corpus(cfg)
