"""Which kernel a call runs, and how it is launched: the launch settings, the table of
row kernels, and the cache of compiled kernels.

The settings here (``THREADS``, ``MAX_BLOCKS``, ``WARP_ROW_WIDTH``, ``ROW_LANE_ELEMENTS``,
``ROW_THREADS``, ``MAX_ROW_BLOCKS``), with :data:`.rows.LOADS_IN_FLIGHT`,
:data:`.rows_cross_entropy.FLOAT32_CE_GRADIENT` and :data:`.jit.RESIDENT_THREADS`, are
what ``benchmarks/scripts/gpu_variants.py`` changes between the variants it compares on a
GPU: every kernel is built for them when first asked for, and cached under them.
"""

import numpy as np
from numba.cuda import config as cuda_config

from ..losses import cross_entropy, divergences, embedding, focal, generative, hinge
from ..math import online_softmax
from . import jit, rowmath, rows, rows_cross_entropy, rows_hinge, rows_stats, rows_triplet
from .elementwise import elementwise_kernel
from .jit import compile_math
from .reductions import WARP

#: Threads per block (a power of two) and the most blocks an element-wise kernel uses.
#: The simulator runs a Python thread per GPU thread: it gets small blocks.
THREADS = 256
MAX_BLOCKS = 1024
if cuda_config.ENABLE_CUDASIM:
    THREADS, MAX_BLOCKS = 8, 4

#: Rows of at most this many elements take a warp each, or part of one (several rows
#: per block of THREADS); wider rows a block each, of at most ROW_THREADS threads.
WARP_ROW_WIDTH = 1024
#: A narrow row takes the fewest lanes (a power of two, at most a warp) that leave each
#: at most this many of its elements: 1 gives rows of up to 32 elements one lane per
#: element, as PyTorch's softmax does, and wider rows a whole warp; 0, a whole warp
#: for every narrow row.
ROW_LANE_ELEMENTS = 1
ROW_THREADS = 512
#: The most blocks a row kernel launches (each loops over its rows).
MAX_ROW_BLOCKS = 4096
if cuda_config.ENABLE_CUDASIM:
    WARP_ROW_WIDTH, ROW_THREADS, MAX_ROW_BLOCKS = 4 * WARP, 8, 4


def grid(n):
    """Blocks of THREADS for a grid-stride loop over ``n`` elements: one at least, at most
    MAX_BLOCKS."""
    return max(1, min(-(-n // THREADS), MAX_BLOCKS))


def row_layout(width):
    """(threads per block, threads per row) for rows of ``width`` elements: a warp or a
    segment of one per row for narrow rows (ROW_LANE_ELEMENTS), else a block per row of
    the first power of two of threads from 2 warps on with at most 8 elements each, or
    ROW_THREADS."""
    if width <= WARP_ROW_WIDTH:
        lanes = WARP
        while ROW_LANE_ELEMENTS and lanes > 1 and (lanes // 2) * ROW_LANE_ELEMENTS >= width:
            lanes //= 2
        return THREADS, lanes
    t = 2 * WARP
    while t < ROW_THREADS and 8 * t < width:
        t *= 2
    return t, t


def row_grid(count, layout):
    """Blocks for ``count`` rows (at least one) in ``layout`` (:func:`row_layout`): one row
    per group, at most MAX_ROW_BLOCKS (each group loops over its rows)."""
    threads, group = layout
    return min(-(-count // (threads // group)), MAX_ROW_BLOCKS)


_kernels = {}


def _compiled_with():
    """The module settings that a compiled kernel depends on besides its own key (what
    ``benchmarks/scripts/gpu_variants.py`` changes between variants): the element-wise
    block size, the row passes' loads in flight, the float32 cross-entropy gradient and
    the register target."""
    return THREADS, rows.LOADS_IN_FLIGHT, rows_cross_entropy.FLOAT32_CE_GRADIENT, jit.RESIDENT_THREADS


def kernel(key, build):
    """The kernel ``build(threads)`` for ``key``, compiled once per :func:`_compiled_with`."""
    full = (key, *_compiled_with())
    k = _kernels.get(full)
    if k is None:
        k = _kernels[full] = build(THREADS)
    return k


def loss_kernel(math_fn, bf16=False, rule_on_device=False):
    """The grid-stride kernel of an element-wise loss's math (``bf16``: on bfloat16 bits;
    ``rule_on_device``: its parameter decided by a kernel, hinge's 0/1 rule)."""

    def build(threads):
        return elementwise_kernel(compile_math(math_fn), math_fn.__name__, threads, bf16, rule_on_device)

    return kernel((math_fn, "elementwise", bf16, rule_on_device), build)


#: The class-axis losses and their row kernels: the math function, the kernel
#: factory, the portable formulas it is built from (after ``merge_max_sum_exp``), and
#: the factory's other arguments.
ROW_KERNELS = {
    cross_entropy.sparse_softmax_cross_entropy: (
        rows_cross_entropy.sparse_cross_entropy_rows_kernel,
        (cross_entropy.sparse_ce_row_loss, cross_entropy.sparse_ce_grad),
        ()),
    cross_entropy.softmax_cross_entropy: (
        rows_cross_entropy.soft_target_rows_kernel,
        (cross_entropy.ce_target, cross_entropy.no_entropy, cross_entropy.softmax_ce_grad),
        ("softmax_cross_entropy",)),
    divergences.softmax_kl_divergence: (
        rows_cross_entropy.soft_target_rows_kernel,
        (divergences.kl_target, divergences.kl_entropy, cross_entropy.softmax_ce_grad),
        ("softmax_kl_divergence",)),
    hinge.categorical_hinge: (
        rows_hinge.categorical_hinge_rows_kernel,
        (hinge.hinge_slot, hinge.max_count_step, hinge.merge_max_count, hinge.hinge_row,
         hinge.categorical_hinge_grad), ()),
    divergences.kl_divergence: (
        rows_stats.stats_rows_kernel, (rowmath.no_stat, rowmath.kl_div_term, rowmath.kl_div_grad, rowmath.first_sum),
        ("none", False, "kl_divergence")),
    cross_entropy.categorical_cross_entropy: (
        rows_stats.stats_rows_kernel,
        (rowmath.cce_stat, rowmath.cce_row_term, rowmath.cce_row_grad, rowmath.first_sum),
        ("sum", False, "categorical_cross_entropy")),
    generative.vae_kl_divergence: (
        rows_stats.stats_rows_kernel,
        (rowmath.no_stat, rowmath.vae_row_term, rowmath.vae_row_grad, rowmath.first_sum),
        ("none", False, "vae_kl_divergence")),
    focal.softmax_focal_loss: (
        rows_stats.stats_rows_kernel,
        (rowmath.no_stat, rowmath.focal_row_term, rowmath.focal_row_grad, rowmath.focal_row_loss),
        ("softmax", False, "softmax_focal_loss")),
    focal.sparse_softmax_focal_loss: (
        rows_stats.stats_rows_kernel,
        (rowmath.no_stat, rowmath.sparse_focal_row_term, rowmath.sparse_focal_row_grad, rowmath.sparse_focal_row_loss),
        ("softmax", True, "sparse_softmax_focal_loss")),
    # Jensen-Shannon's gradient takes two float64 logarithms and exponentials an element:
    # compute, not loads, bounds its pass, and four elements' loads in flight would cost
    # it 26 to 40 registers a thread (sm_90: 122 against 96 for warp rows, 128 and 24
    # bytes spilled against 88 in bfloat16 blocks of 512): one at a time.
    divergences.js_divergence: (
        rows_stats.stats_rows_kernel,
        (rowmath.no_stat, rowmath.js_row_term, rowmath.js_row_grad, rowmath.js_row_loss),
        ("two_softmax", False, "js_divergence", 1)),
    embedding.triplet_margin_loss: (
        rows_triplet.triplet_rows_kernel,
        (embedding.max_nan_step, embedding.merge_max_nan, embedding.norm_power, embedding.norm_finish,
         embedding.triplet_row, embedding.triplet_shift, embedding.triplet_element_grads), ()),
}


def row_kernel(math_fn, layout, dtype):
    """The row kernel of ``math_fn`` for ``layout`` = (threads per block, threads per
    row) (:func:`row_layout`) and logits of ``dtype`` (int16: bfloat16 bits)."""
    dtype = np.dtype(dtype)
    key = (math_fn, "rows", layout, dtype.itemsize <= 4, dtype == np.int16, *_compiled_with())
    k = _kernels.get(key)
    if k is None:
        factory, formulas, named = ROW_KERNELS[math_fn]
        k = _kernels[key] = factory(
            compile_math(online_softmax.merge_max_sum_exp), *(compile_math(f) for f in formulas), *layout,
            np.float32 if dtype.itemsize <= 4 else np.float64, dtype == np.int16, *named,
        )
    return k
