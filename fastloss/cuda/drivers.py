"""CUDA loop drivers, one per loss family, and the small kernels around them.

The loss math comes in compiled (:mod:`.jit`); a driver only decides which thread
computes what. The kernels take the same arguments as the CPU block kernels
(:mod:`fastloss.cpu_numba.drivers`): an output of length 0 is not wanted, ``w`` (length
0: none) weights the samples, ``scale`` multiplies gradients and hessians; and one more,
``partials``, where each block leaves the float64 sum of its samples' weighted losses.

Reductions are deterministic (:mod:`.reductions`): fixed trees in registers (a warp) or
shared memory (a block), and the last block to finish sums the blocks' partial sums in a
fixed order (:func:`~.reductions.grid_finish`), in the same launch. The grid depends only
on the input's shape, so the same input gives the same bits run after run. Every loss
kernel ends with the arguments of :func:`~.reductions.grid_finish`: ``counter, factor,
total, value``.

- Element-wise: a grid-stride loop, at most ``max_blocks`` blocks of ``threads``.
- Class-axis (row-wise) losses: a group of threads per row (:func:`rows_kernel`): a warp
  for rows of at most ``call.WARP_ROW_WIDTH`` elements (several rows per block; a segment
  of a warp for rows narrower than one), else the block; each thread takes every
  ``group``-th element of the row, the row's reductions run in fixed trees over the
  group, the gradient is written after them (in place where it is the input), and there
  is no N x C temporary. The row bodies:

  - :func:`sparse_cross_entropy_rows_kernel`: sparse softmax cross-entropy;
  - :func:`soft_target_rows_kernel`: softmax cross-entropy with soft targets and softmax
    KL divergence;
  - :func:`stats_rows_kernel`: KL divergence, categorical cross-entropy, the VAE's KL
    term, softmax focal loss (soft targets and integer labels) and Jensen-Shannon
    divergence (formulas routed through :mod:`.rowmath`);
  - :func:`categorical_hinge_rows_kernel`: categorical hinge (max with an exact tie
    count);
  - :func:`triplet_rows_kernel`: triplet margin loss (three inputs, three gradients).

  The passes that write gradients share :func:`row_pass` (several elements' loads
  issued before their writes). Each body reads and writes bfloat16 bits natively (int16
  arrays, converted in registers: :func:`element_access`). Every class-axis loss has one
  of these kernels (a test checks
  the registry against ``fastloss.cuda.call._ROW_KERNELS``): none runs a row per thread.
Array indices in the loops are cast to ``uint64`` (``x[uint64(i)]``, ``gx[r, uint64(j)]``
with ``r = uint64(row)``): Numba gives a signed index Python's negative-index wraparound,
a compare, a select and two 64-bit adds per access, which an index that is never
negative does not need. In the cross-entropy's first pass that was most of the integer
work: six instructions per load, against one shared add for four loads without it.
For the same reason the loops over a row's elements, and over rows, are ``while`` loops
(``j = t``, ``while j < n``, ``j += group``), not ``for j in range(t, n, group)``: Numba
gives a range loop Python's trip count (a 64-bit division, and the remainder of the
unrolled loop), which the compiler works out before the loop over rows and keeps in
registers through it, for every such loop of the kernel: measured on the sparse
cross-entropy kernel, 150 registers a thread with range loops against 80 with ``while``
loops (``tests/compile_kernels.py`` prints every kernel's).
"""

import math

import numpy as np
from numba import cuda, from_dtype, int16, int32, int64, uint64

from ..math.elementary import as_float32, as_int32
from .jit import compile_device, compile_kernel
from .reductions import WARP, arrived_last, block_merge, block_sum, grid_finish, group_merge, group_sum


def elementwise_kernel(elem, name, threads, bf16=False, rule_on_device=False):
    """Grid-stride kernel for ``elem(x, y, c, p) -> (loss, dx, dy, hess)`` over 1-D arrays,
    evaluated in float64. ``y`` and ``c`` are ``x`` again where the loss has none. With
    ``bf16``, ``x``, ``y`` and the gradients and hessian hold bfloat16 bit patterns
    (int16); ``c`` (a float64 array where the loss has one) and the losses do not. With
    ``rule_on_device``, the loss's one parameter is decided on the device from
    ``rule[0]`` (hinge's 0/1 rule: :func:`zero_one_rule_kernel`); otherwise ``rule`` is
    empty."""
    _, load, store = element_access(np.float64, bf16)
    reduce = block_sum(threads)
    finish = grid_finish(threads)
    parameters = _rule_parameters if rule_on_device else _given_parameters

    def sample(i, xi, yi, ci, w, params, scale, loss_out, gx, gy, h):
        """Element ``i`` (its inputs already loaded): store its outputs, return its loss."""
        loss, dx, dy, d2 = elem(load(xi), load(yi), np.float64(ci), params)
        wi = np.float64(w[uint64(i)]) if w.shape[0] != 0 else 1.0
        loss *= wi
        if loss_out.shape[0] != 0:
            loss_out[uint64(i)] = loss
        g = scale * wi
        if gx.shape[0] != 0:
            gx[uint64(i)] = store(g * dx)
        if gy.shape[0] != 0:
            gy[uint64(i)] = store(g * dy)
        if h.shape[0] != 0:
            h[uint64(i)] = store(g * d2)
        return loss

    name = f"{name}{'_bf16' if bf16 else ''}{'_rule' if rule_on_device else ''}"
    sample = compile_device(sample, f"sample_{name}")

    def kernel(x, y, c, w, params, scale, loss_out, gx, gy, h, rule, partials, counter, factor, total_out, value):
        params = parameters(params, rule)
        n = x.shape[0]
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        total = 0.0
        while i + 3 * stride < n:  # four elements' loads in flight before any use
            i1, i2, i3 = i + stride, i + 2 * stride, i + 3 * stride
            x0, x1, x2, x3 = x[uint64(i)], x[uint64(i1)], x[uint64(i2)], x[uint64(i3)]
            y0, y1, y2, y3 = y[uint64(i)], y[uint64(i1)], y[uint64(i2)], y[uint64(i3)]
            c0, c1, c2, c3 = c[uint64(i)], c[uint64(i1)], c[uint64(i2)], c[uint64(i3)]
            total += sample(i, x0, y0, c0, w, params, scale, loss_out, gx, gy, h)
            total += sample(i1, x1, y1, c1, w, params, scale, loss_out, gx, gy, h)
            total += sample(i2, x2, y2, c2, w, params, scale, loss_out, gx, gy, h)
            total += sample(i3, x3, y3, c3, w, params, scale, loss_out, gx, gy, h)
            i += 4 * stride
        while i < n:
            total += sample(i, x[uint64(i)], y[uint64(i)], c[uint64(i)], w, params, scale, loss_out, gx, gy, h)
            i += stride
        block_total = reduce(total)
        if cuda.threadIdx.x == 0:
            partials[cuda.blockIdx.x] = block_total
        finish(partials, counter, factor, total_out, value)

    return compile_kernel(kernel, f"elementwise_{name}", threads)


@cuda.jit(device=True)
def _given_parameters(params, rule):
    return params


@cuda.jit(device=True)
def _rule_parameters(params, rule):
    """Hinge's one parameter, map01, from the count of targets that are not 0 or 1
    (:func:`zero_one_rule_kernel`)."""
    return (1.0 if rule[0] == 0.0 else 0.0,)


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
    unless the targets are integer labels) is what :func:`label_check_kernel` decided,
    read before anything else."""
    per_block = threads // group
    reduce = block_sum(threads)
    finish = grid_finish(threads)

    def kernel(x, y, v, c, w, params, scale, loss_out, gx, gy, gv, h, gate, partials, counter, factor, total, value):
        if gate.shape[0] != 0:  # integer labels, checked on the device (label_check_kernel)
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
#: paid for in registers. Read
#: when a kernel is built (``fastloss.cuda.call`` keys its kernels by it), so that
#: ``benchmarks/scripts/gpu_variants.py`` can compare values on a GPU.
LOADS_IN_FLIGHT = 4
#: Whether the sparse cross-entropy of float32 logits computes its gradient (p_j, the
#: gradient and hessian) in float32, as bfloat16 logits always do: False (shipped)
#: keeps float64, within about an ulp of the CPU's; True, what PyTorch does, spares the
#: float64 unit (sm_90, the pass's loop over four elements: float32/float64 conversions
#: 20 -> 12, float64 operations 44 -> 12) for a few ulp (measured against the CPU in the
#: simulator: 5 ulp with class weights, where float64 gave 1). Read when a kernel is
#: built, like LOADS_IN_FLIGHT; ``gpu_variants.py`` times both.
FLOAT32_CE_GRADIENT = False


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
    ``call.WARP_ROW_WIDTH`` elements) the row's last batch, fewer than ``loads`` of the
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


def row_loads(narrow, bf16):
    """(narrow_at, wide_at), loads for :func:`row_pass`: element j of a row in ``narrow``
    precision (a logit, for its exponential), and as float64."""
    load, wide, _ = element_access(narrow, bf16)

    def narrow_at(row, j):
        return load(row[uint64(j)])

    def wide_at(row, j):
        return wide(row[uint64(j)])

    suffix = f"{narrow.__name__}{'_bf16' if bf16 else ''}"
    return compile_device(narrow_at, f"narrow_at_{suffix}"), compile_device(wide_at, f"wide_at_{suffix}")


def soft_target_rows_kernel(merge, target, entropy, grad, threads, group, narrow, bf16, name):
    """A group of threads per row (:func:`rows_kernel`) for the softmax losses with a
    target distribution (softmax cross-entropy, PyTorch ``cross_entropy`` with
    probabilities and optax's; softmax KL divergence, PyTorch ``kl_div(log_softmax(z),
    q)``). Both have one parameter, a = ``params[0]`` (label smoothing; log_target). With
    t_j = ``target(y_j, a, C)`` and T = sum_j t_j::

        loss = sum_{t_j != 0} (entropy(y_j, t_j, a) + t_j (m - z_j)) + T log d
        grad_j = gs (T p_j - t_j)

    Pass 1 sums T and the online log-sum-exp; pass 2 writes the gradient (in place with
    ``gx`` the logits) and sums the loss terms. The per-element formulas are the CPU row
    functions' (:func:`fastloss.losses.cross_entropy.ce_target`, ``kl_target``, ``kl_entropy``,
    ``softmax_ce_grad``); precision and ``bf16`` as in
    :func:`sparse_cross_entropy_rows_kernel`.
    """
    load, wide, store = element_access(narrow, bf16)
    lse = row_max_sum_exp(threads, group, merge, narrow, load)
    reduce = group_sum(threads, group)

    def element(row, j, zj, yj, c, gx, gy, h):
        """Element j's gradient (and hessian) written; its loss term returned."""
        a, n, m, mn, inv_d, total_t, gs = c
        r = uint64(row)
        tj = target(yj, a, n)
        s = entropy(yj, tj, a) + tj * (m - np.float64(zj)) if tj != 0.0 else 0.0
        if gx.shape[1] != 0 or h.shape[1] != 0:
            pj = np.float64(math.exp(zj - mn)) * inv_d
            if gx.shape[1] != 0:
                gx[r, uint64(j)] = store(grad(pj, tj, total_t, gs))
            if h.shape[1] != 0:
                h[r, uint64(j)] = store(gs * total_t * pj * (1.0 - pj))
        return s

    narrow_at, wide_at = row_loads(narrow, bf16)
    terms = row_pass(compile_device(element, f"element_{name}"), narrow_at, wide_at, group, f"pass_{name}_{group}")

    def body(row, t, x, y, v, c, w, params, scale, gx, gy, gv, h):
        n = x.shape[1]
        z = x[row]
        yr = y[row]
        wi = np.float64(w[row]) if w.shape[0] != 0 else 1.0
        a = params[0]
        total_t = 0.0
        j = t
        while j < n:
            total_t += target(wide(yr[uint64(j)]), a, n)
            j += group
        total_t = reduce(total_t)
        m, d = lse(z, t, n)  # its barrier also ends every thread's reads of pass 1
        log_d, inv_d = log_and_reciprocal(d)
        # narrow(m) is exact: m is one of the row's values
        s = terms(row, t, z, yr, (a, n, m, narrow(m), inv_d, total_t, scale * wi), gx, gy, h)
        s = reduce(s)
        return (s + total_t * log_d) * wi

    body = compile_device(body, f"row_{name}_{threads}_{group}")
    return rows_kernel(body, threads, group, f"rows_{name}{'_bf16' if bf16 else ''}")


def sparse_cross_entropy_rows_kernel(merge, row_loss, grad, threads, group, narrow, bf16):
    """A group of threads per row (:func:`rows_kernel`) for sparse softmax cross-entropy
    (PyTorch ``cross_entropy`` with class indices, weights, smoothing and
    ``ignore_index``), in two passes over the row:

    1. each thread keeps an online (max, sum of exponentials) of its strided share of the
       row, merged across the group; the label's logit is read here, before any write;
    2. each thread writes the gradient (and hessian) of its share, ``p_j = exp(z_j - m) /
       d``, and sums the smoothing term.

    The row's loss and gradient formulas are those of the CPU row function
    (:func:`fastloss.losses.cross_entropy.sparse_ce_row_loss`, ``sparse_ce_grad``). No N x C
    temporary: with ``gx`` the logits themselves the gradient overwrites them in place.

    Per-element exponentials are taken in ``narrow`` precision (float32 for inputs of at
    most 32 bits, as PyTorch and Liger-Kernel do; float64 for float64), of logits read in
    it and differences ``z_j - m`` taken in it (:func:`row_max_sum_exp`), their sums and
    the row's loss in float64. With ``bf16`` the logits and gradients are bfloat16 bit patterns
    in int16 arrays, converted in registers (round to nearest even on the way out), and
    the second pass works in float32: p_j, the gradient and hessian (``work``), which
    are rounded to bfloat16's 8 bits, and each thread's sum of its smoothing terms
    (``acc``: its share of the row, summed across the group in float64). In float64 it
    took five float32/float64 conversions an element (sm_90 runs 16 an SM a cycle,
    against 128 float32 operations), about as long as the pass's memory traffic at
    (8192, 32000). For float32 logits :data:`FLOAT32_CE_GRADIENT` decides ``work``.
    """
    load, wide, store = element_access(narrow, bf16)
    lse = row_max_sum_exp(threads, group, merge, narrow, load)
    work = np.float32 if bf16 or (narrow is np.float32 and FLOAT32_CE_GRADIENT) else np.float64  # the gradient's
    acc = np.float32 if bf16 else np.float64  # the smoothing terms' and their sum's

    def element(row, j, zj, cj, c, gx, gy, h):
        """Write the gradient (and hessian) of logit ``j`` (``zj`` in ``narrow``
        precision; ``mn`` the row's maximum in it, ``m`` in ``acc``; ``cj`` its class
        weight, in ``acc``); return its smoothing term."""
        m, mn, inv_d, a, k, label_weight, ls, gs, label = c
        r = uint64(row)
        if gx.shape[1] != 0 or h.shape[1] != 0:
            pj = work(math.exp(zj - mn)) * inv_d
            if gx.shape[1] != 0:
                gx[r, uint64(j)] = store(grad(pj, j == label, a, k * work(cj), label_weight, gs))
            if h.shape[1] != 0:
                h[r, uint64(j)] = store(gs * a * pj * (work(1.0) - pj))
        return cj * (m - acc(zj)) if ls != 0.0 else acc(0.0)

    def class_weight(cw, j):
        """The class weight of class j (1 without class weights)."""
        return acc(cw[uint64(j)]) if cw.shape[0] != 0 else acc(1.0)

    narrow_at, _ = row_loads(narrow, bf16)
    suffix = f"{narrow.__name__}{'_bf16' if bf16 else ''}"
    terms = row_pass(compile_device(element, f"ce_element_{suffix}"), narrow_at,
                     compile_device(class_weight, f"class_weight_{acc.__name__}"), group, f"pass_ce_{group}_{suffix}",
                     zero=acc(0.0))
    reduce = group_sum(threads, group)
    weight_sum = group_sum(threads, group)  # one instance per caller (see grid_finish's note)

    def body(row, t, x, labels, v, cw, w, params, scale, gx, gy, gv, h):
        r = uint64(row)
        n = x.shape[1]
        z = x[row]
        label = labels[row]
        ls = params[0]
        k = ls / n
        weighted = cw.shape[0] != 0
        wi = np.float64(w[row]) if w.shape[0] != 0 else 1.0
        gs = scale * wi
        want_g = gx.shape[1] != 0
        want_h = h.shape[1] != 0
        if params[2] != 0.0 and label == params[1]:  # an ignored row: loss and gradient 0
            j = t
            while j < gx.shape[1]:
                gx[r, uint64(j)] = store(0.0)
                j += group
            j = t
            while j < h.shape[1]:
                h[r, uint64(j)] = store(0.0)
                j += group
            return 0.0
        w_y = np.float64(cw[label]) if weighted else 1.0
        z_y = wide(z[label])  # read before any thread writes the row
        wsum = 0.0
        if weighted:
            j = t
            while j < n:
                wsum += cw[uint64(j)]
                j += group
            wsum = weight_sum(wsum)
        else:
            wsum = float(n)
        m, d = lse(z, t, n)
        mn = narrow(m)  # exact: m is one of the row's values
        log_d, inv_d = log_and_reciprocal(d)
        a = w_y * (1.0 - ls) + k * wsum
        s = 0.0
        if want_g or want_h or ls != 0.0:
            c = (acc(m), mn, work(inv_d), work(a), work(k), work(w_y * (1.0 - ls)), ls, work(gs), label)
            s = np.float64(terms(row, t, z, cw, c, gx, gy, h))
        if ls != 0.0:
            s = reduce(s)
        return row_loss(w_y, ls, k, m, z_y, log_d, s, wsum) * wi

    body = compile_device(body, f"row_sparse_softmax_cross_entropy_{threads}_{group}")
    return rows_kernel(body, threads, group, f"rows_sparse_softmax_cross_entropy{'_bf16' if bf16 else ''}")


def stats_rows_kernel(merge, stat, term, grad, row_loss, threads, group, narrow, bf16, mode, sparse, name,
                      grad_loads=None):
    """A group of threads per row (:func:`rows_kernel`) for the class-axis losses whose
    row is a first pass of row statistics, a second of summed terms, and a third of
    gradients: KL divergence, categorical cross-entropy, the VAE's KL term, softmax focal
    loss (soft targets and integer labels) and Jensen-Shannon divergence. Formulas as in
    :mod:`fastloss.cuda.rowmath`:

    1. ``mode`` "sum": s0 = sum_j stat(x_j, y_j) (a group sum); "softmax": (s0, s1) =
       (m, log d) of row x (the online log-sum-exp of :func:`row_max_sum_exp`, merged
       across the group); "two_softmax": also (s2, s3) of row y; "none": nothing;
    2. u, v = the group sums of ``term``; the reductions' barriers end every thread's
       reads of other threads' elements;
    3. each thread writes ``grad`` of its own elements into ``gx`` (and ``gy`` where
       wanted), reading them again, a few ahead of the writes (:func:`row_pass`, with
       ``grad_loads`` loads in flight; None: :data:`LOADS_IN_FLIGHT`): in place with the
       gradient rows the inputs themselves.

    With ``sparse`` the targets are integer labels and y_j = [j = label]. Exponentials of
    the log-sum-exp in ``narrow`` precision, every sum and the row's loss in float64.
    With ``bf16`` every float array holds bfloat16 bit patterns (int16).
    """
    narrow_load, load, store = element_access(narrow, bf16)
    reduce = group_sum(threads, group)
    lse = row_max_sum_exp(threads, group, merge, narrow, narrow_load)
    _, wide_at = row_loads(narrow, bf16)

    if sparse:
        def target(label, j):
            """y_j of the row's integer label: 1 at the label, else 0."""
            return 1.0 if j == label else 0.0
        target = compile_device(target, "target_labels")
    else:
        target = wide_at  # y_j of a target row

    if mode == "sum":
        stat_sum = group_sum(threads, group)  # a device function of its own (one linked from two callers is invalid IR)

        def stats(z, yr, t, n, params):
            s = 0.0
            j = t
            while j < n:
                s += stat(load(z[uint64(j)]), target(yr, j), params)
                j += group
            return stat_sum(s), 0.0, 0.0, 0.0
    elif mode == "softmax":
        def stats(z, yr, t, n, params):
            m, d = lse(z, t, n)
            return m, log_and_reciprocal(d)[0], 0.0, 0.0
    elif mode == "two_softmax":
        def stats(z, yr, t, n, params):
            m, d = lse(z, t, n)
            mq, dq = lse(yr, t, n)
            return m, log_and_reciprocal(d)[0], mq, log_and_reciprocal(dq)[0]
    else:
        def stats(z, yr, t, n, params):
            return 0.0, 0.0, 0.0, 0.0
    stats = compile_device(stats, f"row_stats_{name}")

    def element(row, j, xj, yj, c, gx, gy, h):
        """Element j's gradients written."""
        s0, s1, s2, s3, u, vs, width, params, gs = c
        ga, gb = grad(xj, yj, s0, s1, s2, s3, u, vs, width, params, gs)
        r = uint64(row)
        gx[r, uint64(j)] = store(ga)
        if gy.shape[1] != 0:
            gy[r, uint64(j)] = store(gb)
        return 0.0

    grads = row_pass(compile_device(element, f"element_{name}"), wide_at, target, group, f"pass_{name}_{group}",
                     grad_loads)

    def body(row, t, x, y, v, c, w, params, scale, gx, gy, gv, h):
        n = x.shape[1]
        z = x[row]
        yr = y[row]  # a target row, or the row's label
        wi = np.float64(w[row]) if w.shape[0] != 0 else 1.0
        s0, s1, s2, s3 = stats(z, yr, t, n, params)
        width = np.float64(n)
        u = 0.0
        vs = 0.0
        j = t
        while j < n:
            a, b = term(load(z[uint64(j)]), target(yr, j), s0, s1, s2, s3, width, params)
            u += a
            vs += b
            j += group
        u = reduce(u)
        vs = reduce(vs)
        if gx.shape[1] != 0:
            grads(row, t, z, yr, (s0, s1, s2, s3, u, vs, width, params, scale * wi), gx, gy, h)
        return row_loss(u, vs, params) * wi

    body = compile_device(body, f"row_{name}_{threads}_{group}")
    return rows_kernel(body, threads, group, f"rows_{name}{'_bf16' if bf16 else ''}")


def categorical_hinge_rows_kernel(merge, slot, step, merge_count, hinge_row, hinge_grad, threads, group, narrow,
                                  bf16):
    """A group of threads per row (:func:`rows_kernel`) for Keras's categorical hinge.
    Pass 1: each thread sums y_j x_j over its share and keeps (max_j (1 - y_j) x_j, the
    number of slots at that max) (:func:`fastloss.losses.hinge.hinge_slot`,
    ``max_count_step``); the group merges the sums and the (max, count) states in fixed
    trees (``merge_max_count``), so ties are counted exactly. Pass 2 writes the gradient
    (``categorical_hinge_grad``), in place with ``gx`` the predictions (the merges'
    barriers end every read of other threads' elements). ``merge`` (log-sum-exp's) and
    ``narrow`` are unused; with ``bf16`` the arrays hold bfloat16 bit patterns (int16)."""
    _, load, store = element_access(narrow, bf16)
    reduce = group_sum(threads, group)
    max_count = group_merge(threads, group, merge_count, "max_count")

    def element(row, j, xj, yj, c, gx, gy, h):
        """Element j's gradient written."""
        neg, ties, a = c
        gx[uint64(row), uint64(j)] = store(hinge_grad(xj, yj, neg, ties, a))
        return 0.0

    _, wide_at = row_loads(narrow, bf16)
    grads = row_pass(compile_device(element, "element_categorical_hinge"), wide_at, wide_at, group,
                     f"pass_categorical_hinge_{group}")

    def body(row, t, x, y, v, c, w, params, scale, gx, gy, gv, h):
        n = x.shape[1]
        z = x[row]
        yr = y[row]
        wi = np.float64(w[row]) if w.shape[0] != 0 else 1.0
        pos = 0.0
        neg = -math.inf
        ties = 0.0
        j = t
        while j < n:
            pj, u = slot(load(z[uint64(j)]), load(yr[uint64(j)]))
            pos += pj
            neg, ties = step(neg, ties, u)
            j += group
        pos = reduce(pos)
        neg, ties = max_count(neg, ties)
        loss, a = hinge_row(neg, pos, scale * wi)
        if gx.shape[1] != 0:
            grads(row, t, z, yr, (neg, ties, a), gx, gy, h)
        return loss * wi

    body = compile_device(body, f"row_categorical_hinge_{threads}_{group}")
    return rows_kernel(body, threads, group, f"rows_categorical_hinge{'_bf16' if bf16 else ''}")


def triplet_rows_kernel(merge, max_nan, merge_nan, power, finish_norm, triplet_row, shift_of, element_grads, threads,
                        group, narrow, bf16):
    """A group of threads per row (:func:`rows_kernel`) for PyTorch's triplet margin
    loss, with anchor, positive and negative rows ``x``, ``y``, ``v`` and their gradients
    ``gx``, ``gy``, ``gv``; ``params = (margin, p, eps, squared)``. The two distances as
    :func:`fastloss.losses.embedding.distance` takes them:

    1. (p-norm only) each thread keeps (largest |a_j - b_j + eps|, NaN count) of its
       share for both distances (``max_nan_step``), merged across the group in fixed
       trees (``merge_max_nan``);
    2. group sums of (|t_j| / largest)^p (``norm_power``), or of (a_j - b_j)^2 when
       squared, then ``norm_finish`` and the row (``triplet_row``);
    3. each thread writes the three gradients of its own coordinates
       (``triplet_element_grads``), in place with the gradient rows the inputs themselves
       (the reductions' barriers end every read of other threads' coordinates).

    ``merge`` (log-sum-exp's) and ``narrow`` are unused; with ``bf16`` the arrays hold
    bfloat16 bit patterns (int16)."""
    _, load, store = element_access(narrow, bf16)
    reduce = group_sum(threads, group)
    largest = group_merge(threads, group, merge_nan, "max_nan")

    def body(row, t, x, y, v, c, w, params, scale, gx, gy, gv, h):
        r = uint64(row)
        n = x.shape[1]
        a = x[row]
        pos = y[row]
        neg = v[row]
        margin = params[0]
        norm_p = params[1]
        eps = params[2]
        squared = params[3] != 0.0
        wi = np.float64(w[row]) if w.shape[0] != 0 else 1.0
        shift = shift_of(eps, squared)
        big_p = 0.0
        bad_p = 0.0
        big_n = 0.0
        bad_n = 0.0
        if not squared:
            j = t
            while j < n:
                aj = load(a[uint64(j)])
                big_p, bad_p = max_nan(big_p, bad_p, abs(aj - load(pos[uint64(j)]) + eps))
                big_n, bad_n = max_nan(big_n, bad_n, abs(aj - load(neg[uint64(j)]) + eps))
                j += group
            big_p, bad_p = largest(big_p, bad_p)
            big_n, bad_n = largest(big_n, bad_n)
        s_p = 0.0
        s_n = 0.0
        j = t
        while j < n:
            aj = load(a[uint64(j)])
            tp = aj - load(pos[uint64(j)])
            tn = aj - load(neg[uint64(j)])
            if squared:
                s_p += tp * tp
                s_n += tn * tn
            else:
                s_p += power(abs(tp + eps) / big_p, norm_p)
                s_n += power(abs(tn + eps) / big_n, norm_p)
            j += group
        s_p = reduce(s_p)
        s_n = reduce(s_n)
        d_pos = s_p if squared else finish_norm(big_p, bad_p, s_p, norm_p)
        d_neg = s_n if squared else finish_norm(big_n, bad_n, s_n, norm_p)
        loss, active = triplet_row(d_pos, d_neg, margin, scale * wi)
        if gx.shape[1] != 0:
            j = t
            while j < n:
                u = uint64(j)
                g_a, g_p, g_n = element_grads(load(a[u]), load(pos[u]), load(neg[u]), active, shift, d_pos, d_neg,
                                              norm_p, squared)
                gx[r, u] = store(g_a)
                gy[r, u] = store(g_p)
                gv[r, u] = store(g_n)
                j += group
        return loss * wi

    body = compile_device(body, f"row_triplet_margin_loss_{threads}_{group}")
    return rows_kernel(body, threads, group, f"rows_triplet_margin_loss{'_bf16' if bf16 else ''}")


@cuda.jit(device=True)
def plain_load(v):
    """An array element as float64."""
    return np.float64(v)


@cuda.jit(device=True)
def float32_load(v):
    """A float32 or float16 array element as float32 (exact)."""
    return np.float32(v)


@cuda.jit(device=True)
def plain_store(v):
    """A float64 for an array store (the store converts it to the array's dtype)."""
    return v


# Bit casts: libdevice's on a GPU, the portable natives' Python references in the simulator.
_as_float32 = as_float32.for_target("cuda")
_as_int32 = as_int32.for_target("cuda")


@cuda.jit(device=True)
def bf16_load(bits):
    """A bfloat16 bit pattern (an int16 array element) as float32 (its top half: exact)."""
    return _as_float32(int32(bits) << 16)


@cuda.jit(device=True)
def bf16_wide_load(bits):
    """A bfloat16 bit pattern (an int16 array element) as float64."""
    return np.float64(bf16_load(bits))


@cuda.jit(device=True)
def bf16_store(v):
    """float64 to the bit pattern of the nearest bfloat16 (ties to even, through float32;
    NaN stays a quiet NaN), as an int16."""
    f = np.float32(v)
    bits = _as_int32(f)
    if f != f:
        return int16(0x7FC0)
    bits = int32(bits + 0x7FFF + ((bits >> 16) & 1))  # Numba adds in int64: back to 32 bits
    return int16(bits >> 16)


def element_access(narrow, bf16):
    """(load, wide, store) for a row kernel's arrays: ``load`` an element in ``narrow``
    precision (the exponentials' inputs), ``wide`` an element as float64 (every other
    formula's), ``store`` a float64 for an element store; with ``bf16`` the arrays hold
    bfloat16 bit patterns (int16)."""
    if bf16:
        return bf16_load, bf16_wide_load, bf16_store
    return (float32_load if narrow is np.float32 else plain_load), plain_load, plain_store


def finish_kernel(finish, threads):
    """The kernel that finishes a loss from its reduced sum (RMSE's ``finish``, see
    :class:`fastloss._registry.LossSpec`), after the loss kernel on the same stream: each
    thread computes ``(loss, factor) = finish(total[0], n)``, the first stores ``value[0]
    = loss`` (``value`` empty: not wanted), and all multiply the gradient ``g`` (1-D;
    empty: none) by ``factor``, in a grid-stride loop with four loads in flight before
    their stores (one at a time, a thread would wait out each load's latency), in blocks
    of ``threads``. The call queues it and goes on: nothing waits for the sum."""
    finish = cuda.jit(device=True)(finish)

    def kernel(total, n, value, g):
        loss, factor = finish(total[0], n)
        i = cuda.grid(1)
        if i == 0 and value.shape[0] != 0:
            value[0] = loss
        stride = cuda.gridsize(1)
        size = g.shape[0]
        while i + 3 * stride < size:
            i1, i2, i3 = i + stride, i + 2 * stride, i + 3 * stride
            g0, g1, g2, g3 = g[uint64(i)], g[uint64(i1)], g[uint64(i2)], g[uint64(i3)]
            g[uint64(i)] = np.float64(g0) * factor
            g[uint64(i1)] = np.float64(g1) * factor
            g[uint64(i2)] = np.float64(g2) * factor
            g[uint64(i3)] = np.float64(g3) * factor
            i += 4 * stride
        while i < size:
            g[uint64(i)] = np.float64(g[uint64(i)]) * factor
            i += stride

    return compile_kernel(kernel, "finish", threads)


@cuda.jit(device=True)
def min_max(lo1, hi1, lo2, hi2):
    """Two (smallest, largest) pairs merged."""
    return min(lo1, lo2), max(hi1, hi2)


#: What a label check's ``gate`` carries for a "mean" (``mean`` of
#: :func:`label_check_kernel`): nothing (the call's factors stand), or the reciprocal of
#: the number of counted rows, or of the sum of their class weights.
MEAN_AS_GIVEN, MEAN_OVER_COUNTED, MEAN_OVER_CLASS_WEIGHTS = 0, 1, 2


def label_check_kernel(threads):
    """The device check of integer ``labels`` (contract section 3), and what the loss kernel
    needs of them, with no read-back in between.

    Each block leaves, in column ``b`` of ``stats`` (int64, one column more than
    blocks), the smallest and the largest label that is not ``ignore`` and the number of
    such labels, and in ``weights[b]`` the sum of ``class_weight[label]`` over those in
    [0, C) (empty ``class_weight``: not summed). The last block to finish
    (:func:`~.reductions.arrived_last`) merges the columns in index order into the last
    one and writes ``gate``, which the loss kernel reads first (:func:`rows_kernel`):
    ``gate[0]`` is 1 when a counted label is outside [0, C) (the loss kernel then writes
    nothing, and the call raises the CPU's error from the merged extremes), else 0;
    ``gate[1]`` and ``gate[2]`` multiply the loss kernel's gradient scale and loss
    factor: 1/n for a mean over n counted rows or class weights (``mean``), 0 and NaN
    when n is 0 (every row ignored: gradient 0, mean NaN), else 1 and 1. A label
    outside [0, C) is never used as an index."""
    reduce = block_sum(threads)
    extremes_of_block = block_merge(threads, min_max, "block_label_extremes", int64)

    def of_block(lo, hi, count, wsum, weighted, stats, column):
        """The block's (smallest, largest, count, weight sum) from its threads', stored
        in ``stats[:, column]`` (the sum is returned, not stored)."""
        lo, hi = extremes_of_block(lo, hi)
        count = reduce(count)
        if weighted:
            wsum = reduce(wsum)
        if cuda.threadIdx.x == 0:
            stats[0, column] = lo
            stats[1, column] = hi
            stats[2, column] = int64(count)
        return lo, hi, count, wsum

    of_block = compile_device(of_block, "label_stats_of_block")
    no_lo, no_hi = int64(9223372036854775807), int64(-9223372036854775807 - 1)

    def kernel(labels, ignore, has_ignore, n_classes, class_weight, mean, stats, weights, counter, gate):
        t = cuda.threadIdx.x
        b = cuda.blockIdx.x
        lo, hi, count, wsum = no_lo, no_hi, 0.0, 0.0
        weighted = class_weight.shape[0] != 0
        i = cuda.grid(1)
        while i < labels.shape[0]:
            label = int64(labels[uint64(i)])
            if not (has_ignore and label == ignore):
                lo = min(lo, label)
                hi = max(hi, label)
                count += 1.0
                if weighted and 0 <= label < n_classes:
                    wsum += class_weight[label]
            i += cuda.gridsize(1)
        wsum = of_block(lo, hi, count, wsum, weighted, stats, b)[3]
        if weighted and t == 0:
            weights[b] = wsum
        if not arrived_last(counter):
            return
        blocks = cuda.gridDim.x
        lo, hi, count, wsum = no_lo, no_hi, 0.0, 0.0
        k = t
        while k < blocks:
            lo = min(lo, stats[0, k])
            hi = max(hi, stats[1, k])
            count += np.float64(stats[2, k])
            if weighted:
                wsum += weights[k]
            k += threads
        lo, hi, count, wsum = of_block(lo, hi, count, wsum, weighted, stats, blocks)
        if t == 0:
            gate[0] = 1.0 if count != 0.0 and (lo < 0 or hi >= n_classes) else 0.0
            n = wsum if mean == MEAN_OVER_CLASS_WEIGHTS else count
            if mean == MEAN_AS_GIVEN:
                gate[1], gate[2] = 1.0, 1.0
            elif n != 0.0:
                gate[1], gate[2] = 1.0 / n, 1.0 / n
            else:
                gate[1], gate[2] = 0.0, math.nan

    return compile_kernel(kernel, "label_check", threads)


def zero_one_rule_kernel(threads):
    """Keras's hinge rule, decided on the device: ``others[0]`` = the number of targets
    of ``t`` that are not 0 or 1 (NaN left out), summed by the last block to finish
    (:func:`~.reductions.grid_finish`; ``nothing``: an empty array). The loss kernel
    queued behind it maps the targets to -1/1 when it is 0 (:func:`elementwise_kernel`)."""
    reduce = block_sum(threads)
    finish = grid_finish(threads)

    def kernel(t, partials, counter, others, nothing):
        count = 0.0
        i = cuda.grid(1)
        while i < t.shape[0]:
            v = np.float64(t[uint64(i)])
            if not (v == 0.0 or v == 1.0 or math.isnan(v)):
                count += 1.0
            i += cuda.gridsize(1)
        count = reduce(count)
        if cuda.threadIdx.x == 0:
            partials[cuda.blockIdx.x] = count
        finish(partials, counter, 1.0, others, nothing)

    return compile_kernel(kernel, "zero_one_rule", threads)
