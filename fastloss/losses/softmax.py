"""Class-axis losses of one row: ``f(x, y, v, c, gx, gy, gv, h, gs, p) -> row loss``.

See :mod:`fastloss.losses` for the calling convention. Every softmax is taken with the
row maximum ``m`` out: ``log_softmax(z)_j = (z_j - m) - log(sum_k exp(z_k - m))``, so logits
of any magnitude are safe and ``-inf`` logits (a masked vocabulary) have probability 0.
A row whose logits are all ``-inf`` has no softmax: its loss and gradient are NaN.

m and ``sum_k exp(z_k - m)`` come from an online log-sum-exp (:func:`softmax_blocks`):
a wide row is read from memory once, in blocks that stay in the L1 cache, each with its
own maximum; the losses that keep exp(z_j - m_b) in the gradient row rescale it by
exp(m_b - m) in their one write pass.

Functions whose docstring says *in place* read every logit they need before they write
the gradient row, so ``gx`` may be ``x`` itself (``out=logits``).
"""

import math

from ..math.declare import Array, Index, Indices, Lanes, Scratch
from ..math.elementary import (
    exp,
    exp_difference_single,
    exp_nonpositive,
    expm1,
    is_single,
    log,
    log1p,
    pow_nonneg,
    single,
)
from ..math.portable import portable
from ..math.primitives import clamp_min, clamp_min_grad, clip, clip_grad, log_add_exp, wide, xdivy, xlogy
from ..math.reductions import LANES, lane_add, lane_finish, lane_max, lane_total, lanes, scratch

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
        lo = blk * size
        hi = lo + size if lo + size < n else n
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


@portable.row
def sparse_softmax_cross_entropy(z, label: Index, v, cw, gz, gy, gv, h, gs, p):
    """PyTorch ``cross_entropy`` with class indices; in place.

    ``p = (label_smoothing, ignore_index, has_ignore_index)``, ``cw`` the class weights
    (empty for none). With lse = m + log d and W = sum_j cw_j::

        loss = cw_y (1 - ls) (lse - z_y) + (ls / C) sum_j cw_j (lse - z_j)
        grad_j = gs (A softmax_j - cw_y (1 - ls) [j = y] - (ls / C) cw_j)
        hess_j = gs A softmax_j (1 - softmax_j),   A = cw_y (1 - ls) + (ls / C) W

    each ``lse - z_j`` evaluated as ``(m - z_j) + log d``. An ignored row has loss and
    gradient 0.
    """
    ls = p[0]
    n = z.shape[0]
    want_g = gz.shape[0] != 0
    want_h = h.shape[0] != 0
    if p[2] != 0.0 and label == p[1]:
        for j in range(gz.shape[0]):
            gz[j] = 0.0
        for j in range(h.shape[0]):
            h[j] = 0.0
        return 0.0
    weighted = cw.shape[0] != 0
    w_y = wide(cw[label]) if weighted else 1.0
    z_y = wide(z[label])  # read before the row (maybe z itself) is overwritten
    k = ls / n
    s = 0.0
    wsum = 0.0
    if ls != 0.0:  # the smoothing sums read every logit before the row (maybe z) is written
        m = block_max(z, 0, n)
        for j in range(n):
            wj = wide(cw[j]) if weighted else 1.0
            zj = wide(z[j])
            wsum += wj
            if wj != 0.0:  # block_gaps' terms
                s += wj * ((m - zj) if zj != m else 0.0)
    # exp(z_j - m_b) into the gradient row (or the hessian's, when only it is wanted).
    maxima = lanes(None)
    if want_g:
        m, d, s_, t_ = softmax_blocks(z, gz, 1.0, z, 0.0, 0.0, 0.0, maxima)
    else:
        m, d, s_, t_ = softmax_blocks(z, h, 1.0 if want_h else 0.0, z, 0.0, 0.0, 0.0, maxima)
    log_d = log(d)
    loss = sparse_ce_row_loss(w_y, ls, k, m, z_y, log_d, s, wsum)
    if not (want_g or want_h):
        return loss
    a = w_y * (1.0 - ls) + k * wsum
    inv_d = 1.0 / d
    size = block_size(z)
    for blk in range((n + size - 1) // size):
        lo = blk * size
        hi = lo + size if lo + size < n else n
        scale = block_scale(maxima[blk], m, inv_d)
        if not want_g:
            for j in range(lo, hi):
                pj = wide(h[j]) * scale
                h[j] = gs * a * pj * (1.0 - pj)
        else:
            for j in range(lo, hi):
                pj = wide(gz[j]) * scale
                if want_h:
                    h[j] = gs * a * pj * (1.0 - pj)
                gz[j] = sparse_ce_grad(pj, j == label, a, k * (wide(cw[j]) if weighted else 1.0), w_y * (1.0 - ls), gs)
    return loss


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


@portable.rows(inline=False)
def sparse_softmax_cross_entropy_rows(z, labels: Indices, cw, gz, h, gs, p, loss):
    """:func:`sparse_softmax_cross_entropy` of a tile of narrow rows (fewer classes than
    LANES), row by row the same arithmetic in the same order; in place.

    ``z`` (and ``gz``, ``h`` where wanted) hold the tile's rows one after another;
    ``labels``, ``gs`` (each row's gradient scale) and ``loss`` (written) have one entry
    per row; the tile fits the scratch buffers
    (:func:`~fastloss.math.reductions.scratch`). A 10-class row taken alone is a chain of
    short dependent loops (max, exponentials, sum, log, gradient) that SIMD cannot fill.
    Here the tile is transposed into ``t`` (``t[j * rows + r]`` is row r's class j), so
    that the per-row maxima and sums become element-wise operations on whole vectors of
    rows (each row still summed in class order), and the exponentials, logarithms and
    gradients are loops over the tile; the gradients are transposed back at the end.
    """
    rows = labels.shape[0]
    n = z.shape[0] // rows
    ls = p[0]
    k = ls / n
    weighted = cw.shape[0] != 0
    t = scratch()  # the tile, transposed: z, then z - m, then exp(z - m), then the gradient
    th = scratch()  # the hessian, transposed
    m = scratch()  # per row: the maximum
    d = scratch()  # per row: sum_j exp(z_j - m), then 1 / d
    log_d = scratch()
    a = scratch()  # per row: the softmax's factor in the gradient (0 for an ignored row)
    lw = scratch()  # per row: the label's target weight cw_y (1 - ls)
    ignored = scratch()  # per row: 1 for a row of ignore_index, else 0
    tile_transposed_max(z, rows, n, t, m)
    for r in range(rows):
        d[r] = 0.0
    for j in range(n):
        for r in range(rows):
            e = softmax_exp(z, t[j * rows + r], m[r], single(m[r]))
            t[j * rows + r] = e
            d[r] += e
    for r in range(rows):
        log_d[r] = log(d[r])
    for r in range(rows):
        d[r] = 1.0 / d[r]
    wsum = 0.0
    if ls != 0.0:
        for j in range(n):
            wsum += wide(cw[j]) if weighted else 1.0
    # Every logit the losses need is read before any gradient row (maybe z's) is written.
    for r in range(rows):
        label = labels[r]
        skip = p[2] != 0.0 and label == p[1]
        ignored[r] = 1.0 if skip else 0.0
        w_y = 0.0 if skip else (wide(cw[label]) if weighted else 1.0)
        lw[r] = w_y * (1.0 - ls)
        a[r] = lw[r] + k * wsum
        if skip:
            loss[r] = 0.0
        else:
            s = 0.0
            if ls != 0.0:  # block_gaps' terms, in its order
                for j in range(n):
                    wj = wide(cw[j]) if weighted else 1.0
                    zj = wide(z[r * n + j])
                    if wj != 0.0:
                        s += wj * ((m[r] - zj) if zj != m[r] else 0.0)
            loss[r] = sparse_ce_row_loss(w_y, ls, k, m[r], wide(z[r * n + label]), log_d[r], s, wsum)
    if h.shape[0] != 0:
        for j in range(n):
            for r in range(rows):
                pj = t[j * rows + r] * d[r]
                th[j * rows + r] = gs[r] * a[r] * pj * (1.0 - pj)
        for r in range(rows):
            for j in range(n):
                h[r * n + j] = 0.0 if ignored[r] != 0.0 else th[j * rows + r]
    if gz.shape[0] != 0:
        for j in range(n):
            smooth_j = k * (wide(cw[j]) if weighted else 1.0)
            for r in range(rows):
                t[j * rows + r] = sparse_ce_grad(t[j * rows + r] * d[r], labels[r] == j, a[r], smooth_j, lw[r], gs[r])
        for r in range(rows):
            for j in range(n):
                gz[r * n + j] = 0.0 if ignored[r] != 0.0 else t[j * rows + r]


@portable
def sparse_ce_row_loss(w_y, ls, k, m, z_y, log_d, s, wsum):
    """A sparse cross-entropy row's loss from its reductions: the row maximum ``m``, ``log
    d`` (d = sum_j exp(z_j - m)), the label's logit ``z_y`` and weight ``w_y``, and for the
    smoothing term (k = ls / C) s = sum_j cw_j (m - z_j) and wsum = sum_j cw_j."""
    return w_y * (1.0 - ls) * ((m - z_y) + log_d) + k * (s + wsum * log_d)


@portable
def sparse_ce_grad(pj, is_label, a, smooth_j, label_weight, gs):
    """d loss / d z_j = gs (a p_j - target_j): target_j = k cw_j, plus cw_y (1 - ls) at the label."""
    target = smooth_j + label_weight if is_label else smooth_j
    return gs * (a * pj - target)


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


@portable.row
def softmax_cross_entropy(z, y, v, c, gz, gy, gv, h, gs, p):
    """-sum_j t_j log_softmax(z)_j for soft or one-hot targets; in place.

    ``p = (label_smoothing,)``; t = y (1 - ls) + ls / C, T = sum_j t_j. PyTorch
    ``cross_entropy`` with probabilities, optax ``softmax_cross_entropy``::

        loss = sum_j t_j (m - z_j) + T log d        (terms with t_j = 0 are 0)
        grad_j = gs (T softmax_j - t_j),  hess_j = gs T softmax_j (1 - softmax_j)
    """
    ls = p[0]
    n = z.shape[0]
    k = ls / n
    want_g = gz.shape[0] != 0
    want_h = h.shape[0] != 0
    # exp(z_j - m_b) into the gradient row (or the hessian's, when only it is wanted).
    maxima = lanes(None)
    if want_g:
        m, d, s, total_t = softmax_blocks(z, gz, 1.0, y, 1.0 - ls, k, 1.0, maxima)
    else:
        m, d, s, total_t = softmax_blocks(z, h, 1.0 if want_h else 0.0, y, 1.0 - ls, k, 1.0, maxima)
    loss = s + total_t * log(d)
    if not (want_g or want_h):
        return loss
    inv_d = 1.0 / d
    size = block_size(z)
    for blk in range((n + size - 1) // size):
        lo = blk * size
        hi = lo + size if lo + size < n else n
        scale = block_scale(maxima[blk], m, inv_d)
        for j in range(lo, hi):
            pj = wide(gz[j] if want_g else h[j]) * scale
            if want_h:
                h[j] = gs * total_t * pj * (1.0 - pj)
            if want_g:
                gz[j] = softmax_ce_grad(pj, smoothed_target(wide(y[j]), ls, k), total_t, gs)
    return loss


@portable
def smoothed_target(yj, ls, k):
    """t_j = y_j (1 - ls) + ls / C (k = ls / C): the target with label smoothing."""
    return yj * (1.0 - ls) + k


@portable
def softmax_ce_grad(pj, tj, total_t, gs):
    """d loss / d z_j = gs (T softmax_j - t_j), T = sum_j t_j."""
    return gs * (total_t * pj - tj)


@portable.rows(inline=False)
def softmax_cross_entropy_rows(z, y, c, gz, h, gs, p, loss):
    """:func:`softmax_cross_entropy` of a tile of narrow rows (fewer classes than LANES),
    row by row the same arithmetic in the same order; in place.

    As :func:`sparse_softmax_cross_entropy_rows` does for labels: ``z``, ``y`` (and
    ``gz``, ``h`` where wanted) hold the tile's rows one after another, ``gs`` and ``loss``
    one entry per row. The tile is transposed (``t[j * rows + r]`` is row r's class j), so
    that each row's maximum, gaps sum_j t_j (m - z_j), target total T and sum of
    exponentials, each still taken in class order, are element-wise operations on vectors
    of rows. A row this narrow is one block of :func:`softmax_blocks`, whose merges with
    the empty state are applied per row as it applies them.
    """
    rows = loss.shape[0]
    n = z.shape[0] // rows
    ls = p[0]
    k = ls / n
    t = scratch()  # the tile, transposed: z, then exp(z - m), then the gradient
    tt = scratch()  # the targets t_j = y_j (1 - ls) + ls / C, transposed
    th = scratch()  # the hessian, transposed
    m = scratch()  # per row: the maximum (the block's)
    mu = scratch()  # per row: the reference of the exponentials (0 for a row of -inf)
    d = scratch()  # per row: sum_j exp(z_j - mu)
    gap = scratch()  # per row: sum_j t_j (m - z_j)
    total = scratch()  # per row: T
    scale = scratch()  # per row: what turns exp(z_j - m_b) into softmax_j
    tile_transposed_max(z, rows, n, t, m)
    for r in range(rows):
        for j in range(n):
            tt[j * rows + r] = smoothed_target(wide(y[r * n + j]), ls, k)
    for r in range(rows):
        d[r] = 0.0
        gap[r] = 0.0
        total[r] = 0.0
    for j in range(n):  # block_gaps, before the exponentials overwrite the logits
        for r in range(rows):
            tj = tt[j * rows + r]
            zj = t[j * rows + r]
            total[r] += tj
            gap[r] += tj * ((m[r] - zj) if zj != m[r] else 0.0) if tj != 0.0 else 0.0
    for r in range(rows):
        mu[r] = m[r] if m[r] != -math.inf else 0.0
    for j in range(n):  # block_sum_exp
        for r in range(rows):
            e = softmax_exp(z, t[j * rows + r], mu[r], single(mu[r]))
            t[j * rows + r] = e
            d[r] += e
    for r in range(rows):
        m_row, d_row = merge_max_sum_exp(-math.inf, 0.0, m[r], d[r])
        d_row = d_row if m_row != -math.inf else math.nan
        s_row, total_row = merge_gaps(-math.inf, 0.0, 0.0, m[r], gap[r], total[r])
        loss[r] = s_row + total_row * log(d_row)
        total[r] = total_row
        scale[r] = block_scale(m[r], m_row, 1.0 / d_row)
    if h.shape[0] != 0:
        for j in range(n):
            for r in range(rows):
                pj = t[j * rows + r] * scale[r]
                th[j * rows + r] = gs[r] * total[r] * pj * (1.0 - pj)
        for r in range(rows):
            for j in range(n):
                h[r * n + j] = th[j * rows + r]
    if gz.shape[0] != 0:
        for j in range(n):
            for r in range(rows):
                t[j * rows + r] = softmax_ce_grad(t[j * rows + r] * scale[r], tt[j * rows + r], total[r], gs[r])
        for r in range(rows):
            for j in range(n):
                gz[r * n + j] = t[j * rows + r]


@portable.row
def categorical_cross_entropy(x, y, v, c, gx, gy, gv, h, gs, p):
    """Keras ``categorical_crossentropy(from_logits=False)``: normalise, clip, log.

    ``p = (eps, label_smoothing)``; t = y (1 - ls) + ls / C, s = sum_j x_j,
    q_j = clip(x_j / s, eps, 1 - eps)::

        loss = -sum_j t_j log q_j
        grad_k = gs (g_k - sum_j g_j x_j / s) / s,   g_j = -t_j / q_j [eps <= x_j / s <= 1 - eps]
    """
    eps = p[0]
    ls = p[1]
    n = x.shape[0]
    k = ls / n
    s = 0.0
    for j in range(n):
        s += wide(x[j])
    want_g = gx.shape[0] != 0
    acc_loss = lanes(None)  # (lane_add fills it)
    acc_dot = lanes(None)  # (lane_add fills it)
    terms_loss = lanes(None)
    terms_dot = lanes(None)
    for group in range((n + LANES - 1) // LANES):
        g = group * LANES
        count = n - g if n - g < LANES else LANES
        for lane in range(count):
            lj, grad, r = cce_term(wide(x[g + lane]), wide(y[g + lane]), s, eps, ls, k)
            terms_loss[lane] = lj
            terms_dot[lane] = grad * r
            if want_g:
                gx[g + lane] = grad
        lane_add(acc_loss, terms_loss, count, g)
        lane_add(acc_dot, terms_dot, count, g)
    loss = lane_finish(acc_loss, terms_loss, n)
    dot = lane_finish(acc_dot, terms_dot, n)
    if want_g:
        for j in range(n):
            gx[j] = cce_grad(wide(gx[j]), dot, s, gs)
    return loss


@portable.rows(inline=False)
def categorical_cross_entropy_rows(x, y, c, gx, h, gs, p, loss):
    """:func:`categorical_cross_entropy` of a tile of narrow rows (fewer classes than
    LANES), row by row the same arithmetic in the same order; in place.

    Each row's sum s is taken in class order across the rows at once, spread to its
    elements, and the terms of the whole tile are then one loop; the loss terms and
    sum_j g_j r_j are summed per row in class order. g_j is rounded to the input's dtype
    before the gradient is formed from it, as the row function's store does.
    """
    rows = loss.shape[0]
    n = x.shape[0] // rows
    eps = p[0]
    ls = p[1]
    k = ls / n
    total = scratch()  # per row: s = sum_j x_j
    dot = scratch()  # per row: sum_j g_j r_j
    sx = scratch()  # s of each element's row
    g = scratch()  # g_j, as the gradient row would hold it
    terms = scratch()  # -t_j log q_j
    dots = scratch()  # g_j r_j
    for r in range(rows):
        total[r] = 0.0
        loss[r] = 0.0
        dot[r] = 0.0
    for j in range(n):
        for r in range(rows):
            total[r] += wide(x[r * n + j])
    for r in range(rows):
        for j in range(n):
            sx[r * n + j] = total[r]
    for i in range(rows * n):
        lj, grad, ratio = cce_term(wide(x[i]), wide(y[i]), sx[i], eps, ls, k)
        terms[i] = lj
        dots[i] = grad * ratio
        g[i] = single(grad) if is_single(x) else grad
    for j in range(n):
        for r in range(rows):
            loss[r] += terms[r * n + j]
            dot[r] += dots[r * n + j]
    if gx.shape[0] != 0:
        for r in range(rows):
            for j in range(n):
                gx[r * n + j] = cce_grad(g[r * n + j], dot[r], total[r], gs[r])


@portable
def cce_term(xj, yj, s, eps, ls, k):
    """One class of :func:`categorical_cross_entropy` with s = sum_j x_j and k = ls / C:
    (its loss term -t_j log q_j, g_j = d term / d q_j times the clip's derivative, and
    r_j = x_j / s)."""
    r = xj / s
    q = clip(r, eps, 1.0 - eps)
    tj = smoothed_target(yj, ls, k)
    return -xlogy(tj, q), -xdivy(tj, q) * clip_grad(r, eps, 1.0 - eps), r


@portable
def cce_grad(g, dot, s, gs):
    """d loss / d x_k = gs (g_k - sum_j g_j r_j) / s (the normalisation's chain rule)."""
    return gs * (g - dot) / s


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


@portable.row
def kl_divergence(x, y, v, c, gx, gy, gv, h, gs, p):
    """Keras ``kl_divergence(y_true=y, y_pred=x)``: sum_j q_j log(q_j / r_j) with
    q = clip(y, eps, 1), r = clip(x, eps, 1), ``p = (eps,)``; gradient -q_j / r_j where
    eps <= x_j <= 1, else 0. Terms with q_j = 0 (possible with eps = 0) are 0."""
    eps = p[0]
    n = x.shape[0]
    want_g = gx.shape[0] != 0
    acc = lanes(None)  # (lane_add fills it)
    terms = lanes(None)
    for group in range((n + LANES - 1) // LANES):
        g = group * LANES
        count = n - g if n - g < LANES else LANES
        for lane in range(count):
            lj, grad = kl_term(wide(x[g + lane]), wide(y[g + lane]), eps)
            terms[lane] = lj
            if want_g:
                gx[g + lane] = gs * grad
        lane_add(acc, terms, count, g)
    return lane_finish(acc, terms, n)


@portable.rows(inline=False)
def kl_divergence_rows(x, y, c, gx, h, gs, p, loss):
    """:func:`kl_divergence` of a tile of narrow rows (fewer classes than LANES), row by
    row the same arithmetic in the same order.

    Its terms are element-wise, so the tile is one loop over all its elements (the
    gradient scale of each element's row spread out first), and each row's terms are then
    summed in class order, as a row's single partial group of lanes is.
    """
    rows = loss.shape[0]
    n = x.shape[0] // rows
    eps = p[0]
    want_g = gx.shape[0] != 0
    terms = scratch()
    scale = scratch()  # gs of each element's row
    for r in range(rows):
        for j in range(n):
            scale[r * n + j] = gs[r]
    for i in range(rows * n):
        lj, grad = kl_term(wide(x[i]), wide(y[i]), eps)
        terms[i] = lj
        if want_g:
            gx[i] = scale[i] * grad
    for r in range(rows):
        loss[r] = 0.0
    for j in range(n):
        for r in range(rows):
            loss[r] += terms[r * n + j]


@portable
def kl_term(xj, yj, eps):
    """One class of :func:`kl_divergence`: (q log(q / r), d/dx_j of it) with q, r the
    clipped target and prediction; the term is 0 where q = 0."""
    q = clip(yj, eps, 1.0)
    r = clip(xj, eps, 1.0)
    lj = q * (log(q) - log(r)) if q != 0.0 else 0.0
    return lj, -xdivy(q, r) * clip_grad(xj, eps, 1.0)


@portable.row
def softmax_kl_divergence(z, y, v, c, gz, gy, gv, h, gs, p):
    """sum_j q_j (log q_j - log_softmax(z)_j) with 0 log 0 = 0; in place.

    ``p = (log_target,)``: with log_target the target row holds log q. PyTorch
    ``kl_div(log_softmax(z), q, reduction="batchmean")`` per row. Gradient
    gs (Q softmax_j - q_j), Q = sum_j q_j.
    """
    n = z.shape[0]
    want_g = gz.shape[0] != 0
    m, d = max_sum_exp(z, gz)
    log_d = log(d)
    acc_loss = lanes(None)  # (lane_add fills it)
    acc_q = lanes(None)  # (lane_add fills it)
    terms_loss = lanes(None)
    terms_q = lanes(None)
    for group in range((n + LANES - 1) // LANES):
        g = group * LANES
        count = n - g if n - g < LANES else LANES
        for lane in range(count):
            j = g + lane
            yj = wide(y[j])
            q = kl_target(yj, p[0], n)
            terms_loss[lane] = kl_entropy(yj, q, p[0]) + q * ((m - wide(z[j])) + log_d) if q != 0.0 else 0.0
            terms_q[lane] = q
            if want_g:
                gz[j] = exp_nonpositive(wide(z[j]) - m) / d
        lane_add(acc_loss, terms_loss, count, g)
        lane_add(acc_q, terms_q, count, g)
    loss = lane_finish(acc_loss, terms_loss, n)
    total_q = lane_finish(acc_q, terms_q, n)
    if want_g:
        for j in range(n):
            gz[j] = softmax_ce_grad(wide(gz[j]), kl_target(wide(y[j]), p[0], n), total_q, gs)
    return loss


@portable.rows(inline=False)
def softmax_kl_divergence_rows(z, y, c, gz, h, gs, p, loss):
    """:func:`softmax_kl_divergence` of a tile of narrow rows (fewer classes than LANES),
    row by row the same arithmetic in the same order; in place.

    Laid out as :func:`softmax_cross_entropy_rows`: the tile and its targets transposed,
    so that each row's maximum, sum of exponentials, loss terms and target total (each in
    class order, as a row's single partial group of lanes is summed) are vector
    operations across rows. The softmax is rounded to the input's dtype before the
    gradient is formed from it, as the row function's store into the gradient row does.
    """
    rows = loss.shape[0]
    n = z.shape[0] // rows
    t = scratch()  # the tile, transposed: z, then the softmax, then the gradient
    tq = scratch()  # the targets q_j, transposed
    m = scratch()  # per row: the maximum
    mu = scratch()  # per row: the reference of the exponentials (0 for a row of -inf)
    d = scratch()  # per row: sum_j exp(z_j - mu), then the row's d
    log_d = scratch()
    total_q = scratch()  # per row: Q = sum_j q_j
    tile_transposed_max(z, rows, n, t, m)
    for r in range(rows):
        for j in range(n):
            tq[j * rows + r] = kl_target(wide(y[r * n + j]), p[0], n)
    for r in range(rows):
        d[r] = 0.0
        loss[r] = 0.0
        total_q[r] = 0.0
    for r in range(rows):
        mu[r] = m[r] if m[r] != -math.inf else 0.0
    for j in range(n):  # max_sum_exp: block_sum_exp of the row's one block
        for r in range(rows):
            d[r] += softmax_exp(z, t[j * rows + r], mu[r], single(mu[r]))
    for r in range(rows):
        m_row, d_row = merge_max_sum_exp(-math.inf, 0.0, m[r], d[r])
        m[r] = m_row
        d[r] = d_row if m_row != -math.inf else math.nan
        log_d[r] = log(d[r])
    for j in range(n):
        for r in range(rows):
            q = tq[j * rows + r]
            yj = wide(y[r * n + j])
            zj = t[j * rows + r]
            loss[r] += kl_entropy(yj, q, p[0]) + q * ((m[r] - zj) + log_d[r]) if q != 0.0 else 0.0
            total_q[r] += q
    if gz.shape[0] != 0:
        for j in range(n):
            for r in range(rows):
                pj = exp_nonpositive(t[j * rows + r] - m[r]) / d[r]
                pj = single(pj) if is_single(z) else pj
                t[j * rows + r] = softmax_ce_grad(pj, tq[j * rows + r], total_q[r], gs[r])
        for r in range(rows):
            for j in range(n):
                gz[r * n + j] = t[j * rows + r]


@portable
def kl_target(yj, log_target, n):
    """q_j from a target row entry: y_j, or exp(y_j) with ``log_target`` (nonzero)."""
    return exp(yj) if log_target != 0.0 else yj


@portable
def kl_entropy(yj, q, log_target):
    """q_j log q_j of a nonzero q_j (log q_j is y_j itself with ``log_target``)."""
    return q * (yj if log_target != 0.0 else log(yj))


@portable
def ce_target(yj, ls, n):
    """t_j of softmax cross-entropy over ``n`` classes, smoothed with ``ls``."""
    return smoothed_target(yj, ls, ls / n)


@portable
def no_entropy(yj, t, ls):
    """Cross-entropy has no target entropy term."""
    return 0.0


@portable.row
def js_divergence(zp, zq, v, c, gp, gq, gv, h, gs, p):
    """Generalised Jensen-Shannon divergence of P = softmax(zp) and Q = softmax(zq).

    ``p = (beta,)``, M = beta P + (1 - beta) Q, as in Liger-Kernel::

        loss = beta KL(P || M) + (1 - beta) KL(Q || M) = sum_j P_j a_j + Q_j b_j
        a_j = beta (log P_j - log M_j),  b_j = (1 - beta)(log Q_j - log M_j)
        dloss/dzp_k = P_k (a_k - sum_j P_j a_j),  dloss/dzq_k = Q_k (b_k - sum_j Q_j b_j)

    log M is a log-add-exp of log-softmaxes, so nothing underflows before the log; terms
    with P_j = 0 (or Q_j = 0) are 0. The sums are taken in SIMD lanes
    (:func:`~fastloss.math.reductions.lane_add`), so the loop that evaluates the
    logarithms and exponentials carries no running sum.
    """
    beta = p[0]
    log_b = log(beta)
    log_1b = log1p(-beta)
    n = zp.shape[0]
    mp, dp = max_sum_exp(zp, gp)
    mq, dq = max_sum_exp(zq, gq)
    log_dp = log(dp)
    log_dq = log(dq)
    acc_p = lanes(None)  # (lane_add fills it)
    acc_q = lanes(None)  # (lane_add fills it)
    terms_p = lanes(None)
    terms_q = lanes(None)
    for group in range((n + LANES - 1) // LANES):
        g = group * LANES
        count = n - g if n - g < LANES else LANES
        for lane in range(count):
            j = g + lane
            tp, tq = js_terms((wide(zp[j]) - mp) - log_dp, (wide(zq[j]) - mq) - log_dq, beta, log_b, log_1b)
            terms_p[lane] = tp
            terms_q[lane] = tq
        lane_add(acc_p, terms_p, count, g)
        lane_add(acc_q, terms_q, count, g)
    sp = lane_finish(acc_p, terms_p, n)
    sq = lane_finish(acc_q, terms_q, n)
    if gp.shape[0] != 0:
        for j in range(n):
            lp = (wide(zp[j]) - mp) - log_dp
            lq = (wide(zq[j]) - mq) - log_dq
            g_p, g_q = js_grads(lp, lq, beta, log_b, log_1b, sp, sq, gs)
            gp[j] = g_p
            gq[j] = g_q
    return sp + sq


@portable
def js_terms(lp, lq, beta, log_b, log_1b):
    """One class of :func:`js_divergence` from its log-probabilities ``lp``, ``lq``
    (log_b = log beta, log_1b = log(1 - beta)): (P_j a_j, Q_j b_j), each 0 where its
    probability is 0."""
    lm = log_add_exp(log_b + lp, log_1b + lq)
    pj = exp_nonpositive(lp)
    qj = exp_nonpositive(lq)
    tp = pj * beta * (lp - lm) if pj != 0.0 else 0.0
    tq = qj * (1.0 - beta) * (lq - lm) if qj != 0.0 else 0.0
    return tp, tq


@portable
def js_grads(lp, lq, beta, log_b, log_1b, sp, sq, gs):
    """d loss / d zp_j and d loss / d zq_j of :func:`js_divergence`, with sp = sum_j P_j a_j
    and sq = sum_j Q_j b_j."""
    lm = log_add_exp(log_b + lp, log_1b + lq)
    pj = exp_nonpositive(lp)
    qj = exp_nonpositive(lq)
    gp = gs * pj * (beta * (lp - lm) - sp) if pj != 0.0 else 0.0
    gq = gs * qj * ((1.0 - beta) * (lq - lm) - sq) if qj != 0.0 else 0.0
    return gp, gq


@portable
def focal_term(log_p, gamma):
    """For one class with log-probability ``log_p`` (p = exp(log_p), u = 1 - p)::

        f = u^gamma log p              (the focal log-likelihood)
        g = p df/dp = u^gamma (1 - gamma p log(p) / u)

    u = -expm1(log p) has no cancellation near p = 1, and log(p) / u -> -1 as u -> 0, so
    g never forms u^(gamma - 1): gamma in [0, 1) and saturated logits stay finite.
    """
    prob = exp_nonpositive(log_p)
    u = -expm1(log_p)
    mod = pow_nonneg(u, gamma)
    ratio = log_p / u if u != 0.0 else -1.0
    g = mod * (1.0 - gamma * prob * ratio) if prob != 0.0 else mod
    return mod * log_p, g


@portable.row
def softmax_focal_loss(z, y, v, c, gz, gy, gv, h, gs, p):
    """Keras ``CategoricalFocalCrossentropy(from_logits=True)`` with soft or one-hot
    targets: -alpha sum_j y_j (1 - p_j)^gamma log p_j, p = softmax(z),
    ``p = (alpha, gamma)``. With f, g of :func:`focal_term` and S = sum_j y_j g_j:
    grad_k = -alpha gs (y_k g_k - p_k S)."""
    alpha = p[0]
    gamma = p[1]
    n = z.shape[0]
    want_g = gz.shape[0] != 0
    m, d = max_sum_exp(z, gz)
    log_d = log(d)
    acc_loss = lanes(None)  # (lane_add fills it)
    acc_s = lanes(None)  # (lane_add fills it)
    terms_loss = lanes(None)
    terms_s = lanes(None)
    for group in range((n + LANES - 1) // LANES):
        g = group * LANES
        count = n - g if n - g < LANES else LANES
        for lane in range(count):
            lj, sj = focal_sums(wide(y[g + lane]), (wide(z[g + lane]) - m) - log_d, gamma)
            terms_loss[lane] = lj
            terms_s[lane] = sj
        lane_add(acc_loss, terms_loss, count, g)
        lane_add(acc_s, terms_s, count, g)
    loss = lane_finish(acc_loss, terms_loss, n)
    s = lane_finish(acc_s, terms_s, n)
    if want_g:
        for j in range(n):
            gz[j] = focal_grad(wide(y[j]), (wide(z[j]) - m) - log_d, gamma, s, alpha, gs)
    return alpha * loss


@portable
def focal_sums(yj, lp, gamma):
    """One class of :func:`softmax_focal_loss` with log-probability ``lp``: (-y_j f_j,
    y_j g_j) of :func:`focal_term`, both 0 where y_j = 0."""
    if yj == 0.0:
        return 0.0, 0.0
    f, g = focal_term(lp, gamma)
    return -yj * f, yj * g


@portable
def focal_grad(yj, lp, gamma, s, alpha, gs):
    """d loss / d z_k of :func:`softmax_focal_loss`: -alpha gs (y_k g_k - p_k S), S =
    sum_j y_j g_j."""
    yg = 0.0
    if yj != 0.0:
        yg = yj * focal_term(lp, gamma)[1]
    return -alpha * gs * (yg - exp_nonpositive(lp) * s)


@portable.row
def sparse_softmax_focal_loss(z, label: Index, v, c, gz, gy, gv, h, gs, p):
    """:func:`softmax_focal_loss` for an integer label: -alpha f_y and
    grad_k = -alpha gs g_y ([k = y] - p_k); in place."""
    alpha = p[0]
    gamma = p[1]
    n = z.shape[0]
    z_y = wide(z[label])  # read before the row (maybe z itself) is overwritten
    maxima = lanes(None)
    m, d, s, t = softmax_blocks(z, gz, 1.0 if gz.shape[0] != 0 else 0.0, z, 0.0, 0.0, 0.0, maxima)
    lp_y = (z_y - m) - log(d)
    f, g = focal_term(lp_y, gamma)
    if gz.shape[0] != 0:
        inv_d = 1.0 / d
        size = block_size(z)
        for blk in range((n + size - 1) // size):
            lo = blk * size
            hi = lo + size if lo + size < n else n
            scale = block_scale(maxima[blk], m, inv_d)
            for j in range(lo, hi):
                gz[j] = sparse_focal_grad(1.0 if j == label else 0.0, wide(gz[j]) * scale, g, alpha, gs)
    return -alpha * f


@portable
def sparse_focal_grad(hit, pj, g_y, alpha, gs):
    """d loss / d z_j of :func:`sparse_softmax_focal_loss`: -alpha gs g_y ([j = y] - p_j),
    ``hit`` 1 at the label, else 0."""
    return -alpha * gs * g_y * (hit - pj)
