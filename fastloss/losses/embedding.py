"""Embedding losses of one row (the feature axis): see :mod:`fastloss.losses`."""

import math

from ..math.declare import Array
from ..math.elementary import pow_nonneg
from ..math.portable import portable
from ..math.primitives import clamp_min, clamp_min_grad, sign, wide
from ..math.reductions import LANES, lane_max, lane_total, lanes


@portable
def max_nan_step(big, bad, t):
    """One |coordinate| ``t`` into a running (largest, number of NaNs) state, (0, 0) at
    the start."""
    return (t if t > big else big), bad + (0.0 if t == t else 1.0)


@portable
def merge_max_nan(big1, bad1, big2, bad2):
    """Merge two (largest, number of NaNs) states of :func:`max_nan_step`."""
    return (big2 if big2 > big1 else big1), bad1 + bad2


@portable
def norm_power(t, norm_p):
    """t^p of a coordinate already divided by the largest (no ``pow`` for p = 1, 2)."""
    if norm_p == 2.0:
        return t * t
    if norm_p == 1.0:
        return t
    return pow_nonneg(t, norm_p)


@portable
def norm_finish(big, bad, s, norm_p):
    """The p-norm from the largest |coordinate| ``big``, the NaN count ``bad`` and s =
    sum_j (|t_j| / big)^p: NaN with a NaN coordinate, ``big`` itself where it is 0 or
    inf (s is not used then), else big s^(1/p)."""
    if bad != 0.0:
        return math.nan
    if big == 0.0 or big == math.inf:
        return big
    if norm_p == 1.0:
        return big * s
    if norm_p == 2.0:
        return big * math.sqrt(s)
    return big * pow_nonneg(s, 1.0 / norm_p)


@portable(inline=False)
def distance(a: Array, b: Array, eps, norm_p, squared):
    """||a - b + eps||_p as in PyTorch ``pairwise_distance``; ``squared``: sum (a - b)^2.

    The p-norm is taken of the coordinates divided by the largest, then scaled back, so no
    power overflows or underflows where the norm itself is representable; a NaN coordinate
    makes it NaN. Powers other than 1 and 2 are
    :func:`~fastloss.math.elementary.pow_nonneg` (no libm call). The maximum and the sums
    run in SIMD lanes (:mod:`fastloss.math.reductions`), a block of LANES coordinates at a
    time: the terms into a lane-sized buffer first, then the power that ``norm_p`` asks
    for in a loop of its own (so p = 2 never pays for a ``pow``).
    """
    n = a.shape[0]
    whole = n - n % LANES
    buf = lanes(None)
    if squared:
        s = 0.0
        if whole > 0:
            acc = lanes(0.0)
            for g in range(whole // LANES):
                for lane in range(LANES):
                    t = wide(a[g * LANES + lane]) - wide(b[g * LANES + lane])
                    acc[lane] += t * t
            s = lane_total(acc)
        for i in range(n - whole):
            t = wide(a[whole + i]) - wide(b[whole + i])
            buf[i] = t * t
        for i in range(n - whole):
            s += buf[i]
        return s
    big = 0.0
    bad = 0.0
    if whole > 0:
        top = lanes(0.0)
        nan = lanes(0.0)
        for g in range(whole // LANES):
            for lane in range(LANES):
                t = abs(wide(a[g * LANES + lane]) - wide(b[g * LANES + lane]) + eps)
                nan[lane] += 0.0 if t == t else 1.0
                top[lane] = t if t > top[lane] else top[lane]
        big = lane_max(top)
        bad = lane_total(nan)
    for j in range(whole, n):
        big, bad = max_nan_step(big, bad, abs(wide(a[j]) - wide(b[j]) + eps))
    if bad != 0.0 or big == 0.0 or big == math.inf:
        return norm_finish(big, bad, 0.0, norm_p)
    s = 0.0
    if whole > 0:
        acc = lanes(0.0)
        for g in range(whole // LANES):
            for lane in range(LANES):
                buf[lane] = abs(wide(a[g * LANES + lane]) - wide(b[g * LANES + lane]) + eps) / big
            if norm_p == 2.0:
                for lane in range(LANES):
                    acc[lane] += buf[lane] * buf[lane]
            elif norm_p == 1.0:
                for lane in range(LANES):
                    acc[lane] += buf[lane]
            else:
                for lane in range(LANES):
                    acc[lane] += pow_nonneg(buf[lane], norm_p)
        s = lane_total(acc)
    rest = n - whole
    for i in range(rest):
        buf[i] = abs(wide(a[whole + i]) - wide(b[whole + i]) + eps) / big
    if norm_p == 2.0:
        for i in range(rest):
            buf[i] = buf[i] * buf[i]
    elif norm_p != 1.0:
        for i in range(rest):
            buf[i] = pow_nonneg(buf[i], norm_p)
    for i in range(rest):
        s += buf[i]
    return norm_finish(big, bad, s, norm_p)


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
def triplet_element_grads(aj, pj, nj, active, shift, d_pos, d_neg, norm_p, squared):
    """One coordinate's gradients to the anchor, the positive and the negative: with
    g+ = active d d_pos / d a_j and g- = active d d_neg / d a_j (:func:`distance_grad`),
    (g+ - g-, -g+, g-)."""
    g_pos = active * distance_grad(aj - pj + shift, d_pos, norm_p, squared)
    g_neg = active * distance_grad(aj - nj + shift, d_neg, norm_p, squared)
    return g_pos - g_neg, -g_pos, g_neg


@portable(inline=False)
def triplet_grads(a: Array, pos: Array, neg: Array, ga: Array, gp: Array, gn: Array, active, shift, d_pos, d_neg,
                  norm_p, squared):
    """The three gradient rows of the triplet loss: with g+ = active d d_pos / d a_j and
    g- = active d d_neg / d a_j (:func:`distance_grad`), ga = g+ - g-, gp = -g+, gn = g-.

    A block of LANES coordinates at a time: the differences t = a_j - b_j (+ eps) into
    lane-sized buffers, their derivatives in a loop of the one kind ``squared`` and
    ``norm_p`` ask for (branches outside the loops, so that each loop vectorises and p = 2
    pays for no ``pow``), then the three rows. Every coordinate of a block is read before
    any is written, so the rows may be the inputs themselves (in place).
    """
    n = a.shape[0]
    t_plus = lanes(None)
    t_minus = lanes(None)
    # A distance is 0 only where every t is 0: dividing by 1 there gives the gradient 0
    # that distance_grad selects, without a select in the loops.
    dp = 1.0 if d_pos == 0.0 else d_pos
    dn = 1.0 if d_neg == 0.0 else d_neg
    for block in range((n + LANES - 1) // LANES):
        lo = block * LANES
        k = n - lo if n - lo < LANES else LANES
        for i in range(k):
            aj = wide(a[lo + i])
            t_plus[i] = aj - wide(pos[lo + i]) + shift
            t_minus[i] = aj - wide(neg[lo + i]) + shift
        if squared:
            for i in range(k):
                t_plus[i] = 2.0 * t_plus[i]
                t_minus[i] = 2.0 * t_minus[i]
        elif norm_p == 1.0:
            for i in range(k):
                t_plus[i] = sign(t_plus[i])
                t_minus[i] = sign(t_minus[i])
        elif norm_p == 2.0:
            for i in range(k):
                t_plus[i] = t_plus[i] / dp
                t_minus[i] = t_minus[i] / dn
        else:
            for i in range(k):
                t = t_plus[i]
                t_plus[i] = sign(t) * pow_nonneg(abs(t) / dp, norm_p - 1.0)
                t = t_minus[i]
                t_minus[i] = sign(t) * pow_nonneg(abs(t) / dn, norm_p - 1.0)
        for i in range(k):
            g_plus = active * t_plus[i]
            g_minus = active * t_minus[i]
            ga[lo + i] = g_plus - g_minus
            gp[lo + i] = -g_plus
            gn[lo + i] = g_minus


@portable.row
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
    loss, active = triplet_row(d_pos, d_neg, margin, gs)
    if ga.shape[0] != 0:
        triplet_grads(a, pos, neg, ga, gp, gn, active, triplet_shift(eps, squared), d_pos, d_neg, norm_p, squared)
    return loss


@portable
def triplet_row(d_pos, d_neg, margin, gs):
    """A triplet row from its distances: (max(0, d_pos - d_neg + margin), gs times the
    clamp's derivative, which scales every gradient)."""
    inner = d_pos - d_neg + margin
    return clamp_min(inner, 0.0), gs * clamp_min_grad(inner, 0.0)


@portable
def triplet_shift(eps, squared):
    """What the distance adds to each difference: eps, none for the squared distance."""
    return 0.0 if squared else eps
