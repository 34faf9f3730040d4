"""Binary (and multi-label) cross-entropy of one element: ``f(x, y, c, p) -> (loss, dx,
dy, hess)``.

``x`` is a probability (:func:`binary_cross_entropy`) or a logit
(:func:`sigmoid_binary_cross_entropy`, with its float32 form), ``y`` the target in
[0, 1]; ``dy`` is unused (0). The hinge losses are in :mod:`.hinge`, the sigmoid focal
loss in :mod:`.focal`.
"""

from ..math.declare import Params
from ..math.elementary import single
from ..math.portable import portable
from ..math.primitives import clip, clip_grad, logistic, logistic_single, xdivy, xlog1py, xlogy


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
