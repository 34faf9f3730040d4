"""What every class-axis (row-wise) CUDA kernel is built from: the kernel around a row
body, the row's online log-sum-exp, and the pass that writes a row's gradients.

A class-axis loss runs a *group* of threads per row (:func:`rows_kernel`): a warp for
rows of at most ``kernel_choice.WARP_ROW_WIDTH`` elements (several rows per block; a
segment of a warp for rows narrower than one), else the block. Each thread takes every
``group``-th element of the row, the row's reductions run in fixed trees over the group
(:mod:`.reductions`), the gradient is written after them (in place where it is the
input), and there is no N x C temporary. The row bodies, one module per family:

- :mod:`.rows_cross_entropy`: sparse softmax cross-entropy; softmax cross-entropy with
  soft targets and softmax KL divergence;
- :mod:`.rows_stats`: KL divergence, categorical cross-entropy, the VAE's KL term,
  softmax focal loss (soft targets and integer labels) and Jensen-Shannon divergence
  (formulas routed through :mod:`.rowmath`);
- :mod:`.rows_hinge`: categorical hinge (max with an exact tie count);
- :mod:`.rows_triplet`: triplet margin loss (three inputs, three gradients).

Every class-axis loss has one of these kernels (a test checks the registry against
``fastloss.cuda.kernel_choice.ROW_KERNELS``): none runs a row per thread. The passes that
write gradients share :func:`row_pass` (several elements' loads issued before their
writes). Each body reads and writes bfloat16 bits natively (int16 arrays, converted in
registers: :func:`.loads.element_access`). A row kernel takes the element-wise kernel's
arguments (:mod:`.elementwise`) for three inputs, their three gradients, and the label
check's ``gate``.

Array indices in the loops of every kernel are cast to ``uint64`` (``x[uint64(i)]``,
``gx[r, uint64(j)]`` with ``r = uint64(row)``): Numba gives a signed index Python's
negative-index wraparound, a compare, a select and two 64-bit adds per access, which an
index that is never negative does not need. In the cross-entropy's first pass that is most
of the integer work: six instructions per load, against one shared add for four loads
without it. For the same reason the loops over a row's elements, and over rows, are
``while`` loops (``j = t``, ``while j < n``, ``j += group``), not ``for j in range(t, n,
group)``: Numba gives a range loop Python's trip count (a 64-bit division, and the
remainder of the unrolled loop), which the compiler works out before the loop over rows
and keeps in registers through it, for every such loop of the kernel: on the sparse
cross-entropy kernel, 150 registers a thread with range loops against 80 with ``while``
loops (``tests/compile_kernels.py`` prints every kernel's).
"""

import math

import numpy as np
from numba import cuda, from_dtype, uint64

from .jit import compile_device, compile_kernel
from .reductions import WARP, block_sum, grid_finish, group_merge


def rows_kernel(body, threads, group, name):
    """The kernel around a row ``body(row, t, x, y, v, c, w, params, scale, gx, gy, gv,
    h) -> weighted loss``, run by a *group* of ``group`` threads per row (``t`` the
    thread's place in its group): the block itself (``group == threads``, for wide rows)
    or each of its warps (``group`` = :data:`~.reductions.WARP`, several rows per block),
    or each aligned segment of ``group`` lanes of its warps (rows narrower than a warp).
    Each group takes rows ``first, first + stride, ...`` (a grid-stride loop over rows,
    so the grid need not cover them); its thread 0 stores each row's loss in
    ``loss_out`` and adds it to its running sum; the block sums those and the last block
    the blocks' (:func:`~.reductions.grid_finish`), in fixed orders. ``gate`` (empty
    unless the targets are integer labels) is what :func:`.checks.label_check_kernel`
    decided, read before anything else."""
    per_block = threads // group
    reduce = block_sum(threads)
    finish = grid_finish(threads)

    def kernel(x, y, v, c, w, params, scale, loss_out, gx, gy, gv, h, gate, partials, counter, factor, total, value):
        if gate.shape[0] != 0:  # integer labels, checked on the device (checks.label_check_kernel)
            if gate[0] != 0.0:
                return  # a label out of range: nothing written, the call raises
            scale *= gate[1]
            factor *= gate[2]
        t = cuda.threadIdx.x % group
        acc = 0.0
        row = cuda.blockIdx.x * per_block + cuda.threadIdx.x // group
        while row < x.shape[0]:
            loss = body(row, t, x, y, v, c, w, params, scale, gx, gy, gv, h)
            if t == 0:
                acc += loss
                if loss_out.shape[0] != 0:
                    loss_out[row] = loss
            row += per_block * cuda.gridDim.x
        block_total = reduce(acc)
        if cuda.threadIdx.x == 0:
            partials[cuda.blockIdx.x] = block_total
        finish(partials, counter, factor, total, value)

    return compile_kernel(kernel, name, threads)


@cuda.jit(device=True)
def log_and_reciprocal(d):
    """(log d, 1 / d) of a row's sum of exponentials d >= 0 (NaN propagates). A row with
    no finite logit has d = 0: (-inf, inf), as the GPU's log and division give them (the
    simulator runs Python's, which raise)."""
    if d == 0.0:
        return -math.inf, math.inf
    return math.log(d), 1.0 / d


#: Loads each thread of a row kernel issues before it uses the first of them, in its
#: passes over the row (the softmax losses' log-sum-exp, and every pass that writes
#: gradients: :func:`row_pass`): the memory-level parallelism that hides DRAM latency,
#: paid for in registers. Read when a kernel is built (:mod:`.kernel_choice` keys its
#: kernels by it), so that ``benchmarks/scripts/gpu_variants.py`` can compare values on
#: a GPU.
LOADS_IN_FLIGHT = 4


def row_max_sum_exp(threads, group, merge, narrow, load):
    """Device function ``(z, t, n) -> (m, d)``: the online log-sum-exp of row ``z`` (m its
    maximum, d = sum_j exp(z_j - m)) by a group of ``group`` threads, thread ``t``
    taking every ``group``-th element with :data:`LOADS_IN_FLIGHT` loads in flight, the
    threads' states merged in a fixed tree (``merge``,
    :func:`fastloss.math.online_softmax.merge_max_sum_exp`).

    ``load`` gives each element in ``narrow`` precision (float32 for inputs of at most 32
    bits, exactly), and the running maximum, the differences ``z_j - m`` and their
    exponentials stay in it; only the sum is float64. A float32 difference is the float64
    difference rounded to float32 (53 >= 2 * 24 + 2 bits: the double rounding is
    innocuous), so this is the float64 arithmetic's result without its three conversions
    per element. The group merges its states in float64."""
    merge_group = group_merge(threads, group, merge, "max_sum_exp")

    def step(m, d, v):
        """One element into an online (max, sum of exp(z - max)) state: a new maximum
        scales the sum by exp(m - v), any other value adds exp(v - m), a ``-inf`` adds
        nothing. Both exponents are -|v - m| (negation is exact), so the one exponential
        is taken before the choice and the choice is a select, not a branch: the lanes of
        a warp that meet a new maximum at different elements (most of them, in a row's
        first few dozen) do not run both sides one after the other."""
        e = np.float64(math.exp(-abs(v - m)))
        up = v > m
        scale = e if up else 1.0
        add = 1.0 if up else (e if v != -math.inf else 0.0)  # no -inf - (-inf) = NaN in d
        return (v if up else m), d * scale + add

    step = compile_device(step, f"online_step_{narrow.__name__}")

    loads, slot = LOADS_IN_FLIGHT, from_dtype(np.dtype(narrow))
    batched_tail = group > WARP  # see row_pass

    def lse(z, t, n):
        m = narrow(-math.inf)
        d = 0.0
        j = t
        ahead = cuda.local.array(loads, slot)  # unrolled into registers (loads is a constant)
        while j + (loads - 1) * group < n:  # every load issued before the dependent updates
            for u in range(loads):
                ahead[u] = load(z[uint64(j + u * group)])
            for u in range(loads):
                m, d = step(m, d, ahead[u])
            j += loads * group
        if batched_tail:  # the last, partial batch's loads in flight together
            if j < n:
                for u in range(loads):
                    ahead[u] = load(z[uint64(min(j + u * group, n - 1))])
                for u in range(loads):
                    if j + u * group < n:
                        m, d = step(m, d, ahead[u])
        else:
            while j < n:
                m, d = step(m, d, load(z[uint64(j)]))
                j += group
        m, d = merge_group(np.float64(m), d)
        if m == math.inf:  # a +inf logit weighs exp(inf - inf): no softmax, as on the CPU
            d = math.nan
        return m, d

    return compile_device(lse, f"row_max_sum_exp_{threads}_{group}_{narrow.__name__}_{load.__name__}")


def row_pass(element, load_x, load_y, group, name, loads=None, zero=0.0):
    """Device function ``(row, t, x, y, c, gx, gy, h) -> s``: thread ``t``'s pass over its
    elements j = t, t + group, ... of a row (``x`` its first input's row, of the row's
    length), ``s`` the sum of ``element(row, j, load_x(x, j), load_y(y, j), c, gx, gy,
    h)``, which may write element j's outputs; ``c`` holds the row's constants and ``y``
    what ``load_y`` reads (a target row, class weights, a label). The sum starts from
    ``zero`` and has its type (float64; ``np.float32(0)`` sums in float32).

    The loads of ``loads`` elements (default :data:`LOADS_IN_FLIGHT`) are issued before
    the first of them is worked: a loop that writes as it reads keeps one element's loads
    in flight, since no load may move above a store that could alias it (and with ``out=``
    the inputs, one does). The loop is written out that many times over (the source below), so the
    loaded values live in registers however large ``element`` is: a loop over a local
    array, which the compiler does not unroll around a large body, keeps them in local
    memory.

    When a block works a row (``group`` wider than a warp: rows of more than
    ``kernel_choice.WARP_ROW_WIDTH`` elements) the row's last batch, fewer than ``loads`` of the
    thread's elements, issues its loads together too, at indices clamped to the row (an
    element past the end reads the row's last one again and is not worked): a thread
    waits for memory once at the end of a row rather than once an element. Those kernels
    fit one block of 512 an SM with it or without it; the warp-per-row kernels keep the
    element-at-a-time end, which takes fewer registers (sm_90: softmax cross-entropy 64
    against 66, four blocks of 256 an SM against three).
    """
    loads = loads or LOADS_IN_FLIGHT
    ahead = [f"x{u}, y{u} = load_x(x, j + {u} * group), load_y(y, j + {u} * group)" for u in range(loads)]
    work = [f"s += element(row, j + {u} * group, x{u}, y{u}, c, gx, gy, h)" for u in range(loads)]
    if group > WARP:  # a block's row: one last batch, loads at indices clamped to the row
        clamped = [f"x{u}, y{u} = load_x(x, min(j + {u} * group, n - 1)), load_y(y, min(j + {u} * group, n - 1))"
                   for u in range(loads)]
        some = [f"if j + {u} * group < n:\n            {work[u]}" for u in range(1, loads)]
        end = ["    if j < n:", *(f"        {line}" for line in clamped + work[:1] + some)]
    else:  # a warp's row: the elements left one at a time
        end = ["    while j < n:",
               "        s += element(row, j, load_x(x, j), load_y(y, j), c, gx, gy, h)",
               "        j += group"]
    source = "\n".join([
        "def run(row, t, x, y, c, gx, gy, h):",
        "    n = x.shape[0]",
        "    s = zero",
        "    j = t",
        f"    while j + {loads - 1} * group < n:",
        *(f"        {line}" for line in ahead + work),
        f"        j += {loads} * group",
        *end,
        "    return s",
    ])
    namespace = {"element": element, "load_x": load_x, "load_y": load_y, "group": group, "zero": zero}
    exec(compile(source, f"<row_pass {name}>", "exec"), namespace)
    return compile_device(namespace["run"], name)


