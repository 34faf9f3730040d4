"""The Numba CPU backend: the loss math of :mod:`fastloss.losses` compiled into the loop
drivers of :mod:`.drivers`.

An input of at most one chunk runs the block kernel directly; a larger one runs the
chunked driver, serial below ``PARALLEL_MIN_SIZE`` elements and ``parallel=True`` from
there. Kernels are built on first use and specialise only on dtypes: options are run-time
arguments, so no option combination compiles anything new.
"""

from . import drivers
from .jit import compile_math

#: Elements per chunk (a row-wise chunk holds whole rows: at least one).
CHUNK_ELEMENTS = 1 << 14
#: Inputs with at least this many elements use the parallel (``prange``) driver. Below
#: it, waking threads costs more than it saves.
PARALLEL_MIN_SIZE = 1 << 16

_BLOCKS = {"elementwise": drivers.elementwise_block, "rowwise": drivers.rowwise_block}
_CHUNKED = {"elementwise": drivers.elementwise_chunked, "rowwise": drivers.rowwise_chunked}
_kernels = {}


def kernel(math_fn, family, mode):
    """The compiled ``mode`` ("block", "serial" or "parallel") kernel of ``math_fn``."""
    key = (math_fn, mode)
    k = _kernels.get(key)
    if k is None:
        if mode == "block":
            k = _BLOCKS[family](compile_math(math_fn), math_fn.__name__)
        else:
            block = kernel(math_fn, family, "block")
            k = _CHUNKED[family](block, math_fn.__name__, mode == "parallel")
        _kernels[key] = k
    return k


def run(math_fn, family, args):
    """Run ``math_fn`` on the driver arguments ``args``; returns the weighted loss sum."""
    x = args[0]
    chunk = max(1, CHUNK_ELEMENTS // x.shape[1]) if x.ndim == 2 and x.shape[1] else CHUNK_ELEMENTS
    if x.shape[0] <= chunk:
        return kernel(math_fn, family, "block")(*args)
    mode = "parallel" if x.size >= PARALLEL_MIN_SIZE else "serial"
    return kernel(math_fn, family, mode)(chunk, *args)
