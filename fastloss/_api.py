"""The general path of every call: read it, hand it to the path of its arrays, and run
it on the host.

The call is read and checked by the rules of :mod:`fastloss._plan`; arrays of a library
with a registered handler (Dask) go to that handler, device arrays to the CUDA backend,
and everything else is computed here: inputs are brought to the kernels' layout
(C-contiguous, the class axis last, flattened to 1-D or 2-D, in the compute dtype),
copying only what is not already in that form; outputs are written straight into ``out``
where its layout allows, else into a buffer copied there.
"""

import numpy as np

from . import _buffers, _config, _plan, cpu_cython
from ._arrays import adopt_out, handler_for, host_array, is_device_array, result_converter
from ._result import LossResult


def evaluate(spec, args, kwargs):
    """Compute ``spec``'s loss of the arrays ``args`` with the options ``kwargs``."""
    arrays, common, options, backend = _plan.parse(spec, args, kwargs)
    if backend == "cython" and not cpu_cython.AVAILABLE:
        raise ValueError("backend='cython' needs the compiled extension: reinstall fastloss (pip install .)")
    handler = handler_for(arrays)
    if handler is not None:
        return handler(spec, arrays, common, options, backend)
    if backend == "cuda" or any(is_device_array(a) for a in arrays):
        if backend not in ("auto", "cuda"):
            raise ValueError(f"backend={backend!r} runs on the CPU, but the arrays are on a GPU; use 'cuda' or 'auto'")
        from . import cuda

        return cuda.evaluate(spec, arrays, common, options)
    for name, value in options.items():
        if is_device_array(value):
            raise ValueError(f"{name} is on a GPU but the inputs are in host memory; pass both on one device")
    return _host(spec, arrays, common, options, backend)


def _host(spec, arrays, common, options, backend):
    reduction, want, hessian, out = common.reduction, common.want, common.hessian, common.out
    back = result_converter(arrays[0])
    arrays = [host_array(a, name) for a, name in zip(arrays, spec.inputs)]
    if back is not None and out is not None:  # tensors as out=: write through NumPy views of them
        back, out = adopt_out(back, out, spec.grads)
    plan = _plan.layout(spec, arrays, common.axis)
    dtype, compute, sparse, rows, axis = plan.dtype, plan.compute, plan.sparse, plan.rows, plan.axis
    count, width = plan.count, plan.width
    if sparse:
        _check_labels(arrays[1], width, options.get("ignore_index"))

    # Kernel inputs: contiguous, class axis last, 1-D (element-wise) or 2-D (row-wise).
    work = [_work_array(a, spec, i, sparse, compute, axis, count, width) for i, a in enumerate(arrays)]
    x = work[0]
    weights = _sample_weights(common.sample_weight, plan.loss_shape)
    aux = _aux_array(spec, options, arrays, width, rows)
    params = tuple(float(v) for v in spec.params(options, arrays)) or (0.0,)

    # Outputs.
    outs = _check_out(spec, out, arrays, want)
    empty = np.empty((count, 0) if rows else 0, dtype=compute)
    n_grads = spec.grads if want else 0
    buffers = []
    for k in range(spec.grads):
        if k >= n_grads:
            buffers.append(empty)
            continue
        target = outs[k] if outs is not None else None
        direct = target is not None and _writes_directly(target, k, work, weights, aux, compute, axis, rows)
        buffers.append(target.reshape(x.shape) if direct else _buffers.empty(x.shape, compute))
    hess = _buffers.empty(x.shape, compute) if hessian else empty
    keep_loss = reduction == "none" and want != "only"
    loss_out = _buffers.empty((count,), compute) if keep_loss else np.empty(0, dtype=compute)

    denominator = _plan.denominator(spec, options, arrays, count)
    scale = _plan.gradient_scale(spec, reduction, denominator)
    math_fn = spec.math_for(sparse, options)
    y = work[1] if len(work) > 1 else x
    gy = buffers[1] if spec.grads > 1 else empty
    if rows:
        v = work[2] if len(work) > 2 else x
        gv = buffers[2] if spec.grads > 2 else empty
        args = (x, y, v, aux, weights, params, scale, loss_out, buffers[0], gy, gv, hess)
    else:
        args = (x, y, aux, weights, params, scale, loss_out, buffers[0], gy, hess)
    total = _backend(backend, x.size).run(math_fn, spec.family, args)

    value, factor = _plan.reduce_total(spec, reduction, total, denominator)
    if factor != 1.0:
        for k in range(n_grads):
            buffers[k] *= factor
    # A float64 sum, or a float32 buffer of a half-precision input, may not fit the
    # result's dtype: it becomes +-inf there, as the kernels' own stores do, silently.
    with np.errstate(over="ignore"):
        if want == "only":
            loss = None
        elif keep_loss:
            loss = loss_out.reshape(plan.loss_shape).astype(dtype, copy=False)
        else:
            loss = np.asarray(value, dtype=dtype)
        grads = None
        if want:
            grads = tuple(
                _deliver(buffers[k], outs[k] if outs is not None else None, arrays[k], axis, rows)
                for k in range(spec.grads)
            )
            grads = grads[0] if spec.grads == 1 else grads
        h = _deliver(hess, None, arrays[0], axis, rows) if hessian else None
    if back is not None:
        loss, h = back(loss), back(h)
        grads = tuple(back(g) for g in grads) if isinstance(grads, tuple) else back(grads)
    return LossResult(loss, grads, h)


_NO_WEIGHTS = np.empty(0, dtype=np.float64)


#: The compiled fast path for the common case (None: every call takes the general path).
FAST_CALL = cpu_cython.fast_call


def _backend(backend, size):
    """The backend module that runs a kernel of ``size`` elements."""
    if backend == "cython" or (backend == "auto" and cpu_cython.AVAILABLE and size < _config.CYTHON_MAX_SIZE):
        return cpu_cython
    from . import cpu_numba  # imported on first use: Numba's import costs ~0.2 s

    return cpu_numba


def _check_labels(labels, width, ignore_index):
    """Every label in [0, width) or equal to ignore_index: a kernel never sees another."""
    checked = labels if ignore_index is None else labels[labels != ignore_index]
    if checked.size:
        _plan.check_label_range(checked.min(), checked.max(), width, ignore_index)


def _work_array(a, spec, i, sparse, compute, axis, count, width):
    """Input ``i`` in the kernels' layout."""
    if i == 1 and sparse:
        return np.ascontiguousarray(a, dtype=np.intp).reshape(count)
    if spec.family == "rowwise":
        if axis != a.ndim - 1:
            a = np.moveaxis(a, axis, -1)
        return np.ascontiguousarray(a, dtype=compute).reshape(count, width)
    return np.ascontiguousarray(a, dtype=compute).reshape(-1)


def _sample_weights(sample_weight, loss_shape):
    if sample_weight is None:
        return _NO_WEIGHTS
    w = np.asarray(sample_weight)
    _plan.check_sample_weight(w.dtype, w.shape, loss_shape)
    return np.ascontiguousarray(np.broadcast_to(w, loss_shape), dtype=np.float64).reshape(-1)


def _aux_array(spec, options, arrays, width, rows):
    if spec.aux is None:
        return None
    a = spec.aux(options, arrays)
    if a is None:
        return None
    if rows:
        _plan.check_class_weight(a.shape, width)
        return np.ascontiguousarray(a, dtype=np.float64)
    return np.ascontiguousarray(a, dtype=np.float64).reshape(-1)


def _check_out(spec, out, arrays, want):
    """``out`` as a tuple of one writable NumPy array per differentiable input, checked;
    None if absent."""
    outs = _plan.gradients_out(spec, out, want)
    for o, a, name in zip(outs or (), arrays, spec.inputs):
        if not isinstance(o, np.ndarray):
            raise TypeError(f"out for {name} must be a NumPy array, got {type(o).__name__}")
        _plan.check_out_like(o, a, name)
        if not o.flags.writeable:
            raise ValueError(f"out for {name} is read-only")
    return outs


def _writes_directly(target, k, work, weights, aux, compute, axis, rows):
    """Whether the kernel can write gradient ``k`` straight into ``target``: it has the
    kernel's layout, and overlaps no array the kernel reads except its own input exactly
    (each kernel reads an element, or a row's every element, before writing it)."""
    if target.dtype != compute or not target.flags.c_contiguous:
        return False
    if rows and axis != target.ndim - 1:
        return False
    for j, arr in enumerate((*work, weights) if aux is None else (*work, weights, aux)):
        if np.may_share_memory(target, arr):
            same = j == k and arr.ctypes.data == target.ctypes.data and arr.size == target.size
            if not same:
                return False
    return True


def _deliver(buf, target, like, axis, rows):
    """A kernel output buffer in the shape, axis order and dtype of ``like``; copied into
    ``target`` (the caller's ``out``) unless the kernel wrote there already."""
    if target is not None and np.may_share_memory(buf, target):
        return target
    if rows and axis != like.ndim - 1:
        moved = like.shape[:axis] + like.shape[axis + 1:] + (like.shape[axis],)
        result = np.moveaxis(buf.reshape(moved), -1, axis)
    else:
        result = buf.reshape(like.shape)
    if target is not None:
        np.copyto(target, result, casting="unsafe")
        return target
    return result.astype(like.dtype, order="C", copy=False)
