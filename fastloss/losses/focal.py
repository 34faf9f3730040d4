"""Focal losses: cross-entropy with a modulating factor (1 - p_t)^gamma that weighs down
well-classified examples (Lin et al. 2017).

- :func:`sigmoid_focal_loss`: element-wise, ``f(x, y, c, p) -> (loss, dx, dy, hess)``,
  on logits against binary targets (torchvision);
- :func:`softmax_focal_loss` (soft or one-hot targets) and
  :func:`sparse_softmax_focal_loss` (integer labels): one row of the class axis,
  ``f(x, y, v, c, gx, gy, gv, h, gs, p) -> row loss`` (Keras
  ``CategoricalFocalCrossentropy``), their softmax from the online log-sum-exp of
  :mod:`fastloss.math.online_softmax`.

See :mod:`fastloss.losses` for both calling conventions. Neither gradient forms
(1 - p)^(gamma - 1), so gamma in [0, 1) and saturated logits stay finite.
"""

from ..math.declare import Index
from ..math.elementary import exp_nonpositive, expm1, log, pow_nonneg
from ..math.online_softmax import block_range, block_scale, block_size, max_sum_exp, softmax_blocks
from ..math.portable import portable
from ..math.primitives import logistic, wide
from ..math.reductions import LANES, lane_add, lane_finish, lane_group, lanes


@portable.element
def sigmoid_focal_loss(x, y, c, p):
    """alpha_t (1 - p_t)^gamma BCE(x, y), ``p = (alpha, gamma, use_alpha)``.

    torchvision ``sigmoid_focal_loss``: alpha_t = alpha y + (1 - alpha)(1 - y) when
    ``use_alpha``; 1 - p_t = q = y sigmoid(-x) + (1 - y) sigmoid(x), computed without
    cancellation. With dq/dx = (1 - 2y) sigmoid(x) sigmoid(-x) the gradient is
    alpha_t q^gamma (dBCE + gamma BCE dq / q): the factor q^(gamma - 1) of the textbook
    form never appears, so gamma in [0, 1) and saturated logits stay finite
    (where q = 0 the loss and gradient are 0). q^gamma is
    :func:`~fastloss.math.elementary.pow_nonneg` (q^0 = 1, also at q = 0).
    """
    alpha = p[0]
    gamma = p[1]
    sp_pos, sp_neg, s_pos, s_neg = logistic(x)
    bce = (y * sp_neg if y != 0.0 else 0.0) + ((1.0 - y) * sp_pos if y != 1.0 else 0.0)
    dbce = (1.0 - y) * s_pos - y * s_neg
    q = y * s_neg + (1.0 - y) * s_pos
    alpha_t = alpha * y + (1.0 - alpha) * (1.0 - y) if p[2] != 0.0 else 1.0
    mod = pow_nonneg(q, gamma)
    ratio = (1.0 - 2.0 * y) * s_pos * s_neg / q if q > 0.0 else 0.0
    return alpha_t * mod * bce, alpha_t * mod * (dbce + gamma * bce * ratio), 0.0, 0.0


@portable
def focal_term(log_p, gamma):
    """For one class with log-probability ``log_p`` (p = exp(log_p), u = 1 - p)::

        f = u^gamma log p              (the focal log-likelihood)
        g = p df/dp = u^gamma (1 - gamma p log(p) / u)

    u = -expm1(log p) has no cancellation near p = 1, and log(p) / u -> -1 as u -> 0, so
    g never forms u^(gamma - 1): gamma in [0, 1) and saturated logits stay finite.
    """
    prob = exp_nonpositive(log_p)
    u = -expm1(log_p)
    mod = pow_nonneg(u, gamma)
    ratio = log_p / u if u != 0.0 else -1.0
    g = mod * (1.0 - gamma * prob * ratio) if prob != 0.0 else mod
    return mod * log_p, g


@portable.row
def softmax_focal_loss(z, y, v, c, gz, gy, gv, h, gs, p):
    """Keras ``CategoricalFocalCrossentropy(from_logits=True)`` with soft or one-hot
    targets: -alpha sum_j y_j (1 - p_j)^gamma log p_j, p = softmax(z),
    ``p = (alpha, gamma)``. With f, g of :func:`focal_term` and S = sum_j y_j g_j:
    grad_k = -alpha gs (y_k g_k - p_k S)."""
    alpha = p[0]
    gamma = p[1]
    n = z.shape[0]
    want_g = gz.shape[0] != 0
    m, d = max_sum_exp(z, gz)
    log_d = log(d)
    acc_loss = lanes(None)  # (lane_add fills it)
    acc_s = lanes(None)  # (lane_add fills it)
    terms_loss = lanes(None)
    terms_s = lanes(None)
    for group in range((n + LANES - 1) // LANES):
        g, count = lane_group(group, n)
        for lane in range(count):
            lj, sj = focal_sums(wide(y[g + lane]), (wide(z[g + lane]) - m) - log_d, gamma)
            terms_loss[lane] = lj
            terms_s[lane] = sj
        lane_add(acc_loss, terms_loss, count, g)
        lane_add(acc_s, terms_s, count, g)
    loss = lane_finish(acc_loss, terms_loss, n)
    s = lane_finish(acc_s, terms_s, n)
    if want_g:
        for j in range(n):
            gz[j] = focal_grad(wide(y[j]), (wide(z[j]) - m) - log_d, gamma, s, alpha, gs)
    return alpha * loss


@portable
def focal_sums(yj, lp, gamma):
    """One class of :func:`softmax_focal_loss` with log-probability ``lp``: (-y_j f_j,
    y_j g_j) of :func:`focal_term`, both 0 where y_j = 0."""
    if yj == 0.0:
        return 0.0, 0.0
    f, g = focal_term(lp, gamma)
    return -yj * f, yj * g


@portable
def focal_grad(yj, lp, gamma, s, alpha, gs):
    """d loss / d z_k of :func:`softmax_focal_loss`: -alpha gs (y_k g_k - p_k S), S =
    sum_j y_j g_j."""
    yg = 0.0
    if yj != 0.0:
        yg = yj * focal_term(lp, gamma)[1]
    return -alpha * gs * (yg - exp_nonpositive(lp) * s)


@portable.row
def sparse_softmax_focal_loss(z, label: Index, v, c, gz, gy, gv, h, gs, p):
    """:func:`softmax_focal_loss` for an integer label: -alpha f_y and
    grad_k = -alpha gs g_y ([k = y] - p_k); in place."""
    alpha = p[0]
    gamma = p[1]
    n = z.shape[0]
    z_y = wide(z[label])  # read before the row (maybe z itself) is overwritten
    maxima = lanes(None)
    m, d, s, t = softmax_blocks(z, gz, 1.0 if gz.shape[0] != 0 else 0.0, z, 0.0, 0.0, 0.0, maxima)
    lp_y = (z_y - m) - log(d)
    f, g = focal_term(lp_y, gamma)
    if gz.shape[0] != 0:
        inv_d = 1.0 / d
        size = block_size(z)
        for blk in range((n + size - 1) // size):
            lo, hi = block_range(blk, size, n)
            scale = block_scale(maxima[blk], m, inv_d)
            for j in range(lo, hi):
                gz[j] = sparse_focal_grad(1.0 if j == label else 0.0, wide(gz[j]) * scale, g, alpha, gs)
    return -alpha * f


@portable
def sparse_focal_grad(hit, pj, g_y, alpha, gs):
    """d loss / d z_j of :func:`sparse_softmax_focal_loss`: -alpha gs g_y ([j = y] - p_j),
    ``hit`` 1 at the label, else 0."""
    return -alpha * gs * g_y * (hit - pj)
