"""The Numba CPU backend: the loss math of :mod:`fastloss.losses` compiled into the loop
drivers of :mod:`.drivers`, serial for small inputs and ``parallel=True`` for large ones.

Kernels are built on first use (one per loss, family driver and serial/parallel mode) and
specialise only on dtypes: options are run-time arguments, so no option combination
compiles anything new.
"""

from . import drivers
from .jit import compile_math

#: Inputs with at least this many elements use the parallel (``prange``) kernels. Below
#: it, thread start-up costs more than it saves.
PARALLEL_MIN_SIZE = 1 << 16

_DRIVERS = {"elementwise": drivers.elementwise, "rowwise": drivers.rowwise}
_kernels = {}


def kernel(math_fn, family, parallel):
    """The compiled driver of ``family`` running ``math_fn``."""
    key = (math_fn, parallel)
    k = _kernels.get(key)
    if k is None:
        k = _DRIVERS[family](compile_math(math_fn), math_fn.__name__, parallel)
        _kernels[key] = k
    return k


def run(math_fn, family, size, args):
    """Run ``math_fn``'s kernel on ``args`` (the driver's arguments); returns the loss sum."""
    return kernel(math_fn, family, size >= PARALLEL_MIN_SIZE)(*args)
