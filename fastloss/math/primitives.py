"""Numerically stable scalar primitives, written once for every backend.

Each function is plain Python on floats, marked ``@portable`` so that the CPU and GPU
backends compile it from this one source. They are written so that a NaN argument gives
a NaN result (comparisons are arranged so that NaN takes the branch that propagates it)
and so that no intermediate overflows where the result is finite.
"""

import math

from .elementary import exp, log, log1p
from .portable import portable

LOG2 = math.log(2.0)


@portable
def wide(x):
    """``x`` as a float64: the math runs in float64 for every input dtype, and each result
    is rounded once when it is stored. (The literal 1.0 is a float64, so the product is
    one; Numba's ``float()`` would keep a float32.)"""
    return x * 1.0


@portable
def hypot1(t):
    """sqrt(1 + t^2) without overflow, in square roots that vectorise (libm's ``hypot`` is a
    scalar call): |t| sqrt(1 + (1/t)^2) for |t| > 1, sqrt(1 + t^2) below; about 1 ulp."""
    a = abs(t)
    big = a > 1.0
    u = 1.0 / a if big else a
    root = math.sqrt(1.0 + u * u)
    return a * root if big else root


@portable
def sign(x):
    """sign(x) with sign(0) = 0 (PyTorch's choice at the kink) and sign(NaN) = NaN."""
    if x > 0.0:
        return 1.0
    if x < 0.0:
        return -1.0
    return x * 0.0  # 0 for +-0, NaN for NaN


@portable
def clamp_min(x, lo):
    """max(x, lo) that keeps NaN: ``lo if x < lo else x``."""
    return lo if x < lo else x


@portable
def clamp_min_grad(x, lo):
    """Derivative of :func:`clamp_min` in ``x``: 1 where x >= lo (the boundary passes, as in
    PyTorch's ``clamp``), 0 below, NaN for NaN (a NaN input gives a NaN gradient)."""
    if x < lo:
        return 0.0
    return 1.0 if x >= lo else x


@portable
def clip(x, lo, hi):
    """min(max(x, lo), hi) that keeps NaN."""
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


@portable
def clip_grad(x, lo, hi):
    """Derivative of :func:`clip`: 1 on the closed interval [lo, hi], 0 outside, NaN for NaN."""
    if x < lo or x > hi:
        return 0.0
    return 1.0 if x >= lo else x


@portable
def softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)); exact limits at +-inf. Branch-free,
    so that softplus(x) and softplus(-x) share one exp and one log1p once inlined."""
    return clamp_min(x, 0.0) + log1p(exp(-abs(x)))


@portable
def sigmoid(x):
    """1 / (1 + exp(-x)) without overflow: with e = exp(-|x|), 1 / (1 + e) for x >= 0 and
    e / (1 + e) below. Branch-free (sigmoid(x) and sigmoid(-x) share their exp)."""
    e = exp(-abs(x))
    r = 1.0 / (1.0 + e)
    return r if x >= 0.0 else e * r


@portable
def logistic(x):
    """(softplus(x), softplus(-x), sigmoid(x), sigmoid(-x)) from one exp(-|x|), one log1p
    and one division: the softpluses differ only in their max(+-x, 0) term, the sigmoids
    are 1 / (1 + e) and e / (1 + e), swapped by the sign of x."""
    e = exp(-abs(x))
    t = log1p(e)
    r = 1.0 / (1.0 + e)
    er = e * r
    return clamp_min(x, 0.0) + t, clamp_min(-x, 0.0) + t, (r if x >= 0.0 else er), (er if x >= 0.0 else r)


@portable
def log_sigmoid(x):
    """log(sigmoid(x)) = -softplus(-x)."""
    return -softplus(-x)


@portable
def xlogy(x, y):
    """x * log(y) with the convention 0 * log(y) = 0 for every y (so 0 log 0 = 0)."""
    if x == 0.0:
        return 0.0
    return x * log(y)


@portable
def xlog1py(x, y):
    """x * log1p(y) with 0 * log1p(y) = 0 for every y."""
    if x == 0.0:
        return 0.0
    return x * log1p(y)


@portable
def xdivy(x, y):
    """x / y with 0 / y = 0 for every y (the derivative partner of :func:`xlogy`)."""
    if x == 0.0:
        return 0.0
    return x / y


@portable
def log_cosh(x):
    """log(cosh(x)): log1p(2 sinh(x/2)^2) near 0 (no cancellation), and
    |x| + log1p(exp(-2|x|)) - log 2 for |x| > 2 (no overflow)."""
    a = abs(x)
    if a > 2.0:
        return a + log1p(exp(-2.0 * a)) - LOG2
    s = math.sinh(0.5 * x)
    return log1p(2.0 * s * s)


@portable
def sech2(x):
    """1 / cosh(x)^2 = 4 e^{-2|x|} / (1 + e^{-2|x|})^2, accurate where tanh(x)^2 ~ 1."""
    e = exp(-2.0 * abs(x))
    d = 1.0 + e
    return 4.0 * e / (d * d)


@portable
def log_add_exp(a, b):
    """log(exp(a) + exp(b)) with the larger argument taken out; -inf + -inf gives -inf."""
    m = a if a > b else b
    if m == -math.inf:
        return -math.inf
    return m + log(exp(a - m) + exp(b - m))
