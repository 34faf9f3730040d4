"""Hinge losses: max(0, 1 - margin), and its square.

- :func:`hinge`, :func:`squared_hinge`: element-wise, ``f(x, y, c, p) -> (loss, dx, dy,
  hess)``, with targets in {-1, 1} (or 0/1, mapped);
- :func:`categorical_hinge`: one row of the class axis, ``f(x, y, v, c, gx, gy, gv, h,
  gs, p) -> row loss`` (Keras), whose formulas (:func:`hinge_slot`,
  :func:`max_count_step`, :func:`merge_max_count`, :func:`hinge_row`,
  :func:`categorical_hinge_grad`) the CUDA row kernel is built from too.

See :mod:`fastloss.losses` for both calling conventions.
"""

import math

from ..math.portable import portable
from ..math.primitives import clamp_min, clamp_min_grad, wide


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


@portable.row
def categorical_hinge(x, y, v, c, gx, gy, gv, h, gs, p):
    """Keras ``categorical_hinge``: max(0, 1 + max_j (1 - y_j) x_j - sum_j y_j x_j).

    The max includes the 0 of a one-hot target's own slot. Its gradient is shared equally
    among tied maxima (as Keras's ``ops.max`` does in TensorFlow and PyTorch); the
    clamp passes its gradient at 0.
    """
    n = x.shape[0]
    pos = 0.0
    neg = -math.inf
    ties = 0.0
    for j in range(n):
        pj, u = hinge_slot(wide(x[j]), wide(y[j]))
        pos += pj
        neg, ties = max_count_step(neg, ties, u)
    loss, a = hinge_row(neg, pos, gs)
    if gx.shape[0] != 0:
        for j in range(n):
            gx[j] = categorical_hinge_grad(wide(x[j]), wide(y[j]), neg, ties, a)
    return loss


@portable
def hinge_slot(xj, yj):
    """One class of :func:`categorical_hinge`: (y_j x_j, summed; (1 - y_j) x_j, maximised)."""
    return yj * xj, (1.0 - yj) * xj


@portable
def hinge_row(neg, pos, gs):
    """A categorical hinge row from its maximum ``neg`` and sum ``pos``: (its loss
    max(0, 1 + neg - pos), gs times the clamp's derivative)."""
    inner = 1.0 + neg - pos
    return clamp_min(inner, 0.0), gs * clamp_min_grad(inner, 0.0)


@portable
def max_count_step(m, count, u):
    """One value into a running (maximum, number of values equal to it) state; NaN is
    skipped. The state of no values is (-inf, 0)."""
    if u > m:
        return u, 1.0
    if u == m:
        return m, count + 1.0
    return m, count


@portable
def merge_max_count(m1, c1, m2, c2):
    """Merge two (maximum, tie count) states of :func:`max_count_step`."""
    if m2 > m1:
        return m2, c2
    if m2 == m1:
        return m1, c1 + c2
    return m1, c1


@portable
def categorical_hinge_grad(xj, yj, neg, ties, a):
    """d loss / d x_j of :func:`categorical_hinge`: a (-y_j + (1 - y_j) / ties at a slot
    that attains the max ``neg``), a = gs times the clamp's derivative."""
    g = -yj
    if (1.0 - yj) * xj == neg:
        g += (1.0 - yj) / ties
    return a * g
