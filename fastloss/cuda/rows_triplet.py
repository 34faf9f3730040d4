"""The row kernel of PyTorch's triplet margin loss: three input rows (anchor, positive,
negative), two distances reduced across the row's threads, three gradient rows."""

import numpy as np
from numba import uint64

from .jit import compile_device
from .loads import element_access
from .reductions import group_merge, group_sum
from .rows import rows_kernel


def triplet_rows_kernel(merge, max_nan, merge_nan, power, finish_norm, triplet_row, shift_of, element_grads, threads,
                        group, narrow, bf16):
    """A group of threads per row (:func:`.rows.rows_kernel`) for PyTorch's triplet margin
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
