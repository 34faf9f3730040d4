"""CUDA loop drivers, one per loss family, and the small kernels around them.

The loss math comes in compiled (:mod:`.jit`); a driver only decides which thread
computes what. The kernels take the same arguments as the CPU block kernels
(:mod:`fastloss.cpu_numba.drivers`): an output of length 0 is not wanted, ``w`` (length
0: none) weights the samples, ``scale`` multiplies gradients and hessians; and one more,
``partials``, where each block leaves the float64 sum of its samples' weighted losses.

Reductions are deterministic: a block sums its threads' values in a fixed tree in shared
memory, and :func:`finish_kernel` sums the blocks' partial sums, in a fixed order, in one
block. The grid depends only on the input's shape, so the same input gives the same bits
run after run.

- Element-wise: a grid-stride loop, at most ``max_blocks`` blocks of ``threads``.
- Row-wise: one thread per row, calling the row function of :mod:`fastloss.losses`
  (the cooperative block-per-row kernels of the softmax cross-entropies are in
  :mod:`.softmax_rows`).
"""

import math

import numpy as np
from numba import cuda, float64, int64

from .jit import compile_device, compile_kernel


def block_sum(threads):
    """Device function: the sum of one float64 per thread of the block, in a fixed tree
    (``threads`` a power of two); every thread gets the total."""

    def reduce(value):
        shared = cuda.shared.array(threads, float64)
        t = cuda.threadIdx.x
        shared[t] = value
        cuda.syncthreads()
        step = threads // 2
        while step > 0:
            if t < step:
                shared[t] += shared[t + step]
            cuda.syncthreads()
            step //= 2
        total = shared[0]
        cuda.syncthreads()  # the array may be reused by the caller's next reduction
        return total

    return compile_device(reduce, f"block_sum_{threads}")


def elementwise_kernel(elem, name, threads):
    """Grid-stride kernel for ``elem(x, y, c, p) -> (loss, dx, dy, hess)`` over 1-D arrays,
    evaluated in float64. ``y`` and ``c`` are ``x`` again where the loss has none."""
    reduce = block_sum(threads)

    def kernel(x, y, c, w, params, scale, loss_out, gx, gy, h, partials):
        has_w = w.shape[0] != 0
        keep_loss = loss_out.shape[0] != 0
        want_gx = gx.shape[0] != 0
        want_gy = gy.shape[0] != 0
        want_h = h.shape[0] != 0
        total = 0.0
        for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
            loss, dx, dy, d2 = elem(np.float64(x[i]), np.float64(y[i]), np.float64(c[i]), params)
            wi = np.float64(w[i]) if has_w else 1.0
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
        total = reduce(total)
        if cuda.threadIdx.x == 0:
            partials[cuda.blockIdx.x] = total

    return compile_kernel(kernel, f"elementwise_{name}")


def rowwise_kernel(row, name, threads):
    """One thread per row for ``row(x, y, v, c, gx, gy, gv, h, gs, p) -> row loss``;
    arrays as in the CPU row-wise block (unwanted gradients are (rows, 0))."""
    reduce = block_sum(threads)

    def kernel(x, y, v, c, w, params, scale, loss_out, gx, gy, gv, h, partials):
        i = cuda.grid(1)
        loss = 0.0
        if i < x.shape[0]:
            wi = np.float64(w[i]) if w.shape[0] != 0 else 1.0
            loss = row(x[i], y[i], v[i], c, gx[i], gy[i], gv[i], h[i], scale * wi, params)
            if w.shape[0] != 0:
                loss *= wi
            if loss_out.shape[0] != 0:
                loss_out[i] = loss
        total = reduce(loss)
        if cuda.threadIdx.x == 0:
            partials[cuda.blockIdx.x] = total

    return compile_kernel(kernel, f"rowwise_{name}")


def finish_kernel(threads):
    """One block: ``total[0]`` = the sum of ``partials`` (in a fixed order), and, when
    ``value`` is not empty, ``value[0]`` = that sum times ``factor`` in ``value``'s dtype."""
    reduce = block_sum(threads)

    def kernel(partials, factor, total, value):
        t = cuda.threadIdx.x
        s = 0.0
        for k in range(t, partials.shape[0], threads):
            s += partials[k]
        s = reduce(s)
        if t == 0:
            total[0] = s
            if value.shape[0] != 0:
                value[0] = s * factor

    return compile_kernel(kernel, "finish")


def scale_kernel():
    """``a[i] *= factor`` over a 1-D array (RMSE's gradient, known once the sum is)."""

    def kernel(a, factor):
        for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
            a[i] = np.float64(a[i]) * factor

    return compile_kernel(kernel, "scale")


def label_stats_kernel(threads):
    """Over integer ``labels``: the smallest and largest label that is not ``ignore``
    (atomics into ``extremes``: exact, so deterministic), and per block the number of
    such labels and the sum of ``class_weight[label]`` over those in [0, C) (empty
    ``class_weight``: not summed). A label outside [0, C) is never used as an index."""
    reduce = block_sum(threads)

    def kernel(labels, ignore, has_ignore, n_classes, class_weight, extremes, counts, weights):
        lo = int64(9223372036854775807)
        hi = int64(-9223372036854775807 - 1)
        count = 0.0
        wsum = 0.0
        weighted = class_weight.shape[0] != 0
        for i in range(cuda.grid(1), labels.shape[0], cuda.gridsize(1)):
            label = int64(labels[i])
            if has_ignore and label == ignore:
                continue
            lo = min(lo, label)
            hi = max(hi, label)
            count += 1.0
            if weighted and 0 <= label < n_classes:
                wsum += class_weight[label]
        cuda.atomic.min(extremes, 0, lo)
        cuda.atomic.max(extremes, 1, hi)
        count = reduce(count)
        wsum = reduce(wsum)
        if cuda.threadIdx.x == 0:
            counts[cuda.blockIdx.x] = count
            weights[cuda.blockIdx.x] = wsum

    return compile_kernel(kernel, "label_stats")


def not_zero_one_kernel(threads):
    """Per block, the number of targets outside {0, 1} (NaN left out): Keras's hinge
    maps targets to {-1, 1} when there are none."""
    reduce = block_sum(threads)

    def kernel(t, partials):
        count = 0.0
        for i in range(cuda.grid(1), t.shape[0], cuda.gridsize(1)):
            v = np.float64(t[i])
            if not (v == 0.0 or v == 1.0 or math.isnan(v)):
                count += 1.0
        count = reduce(count)
        if cuda.threadIdx.x == 0:
            partials[cuda.blockIdx.x] = count

    return compile_kernel(kernel, "not_zero_one")
