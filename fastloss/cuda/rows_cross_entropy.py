"""The row kernels of the softmax cross-entropies: sparse softmax cross-entropy (integer
labels, class weights, label smoothing, ``ignore_index``), and one row body for softmax
cross-entropy with soft targets and softmax KL divergence.

Both keep an online log-sum-exp of the row (:func:`.rows.row_max_sum_exp`) and write the
gradient in the same launch, in place with ``out=logits``. Their per-element and per-row
formulas are the CPU row functions' ``@portable`` helpers of
:mod:`fastloss.losses.cross_entropy`, compiled as device functions (:mod:`.kernel_choice` says
which).
"""

import math

import numpy as np
from numba import uint64

from .jit import compile_device
from .loads import element_access, row_loads
from .reductions import group_sum
from .rows import log_and_reciprocal, row_max_sum_exp, row_pass, rows_kernel

#: Whether the sparse cross-entropy of float32 logits computes its gradient (p_j, the
#: gradient and hessian) in float32, as bfloat16 logits always do: False (shipped)
#: keeps float64, within about an ulp of the CPU's; True, what PyTorch does, spares the
#: float64 unit (sm_90, the pass's loop over four elements: 12 float32/float64
#: conversions against 20, 12 float64 operations against 44) for a few ulp (against the
#: CPU, in the simulator: 5 ulp with class weights, against 1 in float64). Read when a
#: kernel is built, like LOADS_IN_FLIGHT; ``gpu_variants.py`` times both.
FLOAT32_CE_GRADIENT = False


def soft_target_rows_kernel(merge, target, entropy, grad, threads, group, narrow, bf16, name):
    """A group of threads per row (:func:`.rows.rows_kernel`) for the softmax losses with a
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
    """A group of threads per row (:func:`.rows.rows_kernel`) for sparse softmax cross-entropy
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
    it and differences ``z_j - m`` taken in it (:func:`.rows.row_max_sum_exp`), their
    sums and the row's loss in float64. With ``bf16`` the logits and gradients are
    bfloat16 bit patterns in int16 arrays, converted in registers (round to nearest even
    on the way out), and the second pass works in float32: p_j, the gradient and hessian
    (``work``), which are rounded to bfloat16's 8 bits, and each thread's sum of its
    smoothing terms (``acc``: its share of the row, summed across the group in
    float64). In float64 the
    pass would take five float32/float64 conversions an element (sm_90 runs 16 an SM a
    cycle, against 128 float32 operations), about as long as the pass's memory traffic
    at (8192, 32000). For float32 logits :data:`FLOAT32_CE_GRADIENT` decides ``work``.
    """
    load, wide, store = element_access(narrow, bf16)
    lse = row_max_sum_exp(threads, group, merge, narrow, load)
    work = np.float32 if bf16 or (narrow is np.float32 and FLOAT32_CE_GRADIENT) else np.float64  # the gradient's
    acc = np.float32 if bf16 else np.float64  # the smoothing terms' and their sum's

    def element(row, j, zj, cj, c, gx, gy, h):
        """Write the gradient (and hessian) of logit ``j`` (``zj`` in ``narrow``
        precision; ``mn`` the row's maximum in it, ``m`` in ``acc``; ``cj`` its class
        weight, in ``acc``); return its smoothing term, cw_j (m - z_j), which is 0 for a
        class of weight 0 whatever its logit (a masked class's -inf too), as in the CPU
        row function's sum (:func:`fastloss.math.online_softmax.block_gaps`' terms)."""
        m, mn, inv_d, a, k, label_weight, ls, gs, label = c
        r = uint64(row)
        if gx.shape[1] != 0 or h.shape[1] != 0:
            pj = work(math.exp(zj - mn)) * inv_d
            if gx.shape[1] != 0:
                gx[r, uint64(j)] = store(grad(pj, j == label, a, k * work(cj), label_weight, gs))
            if h.shape[1] != 0:
                h[r, uint64(j)] = store(gs * a * pj * (work(1.0) - pj))
        return cj * (m - acc(zj)) if ls != 0.0 and cj != 0.0 else acc(0.0)

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
