"""C++ kernels, built at first use by torch.utils.cpp_extension (a C++ compiler is needed; the build is cached
under ~/.cache/torch_extensions, or $TORCH_EXTENSIONS_DIR, one folder per Python and torch version).

    lstm_cell()   the LSTM layer's time loops with each step's cell fused (lstm_cell.cpp), or None: no
                  compiler, a failed build, or POETRY_LSTM_CPP=0 — model.py then runs its Python time loop,
                  the same maths (the tests hold both to nn.LSTM and to each other).

A build killed with kill -9 leaves torch's lock file in the build folder (torch removes it after any failure it
lives through, a full disk included), and torch would then wait for it forever. Here builds take an flock first
(the kernel drops it when its holder dies); the holder then removes a lock file that is older than
STALE_SECONDS (younger, it waits: the killed build's compiler may still be running, orphaned, in that folder).
"""
import contextlib
import functools
import os
import sys
import time

NAME = "poetry_lstm_cell"
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lstm_cell.cpp")
FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp-simd"]     # -ffast-math: glibc's vector exp and tanh
STALE_SECONDS = 180                  # a build takes 45 s on an idle 2-core EPYC, 1 m 43 s beside a training


def say(message):
    print(f"note: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def build_lock(build_dir, stale=STALE_SECONDS):
    """Hold an exclusive flock on build_dir/flock (waiting, with a note, for a live build by another process),
    then wait for torch's own lock file to go or to be `stale` seconds old, and remove a stale one."""
    import fcntl
    with open(os.path.join(build_dir, "flock"), "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another process's build of the C++ LSTM loop in {build_dir}")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            clear_stale(os.path.join(build_dir, "lock"), stale)
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def clear_stale(lock, stale):
    """Remove torch's lock file once it is `stale` seconds old (no live build of ours owns it: we hold the flock)."""
    said = False
    while True:
        try:
            age = time.time() - os.stat(lock).st_mtime
        except FileNotFoundError:
            return
        if age >= stale:
            with contextlib.suppress(FileNotFoundError):
                os.remove(lock)
            return
        if not said:
            say(f"a build lock {age:.0f} s old is in {os.path.dirname(lock)} (a killed build?); "
                f"waiting until it is {stale} s old")
            said = True
        time.sleep(1)


@functools.lru_cache(maxsize=None)
def lstm_cell():
    """The built extension module (layer_forward, layer_backward), or None (said once on stderr)."""
    if os.environ.get("POETRY_LSTM_CPP", "1") == "0":
        return None
    try:
        import torch
        from torch.utils.cpp_extension import get_default_build_root, load
        root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()
        tag = f"py{sys.version_info.major}{sys.version_info.minor}-torch{torch.__version__}"
        build_dir = os.path.join(root, f"{NAME}-{tag}")
        os.makedirs(build_dir, exist_ok=True)
        with build_lock(build_dir):
            return load(name=NAME, sources=[SOURCE], extra_cflags=FLAGS, build_directory=build_dir, verbose=False)
    except Exception as e:                       # no compiler, no ninja, a full disk: the Python loop runs instead
        say(f"the C++ LSTM loop was not built ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:120] if str(e) else ''}); the Python time loop runs instead")
        return None
