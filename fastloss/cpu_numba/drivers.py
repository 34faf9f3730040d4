"""Numba loop drivers, one per loss family; the loss's math comes in compiled.

A *block* kernel runs a loss over a contiguous stretch of samples. Every block takes the
same outputs: ``loss_out`` (per-sample losses, kept for ``reduction="none"``), one
gradient array per input and ``h`` (hessian diagonal). An output of length 0 is not
wanted: the block tests that once, and the compiler removes the dead work from the loop.
Sample weights ``w`` (length 0: none) multiply each sample's loss, gradient and hessian;
``scale`` (``1/count`` for ``"mean"``) multiplies gradients and hessians. The block
returns the weighted loss sum, accumulated in float64.

Large inputs go through a *chunked* driver: fixed-size chunks of samples, each run by the
block kernel, under ``prange`` (``parallel=True``) or a plain loop; the chunks' partial
sums are added in chunk order. The chunking depends only on the input's shape, so the
loss is bit-for-bit the same serial or parallel, whatever the number of threads.
"""

import numba
import numpy as np
from numba import prange
from numba.extending import overload

from .. import _config as config
from ..math import reductions
from .jit import FASTMATH, compile_driver

lanes = reductions.lanes.for_target("numba")
lane_total = reductions.lane_total.for_target("numba")


def elementwise_block(elem, name):
    """Block kernel for ``elem(x, y, c, p) -> (loss, dx, dy, hess)`` over 1-D arrays,
    evaluated in float64 whatever the arrays' dtype.

    ``y`` and ``c`` are the target and the auxiliary value; a loss that has none of them
    is given ``x`` again (read, then ignored). Tile by tile (``_config.TILE``), one loop
    evaluates the math into float64 tile buffers; it has no reduction and no condition, so
    LLVM vectorises it. The weights, the outputs and the lane sum of the losses
    (:func:`lane_sum`) are separate simple loops over the tile.
    """
    tile = config.TILE

    def block(x, y, c, w, params, scale, loss_out, gx, gy, h):
        has_w = w.shape[0] != 0
        n = x.shape[0]
        buf = np.empty((4, tile))
        bl = buf[0]
        bx = buf[1]
        by = buf[2]
        bh = buf[3]
        acc = lanes(0.0)
        k = 0
        for lo in range(0, n, tile):
            hi = min(n, lo + tile)
            k = hi - lo
            xt = x[lo:hi]
            yt = y[lo:hi]
            ct = c[lo:hi]
            for j in range(k):
                bl[j], bx[j], by[j], bh[j] = elem(np.float64(xt[j]), np.float64(yt[j]), np.float64(ct[j]), params)
            if has_w:
                wt = w[lo:hi]
                for j in range(k):
                    wj = np.float64(wt[j])
                    bl[j] *= wj
                    bx[j] *= wj
                    by[j] *= wj
                    bh[j] *= wj
            lane_sum(bl, k, acc)
            _store(loss_out, lo, hi, bl, 1.0)
            _store(gx, lo, hi, bx, scale)
            _store(gy, lo, hi, by, scale)
            _store(h, lo, hi, bh, scale)
        total = lane_total(acc)
        for j in range(k - k % acc.shape[0], k):  # the last tile's rest, in order
            total += bl[j]
        return total

    return compile_driver(block, f"elementwise_{name}_block")


@numba.njit(nogil=True, error_model="numpy", fastmath=set(FASTMATH))
def lane_sum(v, k, acc):
    """Add the whole groups of ``v[:k]`` to the running lanes ``acc``
    (:mod:`fastloss.math.reductions`): v[j] to lane j mod LANES. TILE is a multiple of
    LANES, so only the last tile of a block has a rest; the block adds it after the lanes'
    total, in order, as the row reductions do."""
    n_lanes = acc.shape[0]
    for j in range(0, k - k % n_lanes, n_lanes):
        for lane in range(n_lanes):
            acc[lane] += v[j + lane]


@numba.njit(nogil=True, error_model="numpy", fastmath=set(FASTMATH))
def _store(out, lo, hi, v, scale):
    """out[lo:hi] = scale * v[:hi - lo], where ``out`` is wanted (not empty)."""
    if out.shape[0] != 0:
        o = out[lo:hi]
        for j in range(hi - lo):
            o[j] = scale * v[j]


def elementwise_chunked(block, name, parallel):
    """Chunked driver over an element-wise block: every array is cut into chunks."""

    def driver(chunk, x, y, c, w, params, scale, loss_out, gx, gy, h):
        n = x.shape[0]
        n_chunks = (n + chunk - 1) // chunk
        partial = np.empty(n_chunks)
        for k in prange(n_chunks):
            lo = k * chunk
            hi = min(n, lo + chunk)
            partial[k] = block(
                x[lo:hi], y[lo:hi], c[lo:hi], w[lo:hi], params, scale,
                loss_out[lo:hi], gx[lo:hi], gy[lo:hi], h[lo:hi],
            )
        total = 0.0
        for k in range(n_chunks):
            total += partial[k]
        return total

    return compile_driver(driver, f"elementwise_{name}_{_mode(parallel)}", parallel)


def rowwise_block(row, name):
    """Block kernel for ``row(x, y, v, c, gx, gy, gv, h, gs, p) -> row loss`` over 2-D arrays.

    ``x``, ``v`` and the gradients are (rows, width); ``y`` is (rows, width) or (rows,) of
    integer labels; ``c`` is a per-class array (length 0: none). Unwanted gradient arrays
    are (rows, 0), so that each row's view is empty.
    """

    def block(x, y, v, c, w, params, scale, loss_out, gx, gy, gv, h):
        has_w = w.shape[0] != 0
        keep_loss = loss_out.shape[0] != 0
        total = 0.0
        for i in range(x.shape[0]):
            wi = float(w[i]) if has_w else 1.0
            loss = row(x[i], y[i], v[i], c, gx[i], gy[i], gv[i], h[i], scale * wi, params)
            if has_w:
                loss *= wi
            total += loss
            if keep_loss:
                loss_out[i] = loss
        return total

    return compile_driver(block, f"rowwise_{name}_block")


def narrow_rowwise_block(narrow, name):
    """Block kernel for the narrow form ``narrow(x, y, c, gx, h, gs, p, loss)`` of a row
    function (see :mod:`fastloss.losses`; ``y`` the labels or the target rows, flat), for
    rows of 1 to NARROW_MAX_WIDTH classes:
    tiles of :func:`fastloss._config.narrow_rows` rows. Same arguments as
    :func:`rowwise_block` (``v``, ``gy`` and ``gv`` unused)."""
    tile = config.NARROW_TILE

    def block(x, y, v, c, w, params, scale, loss_out, gx, gy, gv, h):
        width = x.shape[1]
        per = tile // width
        if per >= 8:
            per -= per % 8
        rows = x.shape[0]
        has_w = w.shape[0] != 0
        keep_loss = loss_out.shape[0] != 0
        gs = np.empty(per)
        tile_loss = np.empty(per)
        total = 0.0
        for lo in range(0, rows, per):
            hi = min(rows, lo + per)
            k = hi - lo
            for i in range(k):
                gs[i] = scale * (float(w[lo + i]) if has_w else 1.0)
            narrow(x[lo:hi].reshape(k * width), tile_rows(y, lo, hi), c, gx[lo:hi].reshape(k * gx.shape[1]),
                   h[lo:hi].reshape(k * h.shape[1]), gs[:k], params, tile_loss[:k])
            for i in range(k):
                loss = tile_loss[i]
                if has_w:
                    loss *= float(w[lo + i])
                total += loss
                if keep_loss:
                    loss_out[lo + i] = loss
        return total

    return compile_driver(block, f"rowwise_{name}_narrow_block")


def tile_rows(y, lo, hi):
    """Rows lo to hi of ``y`` for a narrow form: the labels themselves (1-D), or the target
    rows one after another (2-D, C-contiguous). Compiled only, by the overload below,
    which picks the form by the array's dimensions."""


@overload(tile_rows)
def _tile_rows(y, lo, hi):
    if y.ndim == 1:
        return lambda y, lo, hi: y[lo:hi]
    return lambda y, lo, hi: y[lo:hi].reshape((hi - lo) * y.shape[1])


def rowwise_chunked(block, name, parallel):
    """Chunked driver over a row-wise block: chunks of rows; ``c`` (per class) is shared."""

    def driver(chunk, x, y, v, c, w, params, scale, loss_out, gx, gy, gv, h):
        n = x.shape[0]
        n_chunks = (n + chunk - 1) // chunk
        partial = np.empty(n_chunks)
        for k in prange(n_chunks):
            lo = k * chunk
            hi = min(n, lo + chunk)
            partial[k] = block(
                x[lo:hi], y[lo:hi], v[lo:hi], c, w[lo:hi], params, scale,
                loss_out[lo:hi], gx[lo:hi], gy[lo:hi], gv[lo:hi], h[lo:hi],
            )
        total = 0.0
        for k in range(n_chunks):
            total += partial[k]
        return total

    return compile_driver(driver, f"rowwise_{name}_{_mode(parallel)}", parallel)


def _mode(parallel):
    return "parallel" if parallel else "serial"
