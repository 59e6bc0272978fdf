"""Helpers shared by several test files."""
import torch

from config import Config, ModelConfig

TINY_ITOS = ["</s>", "<unk>", "<bos>", "<eos>", "，", "。"] + [chr(0x4e00 + i) for i in range(34)]


def tiny_checkpoint(tmp_path, V=40, E=8, H=12, L=2, seed=0, name="tiny.pt", formats=False):
    """Path of a checkpoint (main.py's format) of a randomly initialised model, with TINY_ITOS (and format inputs
    when formats)."""
    from training.checkpoint import save_checkpoint
    from model import PoetryLM
    torch.manual_seed(seed)
    cfg = Config()
    cfg.model = ModelConfig(vocab_size=V, embed_dim=E, hidden_size=H, num_layers=L, format_inputs=formats)
    path = str(tmp_path / name)
    save_checkpoint(path, PoetryLM(cfg.model), None, cfg, TINY_ITOS[:V], {"step": 0, "epoch": 0})
    return path


def shipped_models():
    """{"tang": (model, itos), "ci": (model, itos)}: the shipped models on the CPU."""
    import os
    from conftest import ROOT
    from training.checkpoint import load_checkpoint, model_from_checkpoint
    out = {}
    for genre in ("tang", "ci"):
        model, _, itos = model_from_checkpoint(load_checkpoint(os.path.join(ROOT, "pretrained", f"{genre}.pt")),
                                               torch.device("cpu"))
        out[genre] = (model, itos)
    return out
