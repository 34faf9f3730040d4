"""Dask arrays in, a lazy result out: every loss over data larger than one machine.

Any ``fastloss.<loss>`` given Dask arrays returns a :class:`~fastloss.LossResult` of Dask
arrays: ``grad`` (and ``hess``) chunked like the predictions, and ``loss`` a 0-d Dask array
(per-sample for ``reduction="none"``). Each chunk runs the fused kernel once, with
``reduction="sum"``; its weighted loss sum goes into a tree reduction (Dask's ``sum``), and
the divisor of ``"mean"`` (each chunk's by the rule of a whole call, :func:`fastloss._plan.denominator`:
the number of losses, or, for sparse cross-entropy, the counted rows or their class weights;
summed the same way) is applied after, so the chunking does
not change the result beyond rounding. Nothing runs until ``.compute()``; it works with
``dask.distributed`` like any Dask graph.

Class-axis losses need the class axis in one chunk (``x.rechunk({axis: -1})``); the other
axes may be chunked freely, and the targets, labels and sample weights are rechunked to
match the predictions, as are array options of element-wise losses (``pos_weight``). Hinge's
0/1 rule is decided over all the targets. ``out=`` is not available (Dask arrays are
immutable).
"""

import dataclasses
import math
import string

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError('fastloss.dask needs Dask: pip install "fastloss[dask]"') from exc

import fastloss as _fl

from . import _plan
from ._result import LossResult


def evaluate(spec, arrays, common, options, backend):
    """``spec``'s loss of Dask ``arrays`` (see the module docstring)."""
    if common.out is not None:
        raise ValueError("out= is not available for Dask arrays (they are immutable)")
    x = da.asarray(arrays[0])
    rows = spec.family == "rowwise"
    sparse = False
    if spec.target in ("labels", "float_or_labels") and len(arrays) > 1:
        sparse = np.dtype(arrays[1].dtype).kind in "iu"
    axis = common.axis % x.ndim if rows and x.ndim else -1
    if rows and len(x.chunks[axis]) > 1:
        raise ValueError(
            f"{spec.name} needs its class axis ({axis}) in one chunk; rechunk with x.rechunk({{{axis}: -1}})"
        )
    letters = string.ascii_lowercase[: x.ndim]
    sample_letters = letters.replace(letters[axis], "") if rows else letters
    loss_chunks = tuple(c for k, c in enumerate(x.chunks) if not (rows and k == axis))

    inputs = [x]
    for k, a in enumerate(arrays[1:], 1):
        a = da.asarray(a)
        inputs.append(a.rechunk(loss_chunks if (k == 1 and sparse) else x.chunks))
    index = [sample_letters if (k == 1 and sparse) else letters for k in range(len(inputs))]
    weights = None
    if common.sample_weight is not None:
        loss_shape = tuple(sum(c) for c in loss_chunks)
        weights = da.broadcast_to(da.asarray(common.sample_weight), loss_shape).rechunk(loss_chunks)

    extra = {"backend": backend, **options, **({"axis": axis} if rows else {})}
    # Array options of element-wise losses (pos_weight) are cut like the predictions.
    chunked_options = [n for n, v in options.items() if not rows and isinstance(v, np.ndarray) and v.ndim]
    for n in chunked_options:
        extra.pop(n)
    zero_one = None
    if spec.data_params and options["targets"] == "auto":  # decided over every target, not chunk by chunk
        t = inputs[1]
        zero_one = da.all((t == 0) | (t == 1) | da.isnan(t))
    want, hessian = common.want, common.hessian
    reduction = common.reduction

    # A chunk sums its losses; a loss that is a function of the whole sum (RMSE) is
    # finished after the tree, from the chunks' raw sums and gradients.
    raw = dataclasses.replace(spec, finish=None, reductions=("mean", "sum", "none")) if spec.finish else spec

    def block(*parts, zero_one=None):
        *arrs, w = parts[: len(parts) - len(chunked_options)]
        kw = dict(extra, **dict(zip(chunked_options, parts[len(parts) - len(chunked_options):])))
        if zero_one is not None:
            kw["targets"] = "zero_one" if zero_one else "signed"
        red = "none" if reduction == "none" else "sum"
        kw.update(reduction=red, sample_weight=w, grad=want, hessian=hessian)
        res = _fl.evaluate(raw, arrs, kw)
        grads = res.grad if isinstance(res.grad, tuple) or res.grad is None else (res.grad,)
        count = math.prod(s for k, s in enumerate(arrs[0].shape) if not (rows and k == axis))
        return res.loss, grads, res.hess, _plan.denominator(spec, options, arrs, count)

    pairs = []
    for a, ix in zip(inputs, index):
        pairs += [a, ix]
    pairs += [weights, sample_letters] if weights is not None else [None, None]
    for n in chunked_options:
        pairs += [da.broadcast_to(da.asarray(options[n]), x.shape).rechunk(x.chunks), letters]
    kwargs = {"zero_one": zero_one} if zero_one is not None else {}
    results = da.blockwise(block, letters, *pairs, dtype=object, concatenate=True,
                           meta=np.empty((0,) * x.ndim, dtype=object), **kwargs)
    # Per-chunk results are (loss, grads, hess) tuples; the arrays below pick them apart.
    out_dtype = x.dtype

    empty = np.empty((0,) * x.ndim, out_dtype)

    def pick_grad(k):
        return results.map_blocks(lambda r: r[1][k], dtype=out_dtype, meta=empty)

    if reduction == "none":
        loss = None
        if want != "only" and rows:  # per row: keep the class axis as length 1, then drop it
            kept = tuple((1,) if k == axis else c for k, c in enumerate(x.chunks))
            loss = results.map_blocks(lambda r: np.expand_dims(r[0], axis), chunks=kept, dtype=out_dtype,
                                      meta=np.empty((0,) * x.ndim, out_dtype)).squeeze(axis)
        elif want != "only":
            loss = results.map_blocks(lambda r: r[0], dtype=out_dtype, meta=np.empty((0,) * x.ndim, out_dtype))
        grads = tuple(pick_grad(k) for k in range(spec.grads)) if want else None
        hess = results.map_blocks(lambda r: r[2], dtype=out_dtype, meta=empty) if hessian else None
        return LossResult(loss, _one(grads), hess)

    # "sum" per chunk: a tree of partial sums; "mean" divides after.
    partial = results.map_blocks(lambda r: np.full((1,) * x.ndim, float(r[0]) if r[0] is not None else 0.0),
                                 chunks=tuple((1,) * len(c) for c in x.chunks), dtype=np.float64,
                                 meta=np.empty((0,) * x.ndim))
    total = partial.sum()
    # The divisor of "mean", by the rule of a whole call, summed over the chunks the same way.
    count = results.map_blocks(lambda r: np.full((1,) * x.ndim, r[3]), chunks=partial.chunks, dtype=np.float64,
                               meta=np.empty((0,) * x.ndim)).sum()
    if spec.finish is not None:
        finished = dask.delayed(spec.finish, nout=2)(total, count if reduction == "mean" else 1.0)
        value = da.from_delayed(finished[0], (), dtype=np.float64)
        factor = da.from_delayed(finished[1], (), dtype=np.float64)
    elif reduction == "mean":
        value = total / count
        factor = da.where(count != 0, 1.0 / da.where(count != 0, count, 1.0), 0.0)
    else:
        value, factor = total, None
    loss = value.astype(out_dtype) if want != "only" else None
    grads = None
    if want:
        grads = tuple(pick_grad(k) if factor is None else (pick_grad(k) * factor).astype(out_dtype)
                      for k in range(spec.grads))
    hess = None
    if hessian:
        hess = results.map_blocks(lambda r: r[2], dtype=out_dtype, meta=empty)
        hess = hess if factor is None else (hess * factor).astype(out_dtype)
    return LossResult(loss, _one(grads), hess)


def _one(grads):
    return grads[0] if grads is not None and len(grads) == 1 else grads
