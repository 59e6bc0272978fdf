"""C++ kernels, built at first use by torch.utils.cpp_extension (a C++ compiler is needed; the build is cached
under ~/.cache/torch_extensions, or $TORCH_EXTENSIONS_DIR).

    lstm_cell()   the LSTM layer's time loops with each step's cell fused (lstm_cell.cpp), or None: no
                  compiler, a failed build, or POETRY_LSTM_CPP=0 — model.py then runs its Python time loop,
                  the same maths (the tests hold both to nn.LSTM and to each other).
"""
import functools
import os
import sys

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lstm_cell.cpp")
FLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp-simd"]     # -ffast-math: glibc's vector exp and tanh


@functools.lru_cache(maxsize=None)
def lstm_cell():
    """The built extension module (layer_forward, layer_backward), or None (said once on stderr)."""
    if os.environ.get("POETRY_LSTM_CPP", "1") == "0":
        return None
    try:
        from torch.utils.cpp_extension import load
        return load(name="poetry_lstm_cell", sources=[SOURCE], extra_cflags=FLAGS, verbose=False)
    except Exception as e:                       # no compiler, no ninja, a full disk: the Python loop runs instead
        print(f"note: the C++ LSTM loop was not built ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); "
              "the Python time loop runs instead", file=sys.stderr)
        return None
