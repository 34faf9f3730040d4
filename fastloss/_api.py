"""The generic call path of every loss: validate, prepare, dispatch, wrap.

Everything the contract (docs/contract.md, section 3) forbids is rejected here, before a
kernel runs. Inputs are then brought to the kernels' layout (C-contiguous, the class axis
last, flattened to 1-D or 2-D, in the compute dtype), copying only what is not already in
that form; outputs are written straight into ``out`` where its layout allows, else into a
buffer copied there.
"""

import math
from typing import NamedTuple

import numpy as np

from . import _buffers, _config, cpu_cython, cuda
from ._result import LossResult

_REDUCTIONS = ("mean", "sum", "none")
_ALL_BACKENDS = ("auto", "numba", "cython", "cuda")


class Common(NamedTuple):
    """The arguments every loss takes, besides its arrays and options."""

    reduction: str
    sample_weight: object
    want: object
    out: object
    hessian: bool
    axis: int


def evaluate(spec, args, kwargs):
    """Compute ``spec``'s loss of the arrays ``args`` with the options ``kwargs``."""
    arrays = _gather_inputs(spec, args, kwargs)
    reduction = kwargs.pop("reduction", "mean")
    sample_weight = kwargs.pop("sample_weight", None)
    want = kwargs.pop("grad", True)
    out = kwargs.pop("out", None)
    hessian = kwargs.pop("hessian", False)
    backend = kwargs.pop("backend", "auto")
    # Adapters that split the data (Dask) decide hinge's 0/1 rule over all of it, once.
    zero_one = kwargs.pop("_targets_zero_one", None)
    axis = kwargs.pop("axis", -1) if spec.family == "rowwise" else -1
    options = {o.name: o.check(kwargs.pop(o.name, o.default)) for o in spec.options}
    if kwargs:
        raise TypeError(f"{spec.name}() got an unexpected keyword argument {next(iter(kwargs))!r}")
    check_flags(spec, reduction, want, hessian, backend)
    if any(type(a).__module__.startswith("dask.") for a in arrays):
        from . import dask as lazy

        common = Common(reduction, sample_weight, want, out, hessian, axis)
        return lazy.evaluate(spec, arrays, common, options, backend)
    if backend == "cuda" or any(cuda.is_device_array(a) for a in arrays):
        if backend not in ("auto", "cuda"):
            raise ValueError(f"backend={backend!r} runs on the CPU, but the arrays are on a GPU; use 'cuda' or 'auto'")
        common = Common(reduction, sample_weight, want, out, hessian, axis)
        return cuda.evaluate(spec, arrays, common, options)
    for name, value in options.items():
        if cuda.is_device_array(value):
            raise ValueError(f"{name} is on a GPU but the inputs are in host memory; pass both on one device")

    back = _result_converter(arrays[0])
    arrays = [_host_array(a, name) for a, name in zip(arrays, spec.inputs)]
    if back is not None and out is not None:  # tensors as out=: write through NumPy views of them
        back, out = _adopt_out(back, out, spec)
    dtype, compute, sparse, axis = check_arrays(spec, arrays, axis)
    rows = spec.family == "rowwise"
    shape = arrays[0].shape
    loss_shape = shape[:axis] + shape[axis + 1:] if rows else shape
    width = arrays[0].shape[axis] if rows else 1
    count = math.prod(loss_shape)
    if sparse:
        _check_labels(arrays[1], width, options.get("ignore_index"))

    # Kernel inputs: contiguous, class axis last, 1-D (element-wise) or 2-D (row-wise).
    work = [_work_array(a, spec, i, sparse, compute, axis, count, width) for i, a in enumerate(arrays)]
    x = work[0]
    weights = _sample_weights(sample_weight, loss_shape)
    aux = _aux_array(spec, options, arrays, width, rows)
    decided = (arrays[0], bool(zero_one)) if zero_one is not None and spec.data_params else arrays
    params = tuple(float(v) for v in spec.params(options, decided)) or (0.0,)

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

    denominator = float(count) if spec.denominator is None else spec.denominator(options, arrays)
    scale = 1.0
    if reduction == "mean" and spec.finish is None:
        scale = 1.0 / denominator if denominator != 0.0 else 0.0

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

    # Reduce the loss, scale what a finished loss (RMSE) needs, and hand back.
    if spec.finish is not None:
        value, factor = spec.finish(total, denominator if reduction == "mean" else 1.0)
        for k in range(n_grads):
            buffers[k] *= factor
    elif reduction == "mean":
        value = total / denominator if denominator != 0.0 else math.nan
    else:
        value = total
    # A float64 sum, or a float32 buffer of a half-precision input, may not fit the
    # result's dtype: it becomes +-inf there, as the kernels' own stores do, silently.
    with np.errstate(over="ignore"):
        if want == "only":
            loss = None
        elif keep_loss:
            loss = loss_out.reshape(loss_shape).astype(dtype, copy=False)
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


def _result_converter(first):
    """How results go back to the caller's kind: PyTorch CPU tensors in give tensors out
    (``torch.from_numpy``, no copy), JAX arrays give JAX arrays (``jnp.asarray``: JAX
    owns its buffers, so a copy); None for NumPy and everything else."""
    module = type(first).__module__
    if module.startswith("torch") and hasattr(first, "detach"):
        import torch

        def to_torch(a):
            if a is None or not isinstance(a, np.ndarray):
                return a
            a = a if a.flags.writeable else a.copy()
            if a.dtype.kind == "V" and a.dtype.name == "bfloat16":  # ml_dtypes': the same bits as torch's
                return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
            return torch.from_numpy(a)

        return to_torch
    if module.startswith(("jax", "jaxlib")) and hasattr(first, "__dlpack__"):
        import jax.numpy as jnp

        def to_jax(a):
            return a if a is None or not isinstance(a, np.ndarray) else jnp.asarray(a)

        return to_jax
    return None


def tensor_views(arrays):
    """For the compiled fast path: NumPy views of PyTorch CPU tensors (float32, float64 or
    integer; read in place) and a function that hands a :class:`LossResult` back as
    tensors (``torch.from_numpy``, no copy); ``(arrays, None)`` for anything else."""
    if not (type(arrays[0]).__module__.startswith("torch") and hasattr(arrays[0], "detach")):
        return arrays, None
    try:
        views = tuple(a.detach().numpy() if a.device.type == "cpu" and not a.is_conj() and not a.is_neg() else None
                      for a in arrays)
    except (AttributeError, TypeError, RuntimeError):  # not a tensor, or a dtype NumPy lacks (bfloat16)
        return arrays, None
    if any(v is None for v in views):
        return arrays, None
    import torch

    def tensor(a):
        return a if a is None else torch.from_numpy(a)

    def back(result):
        grad = tuple(map(tensor, result.grad)) if isinstance(result.grad, tuple) else tensor(result.grad)
        return LossResult(tensor(result.loss), grad, tensor(result.hess))

    return views, back


def _adopt_out(back, out, spec):
    """``out`` given as tensors: NumPy views of them for the kernels, and a converter that
    hands back the caller's own tensor where the result is one of those views."""
    given = out if isinstance(out, (tuple, list)) and spec.grads > 1 else (out,)
    views = tuple(_host_array(o, "out") if type(o).__module__.startswith("torch") else o for o in given)
    originals = {id(v): o for v, o in zip(views, given)}

    def convert(a):
        original = originals.get(id(a))
        return back(a) if original is None else original

    return convert, (views if spec.grads > 1 and isinstance(out, (tuple, list)) else views[0])


_NO_WEIGHTS = np.empty(0, dtype=np.float64)


#: The compiled fast path for the common case (None: every call takes the general path).
FAST_CALL = cpu_cython.fast_call


def _backend(backend, size):
    """The backend module that runs a kernel of ``size`` elements."""
    if backend == "cython" or (backend == "auto" and cpu_cython.AVAILABLE and size < _config.CYTHON_MAX_SIZE):
        return cpu_cython
    from . import cpu_numba  # imported on first use: Numba's import costs ~0.2 s

    return cpu_numba


def check_arrays(spec, arrays, axis):
    """Contract section 3's checks that read only the arrays' dtypes and shapes (adapters that
    see traced arrays run them while tracing): (dtype of the results, compute dtype,
    whether the target holds integer labels, the class axis as a non-negative index)."""
    dtype, compute, sparse = _check_dtypes(spec, arrays)
    if spec.family == "rowwise":
        axis = _check_axis(axis, arrays[0])
    _check_shapes(spec, arrays, axis, sparse)
    return dtype, compute, sparse, axis


def _gather_inputs(spec, args, kwargs):
    """The input arrays, given positionally or by name."""
    if len(args) > len(spec.inputs):
        raise TypeError(f"{spec.name}() takes {len(spec.inputs)} arrays ({', '.join(spec.inputs)}), got {len(args)}")
    arrays = list(args)
    for name in spec.inputs[len(args):]:
        if name not in kwargs:
            raise TypeError(f"{spec.name}() missing the array argument {name!r}")
        arrays.append(kwargs.pop(name))
    return arrays


def check_flags(spec, reduction, want, hessian, backend):
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if reduction not in spec.reductions:
        raise ValueError(f"{spec.name} supports reduction in {spec.reductions}, not {reduction!r}")
    if not (want is True or want is False or (isinstance(want, str) and want == "only")):
        raise ValueError(f"grad must be True, False or 'only', got {want!r}")
    if not isinstance(hessian, (bool, np.bool_)):
        raise TypeError(f"hessian must be True or False, got {hessian!r}")
    if hessian and not spec.hessian:
        raise ValueError(f"{spec.name} has no hessian; losses with one: see fastloss.losses()")
    if not isinstance(backend, str) or backend not in _ALL_BACKENDS:
        raise ValueError(f"backend must be one of {_ALL_BACKENDS}, got {backend!r}")
    if backend == "cython" and not cpu_cython.AVAILABLE:
        raise ValueError("backend='cython' needs the compiled extension: reinstall fastloss (pip install .)")


def _host_array(obj, name):
    """A NumPy view of ``obj`` (never a copy where NumPy can avoid one)."""
    if isinstance(obj, np.ndarray):
        return obj
    if type(obj).__module__.startswith("torch") and hasattr(obj, "detach"):
        obj = obj.detach()  # a tensor that requires grad is read, never copied
        if str(obj.dtype) == "torch.bfloat16" and obj.device.type == "cpu":
            return _bfloat16_view(obj)
    elif hasattr(obj, "__dlpack__") and not hasattr(obj, "__array_interface__"):
        try:  # JAX CPU arrays and other DLPack producers: a view of their buffer
            return np.from_dlpack(obj)
        except Exception:  # noqa: BLE001 - a producer NumPy cannot view: fall back to __array__
            pass
    try:
        return np.asarray(obj)
    except Exception as exc:
        raise TypeError(f"{name} must be an array, got {type(obj).__name__}: {exc}") from None


def _bfloat16_view(tensor):
    """A PyTorch bfloat16 CPU tensor as a NumPy array of ml_dtypes' bfloat16, without a
    copy (NumPy's DLPack import has no bfloat16): the bits seen as int16, then retyped.
    It is computed in float32 and its results come back as bfloat16 tensors."""
    import ml_dtypes
    import torch

    return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)


def _is_float(dt):
    return dt.kind == "f" or dt.name == "bfloat16"


def _compute_dtype(dt):
    """float32 and float64 compute in their own precision; half types in float32."""
    if dt.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _check_dtypes(spec, arrays):
    """(dtype of the results, compute dtype, whether the target holds integer labels)."""
    for a, name in zip(arrays[: spec.grads], spec.inputs):
        if not _is_float(a.dtype):
            raise TypeError(f"{name} must be a floating-point array, got dtype {a.dtype}")
    dtype = arrays[0].dtype
    for a, name in zip(arrays[1: spec.grads], spec.inputs[1:]):
        if a.dtype != dtype:
            raise TypeError(f"{name} has dtype {a.dtype} but {spec.inputs[0]} has {dtype}; they must match")
    sparse = False
    if spec.target != "none":
        t, name = arrays[1], spec.inputs[1]
        integer = t.dtype.kind in "iu"
        if spec.target == "labels" and not integer:
            raise TypeError(f"{name} must be integer class labels, got dtype {t.dtype}")
        if spec.target == "float" and not (integer or t.dtype.kind in "bf" or _is_float(t.dtype)):
            raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
        if spec.target == "float_or_labels" and not (integer or t.dtype.kind in "bf" or _is_float(t.dtype)):
            raise TypeError(f"{name} must be integer labels or real targets, got dtype {t.dtype}")
        sparse = spec.target == "labels" or (spec.target == "float_or_labels" and integer)
    return dtype, _compute_dtype(dtype), sparse


def _check_axis(axis, pred):
    if pred.ndim == 0:
        raise ValueError("a class-axis loss needs predictions with at least one dimension")
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    if not -pred.ndim <= axis < pred.ndim:
        raise ValueError(f"axis {axis} is out of range for an array of {pred.ndim} dimensions")
    return int(axis) % pred.ndim


def _check_shapes(spec, arrays, axis, sparse):
    shape = arrays[0].shape
    for i, (a, name) in enumerate(zip(arrays[1:], spec.inputs[1:]), 1):
        if i == 1 and sparse:
            expected = shape[:axis] + shape[axis + 1:]
            if a.shape != expected:
                raise ValueError(
                    f"{name} must have the shape of {spec.inputs[0]} without its class axis, "
                    f"{expected}, got {a.shape}"
                )
        elif a.shape != shape:
            raise ValueError(f"{name} has shape {a.shape} but {spec.inputs[0]} has shape {shape}")


def _check_labels(labels, width, ignore_index):
    """Every label in [0, width) or equal to ignore_index: a kernel never sees another."""
    checked = labels if ignore_index is None else labels[labels != ignore_index]
    if checked.size:
        check_label_range(checked.min(), checked.max(), width, ignore_index)


def check_label_range(lo, hi, width, ignore_index):
    """Raise contract section 3's error unless the smallest and largest counted labels,
    ``lo`` and ``hi``, are in [0, width)."""
    if lo < 0 or hi >= width:
        bad = lo if lo < 0 else hi
        extra = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        raise ValueError(f"labels must be in [0, {width}){extra}; found {bad}")


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
    if w.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must hold real numbers, got dtype {w.dtype}")
    try:
        w = np.broadcast_to(w, loss_shape)
    except ValueError:
        raise ValueError(
            f"sample_weight of shape {w.shape} does not broadcast to the unreduced loss's shape {loss_shape}"
        ) from None
    return np.ascontiguousarray(w, dtype=np.float64).reshape(-1)


def _aux_array(spec, options, arrays, width, rows):
    if spec.aux is None:
        return None
    a = spec.aux(options, arrays)
    if a is None:
        return None
    if rows:
        if a.shape != (width,):
            raise ValueError(f"class_weight must have shape ({width},), one weight per class, got {a.shape}")
        return np.ascontiguousarray(a, dtype=np.float64)
    return np.ascontiguousarray(a, dtype=np.float64).reshape(-1)


def _check_out(spec, out, arrays, want):
    """``out`` as a tuple of one array per differentiable input, checked; None if absent."""
    if out is None:
        return None
    if not want:
        raise ValueError("out= is for the gradient, but grad=False was asked for")
    if spec.grads == 1:
        outs = (out,)
    elif isinstance(out, (tuple, list)):
        outs = tuple(out)
    else:
        outs = ()
    if len(outs) != spec.grads:
        raise ValueError(f"out must hold {spec.grads} arrays (one per differentiable input), got {len(outs)}")
    for o, a, name in zip(outs, arrays, spec.inputs):
        if not isinstance(o, np.ndarray):
            raise TypeError(f"out for {name} must be a NumPy array, got {type(o).__name__}")
        if o.shape != a.shape or o.dtype != a.dtype:
            raise ValueError(
                f"out for {name} must have shape {a.shape} and dtype {a.dtype}, got {o.shape} {o.dtype}"
            )
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
