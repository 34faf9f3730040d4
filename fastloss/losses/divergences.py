"""Divergences between distributions over one row of the class axis: ``f(x, y, v, c, gx,
gy, gv, h, gs, p) -> row loss`` (see :mod:`fastloss.losses`), with the narrow-row forms
``f_rows``.

- :func:`kl_divergence`: KL(q || r) of probabilities (Keras);
- :func:`softmax_kl_divergence`: KL(q || softmax(z)) of logits (PyTorch ``kl_div`` on
  ``log_softmax``); its gradient is softmax cross-entropy's
  (:func:`~fastloss.losses.cross_entropy.softmax_ce_grad`);
- :func:`js_divergence`: the generalised Jensen-Shannon divergence of two softmaxes.

The softmaxes come from the online log-sum-exp of :mod:`fastloss.math.online_softmax`.
Functions whose docstring says *in place* read every logit they need before they write
the gradient row, so ``gx`` may be ``x`` itself (``out=logits``).
"""

import math

from ..math.elementary import exp, exp_nonpositive, is_single, log, log1p, single
from ..math.online_softmax import max_sum_exp, merge_max_sum_exp, softmax_exp, tile_transposed_max, tile_untranspose
from ..math.portable import portable
from ..math.primitives import clip, clip_grad, log_add_exp, wide, xdivy
from ..math.reductions import LANES, lane_add, lane_finish, lane_group, lanes, scratch
from .cross_entropy import softmax_ce_grad


@portable.row
def kl_divergence(x, y, v, c, gx, gy, gv, h, gs, p):
    """Keras ``kl_divergence(y_true=y, y_pred=x)``: sum_j q_j log(q_j / r_j) with
    q = clip(y, eps, 1), r = clip(x, eps, 1), ``p = (eps,)``; gradient -q_j / r_j where
    eps <= x_j <= 1, else 0. Terms with q_j = 0 (possible with eps = 0) are 0."""
    eps = p[0]
    n = x.shape[0]
    want_g = gx.shape[0] != 0
    acc = lanes(None)  # (lane_add fills it)
    terms = lanes(None)
    for group in range((n + LANES - 1) // LANES):
        g, count = lane_group(group, n)
        for lane in range(count):
            lj, grad = kl_term(wide(x[g + lane]), wide(y[g + lane]), eps)
            terms[lane] = lj
            if want_g:
                gx[g + lane] = gs * grad
        lane_add(acc, terms, count, g)
    return lane_finish(acc, terms, n)


@portable.rows(inline=False)
def kl_divergence_rows(x, y, c, gx, h, gs, p, loss):
    """:func:`kl_divergence` of a tile of narrow rows (fewer classes than LANES), row by
    row the same arithmetic in the same order.

    Its terms are element-wise, so the tile is one loop over all its elements (the
    gradient scale of each element's row spread out first), and each row's terms are then
    summed in class order, as a row's single partial group of lanes is.
    """
    rows = loss.shape[0]
    n = x.shape[0] // rows
    eps = p[0]
    want_g = gx.shape[0] != 0
    terms = scratch()
    scale = scratch()  # gs of each element's row
    for r in range(rows):
        for j in range(n):
            scale[r * n + j] = gs[r]
    for i in range(rows * n):
        lj, grad = kl_term(wide(x[i]), wide(y[i]), eps)
        terms[i] = lj
        if want_g:
            gx[i] = scale[i] * grad
    for r in range(rows):
        loss[r] = 0.0
    for j in range(n):
        for r in range(rows):
            loss[r] += terms[r * n + j]


@portable
def kl_term(xj, yj, eps):
    """One class of :func:`kl_divergence`: (q log(q / r), d/dx_j of it) with q, r the
    clipped target and prediction; the term is 0 where q = 0."""
    q = clip(yj, eps, 1.0)
    r = clip(xj, eps, 1.0)
    lj = q * (log(q) - log(r)) if q != 0.0 else 0.0
    return lj, -xdivy(q, r) * clip_grad(xj, eps, 1.0)


@portable.row
def softmax_kl_divergence(z, y, v, c, gz, gy, gv, h, gs, p):
    """sum_j q_j (log q_j - log_softmax(z)_j) with 0 log 0 = 0; in place.

    ``p = (log_target,)``: with log_target the target row holds log q. PyTorch
    ``kl_div(log_softmax(z), q, reduction="batchmean")`` per row. Gradient
    gs (Q softmax_j - q_j), Q = sum_j q_j.
    """
    n = z.shape[0]
    want_g = gz.shape[0] != 0
    m, d = max_sum_exp(z, gz)
    log_d = log(d)
    acc_loss = lanes(None)  # (lane_add fills it)
    acc_q = lanes(None)  # (lane_add fills it)
    terms_loss = lanes(None)
    terms_q = lanes(None)
    for group in range((n + LANES - 1) // LANES):
        g, count = lane_group(group, n)
        for lane in range(count):
            j = g + lane
            yj = wide(y[j])
            q = kl_target(yj, p[0], n)
            terms_loss[lane] = kl_entropy(yj, q, p[0]) + q * ((m - wide(z[j])) + log_d) if q != 0.0 else 0.0
            terms_q[lane] = q
            if want_g:
                gz[j] = exp_nonpositive(wide(z[j]) - m) / d
        lane_add(acc_loss, terms_loss, count, g)
        lane_add(acc_q, terms_q, count, g)
    loss = lane_finish(acc_loss, terms_loss, n)
    total_q = lane_finish(acc_q, terms_q, n)
    if want_g:
        for j in range(n):
            gz[j] = softmax_ce_grad(wide(gz[j]), kl_target(wide(y[j]), p[0], n), total_q, gs)
    return loss


@portable.rows(inline=False)
def softmax_kl_divergence_rows(z, y, c, gz, h, gs, p, loss):
    """:func:`softmax_kl_divergence` of a tile of narrow rows (fewer classes than LANES),
    row by row the same arithmetic in the same order; in place.

    Laid out as :func:`softmax_cross_entropy_rows`: the tile and its targets transposed,
    so that each row's maximum, sum of exponentials, loss terms and target total (each in
    class order, as a row's single partial group of lanes is summed) are vector
    operations across rows. The softmax is rounded to the input's dtype before the
    gradient is formed from it, as the row function's store into the gradient row does.
    """
    rows = loss.shape[0]
    n = z.shape[0] // rows
    t = scratch()  # the tile, transposed: z, then the softmax, then the gradient
    tq = scratch()  # the targets q_j, transposed
    m = scratch()  # per row: the maximum
    mu = scratch()  # per row: the reference of the exponentials (0 for a row of -inf)
    d = scratch()  # per row: sum_j exp(z_j - mu), then the row's d
    log_d = scratch()
    total_q = scratch()  # per row: Q = sum_j q_j
    tile_transposed_max(z, rows, n, t, m)
    for r in range(rows):
        for j in range(n):
            tq[j * rows + r] = kl_target(wide(y[r * n + j]), p[0], n)
    for r in range(rows):
        d[r] = 0.0
        loss[r] = 0.0
        total_q[r] = 0.0
    for r in range(rows):
        mu[r] = m[r] if m[r] != -math.inf else 0.0
    for j in range(n):  # max_sum_exp: block_sum_exp of the row's one block
        for r in range(rows):
            d[r] += softmax_exp(z, t[j * rows + r], mu[r], single(mu[r]))
    for r in range(rows):
        m_row, d_row = merge_max_sum_exp(-math.inf, 0.0, m[r], d[r])
        m[r] = m_row
        d[r] = d_row if m_row != -math.inf else math.nan
        log_d[r] = log(d[r])
    for j in range(n):
        for r in range(rows):
            q = tq[j * rows + r]
            yj = wide(y[r * n + j])
            zj = t[j * rows + r]
            loss[r] += kl_entropy(yj, q, p[0]) + q * ((m[r] - zj) + log_d[r]) if q != 0.0 else 0.0
            total_q[r] += q
    if gz.shape[0] != 0:
        for j in range(n):
            for r in range(rows):
                pj = exp_nonpositive(t[j * rows + r] - m[r]) / d[r]
                pj = single(pj) if is_single(z) else pj
                t[j * rows + r] = softmax_ce_grad(pj, tq[j * rows + r], total_q[r], gs[r])
        tile_untranspose(t, rows, n, gz)


@portable
def kl_target(yj, log_target, n):
    """q_j from a target row entry: y_j, or exp(y_j) with ``log_target`` (nonzero)."""
    return exp(yj) if log_target != 0.0 else yj


@portable
def kl_entropy(yj, q, log_target):
    """q_j log q_j of a nonzero q_j (log q_j is y_j itself with ``log_target``)."""
    return q * (yj if log_target != 0.0 else log(yj))


@portable.row
def js_divergence(zp, zq, v, c, gp, gq, gv, h, gs, p):
    """Generalised Jensen-Shannon divergence of P = softmax(zp) and Q = softmax(zq).

    ``p = (beta,)``, M = beta P + (1 - beta) Q, as in Liger-Kernel::

        loss = beta KL(P || M) + (1 - beta) KL(Q || M) = sum_j P_j a_j + Q_j b_j
        a_j = beta (log P_j - log M_j),  b_j = (1 - beta)(log Q_j - log M_j)
        dloss/dzp_k = P_k (a_k - sum_j P_j a_j),  dloss/dzq_k = Q_k (b_k - sum_j Q_j b_j)

    log M is a log-add-exp of log-softmaxes, so nothing underflows before the log; terms
    with P_j = 0 (or Q_j = 0) are 0. The sums are taken in SIMD lanes
    (:func:`~fastloss.math.reductions.lane_add`), so the loop that evaluates the
    logarithms and exponentials carries no running sum.
    """
    beta = p[0]
    log_b = log(beta)
    log_1b = log1p(-beta)
    n = zp.shape[0]
    mp, dp = max_sum_exp(zp, gp)
    mq, dq = max_sum_exp(zq, gq)
    log_dp = log(dp)
    log_dq = log(dq)
    acc_p = lanes(None)  # (lane_add fills it)
    acc_q = lanes(None)  # (lane_add fills it)
    terms_p = lanes(None)
    terms_q = lanes(None)
    for group in range((n + LANES - 1) // LANES):
        g, count = lane_group(group, n)
        for lane in range(count):
            j = g + lane
            tp, tq = js_terms((wide(zp[j]) - mp) - log_dp, (wide(zq[j]) - mq) - log_dq, beta, log_b, log_1b)
            terms_p[lane] = tp
            terms_q[lane] = tq
        lane_add(acc_p, terms_p, count, g)
        lane_add(acc_q, terms_q, count, g)
    sp = lane_finish(acc_p, terms_p, n)
    sq = lane_finish(acc_q, terms_q, n)
    if gp.shape[0] != 0:
        for j in range(n):
            lp = (wide(zp[j]) - mp) - log_dp
            lq = (wide(zq[j]) - mq) - log_dq
            g_p, g_q = js_grads(lp, lq, beta, log_b, log_1b, sp, sq, gs)
            gp[j] = g_p
            gq[j] = g_q
    return sp + sq


@portable
def js_terms(lp, lq, beta, log_b, log_1b):
    """One class of :func:`js_divergence` from its log-probabilities ``lp``, ``lq``
    (log_b = log beta, log_1b = log(1 - beta)): (P_j a_j, Q_j b_j), each 0 where its
    probability is 0."""
    lm = log_add_exp(log_b + lp, log_1b + lq)
    pj = exp_nonpositive(lp)
    qj = exp_nonpositive(lq)
    tp = pj * beta * (lp - lm) if pj != 0.0 else 0.0
    tq = qj * (1.0 - beta) * (lq - lm) if qj != 0.0 else 0.0
    return tp, tq


@portable
def js_grads(lp, lq, beta, log_b, log_1b, sp, sq, gs):
    """d loss / d zp_j and d loss / d zq_j of :func:`js_divergence`, with sp = sum_j P_j a_j
    and sq = sum_j Q_j b_j."""
    lm = log_add_exp(log_b + lp, log_1b + lq)
    pj = exp_nonpositive(lp)
    qj = exp_nonpositive(lq)
    gp = gs * pj * (beta * (lp - lm) - sp) if pj != 0.0 else 0.0
    gq = gs * qj * ((1.0 - beta) * (lq - lm) - sq) if qj != 0.0 else 0.0
    return gp, gq
