"""Numba loop drivers, one per loss family; the loss's math comes in compiled.

Every driver takes the same outputs: ``loss_out`` (per-sample losses, kept for
``reduction="none"``), one gradient array per input and ``h`` (hessian diagonal). An
output of length 0 is not wanted: the driver tests that once, and the compiler removes
the dead work from the loop. Sample weights ``w`` (length 0: none) multiply each sample's
loss, gradient and hessian; ``scale`` (``1/count`` for ``"mean"``) multiplies gradients
and hessians. The weighted loss sum is accumulated in float64 and returned.

With ``parallel=True`` the loops run under ``prange``; each iteration writes only its own
elements (or rows), and the sum is a scalar ``+=`` reduction.
"""

from numba import prange

from .jit import compile_driver


def elementwise(elem, name, parallel):
    """Driver for ``elem(x, y, c, p) -> (loss, dx, dy, hess)`` over 1-D arrays.

    ``y`` and ``c`` are the target and the auxiliary value; a loss that has none of them
    is given ``x`` again (read, then ignored).
    """

    def driver(x, y, c, w, params, scale, loss_out, gx, gy, h):
        has_w = w.shape[0] != 0
        keep_loss = loss_out.shape[0] != 0
        want_gx = gx.shape[0] != 0
        want_gy = gy.shape[0] != 0
        want_h = h.shape[0] != 0
        total = 0.0
        for i in prange(x.shape[0]):
            loss, dx, dy, d2 = elem(float(x[i]), float(y[i]), float(c[i]), params)
            wi = float(w[i]) if has_w else 1.0
            if has_w:
                loss *= wi
            total += loss
            if keep_loss:
                loss_out[i] = loss
            g = scale * wi
            if want_gx:
                gx[i] = g * dx
            if want_gy:
                gy[i] = g * dy
            if want_h:
                h[i] = g * d2
        return total

    return compile_driver(driver, f"elementwise_{name}_{'parallel' if parallel else 'serial'}", parallel)


def rowwise(row, name, parallel):
    """Driver for ``row(x, y, v, c, gx, gy, gv, h, gs, p) -> row loss`` over 2-D arrays.

    ``x``, ``v`` and the gradients are (rows, width); ``y`` is (rows, width) or (rows,) of
    integer labels; ``c`` is a per-class array (length 0: none). Unwanted gradient arrays
    are (rows, 0), so that each row's view is empty.
    """

    def driver(x, y, v, c, w, params, scale, loss_out, gx, gy, gv, h):
        has_w = w.shape[0] != 0
        keep_loss = loss_out.shape[0] != 0
        total = 0.0
        for i in prange(x.shape[0]):
            wi = float(w[i]) if has_w else 1.0
            loss = row(x[i], y[i], v[i], c, gx[i], gy[i], gv[i], h[i], scale * wi, params)
            if has_w:
                loss *= wi
            total += loss
            if keep_loss:
                loss_out[i] = loss
        return total

    return compile_driver(driver, f"rowwise_{name}_{'parallel' if parallel else 'serial'}", parallel)
