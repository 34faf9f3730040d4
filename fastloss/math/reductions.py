"""Sums and maxima in SIMD lanes, with one fixed order.

A plain ``for`` loop that adds into one accumulator is a chain the compiler may not
reorder (that would change the rounding), so it runs one element at a time. Here element
j goes to lane ``j mod LANES`` of a small local array, for every whole group of LANES;
the lanes are independent, so a loop over them vectorises, and they are combined by a
fixed pairwise tree (:func:`lane_total`); the caller adds the elements past the last whole
group after the tree, in order. The order depends only on the length, never on the
machine, the backend or whether an output aliases an input.

The lane array is a local array, which Python's arithmetic cannot spell: ``lanes``,
``lane_total`` and ``lane_max`` are natives, a Python reference here and Numba and C
implementations in the backends; so is ``scratch``, a tile-sized local buffer for kernels
that work on several narrow rows at once. The CPU backends alone use them: the GPU's row
kernels (:mod:`fastloss.cuda.rows`) reduce across the threads of a block instead.
"""

import numpy as np

from .._config import NARROW_TILE
from .declare import Index, Lanes
from .portable import native, portable

#: Lanes of a sum: 8 AVX-512 vectors of float64. Fewer would suit narrow rows better, but
#: LLVM fully unrolls a lane loop of 8 before its loop vectoriser sees it, and Numba runs no
#: SLP vectoriser to pick the unrolled code up: 64 is what vectorises on both backends.
LANES = 64


@native
def lanes(value):
    """A fresh local array of LANES float64, every one ``value`` (uninitialised scratch
    for ``None``)."""
    if value is None:
        return np.empty(LANES)
    return np.full(LANES, value, dtype=np.float64)


@native
def lane_total(acc):
    """The lanes' sum, by the fixed tree acc[l] += acc[l + w] for w = LANES/2, ..., 1."""
    width = LANES // 2
    while width > 0:
        for lane in range(width):
            acc[lane] += acc[lane + width]
        width //= 2
    return acc[0]


@native
def lane_max(acc):
    """The lanes' maximum, by the same tree as :func:`lane_total` (lanes hold no NaN)."""
    width = LANES // 2
    while width > 0:
        for lane in range(width):
            other = acc[lane + width]
            acc[lane] = other if other > acc[lane] else acc[lane]
        width //= 2
    return acc[0]


@native
def scratch():
    """A fresh local array of NARROW_TILE (:mod:`fastloss._config`) float64, uninitialised."""
    return np.empty(NARROW_TILE)


@portable
def lane_group(group: Index, n: Index):
    """(first element, number of elements) of the ``group``-th group of LANES elements of
    a row of ``n``: LANES, or fewer in the row's last group."""
    g = group * LANES
    return g, (n - g if n - g < LANES else LANES)


@portable
def lane_add(acc_lanes: Lanes, terms_lanes: Lanes, count, start):
    """Add the group of ``count`` terms of a row that starts at element ``start`` (element
    j in ``terms[j mod LANES]``) into the lanes ``acc`` (uninitialised before the first
    group) when the group is whole; a partial group, a row's last, stays in ``terms`` for
    :func:`lane_finish`. A row whose terms are computed group by group into a lane array
    and summed here has no running sum in the loop that computes them, so that loop
    vectorises, narrow rows included; the order is the one documented above."""
    if count == LANES:
        if start == 0:
            for lane in range(LANES):
                acc_lanes[lane] = terms_lanes[lane]
        else:
            for lane in range(LANES):
                acc_lanes[lane] += terms_lanes[lane]


@portable
def lane_finish(acc_lanes: Lanes, terms_lanes: Lanes, n: Index):
    """The sum of a row of ``n`` terms passed group by group to :func:`lane_add`: the
    lanes' tree (for a row of at least one whole group), then the last partial group's
    terms in order."""
    total = lane_total(acc_lanes) if n >= LANES else 0.0
    for lane in range(n % LANES):
        total += terms_lanes[lane]
    return total
