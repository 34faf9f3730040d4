"""What Numba's CUDA simulator lacks, made up for in one place (imported only under it).

The simulator runs a block as Python threads, one per GPU thread, and has no warp
shuffles. Here a warp is :data:`WARP` = 4 threads, and a shuffle among the lanes of a
warp's segment is an exchange through a barrier of that segment's own
(:func:`shuffle_down`, :func:`shuffle_from`, :func:`sync_lanes`), so that the tests run the
reduction trees of :mod:`.reductions` with several rows per block and per warp, and a
segment that has finished its rows while another goes on, as on a GPU.

A simulated launch that raised (Python's math raises where a GPU's gives inf) leaves the
block's other threads running until their next barrier; :func:`join_aborted_threads`
waits for them before the next launch (:mod:`.launch`).
"""

import gc
import threading
import time

#: Lanes of a simulated warp.
WARP = 4
#: Seconds a simulated warp exchange waits for lanes that are alive but do not come.
PATIENCE = 300.0

_lock = threading.Lock()


class _LaneBarrier:
    """A reusable barrier for the lanes of a simulated segment (``lanes``, their
    ``threadIdx.x`` in the block run by ``manager``) that gives up, as the simulator's
    ``syncthreads`` does, once the block is aborted (a thread of it raised), or once a
    lane has ended without coming: the simulator notices a thread's exception only while
    the thread is alive, and one that raised and ended at once goes unnoticed until the
    others end. A lane left waiting would hold the simulator's stand-in for ``cuda`` in
    the kernels' module globals (swapped in on the first entry into a device function,
    restored on the last exit), and every later kernel would read the dead launch's grid
    from it: ``reductions.arrived_last`` would find no last block. Lanes that stay away
    alive (a kernel whose lanes part ways around an exchange) fail the launch after
    :data:`PATIENCE` seconds rather than hang it."""

    def __init__(self, lanes, manager):
        self._turn = threading.Condition()
        self._lanes, self._manager = frozenset(lanes), manager
        self._arrived, self._round = 0, 0

    def wait(self, lane):
        with self._turn:
            this_round = self._round
            self._arrived += 1
            if self._arrived == len(self._lanes):
                self._arrived, self._round = 0, this_round + 1
                self._turn.notify_all()
                return
            look = time.monotonic() + 0.5  # lanes do come late: look for ended ones after a while
            deadline = look + PATIENCE
            while self._round == this_round:
                if lane.abort:
                    raise RuntimeError("a thread of the block raised: warp exchange abandoned")
                if time.monotonic() > look:
                    if not self._lanes <= self._alive():
                        raise self._ended_lane_error()
                    if look > deadline:
                        raise TimeoutError(f"simulated warp exchange: lanes missing after {PATIENCE} s")
                    look = time.monotonic() + 0.5
                self._turn.wait(0.01)

    def _alive(self):
        return {t.threadIdx.x for t in threading.enumerate() if getattr(t, "_manager", None) is self._manager}

    def _ended_lane_error(self):
        """The exception a thread of the block ended with (the simulator keeps it on
        the thread), raised again here so that the launch reports it; else an error
        saying that a lane ended without coming."""
        for t in gc.get_referrers(self._manager):  # the block's threads, ended ones too
            if getattr(t, "_manager", None) is self._manager and getattr(t, "exception", None):
                return t.exception[0]
        return RuntimeError("a lane ended without coming to its warp exchange")


def _exchange(value, mask):
    """Every lane's ``value`` among the lanes of ``mask`` (the caller's segment of its
    simulated warp): each lane writes its slot, waits for the others, reads all, and
    waits again before the slots are reused. Segments have barriers of their own, so
    one may stop while another goes on, as on a GPU."""
    me = threading.current_thread()
    block = me._manager  # the simulator's BlockManager of this block
    mask = int(mask)
    width = bin(mask).count("1")
    key = (me.threadIdx.x // WARP, mask)
    with _lock:
        segments = block.__dict__.setdefault("_fastloss_warps", {})
        segment = segments.get(key)
        if segment is None:
            warp = me.threadIdx.x - me.threadIdx.x % WARP
            lanes = [warp + b for b in range(WARP) if mask >> b & 1]
            segment = segments[key] = (_LaneBarrier(lanes, block), [None] * width)
    barrier, slots = segment
    slots[me.threadIdx.x % width] = value
    barrier.wait(me)
    values = list(slots)
    barrier.wait(me)
    return values


def shuffle_down(value, step, mask):
    """The value of lane + ``step`` of the segment ``mask`` (the caller's own past its
    end)."""
    values = _exchange(value, mask)
    lane = threading.current_thread().threadIdx.x % len(values)
    return values[lane + step] if lane + step < len(values) else value


def shuffle_from(value, lane, mask):
    """The value of the segment's first lane (``lane``, its place in the warp)."""
    return _exchange(value, mask)[0]


def sync_lanes(mask):
    """A barrier among the segment's lanes (and their memory operations)."""
    _exchange(None, mask)


def join_aborted_threads(patience=10.0):
    """Wait (at most ``patience`` seconds) for the simulated threads of launches that
    raised. The simulator raises the first thread's exception at once and leaves the
    block's other threads to stop at their next barrier; while one runs inside a device
    function, a module's ``cuda`` is still the simulator's stand-in for that launch, and a
    new launch would read the dead one's grid from it (the label check then finds no
    last block, and a valid label fails the check)."""
    from numba.cuda.simulator.kernel import BlockThread

    deadline = time.monotonic() + patience
    for t in threading.enumerate():
        if isinstance(t, BlockThread) and t.abort and t.is_alive():
            t.join(max(0.0, deadline - time.monotonic()))
