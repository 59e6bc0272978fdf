"""The one way to load a model: the checkpoint format, read and written.

    model, cfg, itos = load_model(args.ckpt, device)  config.pick_checkpoint (--ckpt, else checkpoints/best.pt,
                                                      else pretrained/tang.pt) -> load_checkpoint -> model_from_checkpoint
    export_weights(src, dst)                          a weights-only float16 copy (what ships in pretrained/)

A checkpoint is a dict of state_dicts, the plain config dict, the vocabulary and the run's progress (no module
paths are pickled, so the code can move without breaking old files); see docs/design.md, "Checkpoints".
generate, evaluate, serve, export, the studies and the benchmark load models here; none imports the trainer.
"""
import errno
import os
import re
import shutil
import warnings

import torch

from common import fileio
from config import Config, EnvironmentFailure, UserError, pick_checkpoint
from model import PoetryLM

CKPT_FORMAT = 1
MAX_CKPT_BYTES = 4 * 2 ** 30          # far above any model this project trains (the shipped ones are ~10 MiB)


class SaveFailed(EnvironmentFailure):
    """A checkpoint or log could not be written (full disk, read-only folder); earlier files are intact."""


def save_checkpoint(path, model, optimizer, cfg, itos, progress):
    """Atomic torch.save of a dict of state_dicts, plain config, vocabulary, progress and RNG state. A failed
    write (full disk) removes its temporary file, leaves the previous file at path intact, raises SaveFailed."""
    ckpt = {
        "format": CKPT_FORMAT, "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "config": cfg.to_dict(), "itos": list(itos), **progress,
        "rng": {"torch": torch.get_rng_state()},
    }
    save_atomically(ckpt, path)


def save_atomically(ckpt, path):
    """torch.save through fileio.atomic_write; a failure leaves path as it was and raises SaveFailed."""
    try:
        fileio.atomic_write(path, lambda tmp: torch.save(ckpt, tmp))
    except (OSError, RuntimeError) as e:
        raise SaveFailed(f"could not write {path} ({save_error_cause(e, path, ckpt)}); "
                         "the checkpoints written before are kept")


def save_error_cause(e, path, ckpt):
    """A short reason for a failed save; torch's own message for a full disk is cryptic, so check the space."""
    if isinstance(e, OSError) and e.errno not in (None, errno.ENOSPC):
        return e.strerror
    said = re.search(r"strerror: ([^.]+)", str(e))                # torch: "open file failed with strerror: ..."
    if said and "No space" not in said.group(1):
        return said.group(1).strip()
    tensors = [*ckpt["model"].values()]
    if ckpt["optimizer"] is not None:
        tensors += [v for s in ckpt["optimizer"]["state"].values() for v in s.values() if torch.is_tensor(v)]
    need = sum(t.numel() * t.element_size() for t in tensors)
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    if free < need:
        return f"no space left on the device; the checkpoint needs {need / 2**20:.1f} MiB"
    return e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip().splitlines()[0][:120]


def export_weights(src, dst, half=True, beside=()):
    """Write src's model as a weights-only checkpoint (no optimiser state, no RNG; float16 storage when half,
    loaded back as float32): what ships in pretrained/. beside: more files [(path, write(tmp))] written with it,
    all or none (fileio.atomic_write_all: the tables travel with the model). Returns the file's size in bytes."""
    ckpt = load_checkpoint(src)
    model = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    slim = {**{k: v for k, v in ckpt.items() if k not in ("model", "optimizer", "rng")}, "model": model,
            "optimizer": None}
    try:
        fileio.atomic_write_all([(dst, lambda tmp: torch.save(slim, tmp)), *beside])
    except (OSError, RuntimeError) as e:
        where = e.filename if isinstance(e, OSError) and e.filename else dst
        cause = save_error_cause(e, dst, slim) if where == dst else e.strerror or str(e)
        raise SaveFailed(f"could not write {where} ({cause}); nothing was replaced")
    return os.path.getsize(dst)


def load_checkpoint(path):
    """The checkpoint dict; a missing, truncated or foreign file is a UserError (never code execution)."""
    if not os.path.lexists(path):
        raise UserError(f"checkpoint {path} not found; train first (python main.py train) or pass --ckpt PATH")
    if not os.path.isfile(path):
        raise UserError(f"{path} is not a file (a folder or a pipe); pass a checkpoint written by train")
    size = os.path.getsize(path)
    if size > MAX_CKPT_BYTES:
        raise UserError(f"{path} is {size / 2**30:.1f} GiB, more than a checkpoint of this project can be "
                        f"({MAX_CKPT_BYTES // 2**30} GiB); pass a file written by train")
    try:
        damaged = zip_damage(path)
        if damaged:
            raise UserError(f"{path} is damaged ({damaged}); copy it again or pass another checkpoint")
        with warnings.catch_warnings():            # torch warns of pickle protocol 4 before any error
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except UserError:
        raise
    except Exception as e:       # truncated zip, pickle with code, not a torch file at all ...
        raise UserError(f"{path} is not a readable checkpoint ({type(e).__name__}); pass a file written by train")
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT or "model" not in ckpt \
            or not isinstance(ckpt.get("config"), dict) or not isinstance(ckpt.get("itos"), list):
        raise UserError(f"{path} is not a checkpoint of this project; pass a file written by main.py train")
    bad = nonfinite(ckpt["model"])
    if bad:
        raise UserError(f"{path} is damaged: its weight {bad} holds NaN or infinite values; pass another checkpoint")
    return ckpt


def zip_damage(path):
    """What is wrong with a checkpoint's zip (a member whose bytes fail their CRC, a member larger than the
    file could hold), or "" when it is intact or not a zip at all (torch.load judges that)."""
    import zipfile
    if not zipfile.is_zipfile(path):
        return ""
    try:
        with zipfile.ZipFile(path) as zf:
            big = next((i.filename for i in zf.infolist() if i.file_size > MAX_CKPT_BYTES), None)
            if big:
                return f"{big} claims {zf.getinfo(big).file_size} bytes"
            bad = zf.testzip()                    # reads every member, checking its CRC-32
            return f"the bytes of {bad} fail their CRC check" if bad else ""
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        return f"{type(e).__name__}: {e}"


def nonfinite(state):
    """The name of the first floating tensor of a state_dict holding NaN or an infinity, else None."""
    if not isinstance(state, dict):
        return None
    return next((k for k, v in state.items() if torch.is_tensor(v) and v.is_floating_point()
                 and not bool(torch.isfinite(v).all())), None)


def model_from_checkpoint(ckpt, device):
    """(model in eval mode, config, itos) rebuilt from the checkpoint alone."""
    bad = nonfinite(ckpt.get("model") if isinstance(ckpt, dict) else None)
    if bad:
        raise UserError(f"checkpoint is damaged: its weight {bad} holds NaN or infinite values; pass another one")
    try:
        cfg = Config.from_dict(ckpt["config"])
        if cfg.model.vocab_size != len(ckpt["itos"]):
            raise ValueError("vocabulary size")
        model = PoetryLM(cfg.model)
        model.load_state_dict({k: v.float() for k, v in ckpt["model"].items()})   # float16 storage loads too
        return model.to(device).eval(), cfg, list(ckpt["itos"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise UserError(f"checkpoint does not hold a model of this project ({type(e).__name__}); retrain it")


def load_model(ckpt, device, ci=False):
    """(model in eval mode, config, itos) of the checkpoint pick_checkpoint(ckpt, ci) names."""
    return model_from_checkpoint(load_checkpoint(pick_checkpoint(ckpt, ci)), device)


def pick_device(tcfg):
    """cpu, cuda or cuda:N, checked against what this machine has (mps, meta and the rest are refused)."""
    if tcfg.device:
        m = re.fullmatch(r"cpu|cuda(?::(\d+))?", tcfg.device)
        if not m:
            raise UserError(f"--device {tcfg.device!r}: use cpu, cuda or cuda:N")
        if tcfg.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {tcfg.device} asked for, but CUDA is not available here; use --device cpu")
        if m.group(1) is not None and int(m.group(1)) >= torch.cuda.device_count():
            raise UserError(f"--device {tcfg.device}: this machine has {torch.cuda.device_count()} GPU(s), "
                            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return torch.device(tcfg.device)
    return torch.device("cuda" if tcfg.use_gpu and torch.cuda.is_available() else "cpu")
