"""Cross-entropy of one row of the class axis: ``f(x, y, v, c, gx, gy, gv, h, gs, p) ->
row loss`` (see :mod:`fastloss.losses`), with the narrow-row forms ``f_rows``.

- :func:`softmax_cross_entropy`: logits against soft or one-hot targets;
- :func:`sparse_softmax_cross_entropy`: logits against integer labels (class weights,
  ``ignore_index``);
- :func:`categorical_cross_entropy`: probabilities (Keras, ``from_logits=False``).

The softmax losses take their maximum and sum of exponentials from the online
log-sum-exp of :mod:`fastloss.math.online_softmax`. Their gradient helpers
(:func:`softmax_ce_grad`, :func:`smoothed_target`) serve the softmax KL divergence too
(:mod:`.divergences`), and the CUDA row kernels are built from the formulas here
(:func:`ce_target`, :func:`no_entropy`, :func:`sparse_ce_row_loss`, :func:`sparse_ce_grad`).

Functions whose docstring says *in place* read every logit they need before they write
the gradient row, so ``gx`` may be ``x`` itself (``out=logits``).
"""

import math

from ..math.declare import Index, Indices
from ..math.elementary import is_single, log, single
from ..math.online_softmax import (
    block_max,
    block_range,
    block_scale,
    block_size,
    merge_gaps,
    merge_max_sum_exp,
    softmax_blocks,
    softmax_exp,
    tile_transposed_max,
    tile_untranspose,
)
from ..math.portable import portable
from ..math.primitives import clip, clip_grad, wide, xdivy, xlogy
from ..math.reductions import LANES, lane_add, lane_finish, lane_group, lanes, scratch


@portable.row
def sparse_softmax_cross_entropy(z, label: Index, v, cw, gz, gy, gv, h, gs, p):
    """PyTorch ``cross_entropy`` with class indices; in place.

    ``p = (label_smoothing, ignore_index, has_ignore_index)``, ``cw`` the class weights
    (empty for none). With lse = m + log d and W = sum_j cw_j::

        loss = cw_y (1 - ls) (lse - z_y) + (ls / C) sum_j cw_j (lse - z_j)
        grad_j = gs (A softmax_j - cw_y (1 - ls) [j = y] - (ls / C) cw_j)
        hess_j = gs A softmax_j (1 - softmax_j),   A = cw_y (1 - ls) + (ls / C) W

    each ``lse - z_j`` evaluated as ``(m - z_j) + log d``. An ignored row has loss and
    gradient 0.
    """
    ls = p[0]
    n = z.shape[0]
    want_g = gz.shape[0] != 0
    want_h = h.shape[0] != 0
    if p[2] != 0.0 and label == p[1]:
        for j in range(gz.shape[0]):
            gz[j] = 0.0
        for j in range(h.shape[0]):
            h[j] = 0.0
        return 0.0
    weighted = cw.shape[0] != 0
    w_y = wide(cw[label]) if weighted else 1.0
    z_y = wide(z[label])  # read before the row (maybe z itself) is overwritten
    k = ls / n
    s = 0.0
    wsum = 0.0
    if ls != 0.0:  # the smoothing sums read every logit before the row (maybe z) is written
        m = block_max(z, 0, n)
        for j in range(n):
            wj = wide(cw[j]) if weighted else 1.0
            zj = wide(z[j])
            wsum += wj
            if wj != 0.0:  # block_gaps' terms
                s += wj * ((m - zj) if zj != m else 0.0)
    # exp(z_j - m_b) into the gradient row (or the hessian's, when only it is wanted).
    maxima = lanes(None)
    if want_g:
        m, d, s_, t_ = softmax_blocks(z, gz, 1.0, z, 0.0, 0.0, 0.0, maxima)
    else:
        m, d, s_, t_ = softmax_blocks(z, h, 1.0 if want_h else 0.0, z, 0.0, 0.0, 0.0, maxima)
    log_d = log(d)
    loss = sparse_ce_row_loss(w_y, ls, k, m, z_y, log_d, s, wsum)
    if not (want_g or want_h):
        return loss
    a = w_y * (1.0 - ls) + k * wsum
    inv_d = 1.0 / d
    size = block_size(z)
    for blk in range((n + size - 1) // size):
        lo, hi = block_range(blk, size, n)
        scale = block_scale(maxima[blk], m, inv_d)
        if not want_g:
            for j in range(lo, hi):
                pj = wide(h[j]) * scale
                h[j] = softmax_ce_hess(pj, a, gs)
        else:
            for j in range(lo, hi):
                pj = wide(gz[j]) * scale
                if want_h:
                    h[j] = softmax_ce_hess(pj, a, gs)
                gz[j] = sparse_ce_grad(pj, j == label, a, k * (wide(cw[j]) if weighted else 1.0), w_y * (1.0 - ls), gs)
    return loss


@portable.rows(inline=False)
def sparse_softmax_cross_entropy_rows(z, labels: Indices, cw, gz, h, gs, p, loss):
    """:func:`sparse_softmax_cross_entropy` of a tile of narrow rows (fewer classes than
    LANES), row by row the same arithmetic in the same order; in place.

    ``z`` (and ``gz``, ``h`` where wanted) hold the tile's rows one after another;
    ``labels``, ``gs`` (each row's gradient scale) and ``loss`` (written) have one entry
    per row; the tile fits the scratch buffers
    (:func:`~fastloss.math.reductions.scratch`). A 10-class row taken alone is a chain of
    short dependent loops (max, exponentials, sum, log, gradient) that SIMD cannot fill.
    Here the tile is transposed into ``t`` (``t[j * rows + r]`` is row r's class j), so
    that the per-row maxima and sums become element-wise operations on whole vectors of
    rows (each row still summed in class order), and the exponentials, logarithms and
    gradients are loops over the tile; the gradients are transposed back at the end.
    """
    rows = labels.shape[0]
    n = z.shape[0] // rows
    ls = p[0]
    k = ls / n
    weighted = cw.shape[0] != 0
    t = scratch()  # the tile, transposed: z, then z - m, then exp(z - m), then the gradient
    th = scratch()  # the hessian, transposed
    m = scratch()  # per row: the maximum
    d = scratch()  # per row: sum_j exp(z_j - m), then 1 / d
    log_d = scratch()
    a = scratch()  # per row: the softmax's factor in the gradient (0 for an ignored row)
    lw = scratch()  # per row: the label's target weight cw_y (1 - ls)
    ignored = scratch()  # per row: 1 for a row of ignore_index, else 0
    tile_transposed_max(z, rows, n, t, m)
    for r in range(rows):
        d[r] = 0.0
    for j in range(n):
        for r in range(rows):
            e = softmax_exp(z, t[j * rows + r], m[r], single(m[r]))
            t[j * rows + r] = e
            d[r] += e
    for r in range(rows):
        log_d[r] = log(d[r])
    for r in range(rows):
        d[r] = 1.0 / d[r]
    wsum = 0.0
    if ls != 0.0:
        for j in range(n):
            wsum += wide(cw[j]) if weighted else 1.0
    # Every logit the losses need is read before any gradient row (maybe z's) is written.
    for r in range(rows):
        label = labels[r]
        skip = p[2] != 0.0 and label == p[1]
        ignored[r] = 1.0 if skip else 0.0
        w_y = 0.0 if skip else (wide(cw[label]) if weighted else 1.0)
        lw[r] = w_y * (1.0 - ls)
        a[r] = lw[r] + k * wsum
        if skip:
            loss[r] = 0.0
        else:
            s = 0.0
            if ls != 0.0:  # block_gaps' terms, in its order
                for j in range(n):
                    wj = wide(cw[j]) if weighted else 1.0
                    zj = wide(z[r * n + j])
                    if wj != 0.0:
                        s += wj * ((m[r] - zj) if zj != m[r] else 0.0)
            loss[r] = sparse_ce_row_loss(w_y, ls, k, m[r], wide(z[r * n + label]), log_d[r], s, wsum)
    if h.shape[0] != 0:
        for j in range(n):
            for r in range(rows):
                pj = t[j * rows + r] * d[r]
                th[j * rows + r] = softmax_ce_hess(pj, a[r], gs[r])
        for r in range(rows):
            for j in range(n):
                h[r * n + j] = 0.0 if ignored[r] != 0.0 else th[j * rows + r]
    if gz.shape[0] != 0:
        for j in range(n):
            smooth_j = k * (wide(cw[j]) if weighted else 1.0)
            for r in range(rows):
                t[j * rows + r] = sparse_ce_grad(t[j * rows + r] * d[r], labels[r] == j, a[r], smooth_j, lw[r], gs[r])
        for r in range(rows):
            for j in range(n):
                gz[r * n + j] = 0.0 if ignored[r] != 0.0 else t[j * rows + r]


@portable
def sparse_ce_row_loss(w_y, ls, k, m, z_y, log_d, s, wsum):
    """A sparse cross-entropy row's loss from its reductions: the row maximum ``m``, ``log
    d`` (d = sum_j exp(z_j - m)), the label's logit ``z_y`` and weight ``w_y``, and for the
    smoothing term (k = ls / C) s = sum_j cw_j (m - z_j) and wsum = sum_j cw_j."""
    return w_y * (1.0 - ls) * ((m - z_y) + log_d) + k * (s + wsum * log_d)


@portable
def sparse_ce_grad(pj, is_label, a, smooth_j, label_weight, gs):
    """d loss / d z_j = gs (a p_j - target_j): target_j = k cw_j, plus cw_y (1 - ls) at the label."""
    target = smooth_j + label_weight if is_label else smooth_j
    return gs * (a * pj - target)


@portable.row
def softmax_cross_entropy(z, y, v, c, gz, gy, gv, h, gs, p):
    """-sum_j t_j log_softmax(z)_j for soft or one-hot targets; in place.

    ``p = (label_smoothing,)``; t = y (1 - ls) + ls / C, T = sum_j t_j. PyTorch
    ``cross_entropy`` with probabilities, optax ``softmax_cross_entropy``::

        loss = sum_j t_j (m - z_j) + T log d        (terms with t_j = 0 are 0)
        grad_j = gs (T softmax_j - t_j),  hess_j = gs T softmax_j (1 - softmax_j)
    """
    ls = p[0]
    n = z.shape[0]
    k = ls / n
    want_g = gz.shape[0] != 0
    want_h = h.shape[0] != 0
    # exp(z_j - m_b) into the gradient row (or the hessian's, when only it is wanted).
    maxima = lanes(None)
    if want_g:
        m, d, s, total_t = softmax_blocks(z, gz, 1.0, y, 1.0 - ls, k, 1.0, maxima)
    else:
        m, d, s, total_t = softmax_blocks(z, h, 1.0 if want_h else 0.0, y, 1.0 - ls, k, 1.0, maxima)
    loss = s + total_t * log(d)
    if not (want_g or want_h):
        return loss
    inv_d = 1.0 / d
    size = block_size(z)
    for blk in range((n + size - 1) // size):
        lo, hi = block_range(blk, size, n)
        scale = block_scale(maxima[blk], m, inv_d)
        for j in range(lo, hi):
            pj = wide(gz[j] if want_g else h[j]) * scale
            if want_h:
                h[j] = softmax_ce_hess(pj, total_t, gs)
            if want_g:
                gz[j] = softmax_ce_grad(pj, smoothed_target(wide(y[j]), ls, k), total_t, gs)
    return loss


@portable
def smoothed_target(yj, ls, k):
    """t_j = y_j (1 - ls) + ls / C (k = ls / C): the target with label smoothing."""
    return yj * (1.0 - ls) + k


@portable
def softmax_ce_grad(pj, tj, total_t, gs):
    """d loss / d z_j = gs (T softmax_j - t_j), T = sum_j t_j."""
    return gs * (total_t * pj - tj)


@portable
def softmax_ce_hess(pj, a, gs):
    """d2 loss / d z_j^2 = gs A softmax_j (1 - softmax_j), A = sum_j t_j (the hessian's
    diagonal of cross-entropy against softmax, for soft targets and labels alike)."""
    return gs * a * pj * (1.0 - pj)


@portable
def ce_target(yj, ls, n):
    """t_j of softmax cross-entropy over ``n`` classes, smoothed with ``ls``."""
    return smoothed_target(yj, ls, ls / n)


@portable
def no_entropy(yj, t, ls):
    """Cross-entropy has no target entropy term."""
    return 0.0


@portable.rows(inline=False)
def softmax_cross_entropy_rows(z, y, c, gz, h, gs, p, loss):
    """:func:`softmax_cross_entropy` of a tile of narrow rows (fewer classes than LANES),
    row by row the same arithmetic in the same order; in place.

    As :func:`sparse_softmax_cross_entropy_rows` does for labels: ``z``, ``y`` (and
    ``gz``, ``h`` where wanted) hold the tile's rows one after another, ``gs`` and ``loss``
    one entry per row. The tile is transposed (``t[j * rows + r]`` is row r's class j), so
    that each row's maximum, gaps sum_j t_j (m - z_j), target total T and sum of
    exponentials, each still taken in class order, are element-wise operations on vectors
    of rows. A row this narrow is one block of :func:`softmax_blocks`, whose merges with
    the empty state are applied per row as it applies them.
    """
    rows = loss.shape[0]
    n = z.shape[0] // rows
    ls = p[0]
    k = ls / n
    t = scratch()  # the tile, transposed: z, then exp(z - m), then the gradient
    tt = scratch()  # the targets t_j = y_j (1 - ls) + ls / C, transposed
    th = scratch()  # the hessian, transposed
    m = scratch()  # per row: the maximum (the block's)
    mu = scratch()  # per row: the reference of the exponentials (0 for a row of -inf)
    d = scratch()  # per row: sum_j exp(z_j - mu)
    gap = scratch()  # per row: sum_j t_j (m - z_j)
    total = scratch()  # per row: T
    scale = scratch()  # per row: what turns exp(z_j - m_b) into softmax_j
    tile_transposed_max(z, rows, n, t, m)
    for r in range(rows):
        for j in range(n):
            tt[j * rows + r] = smoothed_target(wide(y[r * n + j]), ls, k)
    for r in range(rows):
        d[r] = 0.0
        gap[r] = 0.0
        total[r] = 0.0
    for j in range(n):  # block_gaps, before the exponentials overwrite the logits
        for r in range(rows):
            tj = tt[j * rows + r]
            zj = t[j * rows + r]
            total[r] += tj
            gap[r] += tj * ((m[r] - zj) if zj != m[r] else 0.0) if tj != 0.0 else 0.0
    for r in range(rows):
        mu[r] = m[r] if m[r] != -math.inf else 0.0
    for j in range(n):  # block_sum_exp
        for r in range(rows):
            e = softmax_exp(z, t[j * rows + r], mu[r], single(mu[r]))
            t[j * rows + r] = e
            d[r] += e
    for r in range(rows):
        m_row, d_row = merge_max_sum_exp(-math.inf, 0.0, m[r], d[r])
        d_row = d_row if m_row != -math.inf else math.nan
        s_row, total_row = merge_gaps(-math.inf, 0.0, 0.0, m[r], gap[r], total[r])
        loss[r] = s_row + total_row * log(d_row)
        total[r] = total_row
        scale[r] = block_scale(m[r], m_row, 1.0 / d_row)
    if h.shape[0] != 0:
        for j in range(n):
            for r in range(rows):
                pj = t[j * rows + r] * scale[r]
                th[j * rows + r] = softmax_ce_hess(pj, total[r], gs[r])
        tile_untranspose(th, rows, n, h)
    if gz.shape[0] != 0:
        for j in range(n):
            for r in range(rows):
                t[j * rows + r] = softmax_ce_grad(t[j * rows + r] * scale[r], tt[j * rows + r], total[r], gs[r])
        tile_untranspose(t, rows, n, gz)


@portable.row
def categorical_cross_entropy(x, y, v, c, gx, gy, gv, h, gs, p):
    """Keras ``categorical_crossentropy(from_logits=False)``: normalise, clip, log.

    ``p = (eps, label_smoothing)``; t = y (1 - ls) + ls / C, s = sum_j x_j,
    q_j = clip(x_j / s, eps, 1 - eps)::

        loss = -sum_j t_j log q_j
        grad_k = gs (g_k - sum_j g_j x_j / s) / s,   g_j = -t_j / q_j [eps <= x_j / s <= 1 - eps]
    """
    eps = p[0]
    ls = p[1]
    n = x.shape[0]
    k = ls / n
    s = 0.0
    for j in range(n):
        s += wide(x[j])
    want_g = gx.shape[0] != 0
    acc_loss = lanes(None)  # (lane_add fills it)
    acc_dot = lanes(None)  # (lane_add fills it)
    terms_loss = lanes(None)
    terms_dot = lanes(None)
    for group in range((n + LANES - 1) // LANES):
        g, count = lane_group(group, n)
        for lane in range(count):
            lj, grad, r = cce_term(wide(x[g + lane]), wide(y[g + lane]), s, eps, ls, k)
            terms_loss[lane] = lj
            terms_dot[lane] = grad * r
            if want_g:
                gx[g + lane] = grad
        lane_add(acc_loss, terms_loss, count, g)
        lane_add(acc_dot, terms_dot, count, g)
    loss = lane_finish(acc_loss, terms_loss, n)
    dot = lane_finish(acc_dot, terms_dot, n)
    if want_g:
        for j in range(n):
            gx[j] = cce_grad(wide(gx[j]), dot, s, gs)
    return loss


@portable.rows(inline=False)
def categorical_cross_entropy_rows(x, y, c, gx, h, gs, p, loss):
    """:func:`categorical_cross_entropy` of a tile of narrow rows (fewer classes than
    LANES), row by row the same arithmetic in the same order; in place.

    Each row's sum s is taken in class order across the rows at once, spread to its
    elements, and the terms of the whole tile are then one loop; the loss terms and
    sum_j g_j r_j are summed per row in class order. g_j is rounded to the input's dtype
    before the gradient is formed from it, as the row function's store does.
    """
    rows = loss.shape[0]
    n = x.shape[0] // rows
    eps = p[0]
    ls = p[1]
    k = ls / n
    total = scratch()  # per row: s = sum_j x_j
    dot = scratch()  # per row: sum_j g_j r_j
    sx = scratch()  # s of each element's row
    g = scratch()  # g_j, as the gradient row would hold it
    terms = scratch()  # -t_j log q_j
    dots = scratch()  # g_j r_j
    for r in range(rows):
        total[r] = 0.0
        loss[r] = 0.0
        dot[r] = 0.0
    for j in range(n):
        for r in range(rows):
            total[r] += wide(x[r * n + j])
    for r in range(rows):
        for j in range(n):
            sx[r * n + j] = total[r]
    for i in range(rows * n):
        lj, grad, ratio = cce_term(wide(x[i]), wide(y[i]), sx[i], eps, ls, k)
        terms[i] = lj
        dots[i] = grad * ratio
        g[i] = single(grad) if is_single(x) else grad
    for j in range(n):
        for r in range(rows):
            loss[r] += terms[r * n + j]
            dot[r] += dots[r * n + j]
    if gx.shape[0] != 0:
        for r in range(rows):
            for j in range(n):
                gx[r * n + j] = cce_grad(g[r * n + j], dot[r], total[r], gs[r])


@portable
def cce_term(xj, yj, s, eps, ls, k):
    """One class of :func:`categorical_cross_entropy` with s = sum_j x_j and k = ls / C:
    (its loss term -t_j log q_j, g_j = d term / d q_j times the clip's derivative, and
    r_j = x_j / s)."""
    r = xj / s
    q = clip(r, eps, 1.0 - eps)
    tj = smoothed_target(yj, ls, k)
    return -xlogy(tj, q), -xdivy(tj, q) * clip_grad(r, eps, 1.0 - eps), r


@portable
def cce_grad(g, dot, s, gs):
    """d loss / d x_k = gs (g_k - sum_j g_j r_j) / s (the normalisation's chain rule)."""
    return gs * (g - dot) / s
