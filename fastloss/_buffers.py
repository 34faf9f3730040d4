"""Output buffers of the CPU backends, with the large ones recycled between calls.

A gradient of tens of megabytes, freshly allocated, costs the kernel one page fault per
page it writes (and, where transparent huge pages are on, a compaction of memory for
each huge page): on this project's machine a 10^7 float64 gradient took 30 ms of faults
for a loss that computes in 8 ms. A training loop asks for the same shapes every step,
so a buffer the caller has dropped is kept and handed out again, already mapped, as
PyTorch's caching allocator does on the GPU.

The rules:

- Buffers under ``_config.RECYCLE_MIN_BYTES`` are plain ``np.empty``: the pool is for
  sizes whose faults cost as much as their kernel.
- A recycled buffer goes back to the pool only when the last array viewing it is gone;
  no two live arrays ever share memory through the pool.
- The pool keeps at most ``_config.RECYCLE_HELD_BYTES`` of idle buffers, and reuses only a
  buffer of exactly the size asked. ``release()`` frees every idle buffer; a budget of 0
  turns recycling off.
"""

import math
import threading

import numpy as np

from . import _config

_lock = threading.RLock()  # re-entrant: a lease dropped by the garbage collector mid-call
_idle = {}  # bytes -> raw uint8 buffers no array uses, most recently returned last


def empty(shape, dtype):
    """An uninitialised array of ``shape`` and ``dtype``: recycled when large enough."""
    dtype = np.dtype(dtype)
    nbytes = dtype.itemsize * math.prod(shape)
    if nbytes < _config.RECYCLE_MIN_BYTES or _config.RECYCLE_HELD_BYTES <= 0:
        return np.empty(shape, dtype=dtype)
    with _lock:
        stack = _idle.get(nbytes)
        raw = stack.pop() if stack else None
    if raw is None:
        raw = np.empty(nbytes, dtype=np.uint8)
    return np.asarray(_Lease(raw, tuple(shape), dtype))


def release():
    """Free every idle buffer of the pool; returns how many bytes were freed."""
    with _lock:
        freed = idle_bytes()
        _idle.clear()
    return freed


def idle_bytes():
    """Bytes the pool holds in buffers that no array uses."""
    with _lock:
        return sum(size * len(stack) for size, stack in _idle.items())


def _give_back(raw):
    with _lock:
        if idle_bytes() + raw.nbytes <= _config.RECYCLE_HELD_BYTES:
            _idle.setdefault(raw.nbytes, []).append(raw)


class _Lease:
    """The owner of a recycled buffer while arrays view it: every array made from it
    (and every view of those) keeps it alive as its ``base``; when the last one goes,
    the buffer returns to the pool."""

    def __init__(self, raw, shape, dtype):
        self.raw = raw
        self.__array_interface__ = {
            "version": 3, "shape": shape, "typestr": dtype.str,
            "data": (raw.ctypes.data, False),
        }

    def __del__(self):
        try:
            _give_back(self.raw)
        except Exception:  # interpreter shutdown: module globals may be gone
            pass
