"""The kernels of the element-wise losses: the loss kernel, a grid-stride loop over the
elements, and the finish kernel that RMSE's square root runs in after it.

The loss kernel takes the arguments of the CPU block kernels
(:mod:`fastloss.cpu_numba.drivers`): an output of length 0 is not wanted, ``w`` (length
0: none) weights the samples, ``scale`` multiplies gradients and hessians; then
``partials``, where each block leaves the float64 sum of its samples' weighted losses,
and the arguments of :func:`~.reductions.grid_finish` (``counter, factor, total,
value``), by which the last block to finish sums the blocks' sums in a fixed order in the
same launch. Array indices are cast to ``uint64`` (see :mod:`.rows` for why).
"""

import numpy as np
from numba import cuda, uint64

from .jit import compile_device, compile_kernel
from .loads import element_access
from .reductions import block_sum, grid_finish


def elementwise_kernel(elem, name, threads, bf16=False, rule_on_device=False):
    """Grid-stride kernel for ``elem(x, y, c, p) -> (loss, dx, dy, hess)`` over 1-D arrays,
    evaluated in float64, in blocks of ``threads``. ``y`` and ``c`` are ``x`` again where
    the loss has none. With ``bf16``, ``x``, ``y`` and the gradients and hessian hold
    bfloat16 bit patterns (int16); ``c`` (a float64 array where the loss has one) and the
    losses do not. With ``rule_on_device``, the loss's one parameter is decided on the
    device from ``rule[0]`` (hinge's 0/1 rule: :func:`.checks.zero_one_rule_kernel`);
    otherwise ``rule`` is empty."""
    _, load, store = element_access(np.float64, bf16)
    reduce = block_sum(threads)
    finish = grid_finish(threads)
    parameters = _rule_parameters if rule_on_device else _given_parameters

    def sample(i, xi, yi, ci, w, params, scale, loss_out, gx, gy, h):
        """Element ``i`` (its inputs already loaded): store its outputs, return its loss."""
        loss, dx, dy, d2 = elem(load(xi), load(yi), np.float64(ci), params)
        wi = np.float64(w[uint64(i)]) if w.shape[0] != 0 else 1.0
        loss *= wi
        if loss_out.shape[0] != 0:
            loss_out[uint64(i)] = loss
        g = scale * wi
        if gx.shape[0] != 0:
            gx[uint64(i)] = store(g * dx)
        if gy.shape[0] != 0:
            gy[uint64(i)] = store(g * dy)
        if h.shape[0] != 0:
            h[uint64(i)] = store(g * d2)
        return loss

    name = f"{name}{'_bf16' if bf16 else ''}{'_rule' if rule_on_device else ''}"
    sample = compile_device(sample, f"sample_{name}")

    def kernel(x, y, c, w, params, scale, loss_out, gx, gy, h, rule, partials, counter, factor, total_out, value):
        params = parameters(params, rule)
        n = x.shape[0]
        i = cuda.grid(1)
        stride = cuda.gridsize(1)
        total = 0.0
        while i + 3 * stride < n:  # four elements' loads in flight before any use
            i1, i2, i3 = i + stride, i + 2 * stride, i + 3 * stride
            x0, x1, x2, x3 = x[uint64(i)], x[uint64(i1)], x[uint64(i2)], x[uint64(i3)]
            y0, y1, y2, y3 = y[uint64(i)], y[uint64(i1)], y[uint64(i2)], y[uint64(i3)]
            c0, c1, c2, c3 = c[uint64(i)], c[uint64(i1)], c[uint64(i2)], c[uint64(i3)]
            total += sample(i, x0, y0, c0, w, params, scale, loss_out, gx, gy, h)
            total += sample(i1, x1, y1, c1, w, params, scale, loss_out, gx, gy, h)
            total += sample(i2, x2, y2, c2, w, params, scale, loss_out, gx, gy, h)
            total += sample(i3, x3, y3, c3, w, params, scale, loss_out, gx, gy, h)
            i += 4 * stride
        while i < n:
            total += sample(i, x[uint64(i)], y[uint64(i)], c[uint64(i)], w, params, scale, loss_out, gx, gy, h)
            i += stride
        block_total = reduce(total)
        if cuda.threadIdx.x == 0:
            partials[cuda.blockIdx.x] = block_total
        finish(partials, counter, factor, total_out, value)

    return compile_kernel(kernel, f"elementwise_{name}", threads)


@cuda.jit(device=True)
def _given_parameters(params, rule):
    return params


@cuda.jit(device=True)
def _rule_parameters(params, rule):
    """Hinge's one parameter, map01, from the count of targets that are not 0 or 1
    (:func:`.checks.zero_one_rule_kernel`)."""
    return (1.0 if rule[0] == 0.0 else 0.0,)


def finish_kernel(finish, threads):
    """The kernel that finishes a loss from its reduced sum (RMSE's ``finish``, see
    :class:`fastloss._registry.LossSpec`), after the loss kernel on the same stream: each
    thread computes ``(loss, factor) = finish(total[0], n)``, the first stores ``value[0]
    = loss`` (``value`` empty: not wanted), and all multiply the gradient ``g`` (1-D;
    empty: none) by ``factor``, in a grid-stride loop with four loads in flight before
    their stores (one at a time, a thread would wait out each load's latency), in blocks
    of ``threads``. The call queues it and goes on: nothing waits for the sum."""
    finish = cuda.jit(device=True)(finish)

    def kernel(total, n, value, g):
        loss, factor = finish(total[0], n)
        i = cuda.grid(1)
        if i == 0 and value.shape[0] != 0:
            value[0] = loss
        stride = cuda.gridsize(1)
        size = g.shape[0]
        while i + 3 * stride < size:
            i1, i2, i3 = i + stride, i + 2 * stride, i + 3 * stride
            g0, g1, g2, g3 = g[uint64(i)], g[uint64(i1)], g[uint64(i2)], g[uint64(i3)]
            g[uint64(i)] = np.float64(g0) * factor
            g[uint64(i1)] = np.float64(g1) * factor
            g[uint64(i2)] = np.float64(g2) * factor
            g[uint64(i3)] = np.float64(g3) * factor
            i += 4 * stride
        while i < size:
            g[uint64(i)] = np.float64(g[uint64(i)]) * factor
            i += stride

    return compile_kernel(kernel, "finish", threads)
