"""How many threads the CPU backends use for a large input (contract section 7).

The process-wide count starts at ``OMP_NUM_THREADS`` where that is a positive integer, else
at the number of cores this process may run on; :func:`set_num_threads` changes it, and
:func:`num_threads` overrides it in the calling thread for a block. Results never depend
on the count: every backend sums the same chunks in the same order
(:mod:`fastloss._config`).
"""

import contextlib
import operator
import os
import threading

__all__ = ["get_num_threads", "set_num_threads", "num_threads"]


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _from_environment():
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else _cores()


_count = _from_environment()
_local = threading.local()  # .count: a num_threads() block's override in this thread


def _checked(n):
    if isinstance(n, bool):
        raise TypeError(f"the number of threads must be an integer, got {n!r}")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"the number of threads must be an integer, got {n!r}") from None
    if n < 1:
        raise ValueError(f"the number of threads must be at least 1, got {n}")
    return n


def get_num_threads():
    """The number of threads a large call uses now, in this thread."""
    return getattr(_local, "count", None) or _count


def set_num_threads(n):
    """Use ``n`` threads (at least 1) for large inputs, in every thread of the process
    (a :func:`num_threads` block in progress keeps its own count)."""
    global _count
    _count = _checked(n)


@contextlib.contextmanager
def num_threads(n):
    """``with fastloss.num_threads(n): ...`` uses ``n`` threads in this block, in the calling
    thread only; the count before it comes back afterwards."""
    n = _checked(n)
    before = getattr(_local, "count", None)
    _local.count = n
    try:
        yield
    finally:
        _local.count = before
