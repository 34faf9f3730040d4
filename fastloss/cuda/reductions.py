"""Deterministic reductions of the CUDA kernels: over a warp, over a block, over the grid.

Every reduction adds in a fixed tree (lane or thread ``t`` takes ``t + step``, for step =
half the group down to 1), so the same input gives the same bits run after run, and a
warp's tree adds in the same order as a block's of the same size.

- :func:`group_sum`, :func:`group_merge`: one value (or one pair state) per thread of a
  *group*, the threads that share a row. A group is either the whole block (shared
  memory and barriers) or a warp or an aligned part of one, a *segment* of 1 to 32 lanes
  (register shuffles among the segment's lanes alone, no barrier: the warps and
  segments of a block work on their own rows, and each may stop before the others).
  Every thread of the group gets the result.
- :func:`grid_finish`: the last block to finish sums the blocks' partial sums in index
  order, in the same launch.

A block's tree is a loop over ``step = cuda.blockDim.x // 2, ..., 1``: ``blockDim.x`` is
the ``threads`` the kernel is built for at every launch, but the compiler cannot know it.
With the constant ``threads`` as the bound the compiler would unroll the loop and work
out every level's shared-memory address and ``t < step`` test once, before the kernel's
loop over rows, keeping them in registers through the whole row for each reduction of
the kernel: about 30 registers a thread more in the kernels for wide rows (blocks of 512;
sparse cross-entropy 127 against 96, ``tests/compile_kernels.py`` prints every
kernel's). What the
loop costs, a compare and a shift a level, is nothing beside the level's barrier.

Numba's CUDA simulator has no warp shuffles: there, :data:`WARP` is 4 and a shuffle is an
exchange through a barrier among the lanes of the simulated segment (:mod:`.simulator`),
so the tests run the same trees, with several rows per block and per warp, without a GPU.
"""

from numba import cuda, float64, int32, uint32
from numba.cuda import config as cuda_config

from .jit import compile_device

SIMULATOR = bool(cuda_config.ENABLE_CUDASIM)

if SIMULATOR:  # no shuffles there: exchanges among simulated lanes
    from .simulator import WARP, shuffle_down, shuffle_from, sync_lanes
else:
    #: Lanes of a warp (a simulated warp under the simulator: :mod:`.simulator`).
    WARP = 32

    @cuda.jit(device=True)
    def shuffle_down(value, step, mask):
        """The value of lane + ``step`` (the lanes of ``mask`` take part; past the
        warp's end the caller's own, past the segment's, a value no one uses)."""
        return cuda.shfl_down_sync(mask, value, step)

    @cuda.jit(device=True)
    def shuffle_from(value, lane, mask):
        """The value of lane ``lane`` of the warp."""
        return cuda.shfl_sync(mask, value, lane)

    @cuda.jit(device=True)
    def sync_lanes(mask):
        """A barrier among the lanes of ``mask`` that also orders their memory
        operations: reads of other lanes' elements before it complete before writes
        after it."""
        cuda.syncwarp(mask)


def block_sum(threads):
    """Device function: the sum of one float64 per thread of the block, in a fixed tree
    (``threads`` a power of two); every thread gets the total."""

    def reduce(value):
        shared = cuda.shared.array(threads, float64)
        t = cuda.threadIdx.x
        shared[t] = value
        cuda.syncthreads()
        step = cuda.blockDim.x // 2  # threads // 2, unknown to the compiler (module docstring)
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
        step = cuda.blockDim.x // 2  # as in block_sum
        while step > 0:
            if t < step:
                sm[t], sd[t] = merge(sm[t], sd[t], sm[t + step], sd[t + step])
            cuda.syncthreads()
            step //= 2
        m, d = sm[0], sd[0]
        cuda.syncthreads()
        return m, d

    return compile_device(reduce, f"{name}_{threads}")


def _segment(width):
    """(the caller's segment's first lane in the warp, its lane mask) for segments of
    ``width`` lanes (a power of two, at most a warp; a whole warp: 0 and every lane)."""
    ones = (1 << width) - 1

    def segment():
        lane = cuda.threadIdx.x % WARP  # blocks are 1-D
        first = lane - lane % width if width < WARP else 0
        return first, uint32(ones << first)

    return compile_device(segment, f"segment_{width}")


def lanes_sum(width):
    """Device function: the sum of one float64 per lane over segments of ``width``
    consecutive lanes of a warp (a power of two, at most :data:`WARP`), in the tree of
    :func:`block_sum`; every lane of the segment gets its total. All lanes of a segment
    must call it; segments need not (each shuffles among its own lanes only)."""
    segment = _segment(width)

    def reduce(value):
        first, mask = segment()
        step = width // 2
        while step > 0:
            value += shuffle_down(value, step, mask)
            step //= 2
        total = shuffle_from(value, first, mask)
        sync_lanes(mask)  # as a block's barrier: every lane's earlier reads are done
        return total

    return compile_device(reduce, f"lanes_sum_{width}")


def lanes_merge(width, merge, name):
    """Device function: the pair states of segments of ``width`` lanes merged with
    ``merge`` in the tree of :func:`block_merge`; every lane of the segment gets the
    result (calling as for :func:`lanes_sum`)."""
    segment = _segment(width)

    def reduce(m, d):
        first, mask = segment()
        step = width // 2
        while step > 0:
            m, d = merge(m, d, shuffle_down(m, step, mask), shuffle_down(d, step, mask))
            step //= 2
        m, d = shuffle_from(m, first, mask), shuffle_from(d, first, mask)
        sync_lanes(mask)
        return m, d

    return compile_device(reduce, f"lanes_{name}_{width}")


def group_sum(threads, group):
    """:func:`block_sum` when the group is the block, :func:`lanes_sum` when a warp or
    part of one."""
    return block_sum(threads) if group == threads else lanes_sum(group)


def group_merge(threads, group, merge, name):
    """:func:`block_merge` when the group is the block, :func:`lanes_merge` when a warp
    or part of one."""
    return block_merge(threads, merge, name) if group == threads else lanes_merge(group, merge, name)


@cuda.jit(device=True)
def arrived_last(counter):
    """Whether the calling block is the last of the grid to get here (an atomic ticket in
    ``counter``, a uint32 that is 0 at launch; every thread of the block gets the answer).
    What thread 0 wrote before is visible to the last block. The tickets are taken by an
    increment that wraps at the grid's size: the last one puts the counter back to 0, so
    that the stream's next kernel can use it without a memset (:mod:`.workspace`)."""
    last = cuda.shared.array(1, int32)
    if cuda.threadIdx.x == 0:
        cuda.threadfence()  # this block's writes are visible before its ticket
        ticket = cuda.atomic.inc(counter, 0, uint32(cuda.gridDim.x - 1))
        last[0] = 1 if ticket == cuda.gridDim.x - 1 else 0
    cuda.syncthreads()
    return last[0] != 0


def grid_finish(threads):
    """Device function every block calls last, once thread 0 has written the block's
    ``partials`` entry: the last block to arrive (:func:`arrived_last`) sums ``partials``
    in a fixed order, writes ``total[0]``, and, when ``value`` is not empty, ``value[0]``
    = total times ``factor`` in ``value``'s dtype. One launch does the loss and its
    reduction; the order of the sum does not depend on which block came last."""
    reduce = block_sum(threads)

    def finish(partials, counter, factor, total, value):
        if not arrived_last(counter):
            return
        t = cuda.threadIdx.x
        s = 0.0
        for k in range(t, partials.shape[0], threads):
            s += partials[k]
        s = reduce(s)
        if t == 0:
            total[0] = s
            if value.shape[0] != 0:
                value[0] = s * factor

    return compile_device(finish, f"grid_finish_{threads}")
