"""The Numba CPU backend: the loss math of :mod:`fastloss.losses` compiled into the loop
drivers of :mod:`.drivers`.

An input of at most one chunk (:mod:`fastloss._config`) runs the block kernel directly; a
larger one runs the chunked driver, serial below ``PARALLEL_MIN_SIZE`` elements and
``parallel=True`` from there. Kernels are built on first use and specialise only on
dtypes: options are run-time arguments, so no option combination compiles anything new.

Threads and fork. Numba picks its threading layer at the first parallel launch: TBB
(installed with fastloss where wheels exist) is safe for both; with the ``workqueue``
layer, which aborts on concurrent launches, parallel launches are serialised by a lock;
with GNU OpenMP (``omp``), which cannot run in a forked child of a process that used it,
such a child runs the serial chunked driver instead (the same chunks: the same bits).
``NUMBA_THREADING_LAYER`` chooses the layer, as Numba documents.
"""

import os
import sys
import threading

import numpy as np

from .. import _config as config
from .._threads import get_num_threads
from ..losses import float32_form
from . import drivers
from .jit import compile_math

_BLOCKS = {"elementwise": drivers.elementwise_block, "rowwise": drivers.rowwise_block}
_CHUNKED = {"elementwise": drivers.elementwise_chunked, "rowwise": drivers.rowwise_chunked}
_NO_AUX = np.empty(0, dtype=np.float64)
_kernels = {}


def kernel(math_fn, family, mode, narrow=False):
    """The compiled ``mode`` ("block", "serial" or "parallel") kernel of ``math_fn``, or
    of its narrow-row form (:func:`narrow_variant`) with ``narrow``. Each is compiled on
    first use only: a call on narrow rows never compiles the row function's kernels."""
    key = (math_fn, mode, narrow)
    k = _kernels.get(key)
    if k is None:
        if mode == "block" and narrow:
            k = drivers.narrow_rowwise_block(compile_math(narrow_variant(math_fn)), math_fn.__name__)
        elif mode == "block":
            k = _BLOCKS[family](compile_math(math_fn), math_fn.__name__)
        else:
            block = kernel(math_fn, family, "block", narrow)
            name = math_fn.__name__ + ("_narrow" if narrow else "")
            k = _CHUNKED[family](block, name, mode == "parallel")
        _kernels[key] = k
    return k


def narrow_variant(math_fn):
    """The ``<name>_rows`` variant of a row function for narrow rows, or None."""
    return getattr(sys.modules[math_fn.__module__], math_fn.__name__ + "_rows", None)


def _read_only(a):
    """A read-only view of the input ``a``. Numba types a read-only array apart from a
    writable one, so inputs that came either way would compile each kernel once per
    combination; as views they all come read-only (the kernels never write an input)."""
    if not a.flags.writeable:
        return a
    view = a.view()
    view.flags.writeable = False
    return view


_launch_lock = threading.Lock()
_layer = None  # Numba's threading layer, known after the first parallel launch
_serial_only = False  # a forked child of a process that used GNU OpenMP


def _after_fork_in_child():
    global _serial_only, _launch_lock
    _launch_lock = threading.Lock()  # a lock held by another thread at fork() stays held
    if _layer == "omp":
        _serial_only = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _parallel_launch(k, args, threads):
    """Launch a parallel kernel on ``threads`` threads, safely under whichever threading
    layer Numba chose (the first launch, which starts Numba's threads, under the lock)."""
    global _layer
    if _layer is None or _layer == "workqueue":
        with _launch_lock:
            total = _on_threads(k, args, threads)
            if _layer is None:
                import numba

                _layer = numba.threading_layer()
            return total
    return _on_threads(k, args, threads)


def _on_threads(k, args, threads):
    """``k(*args)`` on ``threads`` threads (at most Numba's pool); Numba's own count for
    this thread is restored afterwards."""
    import numba

    before = numba.get_num_threads()
    wanted = min(threads, numba.config.NUMBA_NUM_THREADS)
    if wanted == before:
        return k(*args)
    numba.set_num_threads(wanted)
    try:
        return k(*args)
    finally:
        numba.set_num_threads(before)


def run(math_fn, family, args):
    """Run ``math_fn`` on the kernel arguments ``args``; returns the weighted loss sum.

    ``args`` are those of every CPU backend: (x, y, c, w, params, scale, loss_out, gx, gy,
    h) element-wise, (x, y, v, c, w, params, scale, loss_out, gx, gy, gv, h) row-wise,
    with ``c`` None where the loss has no auxiliary array. A float32 element-wise call
    runs the loss's float32 form where it has one (:func:`fastloss.losses.float32_form`).
    """
    n_inputs = 4 if family == "elementwise" else 5  # (x, y, c, w) or (x, y, v, c, w)
    if family == "elementwise":
        if args[2] is None:  # the driver reads c[i]: give it x, ignored by the math
            args = (*args[:2], args[0], *args[3:])
    elif args[3] is None:
        args = (*args[:3], _NO_AUX, *args[4:])
    args = (*map(_read_only, args[:n_inputs]), *args[n_inputs:])
    x = args[0]
    if family == "elementwise" and x.dtype == np.float32:
        math_fn = float32_form(math_fn) or math_fn
    narrow = family == "rowwise" and 0 < x.shape[1] <= config.NARROW_MAX_WIDTH and narrow_variant(math_fn) is not None
    chunk = config.chunk_rows(x)
    if x.shape[0] <= chunk:
        return kernel(math_fn, family, "block", narrow)(*args)
    threads = get_num_threads()
    if x.size >= config.PARALLEL_MIN_SIZE and threads > 1 and not _serial_only:
        return _parallel_launch(kernel(math_fn, family, "parallel", narrow), (chunk, *args), threads)
    return kernel(math_fn, family, "serial", narrow)(chunk, *args)
