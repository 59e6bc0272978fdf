"""C++ kernels, built at first use by torch.utils.cpp_extension (a C++ compiler is needed; the build is cached
under ~/.cache/torch_extensions, or $TORCH_EXTENSIONS_DIR, one folder per torch version).

    lstm_cell()   the LSTM layer's time loops with each step's cell fused (lstm_cell.cpp), or None: no
                  compiler, a failed build, or POETRY_LSTM_CPP=0 — model.py then runs its Python time loop,
                  the same maths (the tests hold both to nn.LSTM and to each other).

A build killed half-way (kill -9, a full disk) leaves torch's lock file in the build folder, and torch would
then wait for it forever; here builds take an flock first (the kernel drops it when its holder dies), and the
holder clears a lock file no live build owns.
"""
import contextlib
import functools
import os
import sys

NAME = "poetry_lstm_cell"
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lstm_cell.cpp")
FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp-simd"]     # -ffast-math: glibc's vector exp and tanh


@contextlib.contextmanager
def build_lock(build_dir):
    """Hold an exclusive flock on build_dir/flock (waiting for a live build by another process), and remove
    torch's own lock file when one is left there by a build that died."""
    import fcntl
    with open(os.path.join(build_dir, "flock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(build_dir, "lock"))      # ours holds the flock: no live build owns it
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@functools.lru_cache(maxsize=None)
def lstm_cell():
    """The built extension module (layer_forward, layer_backward), or None (said once on stderr)."""
    if os.environ.get("POETRY_LSTM_CPP", "1") == "0":
        return None
    try:
        import torch
        from torch.utils.cpp_extension import get_default_build_root, load
        root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
        build_dir = os.path.join(root, f"{NAME}-torch{torch.__version__}")
        os.makedirs(build_dir, exist_ok=True)
        with build_lock(build_dir):
            return load(name=NAME, sources=[SOURCE], extra_cflags=FLAGS, build_directory=build_dir, verbose=False)
    except Exception as e:                       # no compiler, no ninja, a full disk: the Python loop runs instead
        print(f"note: the C++ LSTM loop was not built ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); "
              "the Python time loop runs instead", file=sys.stderr)
        return None
