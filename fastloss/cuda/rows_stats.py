"""The row kernel of the class-axis losses built from row statistics, summed terms and
gradients: KL divergence, categorical cross-entropy, the VAE's KL term, softmax focal
loss (soft targets and integer labels) and Jensen-Shannon divergence.

One kernel body serves them all; each loss brings four formulas, the ``@portable``
adapters of :mod:`.rowmath` around the CPU row functions' helpers.
"""

import numpy as np
from numba import uint64

from .jit import compile_device
from .loads import element_access, row_loads
from .reductions import group_sum
from .rows import log_and_reciprocal, row_max_sum_exp, row_pass, rows_kernel


def stats_rows_kernel(merge, stat, term, grad, row_loss, threads, group, narrow, bf16, mode, sparse, name,
                      grad_loads=None):
    """A group of threads per row (:func:`.rows.rows_kernel`) for the class-axis losses whose
    row is a first pass of row statistics, a second of summed terms, and a third of
    gradients: KL divergence, categorical cross-entropy, the VAE's KL term, softmax focal
    loss (soft targets and integer labels) and Jensen-Shannon divergence. Formulas as in
    :mod:`fastloss.cuda.rowmath`:

    1. ``mode`` "sum": s0 = sum_j stat(x_j, y_j) (a group sum); "softmax": (s0, s1) =
       (m, log d) of row x (the online log-sum-exp of :func:`.rows.row_max_sum_exp`, merged
       across the group); "two_softmax": also (s2, s3) of row y; "none": nothing;
    2. u, v = the group sums of ``term``; the reductions' barriers end every thread's
       reads of other threads' elements;
    3. each thread writes ``grad`` of its own elements into ``gx`` (and ``gy`` where
       wanted), reading them again, a few ahead of the writes (:func:`.rows.row_pass`, with
       ``grad_loads`` loads in flight; None: :data:`.rows.LOADS_IN_FLIGHT`): in place with the
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
