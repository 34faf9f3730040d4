"""Regression losses of one element: ``f(x, y, c, p) -> (loss, dx, dy, hess)``.

``x`` is the prediction, ``y`` the target, ``r = x - y``; ``dy`` is unused (0) and so is
``c``. ``p`` holds the options in the order the registry lists them.
"""

from ..math.elementary import exp, log1p
from ..math.portable import portable
from ..math.primitives import clamp_min, clamp_min_grad, cosh_terms, hypot1, sign, xdivy, xlogy


@portable.element
def squared_error(x, y, c, p):
    """r^2; gradient 2 r; hessian 2. Keras/PyTorch ``mse``."""
    r = x - y
    return r * r, 2.0 * r, 0.0, 2.0


@portable.element
def absolute_error(x, y, c, p):
    """|r|; gradient sign(r) with sign(0) = 0 (PyTorch). Keras/PyTorch ``mae``/``l1``."""
    r = x - y
    return abs(r), sign(r), 0.0, 0.0


@portable.element
def squared_log_error(x, y, c, p):
    """(log1p(max(x, eps)) - log1p(max(y, eps)))^2, ``p = (eps,)``. Keras ``msle``.

    Gradient 2 d / (1 + max(x, eps)) where x >= eps, 0 below (the clamp's gradient).
    """
    eps = p[0]
    xc = clamp_min(x, eps)
    d = log1p(xc) - log1p(clamp_min(y, eps))
    return d * d, clamp_min_grad(x, eps) * 2.0 * d / (1.0 + xc), 0.0, 0.0


@portable.element
def absolute_percentage_error(x, y, c, p):
    """100 |r| / max(|y|, eps), ``p = (eps,)``. Keras ``mape``."""
    scale = 100.0 / clamp_min(abs(y), p[0])
    r = x - y
    return scale * abs(r), scale * sign(r), 0.0, 0.0


@portable.element
def huber(x, y, c, p):
    """0.5 r^2 where |r| <= delta, else delta (|r| - delta / 2), ``p = (delta,)``.

    Gradient r inside (the quadratic side owns the boundary, as in PyTorch), delta sign(r)
    outside; hessian 1 inside, 0 outside. Keras ``Huber``, PyTorch ``huber_loss``.
    """
    delta = p[0]
    r = x - y
    a = abs(r)
    if a <= delta:
        return 0.5 * r * r, r, 0.0, 1.0
    return delta * (a - 0.5 * delta), delta * sign(r), 0.0, 0.0


@portable.element
def pseudo_huber(x, y, c, p):
    """delta^2 (sqrt(1 + (r/delta)^2) - 1), ``p = (delta,)``; ``scipy.special.pseudo_huber``.

    Evaluated as |r| (|r| / (s + 1)) with s = sqrt(1 + t^2) = ``hypot1(t)``, t = r / delta:
    the difference of squares (no cancellation near 0), and neither a large t^2 nor
    delta^2 is formed (no overflow for huge r, no underflow for tiny delta). Gradient
    r / s, hessian s^-3. delta = 0 gives 0 (the limit), as scipy does.
    """
    delta = p[0]
    r = x - y
    if delta == 0.0:
        return 0.0 * r, 0.0 * r, 0.0, 0.0 * r
    s = hypot1(r / delta)
    a = abs(r)
    return a * (a / (s + 1.0)), r / s, 0.0, 1.0 / (s * s * s)


@portable.element
def log_cosh(x, y, c, p):
    """log(cosh(r)); gradient tanh(r); hessian sech(r)^2. Keras ``log_cosh``. All three
    from one expm1(|r|) (:func:`~fastloss.math.primitives.cosh_terms`)."""
    loss, grad, hess = cosh_terms(x - y)
    return loss, grad, 0.0, hess


@portable.element
def poisson(x, y, c, p):
    """Poisson negative log-likelihood of the rate ``x``, ``p = (log_input, eps)`` with
    log_input 0. Keras ``poisson``, PyTorch ``poisson_nll_loss(log_input=False,
    full=False)``: x - y log(x + eps), gradient 1 - y / (x + eps), hessian
    y / (x + eps)^2; ``y log(.)`` is 0 where y = 0 (0 log 0 = 0). The log-rate form is
    :func:`poisson_log_rate` (a function of its own, so that neither block evaluates the
    other's branch: GCC if-converts a branch on a parameter rather than unswitch a loop
    this large)."""
    s = x + p[1]
    q = xdivy(y, s)
    return x - xlogy(y, s), 1.0 - q, 0.0, xdivy(q, s)


@portable.element
def poisson_log_rate(x, y, c, p):
    """:func:`poisson` of the log-rate ``x`` (option ``log_input``; PyTorch's default):
    exp(x) - y x, gradient exp(x) - y, hessian exp(x)."""
    e = exp(x)
    yx = y * x if y != 0.0 else 0.0  # 0 * inf = 0: the target's weight is 0
    return e - yx, e - y, 0.0, e
