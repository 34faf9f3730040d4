"""Numerically stable scalar primitives, written once for every backend.

Each function is plain Python on floats, marked ``@portable`` so that the CPU and GPU
backends compile it from this one source. They are written so that a NaN argument gives
a NaN result (comparisons are arranged so that NaN takes the branch that propagates it)
and so that no intermediate overflows where the result is finite.
"""

import math

import numpy as np

from .elementary import ONE_F, ZERO_F, exp, exp_nonpositive, exp_nonpositive_single, expm1, log, log1p, log_single
from .portable import portable

LOG2 = math.log(2.0)


@portable(python=np.float64)
def wide(x):
    """``x`` as a float64: the math runs in float64 for every input dtype, and each result
    is rounded once when it is stored. (The literal 1.0 is a float64, so the product is
    one; Numba's ``float()`` would keep a float32. Run as Python, a float32 NumPy scalar
    times 1.0 stays a float32, so there it is ``np.float64``.)"""
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
    """Derivative of :func:`clip`: 1 on the closed interval [lo, hi], 0 outside, NaN for NaN.

    Written as selects between floats, one comparison each: GCC does not vectorise a
    select between two comparisons, which ``x < lo or x > hi`` becomes once inlined."""
    low = 1.0 if x >= lo else (0.0 if x < lo else x)  # 1, 0, or NaN for NaN
    return 0.0 if x > hi else low


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
    """(softplus(x), softplus(-x), sigmoid(x), sigmoid(-x)) from one e = exp(-|x|), one log
    and one division: with u = 1 + e and r = 1 / u, log1p(e) = log(u) + (e - (u - 1)) r
    (the second term corrects the rounding of u, as :func:`log1p` does, with the
    reciprocal the sigmoids need anyway); the softpluses differ only in their max(+-x, 0)
    term, the sigmoids are r and e r, swapped by the sign of x. e below the smallest
    normal number flushes to 0 (contract section 4), and so do softplus(-|x|) and
    sigmoid(-|x|) with it, from |x| = 708.4 on."""
    e = exp_nonpositive(-abs(x))
    u = 1.0 + e
    r = 1.0 / u
    t = log(u) + (e - (u - 1.0)) * r
    er = e * r
    return clamp_min(x, 0.0) + t, clamp_min(-x, 0.0) + t, (r if x >= 0.0 else er), (er if x >= 0.0 else r)


@portable.single
def logistic_single(x):
    """:func:`logistic` of a float32 in float32 arithmetic (twice the SIMD lanes), from
    :func:`~fastloss.math.elementary.exp_nonpositive_single` and
    :func:`~fastloss.math.elementary.log_single`: the softpluses within 2 ulp of float32,
    the sigmoids within 3 (tests/test_float32_forms.py); e = exp(-|x|) flushes to 0 from
    |x| = 87.3 on (contract section 4 lets subnormal results flush)."""
    e = exp_nonpositive_single(-abs(x))
    u = ONE_F + e
    r = ONE_F / u
    t = log_single(u) + (e - (u - ONE_F)) * r
    er = e * r
    pos = ZERO_F if x < ZERO_F else x  # max(x, 0) and max(-x, 0), NaN kept
    neg = ZERO_F if -x < ZERO_F else -x
    return pos + t, neg + t, (r if x >= ZERO_F else er), (er if x >= ZERO_F else r)


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
def cosh_terms(x):
    """(log cosh x, tanh x, sech(x)^2), all from one e = expm1(|x|) (so e^|x| = 1 + e)::

        log cosh x = log1p(e^2 / (2 (1 + e)))        (cosh x - 1 = e^2 / (2 (1 + e)))
        tanh |x| = e (e + 2) / ((1 + e) c)            (c = (1 + e) + 1 / (1 + e) = 2 cosh x)
        sech x = 2 / c

    Every term is a sum of positive numbers, so there is no cancellation: near 0,
    log cosh x ~ x^2 / 2 and tanh x ~ x come out to a few ulp. For |x| > 20,
    log cosh x = |x| - log 2 (the log1p(e^(-2|x|)) left out is below 5e-18, under its
    rounding) and tanh |x| = 1 (tanh(20) rounds to 1). sech^2 is taken as (2 / c)^2, which
    goes to 0 gracefully; |x| is clamped to 400 for e (sech^2 is 0 from |x| = 373 on), so
    that e stays finite (a GPU thread in the simulator runs Python's ``math.expm1``, which
    raises on overflow). tanh has the sign of x (tanh(-0) = +0). NaN gives NaN.
    """
    a = abs(x)
    e = expm1(400.0 if a > 400.0 else a)  # beyond, only sech^2 (0 there) reads it
    u = 1.0 + e
    c = u + 1.0 / u
    big = a > 20.0
    lc = a - LOG2 if big else log1p(e * e / (2.0 * u))
    t = 1.0 if big else e * (e + 2.0) / (u * c)
    sech = 2.0 / c
    return lc, (-t if x < 0.0 else t), sech * sech


@portable
def log_add_exp(a, b):
    """log(exp(a) + exp(b)) with the larger argument taken out; -inf + -inf gives -inf."""
    m = a if a > b else b
    if m == -math.inf:
        return -math.inf
    return m + log(exp(a - m) + exp(b - m))
