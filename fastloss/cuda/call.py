"""The call path for device arrays: validate, lay out, launch, deliver.

It follows :func:`fastloss._api.evaluate` step for step and shares its checks, so that a
bad argument gets the same error on either side. What needs the data (the label range,
the denominator of a sparse cross-entropy, hinge's 0/1 rule) is computed by a kernel
queued before the loss kernel, which reads it from the device. Only a call with integer
labels then waits, for the label check's verdict alone, to raise for a bad label; every
other call only queues kernels on the caller's stream and returns device arrays. Scratch
arrays (partial sums, the label check's, the blocks' ticket counter) come from the
thread's workspace for the stream (:mod:`.workspace`); a call allocates its results.
"""

import math
from types import SimpleNamespace

import numpy as np
from numba import cuda
from numba.cuda import config as cuda_config

from .. import _api
from ..losses import embedding, float32_form, generative, softmax
from . import (
    checks,
    elementwise,
    is_device_array,
    jit,
    rowmath,
    rows,
    rows_cross_entropy,
    rows_hinge,
    rows_stats,
    rows_triplet,
)
from .arrays import adopt
from .jit import compile_math
from .launch import launch
from .reductions import WARP
from .workspace import forget, workspace

#: Threads per block (a power of two) and the most blocks an element-wise kernel uses.
#: The simulator runs a Python thread per GPU thread: it gets small blocks.
THREADS = 256
MAX_BLOCKS = 1024
if cuda_config.ENABLE_CUDASIM:
    THREADS, MAX_BLOCKS = 8, 4

# bfloat16 has no NumPy dtype: this stands for it in the dtype checks (it computes in
# float32, like float16).
_BFLOAT16 = SimpleNamespace(kind="f", name="bfloat16", itemsize=2)

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


def _loss_kernel(math_fn, bf16=False, rule_on_device=False):
    """The grid-stride kernel of an element-wise loss's math (``bf16``: on bfloat16 bits;
    ``rule_on_device``: its parameter decided by a kernel, hinge's 0/1 rule)."""

    def build(threads):
        return elementwise.elementwise_kernel(compile_math(math_fn), math_fn.__name__, threads, bf16, rule_on_device)

    return kernel((math_fn, "elementwise", bf16, rule_on_device), build)


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


def _row_layout(width):
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


#: The class-axis losses and their row kernels: the math function, the kernel
#: factory, the portable formulas it is built from (after ``merge_max_sum_exp``), and
#: the factory's other arguments.
_ROW_KERNELS = {
    softmax.sparse_softmax_cross_entropy: (
        rows_cross_entropy.sparse_cross_entropy_rows_kernel, (softmax.sparse_ce_row_loss, softmax.sparse_ce_grad), ()),
    softmax.softmax_cross_entropy: (
        rows_cross_entropy.soft_target_rows_kernel, (softmax.ce_target, softmax.no_entropy, softmax.softmax_ce_grad),
        ("softmax_cross_entropy",)),
    softmax.softmax_kl_divergence: (
        rows_cross_entropy.soft_target_rows_kernel, (softmax.kl_target, softmax.kl_entropy, softmax.softmax_ce_grad),
        ("softmax_kl_divergence",)),
    softmax.categorical_hinge: (
        rows_hinge.categorical_hinge_rows_kernel,
        (softmax.hinge_slot, softmax.max_count_step, softmax.merge_max_count, softmax.hinge_row,
         softmax.categorical_hinge_grad), ()),
    softmax.kl_divergence: (
        rows_stats.stats_rows_kernel, (rowmath.no_stat, rowmath.kl_div_term, rowmath.kl_div_grad, rowmath.first_sum),
        ("none", False, "kl_divergence")),
    softmax.categorical_cross_entropy: (
        rows_stats.stats_rows_kernel, (rowmath.cce_stat, rowmath.cce_row_term, rowmath.cce_row_grad, rowmath.first_sum),
        ("sum", False, "categorical_cross_entropy")),
    generative.vae_kl_divergence: (
        rows_stats.stats_rows_kernel, (rowmath.no_stat, rowmath.vae_row_term, rowmath.vae_row_grad, rowmath.first_sum),
        ("none", False, "vae_kl_divergence")),
    softmax.softmax_focal_loss: (
        rows_stats.stats_rows_kernel,
        (rowmath.no_stat, rowmath.focal_row_term, rowmath.focal_row_grad, rowmath.focal_row_loss),
        ("softmax", False, "softmax_focal_loss")),
    softmax.sparse_softmax_focal_loss: (
        rows_stats.stats_rows_kernel,
        (rowmath.no_stat, rowmath.sparse_focal_row_term, rowmath.sparse_focal_row_grad, rowmath.sparse_focal_row_loss),
        ("softmax", True, "sparse_softmax_focal_loss")),
    # Jensen-Shannon's gradient takes two float64 logarithms and exponentials an element:
    # compute, not loads, bounds its pass, and four elements' loads in flight cost it 26
    # to 40 registers a thread (sm_90: 96 -> 122 for warp rows, 88 -> 128 and 24 bytes
    # spilled in bfloat16 blocks of 512): one at a time.
    softmax.js_divergence: (
        rows_stats.stats_rows_kernel, (rowmath.no_stat, rowmath.js_row_term, rowmath.js_row_grad, rowmath.js_row_loss),
        ("two_softmax", False, "js_divergence", 1)),
    embedding.triplet_margin_loss: (
        rows_triplet.triplet_rows_kernel,
        (embedding.max_nan_step, embedding.merge_max_nan, embedding.norm_power, embedding.norm_finish,
         embedding.triplet_row, embedding.triplet_shift, embedding.triplet_element_grads), ()),
}


def _rows_kernel(math_fn, layout, dtype):
    """The row kernel of ``math_fn`` for ``layout`` = (threads per block, threads per
    row) (:func:`_row_layout`) and logits of ``dtype`` (int16: bfloat16 bits)."""
    dtype = np.dtype(dtype)
    key = (math_fn, "rows", layout, dtype.itemsize <= 4, dtype == np.int16, *_compiled_with())
    k = _kernels.get(key)
    if k is None:
        factory, formulas, named = _ROW_KERNELS[math_fn]
        k = _kernels[key] = factory(
            compile_math(softmax.merge_max_sum_exp), *(compile_math(f) for f in formulas), *layout,
            np.float32 if dtype.itemsize <= 4 else np.float64, dtype == np.int16, *named,
        )
    return k


class _Meta(SimpleNamespace):
    """Shape and dtype of a device array, for the checks shared with the CPU path."""


def _meta(caller, a):
    dtype = caller.dtype(a)
    if caller.kind == "torch" and str(a.dtype) == "torch.bfloat16":
        dtype = _BFLOAT16
    return _Meta(shape=tuple(a.shape), dtype=dtype, ndim=len(a.shape), size=math.prod(a.shape))


def evaluate(spec, arrays, common, options):
    """``spec``'s loss of device ``arrays``; ``common`` holds reduction, sample_weight,
    grad, out, hessian and axis (:class:`fastloss._api.Common`)."""
    if not any(is_device_array(a) for a in arrays):
        raise ValueError("backend='cuda' needs device arrays (CuPy, PyTorch CUDA, Numba); these are in host memory")
    caller, natives = adopt(list(arrays), spec.inputs)
    # Small inputs launch small grids, which is right for them: numba-cuda's occupancy
    # warning is switched off for our launches (building it costs more than the launch).
    warn = cuda_config.CUDA_LOW_OCCUPANCY_WARNINGS
    cuda_config.CUDA_LOW_OCCUPANCY_WARNINGS = 0
    try:
        with caller.context():
            return _evaluate(spec, caller, natives, common, options)
    except BaseException:
        forget(caller)  # a launch may have failed with tickets taken: a new counter next time
        raise
    finally:
        cuda_config.CUDA_LOW_OCCUPANCY_WARNINGS = warn


def _evaluate(spec, caller, natives, common, options):
    reduction, want, hessian = common.reduction, common.want, common.hessian
    metas = [_meta(caller, a) for a in natives]
    dtype, compute, sparse = _api._check_dtypes(spec, metas)
    rows = spec.family == "rowwise"
    axis = _api._check_axis(common.axis, metas[0]) if rows else -1
    _api._check_shapes(spec, metas, axis, sparse)
    shape = metas[0].shape
    loss_shape = shape[:axis] + shape[axis + 1:] if rows else shape
    width = shape[axis] if rows else 1
    count = math.prod(loss_shape)
    shape2d = (count, width) if rows else (count,)
    math_fn = spec.math_for(sparse, options)
    # What kernels read and write: the input's dtype; bfloat16 as its bits (int16), which
    # the kernels convert themselves, when every float input is bfloat16 (a kernel reads
    # all its float arrays alike: targets of another dtype send the call through float32
    # copies, as do RMSE, whose finish scales a float32 gradient, and hinge, whose 0/1
    # rule reads the targets' values).
    native_bf16 = (spec.finish is None and not spec.data_params
                   and all(m.dtype is _BFLOAT16 for i, m in enumerate(metas) if not (i == 1 and sparse)))
    loss_storage = compute if dtype is _BFLOAT16 else np.dtype(dtype)
    storage = np.dtype(np.int16) if native_bf16 else loss_storage
    if not rows and loss_storage.itemsize <= 4:  # float32 and narrower: the float32 form, as on the CPU
        math_fn = float32_form(math_fn) or math_fn

    work = []
    for i, a in enumerate(natives):
        if i == 1 and sparse:
            work.append(caller.kernel_layout(a, -1, False, (count,)))
        else:
            work.append(caller.kernel_layout(a, axis, rows, shape2d, keep_bf16=native_bf16))
    weights = _sample_weights(caller, common.sample_weight, loss_shape, count)
    aux = _aux_array(caller, spec, options, metas, width, rows, shape2d)

    if spec.denominator is not None and not sparse:  # pragma: no cover - every data-dependent one is sparse
        raise NotImplementedError(f"{spec.name}: no device denominator")
    # Integer labels are checked by a kernel that leaves the loss kernel its gate (and,
    # for a sparse cross-entropy's mean, its denominator; the host's is then 1).
    denominator = float(count)
    mean = None
    if sparse and count:
        mean = checks.MEAN_AS_GIVEN
        if spec.denominator is not None and reduction == "mean":
            weighted = options.get("class_weight") is not None
            mean = checks.MEAN_OVER_CLASS_WEIGHTS if weighted else checks.MEAN_OVER_COUNTED
            denominator = 1.0
    # Hinge's 0/1 rule is decided by a kernel, and the loss kernel reads it from there:
    # the parameter computed here for it (as if the rule held) is not used.
    rule = _zero_one_rule(caller, work[1]) if spec.data_params else None
    params = spec.params(options, (metas[0], True) if spec.data_params else metas)
    params = tuple(float(v) for v in params) or (0.0,)

    # Outputs: gradients straight into out= where its layout allows, else into buffers.
    outs = _check_out(caller, spec, common.out, natives, metas, want)
    n_grads = spec.grads if want else 0
    buffers = []
    for k in range(spec.grads):
        if k >= n_grads:
            buffers.append(None)
            continue
        target_out = outs[k] if outs is not None else None
        if target_out is not None and _writes_directly(caller, target_out, k, work, storage, axis, rows, shape):
            buffers.append(caller.kernel_layout(target_out, axis, rows, shape2d, keep_bf16=native_bf16))
        else:
            buffers.append(caller.empty(shape2d, storage))
    hess = caller.empty(shape2d, storage) if hessian else None
    keep_loss = reduction == "none" and want != "only"
    loss_out = caller.empty((count,), loss_storage) if keep_loss else None

    scale = 1.0
    if reduction == "mean" and spec.finish is None:
        scale = 1.0 / denominator if denominator != 0.0 else 0.0

    reduced = want != "only" and not keep_loss and spec.finish is None
    factor = (1.0 / denominator if denominator != 0.0 else math.nan) if reduction == "mean" else 1.0
    # The label check is queued right before the loss kernel, and waited for right after:
    # nothing between them raises but a failed launch, which waits for it too.
    labels = None
    if mean is not None:
        labels = _check_labels(caller, work[1], width, options.get("ignore_index"), aux, mean)
    gate = labels.gate if labels is not None else rule
    try:
        total, value = _launch(caller, spec, math_fn, work, aux, weights, params, scale, loss_out, buffers, hess,
                               shape2d, rows, factor, loss_storage, reduced, gate)
    except BaseException:
        if labels is not None:
            labels.settle()
        raise
    if labels is not None:  # a bad label raises here, nothing written
        labels.wait()

    # The loss: reduced in the same launch; RMSE's finished from the sum by a second kernel.
    if spec.finish is not None:
        finished = caller.empty((1,), loss_storage) if want != "only" else None
        _finish(caller, spec, total, denominator if reduction == "mean" else 1.0, finished,
                buffers[0] if n_grads else None)
        if finished is not None:
            value = caller.scalar(finished, natives[0].dtype)
    elif reduced:
        value = caller.scalar(value, natives[0].dtype)
    elif keep_loss:
        value = caller.deliver(loss_out, loss_shape, -1, False, natives[0].dtype)

    grads = None
    if want:
        grads = tuple(
            _deliver(caller, buffers[k], outs[k] if outs is not None else None, natives[k], shape, axis, rows)
            for k in range(spec.grads)
        )
        grads = grads[0] if spec.grads == 1 else grads
    h = _deliver(caller, hess, None, natives[0], shape, axis, rows) if hessian else None
    return _api.LossResult(value, grads, h)


_empties = {}


def _empty(dtype, rows, count):
    """A zero-length array (an output that is not wanted, a missing weight)."""
    shape = (count, 0) if rows else (0,)
    key = (np.dtype(dtype), shape)
    e = _empties.get(key)
    if e is None:
        e = _empties[key] = cuda.device_array(shape, dtype=dtype)
    return e


def _launch(caller, spec, math_fn, work, aux, weights, params, scale, loss_out, buffers, hess, shape2d, rows,
            factor, loss_dtype, reduced, gate):
    """Queue the loss kernel; return the device arrays of the float64 sum of the weighted
    losses and (when ``reduced``) of that sum times ``factor``, in ``loss_dtype``.
    ``gate``: what a kernel decided before it, the label check's verdict for a row
    kernel or hinge's rule for an element-wise one (None: nothing)."""
    count = shape2d[0]
    x = work[0]
    dt = caller.dtype(x)  # the kernels' dtype (int16: bfloat16 bits)

    def out(a):
        return _empty(dt, rows, count) if a is None else a

    y = work[1] if len(work) > 1 else x
    gx = out(buffers[0])
    gy = out(buffers[1]) if spec.grads > 1 else _empty(dt, rows, count)
    h = out(hess)
    lo = loss_out if loss_out is not None else _empty(loss_dtype, False, 0)
    w = weights if weights is not None else _empty(np.float64, False, 0)
    space = workspace(caller)
    total = space.array("total", (1,), np.float64)
    value = caller.empty((1,), loss_dtype) if reduced else None
    val = value if reduced else _empty(loss_dtype, False, 0)
    tail = (space.counter, factor, total, val)
    if rows and count == 0:  # no rows, no blocks: the sum is 0
        total = caller.from_host(np.zeros(1))
        if value is not None:
            value = caller.from_host(np.array([0.0 * factor], dtype=loss_dtype))
        return total, value
    if rows:  # a warp or a block per row
        c = aux if aux is not None else _empty(np.float64, False, 0)
        threads, group = layout = _row_layout(shape2d[1])
        blocks = min(-(-count // (threads // group)), MAX_ROW_BLOCKS)
        partials = space.array("partials", (blocks,), np.float64)
        vv = work[2] if len(work) > 2 else x
        gv = out(buffers[2]) if spec.grads > 2 else _empty(dt, rows, count)
        g = gate if gate is not None else _empty(np.float64, False, 0)
        launch(_rows_kernel(math_fn, layout, dt), blocks, threads, caller,
               x, y, vv, c, w, params, scale, lo, gx, gy, gv, h, g, partials, *tail)
    else:
        blocks = max(1, min(-(-count // THREADS), MAX_BLOCKS))
        partials = space.array("partials", (blocks,), np.float64)
        c = aux if aux is not None else x
        rule = gate if gate is not None else _empty(np.float64, False, 0)
        launch(_loss_kernel(math_fn, dt == np.int16, gate is not None), blocks, THREADS, caller,
               x, y, c, w, params, scale, lo, gx, gy, h, rule, partials, *tail)
    return total, value


def _finish(caller, spec, total, n, value, grad):
    """Queue :func:`elementwise.finish_kernel`: the loss from the sum ``total`` and divisor
    ``n`` into ``value``, and the gradient (1-D) scaled by its factor (None: not wanted)."""
    g = grad if grad is not None else _empty(np.float64, False, 0)
    val = value if value is not None else _empty(np.float64, False, 0)
    blocks = max(1, min(-(-g.shape[0] // THREADS), MAX_BLOCKS))
    finish = kernel((spec.finish, "finish"), lambda threads: elementwise.finish_kernel(spec.finish, threads))
    launch(finish, blocks, THREADS, caller, total, n, val, g)


class _LabelCheck(SimpleNamespace):
    """A queued label check: ``gate`` for the loss kernel; ``wait()`` for the host, which
    raises for a bad label; ``settle()``, which only waits (the verdict's copy lands in
    memory this thread's next call reuses: a call that fails must not leave it pending)."""


def _check_labels(caller, labels, width, ignore, class_weight, mean):
    """Queue :func:`checks.label_check_kernel` on ``labels`` (contract section 3: no kernel
    ever reads with a bad one), with ``class_weight`` (float64 on the device, or None:
    the loss kernel's, :func:`_aux_array`) and ``mean`` (``checks.MEAN_*``) saying what
    the gate divides by, and the copy of its verdict to the host. Its ``wait()``, called
    once the loss kernel is queued behind it, raises the CPU's error for a label out of
    range (the loss kernel, gated, wrote nothing). Nothing is copied to the device, and
    the host waits for the check alone, not for the loss kernel."""
    n = labels.shape[0]
    blocks = max(1, min(-(-n // THREADS), MAX_BLOCKS))
    space = workspace(caller)
    stats = space.array("label stats", (3, blocks + 1), np.int64)  # per block, then the grid's: min, max, count
    weights = space.array("label weights", (blocks,), np.float64) if class_weight is not None else None
    gate = space.array("label gate", (3,), np.float64)
    nothing = _empty(np.float64, False, 0)
    launch(kernel("label_check", checks.label_check_kernel), blocks, THREADS, caller,
           labels, 0 if ignore is None else ignore, ignore is not None, width,
           nothing if class_weight is None else class_weight, mean,
           stats, nothing if weights is None else weights, space.counter, gate)
    verdict = caller.to_host_later(gate)

    def wait():
        if verdict()[0] != 0.0:
            lo, hi, _ = caller.to_host(stats)[:, -1]
            _api.check_label_range(int(lo), int(hi), width, ignore)

    return _LabelCheck(gate=gate, wait=wait, settle=verdict)


def _zero_one_rule(caller, t):
    """Queue :func:`checks.zero_one_rule_kernel` on hinge's targets ``t`` (1-D) and
    return the device array that decides its rule, which the loss kernel queued behind
    it reads."""
    blocks = max(1, min(-(-t.shape[0] // THREADS), MAX_BLOCKS))
    space = workspace(caller)
    others = space.array("rule", (1,), np.float64)
    launch(kernel("zero_one_rule", checks.zero_one_rule_kernel), blocks, THREADS, caller,
           t, space.array("rule partials", (blocks,), np.float64), space.counter, others, _empty(np.float64, False, 0))
    return others


def _float64_on_device(caller, value, name):
    """An option array (class_weight, pos_weight) as float64 on the device: host arrays
    are small settings and are copied there; device arrays must be the caller's kind."""
    if is_device_array(value):
        _, (native,) = adopt([value], [name])
        if caller.kind == "numba":
            if np.dtype(native.dtype) != np.float64:
                raise TypeError(f"{name} as a Numba device array must be float64, got {native.dtype}")
            return native
        if caller.kind == "torch":
            import torch

            return native.to(torch.float64).contiguous()
        return caller.cupy.ascontiguousarray(native, dtype=np.float64)
    return caller.from_host(np.asarray(value, dtype=np.float64))


def _aux_array(caller, spec, options, metas, width, rows, shape2d):
    if spec.aux is None or rows:  # the class-axis aux array: class_weight (_check_labels reads it too)
        if rows and spec.aux is not None and options.get("class_weight") is not None:
            class_weight = _float64_on_device(caller, options["class_weight"], "class_weight")
            if tuple(class_weight.shape) != (width,):
                raise ValueError(
                    f"class_weight must have shape ({width},), one weight per class, got {tuple(class_weight.shape)}"
                )
            return class_weight
        return None
    value = options.get("pos_weight")
    if value is None or (not is_device_array(value) and np.ndim(value) == 0):
        return None
    if is_device_array(value):
        a = _float64_on_device(caller, value, "pos_weight")
        if caller.kind == "torch":
            return a.broadcast_to(metas[0].shape).contiguous().view(shape2d)
        if caller.kind == "cupy":
            return caller.cupy.ascontiguousarray(caller.cupy.broadcast_to(a, metas[0].shape)).reshape(shape2d)
        if tuple(a.shape) != metas[0].shape:
            raise ValueError("pos_weight as a Numba device array must have the logits' shape")
        return a.reshape(shape2d)
    host = spec.aux(options, metas)
    return caller.from_host(np.ascontiguousarray(host, dtype=np.float64).reshape(shape2d))


def _sample_weights(caller, sample_weight, loss_shape, count):
    if sample_weight is None:
        return None
    if not is_device_array(sample_weight):
        w = np.asarray(sample_weight)
        if w.ndim:
            raise ValueError("sample_weight must be on the GPU with the inputs (or a number)")
        if w.dtype.kind not in "biuf":
            raise TypeError(f"sample_weight must hold real numbers, got dtype {w.dtype}")
        return caller.full((count,), np.float64, float(w))
    _, (w,) = adopt([sample_weight], ["sample_weight"])
    if caller.kind == "torch":
        import torch

        try:
            w = w.broadcast_to(loss_shape)
        except RuntimeError:
            raise ValueError(
                f"sample_weight of shape {tuple(w.shape)} does not broadcast to the unreduced loss's shape {loss_shape}"
            ) from None
        return w.to(torch.float64).contiguous().view(count)
    if caller.kind == "cupy":
        try:
            w = caller.cupy.broadcast_to(w, loss_shape)
        except ValueError:
            raise ValueError(
                f"sample_weight of shape {tuple(w.shape)} does not broadcast to the unreduced loss's shape {loss_shape}"
            ) from None
        return caller.cupy.ascontiguousarray(w, dtype=np.float64).reshape(count)
    if tuple(w.shape) != tuple(loss_shape) or np.dtype(w.dtype) != np.float64:
        raise ValueError(f"sample_weight as a Numba device array must be float64 of shape {loss_shape}")
    return w.reshape(count)


def _check_out(caller, spec, out, natives, metas, want):
    """``out`` as a tuple of one device array per differentiable input, checked."""
    if out is None:
        return None
    if not want:
        raise ValueError("out= is for the gradient, but grad=False was asked for")
    outs = (out,) if spec.grads == 1 else tuple(out) if isinstance(out, (tuple, list)) else ()
    if len(outs) != spec.grads:
        raise ValueError(f"out must hold {spec.grads} arrays (one per differentiable input), got {len(outs)}")
    checked = []
    for o, m, name in zip(outs, metas, spec.inputs):
        if not is_device_array(o):
            raise TypeError(f"out for {name} must be a device array like the inputs, got {type(o).__name__}")
        _, (o,) = adopt([o], [name])
        om = _meta(caller, o)
        if om.shape != m.shape or om.dtype != m.dtype:
            raise ValueError(f"out for {name} must have shape {m.shape} and dtype {m.dtype}, got {om.shape} {om.dtype}")
        checked.append(o)
    return tuple(checked)


def _writes_directly(caller, target, k, work, storage, axis, rows, shape):
    """Whether gradient ``k`` can be written straight into ``target``: the kernels'
    layout and dtype, and no overlap with what the kernel reads except its own input
    exactly (kernels read an element, or a row, before writing it)."""
    target_dtype = _meta(caller, target).dtype
    if target_dtype is _BFLOAT16:
        if storage != np.int16:  # bfloat16 computed through a float32 copy
            return False
    elif np.dtype(target_dtype) != storage:
        return False
    if rows and axis != len(shape) - 1:
        return False
    if not _is_c_contiguous(caller, target):
        return False
    lo, hi = caller.pointer(target)
    for j, arr in enumerate(work):
        a_lo, a_hi = caller.pointer(arr)
        if a_lo < hi and lo < a_hi and not (j == k and (a_lo, a_hi) == (lo, hi)):
            return False
    return True


def _is_c_contiguous(caller, a):
    if caller.kind == "torch":
        return a.is_contiguous()
    if caller.kind == "cupy":
        return a.flags.c_contiguous
    return a.is_c_contiguous()


def _deliver(caller, buf, target, like, shape, axis, rows):
    """A gradient buffer in the caller's shape and dtype; copied into ``target`` unless
    the kernel wrote there already."""
    if target is not None:
        t_lo, _ = caller.pointer(target)
        b_lo, _ = caller.pointer(buf)
        if t_lo == b_lo:
            return target
    result = caller.deliver(buf, shape, axis, rows, like.dtype)
    if target is not None:
        caller.copy_into(target, result)
        return target
    return result

