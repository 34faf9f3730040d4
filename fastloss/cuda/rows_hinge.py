"""The row kernel of Keras's categorical hinge: the row's max with an exact count of its
ties, merged across the row's threads, then the gradient shared among the ties."""

import math

import numpy as np
from numba import uint64

from .jit import compile_device
from .loads import element_access, row_loads
from .reductions import group_merge, group_sum
from .rows import row_pass, rows_kernel


def categorical_hinge_rows_kernel(merge, slot, step, merge_count, hinge_row, hinge_grad, threads, group, narrow,
                                  bf16):
    """A group of threads per row (:func:`.rows.rows_kernel`) for Keras's categorical hinge.
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
