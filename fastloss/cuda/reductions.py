"""Deterministic reductions of the CUDA kernels: over a warp, over a block, over the grid.

Every reduction adds in a fixed tree (lane or thread ``t`` takes ``t + step``, for step =
half the group down to 1), so the same input gives the same bits run after run, and a
warp's tree adds in the same order as a block's of the same size.

- :func:`group_sum`, :func:`group_merge`: one value (or one pair state) per thread of a
  *group*, the threads that share a row. A group is either the whole block (shared
  memory and barriers) or one warp (register shuffles, no barrier: the warps of a block
  work on their own rows). Every thread of the group gets the result.
- :func:`grid_finish`: the last block to finish sums the blocks' partial sums in index
  order, in the same launch.

Numba's CUDA simulator has no warp shuffles: there, :data:`WARP` is 4 and a shuffle is an
exchange through a barrier among the lanes of the simulated warp (:func:`_sim_exchange`),
so the tests run the same trees, with several rows per block, without a GPU.
"""

import threading

from numba import cuda, float64, int32
from numba.cuda import config as cuda_config

from .jit import compile_device

SIMULATOR = bool(cuda_config.ENABLE_CUDASIM)
#: Lanes of a warp (a simulated warp under the simulator).
WARP = 4 if SIMULATOR else 32
_ALL_LANES = 0xFFFFFFFF

if SIMULATOR:
    _lock = threading.Lock()

    def _sim_exchange(value):
        """Every lane's ``value`` of the calling thread's simulated warp: each lane writes
        its slot, waits for the others, reads all, and waits again before the slots are
        reused."""
        me = threading.current_thread()
        block = me._manager  # the simulator's BlockManager of this block
        with _lock:
            warps = block.__dict__.setdefault("_fastloss_warps", {})
            warp = warps.get(me.threadIdx.x // WARP)
            if warp is None:
                warp = warps[me.threadIdx.x // WARP] = (threading.Barrier(WARP, timeout=300), [None] * WARP)
        barrier, slots = warp
        slots[me.threadIdx.x % WARP] = value
        barrier.wait()
        values = list(slots)
        barrier.wait()
        return values

    def shuffle_down(value, step):
        """The value of lane + ``step`` (the caller's own past the warp's end)."""
        lane = threading.current_thread().threadIdx.x % WARP
        values = _sim_exchange(value)
        return values[lane + step] if lane + step < WARP else value

    def shuffle_first(value):
        """The value of the warp's lane 0."""
        return _sim_exchange(value)[0]

    def sync_warp():
        """A barrier among the warp's lanes (and their memory operations)."""
        _sim_exchange(None)

else:

    @cuda.jit(device=True)
    def shuffle_down(value, step):
        """The value of lane + ``step`` (the caller's own past the warp's end)."""
        return cuda.shfl_down_sync(_ALL_LANES, value, step)

    @cuda.jit(device=True)
    def shuffle_first(value):
        """The value of the warp's lane 0."""
        return cuda.shfl_sync(_ALL_LANES, value, 0)

    @cuda.jit(device=True)
    def sync_warp():
        """A barrier among the warp's lanes that also orders their memory operations:
        reads of other lanes' elements before it complete before writes after it."""
        cuda.syncwarp(_ALL_LANES)


def block_sum(threads):
    """Device function: the sum of one float64 per thread of the block, in a fixed tree
    (``threads`` a power of two); every thread gets the total."""

    def reduce(value):
        shared = cuda.shared.array(threads, float64)
        t = cuda.threadIdx.x
        shared[t] = value
        cuda.syncthreads()
        step = threads // 2
        while step > 0:
            if t < step:
                shared[t] += shared[t + step]
            cuda.syncthreads()
            step //= 2
        total = shared[0]
        cuda.syncthreads()  # the array may be reused by the caller's next reduction
        return total

    return compile_device(reduce, f"block_sum_{threads}")


def block_merge(threads, merge, name, dtype=float64):
    """Device function: the block's pair states (a, b) merged into one, in a fixed tree
    with ``merge(a1, b1, a2, b2) -> (a, b)``; every thread gets the result. The states
    are ``dtype`` numbers."""

    def reduce(m, d):
        sm = cuda.shared.array(threads, dtype)
        sd = cuda.shared.array(threads, dtype)
        t = cuda.threadIdx.x
        sm[t] = m
        sd[t] = d
        cuda.syncthreads()
        step = threads // 2
        while step > 0:
            if t < step:
                sm[t], sd[t] = merge(sm[t], sd[t], sm[t + step], sd[t + step])
            cuda.syncthreads()
            step //= 2
        m, d = sm[0], sd[0]
        cuda.syncthreads()
        return m, d

    return compile_device(reduce, f"{name}_{threads}")


def warp_sum():
    """Device function: the sum of one float64 per lane of the warp, in the tree of
    :func:`block_sum`; every lane gets the total. All lanes of the warp must call it."""

    def reduce(value):
        step = WARP // 2
        while step > 0:
            value += shuffle_down(value, step)
            step //= 2
        total = shuffle_first(value)
        sync_warp()  # as a block's barrier: every lane's earlier reads are done
        return total

    return compile_device(reduce, "warp_sum")


def warp_merge(merge, name):
    """Device function: the warp's pair states merged with ``merge`` in the tree of
    :func:`block_merge`; every lane gets the result."""

    def reduce(m, d):
        step = WARP // 2
        while step > 0:
            m, d = merge(m, d, shuffle_down(m, step), shuffle_down(d, step))
            step //= 2
        m, d = shuffle_first(m), shuffle_first(d)
        sync_warp()
        return m, d

    return compile_device(reduce, f"warp_{name}")


def group_sum(threads, group):
    """:func:`block_sum` when the group is the block, :func:`warp_sum` when a warp."""
    return block_sum(threads) if group == threads else warp_sum()


def group_merge(threads, group, merge, name):
    """:func:`block_merge` when the group is the block, :func:`warp_merge` when a warp."""
    return block_merge(threads, merge, name) if group == threads else warp_merge(merge, name)


def grid_finish(threads):
    """Device function every block calls last, once thread 0 has written the block's
    ``partials`` entry: the last block to arrive (an atomic ticket in ``counter``, zero at
    launch) sums ``partials`` in a fixed order, writes ``total[0]``, and, when ``value`` is
    not empty, ``value[0]`` = total times ``factor`` in ``value``'s dtype. One launch
    does the loss and its reduction; the order of the sum does not depend on which block
    came last."""
    reduce = block_sum(threads)

    def finish(partials, counter, factor, total, value):
        last = cuda.shared.array(1, int32)
        t = cuda.threadIdx.x
        if t == 0:
            cuda.threadfence()  # this block's partial is visible before its ticket
            ticket = cuda.atomic.add(counter, 0, 1)
            last[0] = 1 if ticket == cuda.gridDim.x - 1 else 0
        cuda.syncthreads()
        if last[0] == 0:
            return
        s = 0.0
        for k in range(t, partials.shape[0], threads):
            s += partials[k]
        s = reduce(s)
        if t == 0:
            total[0] = s
            if value.shape[0] != 0:
                value[0] = s * factor

    return compile_device(finish, f"grid_finish_{threads}")
