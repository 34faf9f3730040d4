"""Binary (and multi-label) classification losses of one element:
``f(x, y, c, p) -> (loss, dx, dy, hess)``.

``x`` is a probability or a logit, ``y`` the target in [0, 1] (hinge: in {-1, 1});
``dy`` is unused (0).
"""

from ..math.declare import Params
from ..math.elementary import pow_nonneg, single
from ..math.portable import portable
from ..math.primitives import clamp_min_grad, clip, clip_grad, logistic, logistic_single, xdivy, xlog1py, xlogy


@portable.element
def binary_cross_entropy(x, y, c, p):
    """-(y log q + (1 - y) log1p(-q)), q = clip(x, eps, 1 - eps), ``p = (eps,)``.

    Keras ``binary_crossentropy(from_logits=False)``. Gradient
    -(y / q - (1 - y) / (1 - q)) inside [eps, 1 - eps], 0 where the clip is active.
    Terms whose target weight is 0 are 0 (0 log 0 = 0).
    """
    eps = p[0]
    q = clip(x, eps, 1.0 - eps)
    loss = -(xlogy(y, q) + xlog1py(1.0 - y, -q))
    grad = (xdivy(1.0 - y, 1.0 - q) - xdivy(y, q)) * clip_grad(x, eps, 1.0 - eps)
    return loss, grad, 0.0, 0.0


@portable
def sigmoid_cross_entropy_terms(y, c, p: Params, sp_pos, sp_neg, s_pos, s_neg):
    """Loss, gradient and hessian of :func:`sigmoid_binary_cross_entropy` from the logit's
    softplus(+-x) and sigmoid(+-x)."""
    ls = p[0]
    pw = c if p[2] != 0.0 else p[1]
    t = y * (1.0 - ls) + 0.5 * ls
    a = pw * t
    b = 1.0 - t
    loss = (a * sp_neg if a != 0.0 else 0.0) + (b * sp_pos if b != 0.0 else 0.0)
    return loss, b * s_pos - a * s_neg, 0.0, (a + b) * s_pos * s_neg


@portable.element
def sigmoid_binary_cross_entropy(x, y, c, p):
    """w+ y softplus(-x) + (1 - y) softplus(x) for logits ``x``.

    ``p = (label_smoothing, pos_weight, pos_weight_is_array)``; with an array the
    positive weight w+ is ``c``. Smoothing maps y to y (1 - ls) + ls / 2. PyTorch
    ``binary_cross_entropy_with_logits``. Gradient -w+ y sigmoid(-x) + (1 - y) sigmoid(x)
    (no cancellation, finite for every finite or infinite x), hessian
    (w+ y + 1 - y) sigmoid(x) sigmoid(-x). A term whose weight is 0 contributes 0 even
    where its softplus is infinite.
    """
    sp_pos, sp_neg, s_pos, s_neg = logistic(x)
    return sigmoid_cross_entropy_terms(y, c, p, sp_pos, sp_neg, s_pos, s_neg)


@portable.element
def sigmoid_binary_cross_entropy_float32(x, y, c, p):
    """:func:`sigmoid_binary_cross_entropy` for float32 logits: softplus and sigmoid in
    float32 (:func:`~fastloss.math.primitives.logistic_single`), the weighted sum in
    float64."""
    sp_pos, sp_neg, s_pos, s_neg = logistic_single(single(x))
    return sigmoid_cross_entropy_terms(y, c, p, sp_pos, sp_neg, s_pos, s_neg)


@portable.element
def hinge(x, y, c, p):
    """max(0, 1 - y x), ``p = (map01,)``: with map01 = 1 the targets 0/1 become -1/1
    (Keras). Gradient -y where 1 - y x >= 0 (the clamp passes at 0, as in PyTorch)."""
    t = 2.0 * y - 1.0 if p[0] != 0.0 else y
    m = 1.0 - t * x
    active = clamp_min_grad(m, 0.0)
    return active * m, -active * t, 0.0, 0.0


@portable.element
def squared_hinge(x, y, c, p):
    """max(0, 1 - y x)^2, ``p = (map01,)`` as for :func:`hinge`. Gradient -2 y max(0, m)."""
    t = 2.0 * y - 1.0 if p[0] != 0.0 else y
    m = 1.0 - t * x
    active = clamp_min_grad(m, 0.0)
    return active * m * m, -2.0 * active * m * t, 0.0, 0.0


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
