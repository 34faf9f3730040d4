"""The Cython CPU backend: the loss math of :mod:`fastloss.losses`, translated to C by
:mod:`.generate` at build time and compiled ahead of time, so it is ready at import with
no JIT wait and a small call overhead. Large inputs run the same chunks as the Numba
backend under OpenMP ``prange``.

``AVAILABLE`` is False where the extension was not built (a source checkout that was never
built), or was built from other sources than the math beside it (an edit since the last
build: it would compute the old formulas, so it is not used, and a warning says so); the
other backends still work there.
"""

import os
import warnings

import numpy as np

from .. import _sources

try:
    from . import _fast, _kernels
except ImportError:  # not built
    _fast = _kernels = None

if _kernels is not None and _kernels.SOURCE_HASH != _sources.source_hash():
    warnings.warn(
        "fastloss's Cython extension was built from other sources than the loss math beside it; "
        "it is not used until rebuilt (pip install -e . or python setup.py build_ext --inplace)",
        RuntimeWarning,
        stacklevel=2,
    )
    _fast = _kernels = None

from .. import _config as config
from .._threads import get_num_threads
from ..losses import float32_form

AVAILABLE = _kernels is not None
#: Whether the extension was built with OpenMP (without it, large inputs run serially).
OPENMP = bool(_kernels is not None and _kernels.OPENMP)
#: Whether this process may run OpenMP threads: not in a forked child of a process that
#: used them (GNU OpenMP's thread pool does not survive fork(), and entering it there hangs).
FORK_SAFE = True
_used_openmp = False


def _after_fork_in_child():
    global FORK_SAFE
    if _used_openmp:
        FORK_SAFE = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

_entries = {}


def entry(math_fn):
    """The extension's entry point for ``math_fn`` (a ``@portable`` loss function)."""
    fn = _entries.get(math_fn)
    if fn is None:
        fn = getattr(_kernels, f"run__{math_fn.__module__.rsplit('.', 1)[-1]}__{math_fn.__name__}")
        _entries[math_fn] = fn
    return fn


def run(math_fn, family, args):
    """Run ``math_fn`` on the kernel arguments ``args``; returns the weighted loss sum.
    A float32 element-wise call runs the loss's float32 form where it has one
    (:func:`fastloss.losses.float32_form`)."""
    global _used_openmp
    x = args[0]
    if family == "elementwise" and x.dtype == np.float32:
        math_fn = float32_form(math_fn) or math_fn
    threads = get_num_threads() if x.size >= config.PARALLEL_MIN_SIZE and FORK_SAFE else 1
    if threads > 1:
        _used_openmp = True
    return entry(math_fn)(*args, config.chunk_rows(x), threads)


#: Options whose values bring arrays: calls using them take the general path.
ARRAY_OPTIONS = frozenset({"pos_weight", "class_weight"})
#: Keywords of every loss that the fast path checks itself (``fast_call``'s arguments).
CALL_KEYWORDS = frozenset({"reduction", "grad", "sample_weight", "hessian", "out"})


def fast_params(spec, options, default):
    """The math's parameters for the keyword ``options`` of a call (checked as the general
    path checks them), ``default`` where there are none, or None where the call must take
    the general path (an option that brings arrays, one that selects another math
    function, a backend other than "auto" or "cython", or any other keyword)."""
    values = None
    for key, value in options.items():
        if key in CALL_KEYWORDS:
            continue
        if key == "backend":
            if isinstance(value, str) and value in ("auto", "cython"):
                continue
            return None
        option = spec.option_map.get(key)
        if option is None or key in ARRAY_OPTIONS:
            return None
        if values is None:
            values = {o.name: o.default for o in spec.options}
        values[key] = option.check(value)
    if values is None:
        return default
    if spec.option_math and values[spec.option_math[0]]:
        return None  # another math function than the fast path's
    return tuple(float(v) for v in spec.params(values, None)) or (0.0,)


def fast_spec(spec, result_type):
    """The compiled fast path's description of ``spec`` (a registry entry), or None where
    the loss cannot take it (its parameters depend on the data, or its loss is finished
    from the sum, as RMSE's is)."""
    if not AVAILABLE or spec.finish is not None or spec.data_params:
        return None
    defaults = {o.name: o.default for o in spec.options}
    params = tuple(float(v) for v in spec.params(defaults, None)) or (0.0,)
    has_target = spec.target != "none"
    single = float32_form(spec.math) if spec.family == "elementwise" else None
    return _fast.FastSpec(
        entry(spec.math),
        entry(single) if single is not None else None,
        entry(spec.sparse_math) if spec.sparse_math is not None else None,
        spec.family == "rowwise",
        spec.target == "labels",
        has_target,
        spec.hessian,
        len(spec.inputs),
        spec.grads,
        params,
        result_type,
    )


fast_call = _fast.fast_call if AVAILABLE else None
