"""The online softmax: the maximum and sum of exponentials of a row, shared by every
softmax loss (:mod:`fastloss.losses.cross_entropy`, :mod:`~fastloss.losses.divergences`,
:mod:`~fastloss.losses.focal`).

Every softmax is taken with the row maximum ``m`` out: ``log_softmax(z)_j = (z_j - m) -
log(sum_k exp(z_k - m))``, so logits of any magnitude are safe and ``-inf`` logits (a
masked vocabulary) have probability 0. A row whose logits are all ``-inf`` has no
softmax: d (and so the loss and gradient) is NaN.

m and ``d = sum_k exp(z_k - m)`` come from an online log-sum-exp (:func:`softmax_blocks`):
a wide row is read from memory once, in blocks that stay in the L1 cache, each with its
own maximum; the losses that keep exp(z_j - m_b) in the gradient row rescale it by
exp(m_b - m) (:func:`block_scale`) in their one write pass. Two states merge with
:func:`merge_max_sum_exp` (the CUDA row kernels merge their threads' states with it too).
A tile of narrow rows (the ``_rows`` forms) is transposed, and its maxima taken, by
:func:`tile_transposed_max`, and its results written back by :func:`tile_untranspose`.
"""

import math

from .declare import Array, Index, Lanes, Scratch
from .elementary import exp_difference_single, exp_nonpositive, is_single, single
from .portable import portable
from .primitives import wide
from .reductions import LANES, lane_max, lane_total, lanes

#: Elements per block of the online log-sum-exp (:func:`softmax_blocks`): a block of
#: float64 logits and its exponentials (32 KB) stay in the L1 cache between the block's
#: two reads, so a row is read from memory once however wide it is.
BLOCK = 2048


@portable
def block_size(z: Array):
    """Elements per block of row ``z``: BLOCK, or a larger multiple of LANES where the row
    has more than LANES blocks of BLOCK (a lane array keeps each block's maximum)."""
    n = z.shape[0]
    size = (n + LANES * LANES - 1) // (LANES * LANES) * LANES
    return size if size > BLOCK else BLOCK


@portable
def block_range(blk: Index, size: Index, n: Index):
    """(first, last + 1) elements of block ``blk`` of ``size`` elements of a row of ``n``."""
    lo = blk * size
    return lo, (lo + size if lo + size < n else n)


@portable(inline=False)
def block_max(z: Array, lo: Index, hi: Index):
    """max_j z_j over lo <= j < hi, ``-inf`` for no entries or all ``-inf`` (NaN entries are
    skipped here; they reach the sum of exponentials and make the row NaN there). In SIMD
    lanes (:mod:`fastloss.math.reductions`)."""
    n = hi - lo
    whole = n - n % LANES
    m = -math.inf
    if whole > 0:
        acc = lanes(-math.inf)
        for g in range(whole // LANES):
            for lane in range(LANES):
                v = wide(z[lo + g * LANES + lane])
                acc[lane] = v if v > acc[lane] else acc[lane]
        m = lane_max(acc)
    for j in range(lo + whole, hi):
        v = wide(z[j])
        m = v if v > m else m
    return m


@portable(inline=False)
def block_sum_exp(z: Array, lo: Index, hi: Index, m, e: Array, store):
    """sum_j exp(z_j - m) over lo <= j < hi, storing each exp(z_j - m) in ``e[j]`` where
    ``store`` is nonzero and ``e`` is not empty (reading z_j first: ``e`` may be ``z``).
    Summed in SIMD lanes (:mod:`fastloss.math.reductions`) in float64; float32 logits take
    their exponentials in float32 (:func:`softmax_exp`)."""
    keep = store != 0.0 and e.shape[0] != 0
    ms = single(m)
    n = hi - lo
    whole = n - n % LANES
    d = 0.0
    if whole > 0:
        acc = lanes(0.0)
        for g in range(whole // LANES):
            for lane in range(LANES):
                j = lo + g * LANES + lane
                t = softmax_exp(z, z[j], m, ms)
                acc[lane] += t
                if keep:
                    e[j] = t
        d = lane_total(acc)
    rest = lanes(None)  # the rest's exps first: a loop without a running sum vectorises
    for j in range(lo + whole, hi):
        rest[j - lo - whole] = softmax_exp(z, z[j], m, ms)
    for j in range(lo + whole, hi):
        d += rest[j - lo - whole]
        if keep:
            e[j] = rest[j - lo - whole]
    return d


@portable
def softmax_exp(z: Array, zj, m, ms):
    """exp(z_j - m) for a logit z_j of row ``z`` and m >= z_j (``ms``: m as a float32):
    in float32 (:func:`exp_difference_single`, twice the SIMD lanes) where z holds
    float32, as PyTorch and XLA do for float32 logits; else in float64."""
    return exp_difference_single(single(zj), ms) if is_single(z) else exp_nonpositive(wide(zj) - m)


@portable(inline=False)
def block_gaps(z: Array, w: Array, a, b, lo: Index, hi: Index, m):
    """(sum_j t_j (m - z_j), sum_j t_j) over lo <= j < hi, t_j = w_j a + b (w_j = 1 for an
    empty ``w``), with m the block's maximum: the cross-entropy of targets t against the
    block's own log-softmax is s + T log d. Terms with t_j = 0 are 0, and so is the gap
    of a logit equal to the maximum (also where both are infinite)."""
    weighted = w.shape[0] != 0
    s = 0.0
    total = 0.0
    for j in range(lo, hi):
        tj = (wide(w[j]) if weighted else 1.0) * a + b
        zj = wide(z[j])
        total += tj
        if tj != 0.0:
            s += tj * ((m - zj) if zj != m else 0.0)
    return s, total


@portable
def gap_shift(top, m, total):
    """(top - m) T: what moving a block's reference maximum from m up to ``top`` adds to
    its sum_j t_j (m - z_j); 0 where T = 0 or nothing moves (no ``-inf - (-inf)``)."""
    return (top - m) * total if total != 0.0 and top != m else 0.0


@portable
def merge_gaps(m, s, total, mb, sb, tb):
    """Merge a block's (sb, tb) of :func:`block_gaps`, taken at its maximum ``mb``, into
    the running (s, total) taken at the running maximum ``m``: both moved to the larger
    maximum, so every term stays a sum of nonnegative gaps (no cancellation)."""
    top = mb if mb > m else m
    return s + gap_shift(top, m, total) + sb + gap_shift(top, mb, tb), total + tb


@portable(inline=False)
def softmax_blocks(z: Array, e: Array, store, w: Array, a, b, gaps, maxima_lanes: Lanes):
    """The online log-sum-exp of row ``z``: (m, d, s, T) with m = max_j z_j and
    d = sum_j exp(z_j - m), in one pass over the row from memory.

    The row is cut into blocks (:func:`block_size`); a block is read twice while it is
    in the L1 cache, once for its maximum m_b and once for exp(z_j - m_b), and its
    (m_b, d_b) merged into the running state (:func:`merge_max_sum_exp`). Where ``store``
    is nonzero, e_j = exp(z_j - m_b) is written to ``e`` (which may be ``z``) and m_b to
    ``maxima_lanes[b]``: softmax_j = e_j exp(m_b - m) / d (:func:`block_scale`). Where
    ``gaps`` is nonzero, s = sum_j t_j (m - z_j) and T = sum_j t_j for the targets
    t_j = w_j a + b of :func:`block_gaps` (taken before the block is overwritten), else
    both are 0. A row of one block gives the bits of the plain two-pass form. A row with
    no finite logit has no softmax: d is NaN (NaN, too, where any logit is NaN).
    """
    n = z.shape[0]
    size = block_size(z)
    m = -math.inf
    d = 0.0
    s = 0.0
    total = 0.0
    for blk in range((n + size - 1) // size):
        lo, hi = block_range(blk, size, n)
        mb = block_max(z, lo, hi)
        if gaps != 0.0:
            sb, tb = block_gaps(z, w, a, b, lo, hi, mb)
            s, total = merge_gaps(m, s, total, mb, sb, tb)
        # A block of -inf (masked) logits adds exps of 0; one with NaN, NaN.
        db = block_sum_exp(z, lo, hi, mb if mb != -math.inf else 0.0, e, store)
        maxima_lanes[blk] = mb
        m, d = merge_max_sum_exp(m, d, mb, db)
    return m, (d if m != -math.inf else math.nan), s, total


@portable
def block_scale(mb, m, inv_d):
    """exp(m_b - m) / d: what turns a block's stored exp(z_j - m_b) into softmax_j (1 / d
    exactly for the block that holds the row's maximum)."""
    return exp_nonpositive(mb - m) * inv_d


@portable
def max_sum_exp(z: Array, row: Array):
    """(m, d): the maximum of row ``z`` and sum_j exp(z_j - m), online
    (:func:`softmax_blocks`). Nothing is stored: ``row`` is any writable row of z's dtype
    (a gradient row, even of length 0), only to type the unused output."""
    maxima = lanes(None)
    m, d, s, total = softmax_blocks(z, row, 0.0, z, 0.0, 0.0, 0.0, maxima)
    return m, d


@portable
def merge_max_sum_exp(m1, d1, m2, d2):
    """Merge two online log-sum-exp states (m, d = sum exp(z - m)) into one. A state of no
    finite values has m = ``-inf`` and d = 0 (or NaN, where NaN values were seen): its d
    is added as it is, so NaN spreads, and ``-inf - (-inf)`` is never formed."""
    if m2 > m1:
        if m1 == -math.inf:
            return m2, d2 + d1
        return m2, d2 + d1 * exp_nonpositive(m1 - m2)
    if m2 == -math.inf:
        return m1, d1 + d2
    return m1, d1 + d2 * exp_nonpositive(m2 - m1)


@portable
def tile_transposed_max(z: Array, rows: Index, n: Index, t_scratch: Scratch, m_scratch: Scratch):
    """Transpose a narrow tile ``z`` of ``rows`` rows of ``n`` logits into ``t_scratch``
    (``t[j * rows + r]`` is row r's class j, in float64) and take each row's maximum into
    ``m_scratch``, in class order, as :func:`block_max` takes it for a row of fewer than
    LANES classes (``-inf`` for a row of ``-inf``; NaN entries are skipped)."""
    for r in range(rows):
        for j in range(n):
            t_scratch[j * rows + r] = wide(z[r * n + j])
    for r in range(rows):
        m_scratch[r] = -math.inf
    for j in range(n):
        for r in range(rows):
            v = t_scratch[j * rows + r]
            m_scratch[r] = v if v > m_scratch[r] else m_scratch[r]


@portable
def tile_untranspose(t_scratch: Scratch, rows: Index, n: Index, out: Array):
    """Write a tile transposed as :func:`tile_transposed_max` lays it out (``t[j * rows +
    r]`` is row r's class j) back into ``out`` in row order (``out[r * n + j]``), rounded
    to out's dtype: a ``_rows`` form's gradient or hessian rows."""
    for r in range(rows):
        for j in range(n):
            out[r * n + j] = t_scratch[j * rows + r]
