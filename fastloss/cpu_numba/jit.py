"""How fastloss compiles with Numba: flags, and an on-disk cache that never breaks import.

Drivers are closures over the loss's compiled math, and Numba keys the cache of a closure
on a pickle of its cells, which for a compiled function holds a per-process id: such a
cache would never hit. :class:`SourceKeyedCache` keys it instead on the driver's name and
a hash of the sources every kernel is built from (the math, the losses and this backend):
any edit there invalidates every entry, so a kernel never outlives the math it inlined.
Where no cache location is writable, or Numba's cache machinery changes, compilation
silently goes on without a cache.
"""

import pathlib

import numba
from numba.core.caching import FunctionCache

from .. import _sources
from ..math.portable import compile_for
from . import natives  # noqa: F401  (registers the bit casts the math needs)

# Fast-math flags that keep IEEE NaN/Inf semantics: no ``nnan``/``ninf`` (they would
# delete the NaN and Inf handling contract section 4 requires), no ``afn`` (approximate
# transcendental functions would cost accuracy), no ``reassoc`` (LLVM would vectorise a
# sum only in the loop version where outputs do not alias inputs, so an in-place call
# would round differently; sums run in explicit lanes instead, see math/reductions.py)
# and no ``contract``: the SIMD body of a loop and its scalar remainder would fuse
# different multiply-adds (math/elementary.py writes its fused ones out as ``fma``).
FASTMATH = frozenset({"nsz"})

_PACKAGE = pathlib.Path(__file__).resolve().parent.parent
#: What the kernels are built with besides the math and settings of :mod:`fastloss._sources`:
#: the portable machinery that compiles the math, and this backend's modules (drivers, natives).
_COMPILER_FILES = ("math/portable.py",)
_BACKEND = "cpu_numba"
_source_hash = None


def package_source_hash():
    """sha256 over the ``.py`` files that kernels are built from."""
    global _source_hash
    if _source_hash is None:
        backend = sorted(p.relative_to(_PACKAGE).as_posix() for p in (_PACKAGE / _BACKEND).glob("*.py"))
        _source_hash = _sources.source_hash(_COMPILER_FILES + tuple(backend), package=_PACKAGE)
    return _source_hash


class SourceKeyedCache(FunctionCache):
    """A Numba function cache keyed on (signature, target machine, fastloss sources, name)."""

    def _index_key(self, sig, codegen):
        return (sig, codegen.magic_tuple(), package_source_hash(), self._py_func.__qualname__)


def compile_math(fn):
    """Compile a ``@portable`` math function (and its callees) for the CPU."""
    return compile_for(fn, "numba", _njit_math)


def _njit_math(py_func):
    if getattr(py_func, "portable_inline", True):
        return numba.njit(nogil=True, error_model="numpy", inline="always")(py_func)
    return numba.njit(nogil=True, error_model="numpy", fastmath=set(FASTMATH))(py_func)


def compile_driver(py_func, name, parallel=False):
    """Compile a driver closure under a unique ``name`` (the cache's file name), cached."""
    py_func.__qualname__ = name
    dispatcher = numba.njit(
        parallel=parallel, nogil=True, error_model="numpy", fastmath=set(FASTMATH)
    )(py_func)
    try:
        dispatcher._cache = SourceKeyedCache(py_func)
    except Exception:  # no writable cache location (or Numba changed): compile uncached
        pass
    return dispatcher
