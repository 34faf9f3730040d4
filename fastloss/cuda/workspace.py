"""Scratch device memory kept between calls: a workspace per host thread, device and stream.

Besides its results, a call needs small device arrays of its own: the blocks' partial
sums and the float64 total of a loss kernel, the label check's statistics and verdict,
hinge's rule, and the ticket counter by which the last block of a grid knows itself
(:func:`.reductions.arrived_last`). Allocated afresh, each costs an allocation a call,
and the counter a memset kernel too (it must start at 0). A :class:`Workspace` keeps
them, allocated by the caller's framework on the caller's stream:

- work queued on one stream runs in order, so a call's kernels cannot start before the
  previous call's, on that stream, are done with the workspace; and the host reads a
  workspace array only through copies queued on that stream;
- a thread's workspaces are its own: two threads never share one, even on the same
  stream (and a default stream may be one per thread);
- the counter is 0 between launches: the last block's ticket puts it back. A
  call that raises forgets its thread's workspace for that stream (:func:`forget`): a
  launch can fail after some blocks took their tickets (in the simulator, a Python
  exception in a thread), and the next call then starts from a new one.
"""

import threading

import numpy as np

#: Arrays a workspace keeps, besides its counter, before it starts again (shapes that keep
#: changing: the arrays' lengths follow the grid, which follows the input's size).
ARRAYS_KEPT = 32

_local = threading.local()


class Workspace:
    """A thread's scratch arrays on one stream: :attr:`counter` (uint32, 0 between
    launches) and :meth:`array` by name, shape and dtype."""

    def __init__(self, caller):
        self._caller = caller
        self._arrays = {}
        # uint32, for the increment that wraps (reductions.arrived_last); cleared on the
        # stream, as every allocation here is made (so a CUDA graph can capture it).
        self.counter = caller.counter()

    def array(self, name, shape, dtype):
        """The workspace's array for ``name`` of ``shape`` and ``dtype`` (contents left by
        the last call that used it). Arrays that a call uses at once need different
        names."""
        key = (name, shape, np.dtype(dtype))
        a = self._arrays.get(key)
        if a is None:
            if len(self._arrays) >= ARRAYS_KEPT:
                self._arrays.clear()
            a = self._arrays[key] = self._caller.empty(shape, dtype)
        return a


def _key(caller):
    return caller.kind, caller.device, caller.stream()


def workspace(caller):
    """The calling thread's workspace for ``caller``'s framework, device and stream."""
    spaces = _local.__dict__.setdefault("spaces", {})
    key = _key(caller)
    w = spaces.get(key)
    if w is None:
        w = spaces[key] = Workspace(caller)
    return w


def forget(caller):
    """Drop the calling thread's workspace for ``caller`` (after a call that raised)."""
    _local.__dict__.get("spaces", {}).pop(_key(caller), None)
