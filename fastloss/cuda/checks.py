"""The kernels that decide on the device what a loss kernel needs of the data, queued
before it on the same stream so that the host waits for nothing in between: the check of
integer labels (with the mean's denominator of a sparse loss) and hinge's 0/1 rule.

Each leaves its decision in a small device array that the loss kernel reads first:
the label check's ``gate`` (:func:`.rows.rows_kernel`), the rule's count
(:func:`.elementwise.elementwise_kernel`).
"""

import math

import numpy as np
from numba import cuda, int64, uint64

from .jit import compile_device, compile_kernel
from .reductions import arrived_last, block_merge, block_sum, grid_finish


@cuda.jit(device=True)
def min_max(lo1, hi1, lo2, hi2):
    """Two (smallest, largest) pairs merged."""
    return min(lo1, lo2), max(hi1, hi2)


#: What a label check's ``gate`` carries for a "mean" (``mean`` of
#: :func:`label_check_kernel`): nothing (the call's factors stand), or the reciprocal of
#: the number of counted rows, or of the sum of their class weights.
MEAN_AS_GIVEN, MEAN_OVER_COUNTED, MEAN_OVER_CLASS_WEIGHTS = 0, 1, 2


def label_check_kernel(threads):
    """The device check of integer ``labels`` (contract section 3), and what the loss kernel
    needs of them, with no read-back in between.

    Each block leaves, in column ``b`` of ``stats`` (int64, one column more than
    blocks), the smallest and the largest label that is not ``ignore`` and the number of
    such labels, and in ``weights[b]`` the sum of ``class_weight[label]`` over those in
    [0, C) (empty ``class_weight``: not summed). The last block to finish
    (:func:`~.reductions.arrived_last`) merges the columns in index order into the last
    one and writes ``gate``, which the loss kernel reads first (:func:`.rows.rows_kernel`):
    ``gate[0]`` is 1 when a counted label is outside [0, C) (the loss kernel then writes
    nothing, and the call raises the CPU's error from the merged extremes), else 0;
    ``gate[1]`` and ``gate[2]`` multiply the loss kernel's gradient scale and loss
    factor: 1/n for a mean over n counted rows or class weights (``mean``), 0 and NaN
    when n is 0 (every row ignored: gradient 0, mean NaN), else 1 and 1. A label
    outside [0, C) is never used as an index."""
    reduce = block_sum(threads)
    extremes_of_block = block_merge(threads, min_max, "block_label_extremes", int64)

    def of_block(lo, hi, count, wsum, weighted, stats, column):
        """The block's (smallest, largest, count, weight sum) from its threads', stored
        in ``stats[:, column]`` (the sum is returned, not stored)."""
        lo, hi = extremes_of_block(lo, hi)
        count = reduce(count)
        if weighted:
            wsum = reduce(wsum)
        if cuda.threadIdx.x == 0:
            stats[0, column] = lo
            stats[1, column] = hi
            stats[2, column] = int64(count)
        return lo, hi, count, wsum

    of_block = compile_device(of_block, "label_stats_of_block")
    no_lo, no_hi = int64(9223372036854775807), int64(-9223372036854775807 - 1)

    def kernel(labels, ignore, has_ignore, n_classes, class_weight, mean, stats, weights, counter, gate):
        t = cuda.threadIdx.x
        b = cuda.blockIdx.x
        lo, hi, count, wsum = no_lo, no_hi, 0.0, 0.0
        weighted = class_weight.shape[0] != 0
        i = cuda.grid(1)
        while i < labels.shape[0]:
            label = int64(labels[uint64(i)])
            if not (has_ignore and label == ignore):
                lo = min(lo, label)
                hi = max(hi, label)
                count += 1.0
                if weighted and 0 <= label < n_classes:
                    wsum += class_weight[label]
            i += cuda.gridsize(1)
        wsum = of_block(lo, hi, count, wsum, weighted, stats, b)[3]
        if weighted and t == 0:
            weights[b] = wsum
        if not arrived_last(counter):
            return
        blocks = cuda.gridDim.x
        lo, hi, count, wsum = no_lo, no_hi, 0.0, 0.0
        k = t
        while k < blocks:
            lo = min(lo, stats[0, k])
            hi = max(hi, stats[1, k])
            count += np.float64(stats[2, k])
            if weighted:
                wsum += weights[k]
            k += threads
        lo, hi, count, wsum = of_block(lo, hi, count, wsum, weighted, stats, blocks)
        if t == 0:
            gate[0] = 1.0 if count != 0.0 and (lo < 0 or hi >= n_classes) else 0.0
            n = wsum if mean == MEAN_OVER_CLASS_WEIGHTS else count
            if mean == MEAN_AS_GIVEN:
                gate[1], gate[2] = 1.0, 1.0
            elif n != 0.0:
                gate[1], gate[2] = 1.0 / n, 1.0 / n
            else:
                gate[1], gate[2] = 0.0, math.nan

    return compile_kernel(kernel, "label_check", threads)


def zero_one_rule_kernel(threads):
    """Keras's hinge rule, decided on the device: ``others[0]`` = the number of targets
    of ``t`` that are not 0 or 1 (NaN left out), summed by the last block to finish
    (:func:`~.reductions.grid_finish`; ``nothing``: an empty array). The loss kernel
    queued behind it maps the targets to -1/1 when it is 0 (:func:`.elementwise.elementwise_kernel`)."""
    reduce = block_sum(threads)
    finish = grid_finish(threads)

    def kernel(t, partials, counter, others, nothing):
        count = 0.0
        i = cuda.grid(1)
        while i < t.shape[0]:
            v = np.float64(t[uint64(i)])
            if not (v == 0.0 or v == 1.0 or math.isnan(v)):
                count += 1.0
            i += cuda.gridsize(1)
        count = reduce(count)
        if cuda.threadIdx.x == 0:
            partials[cuda.blockIdx.x] = count
        finish(partials, counter, 1.0, others, nothing)

    return compile_kernel(kernel, "zero_one_rule", threads)
