"""Embedding losses of one row (the feature axis): see :mod:`fastloss.losses`."""

import math

from ..math.elementary import pow_nonneg
from ..math.portable import portable
from ..math.primitives import clamp_min, clamp_min_grad, sign, wide


@portable
def distance(a, b, eps, norm_p, squared):
    """||a - b + eps||_p as in PyTorch ``pairwise_distance``; ``squared``: sum (a - b)^2.

    The p-norm is taken of the coordinates divided by the largest, then scaled back, so no
    power overflows or underflows where the norm itself is representable. Powers other
    than 1 and 2 are :func:`~fastloss.math.elementary.pow_nonneg` (no libm call).
    """
    if squared:
        s = 0.0
        for j in range(a.shape[0]):
            t = wide(a[j]) - wide(b[j])
            s += t * t
        return s
    big = 0.0
    for j in range(a.shape[0]):
        t = abs(wide(a[j]) - wide(b[j]) + eps)
        if not t <= big:  # a NaN coordinate makes the norm NaN
            big = t
    if big == 0.0 or big == math.inf or big != big:
        return big
    s = 0.0
    for j in range(a.shape[0]):
        t = abs(wide(a[j]) - wide(b[j]) + eps) / big
        if norm_p == 2.0:
            s += t * t
        elif norm_p == 1.0:
            s += t
        else:
            s += pow_nonneg(t, norm_p)
    if norm_p == 1.0:
        return big * s
    if norm_p == 2.0:
        return big * math.sqrt(s)
    return big * pow_nonneg(s, 1.0 / norm_p)


@portable
def distance_grad(t, dist, norm_p, squared):
    """d dist / d t for one coordinate t = a_j - b_j (+ eps): 2 t when squared, else
    sign(t) |t|^(p-1) / dist^(p-1); 0 where dist = 0 (PyTorch's choice for the norm)."""
    if squared:
        return 2.0 * t
    if norm_p == 1.0:
        return sign(t)
    if dist == 0.0:
        return 0.0
    if norm_p == 2.0:
        return t / dist
    return sign(t) * pow_nonneg(abs(t) / dist, norm_p - 1.0)


@portable
def triplet_margin_loss(a, pos, neg, c, ga, gp, gn, h, gs, p):
    """max(0, d(a, pos) - d(a, neg) + margin), ``p = (margin, norm_p, eps, squared)``.

    PyTorch ``triplet_margin_loss``: d(x, y) = ||x - y + eps||_p; with ``squared``,
    d = sum (x - y)^2. Gradients to the anchor, the positive and the negative; the clamp
    passes its gradient at 0. In place: each coordinate is read before it is written.
    """
    margin = p[0]
    norm_p = p[1]
    eps = p[2]
    squared = p[3] != 0.0
    d_pos = distance(a, pos, eps, norm_p, squared)
    d_neg = distance(a, neg, eps, norm_p, squared)
    inner = d_pos - d_neg + margin
    if ga.shape[0] != 0:
        active = gs * clamp_min_grad(inner, 0.0)
        shift = 0.0 if squared else eps
        for j in range(a.shape[0]):
            aj = wide(a[j])
            g_pos = active * distance_grad(aj - wide(pos[j]) + shift, d_pos, norm_p, squared)
            g_neg = active * distance_grad(aj - wide(neg[j]) + shift, d_neg, norm_p, squared)
            ga[j] = g_pos - g_neg
            gp[j] = -g_pos
            gn[j] = g_neg
    return clamp_min(inner, 0.0)
