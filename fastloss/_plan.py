"""The rules of a call, written once for every path (contract sections 1-3).

A call is read (:func:`parse`: arrays by position or name, the common keywords, each
option checked and made canonical), its arrays are checked from their dtypes and shapes
alone (:func:`layout`, which works on NumPy arrays, device arrays and traced arrays
alike), and its reduction is planned (:func:`gradient_scale`, :func:`reduce_total`). The
host path (:mod:`fastloss._api`), the CUDA path (:mod:`fastloss.cuda`) and the adapters
that check while tracing (:mod:`fastloss.jax`) carry these out; the compiled fast path
serves only calls these rules accept unchanged and hands anything else to the host path.
Every error names the argument and what was expected, and is raised before a kernel runs.
"""

import math
from typing import NamedTuple

import numpy as np

REDUCTIONS = ("mean", "sum", "none")
BACKENDS = ("auto", "numba", "cython", "cuda")


class Common(NamedTuple):
    """The arguments every loss takes, besides its arrays, options and backend."""

    reduction: str
    sample_weight: object
    want: object
    out: object
    hessian: bool
    axis: int


def parse(spec, args, kwargs):
    """``(arrays, common, options, backend)`` of a call of ``spec`` with the positional
    ``args`` and keyword ``kwargs`` (consumed): options checked and canonical, flags
    checked."""
    arrays = _gather_inputs(spec, args, kwargs)
    reduction = kwargs.pop("reduction", "mean")
    sample_weight = kwargs.pop("sample_weight", None)
    want = kwargs.pop("grad", True)
    out = kwargs.pop("out", None)
    hessian = kwargs.pop("hessian", False)
    backend = kwargs.pop("backend", "auto")
    axis = kwargs.pop("axis", -1) if spec.family == "rowwise" else -1
    options = {o.name: o.check(kwargs.pop(o.name, o.default)) for o in spec.options}
    if kwargs:
        raise TypeError(f"{spec.name}() got an unexpected keyword argument {next(iter(kwargs))!r}")
    check_flags(spec, reduction, want, hessian, backend)
    return arrays, Common(reduction, sample_weight, want, out, hessian, axis), options, backend


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
    """``reduction``, ``grad``, ``hessian`` and ``backend`` of a call of ``spec``."""
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if reduction not in spec.reductions:
        raise ValueError(f"{spec.name} supports reduction in {spec.reductions}, not {reduction!r}")
    if not (want is True or want is False or (isinstance(want, str) and want == "only")):
        raise ValueError(f"grad must be True, False or 'only', got {want!r}")
    if not isinstance(hessian, (bool, np.bool_)):
        raise TypeError(f"hessian must be True or False, got {hessian!r}")
    if hessian and not spec.hessian:
        raise ValueError(f"{spec.name} has no hessian; losses with one: see fastloss.losses()")
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


# --- arrays, from their dtypes and shapes ------------------------------------------------


class Layout(NamedTuple):
    """What the checked arrays of a call are: ``dtype`` of the results, ``compute`` dtype,
    whether the target holds integer labels (``sparse``), the class axis (non-negative;
    -1 for element-wise losses), the shapes, the class-axis ``width`` (1 element-wise)
    and the number of losses, ``count``."""

    dtype: object
    compute: np.dtype
    sparse: bool
    rows: bool
    axis: int
    shape: tuple
    loss_shape: tuple
    width: int
    count: int

    @property
    def shape2d(self):
        """The kernels' shape of the first input: (rows, width), or (elements,)."""
        return (self.count, self.width) if self.rows else (self.count,)


def layout(spec, arrays, axis):
    """Contract section 3's checks that read only the arrays' ``dtype``, ``shape`` and
    ``ndim`` (adapters that see traced arrays run them while tracing), and the
    :class:`Layout` they give."""
    dtype, compute, sparse = _check_dtypes(spec, arrays)
    rows = spec.family == "rowwise"
    axis = check_axis(axis, arrays[0]) if rows else -1
    _check_shapes(spec, arrays, axis, sparse)
    shape = tuple(arrays[0].shape)
    loss_shape = shape[:axis] + shape[axis + 1:] if rows else shape
    width = shape[axis] if rows else 1
    return Layout(dtype, compute, sparse, rows, axis, shape, loss_shape, width, math.prod(loss_shape))


def is_float(dt):
    """A floating dtype (bfloat16 included, which NumPy knows through ml_dtypes)."""
    return dt.kind == "f" or dt.name == "bfloat16"


def compute_dtype(dt):
    """float32 and float64 compute in their own precision; half types in float32."""
    if dt.itemsize <= 4:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _check_dtypes(spec, arrays):
    """(dtype of the results, compute dtype, whether the target holds integer labels)."""
    for a, name in zip(arrays[: spec.grads], spec.inputs):
        if not is_float(a.dtype):
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
        if spec.target == "float" and not (integer or t.dtype.kind in "bf" or is_float(t.dtype)):
            raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
        if spec.target == "float_or_labels" and not (integer or t.dtype.kind in "bf" or is_float(t.dtype)):
            raise TypeError(f"{name} must be integer labels or real targets, got dtype {t.dtype}")
        sparse = spec.target == "labels" or (spec.target == "float_or_labels" and integer)
    return dtype, compute_dtype(dtype), sparse


def check_axis(axis, pred):
    """The class ``axis`` of ``pred`` as a non-negative index."""
    if pred.ndim == 0:
        raise ValueError("a class-axis loss needs predictions with at least one dimension")
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    if not -pred.ndim <= axis < pred.ndim:
        raise ValueError(f"axis {axis} is out of range for an array of {pred.ndim} dimensions")
    return int(axis) % pred.ndim


def _check_shapes(spec, arrays, axis, sparse):
    shape = tuple(arrays[0].shape)
    for i, (a, name) in enumerate(zip(arrays[1:], spec.inputs[1:]), 1):
        if i == 1 and sparse:
            expected = shape[:axis] + shape[axis + 1:]
            if tuple(a.shape) != expected:
                raise ValueError(
                    f"{name} must have the shape of {spec.inputs[0]} without its class axis, "
                    f"{expected}, got {tuple(a.shape)}"
                )
        elif tuple(a.shape) != shape:
            raise ValueError(f"{name} has shape {tuple(a.shape)} but {spec.inputs[0]} has shape {shape}")


def check_label_range(lo, hi, width, ignore_index):
    """Raise contract section 3's error unless the smallest and largest counted labels,
    ``lo`` and ``hi``, are in [0, width): a kernel never reads with another."""
    if lo < 0 or hi >= width:
        bad = lo if lo < 0 else hi
        extra = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        raise ValueError(f"labels must be in [0, {width}){extra}; found {bad}")


def check_sample_weight(dtype, shape, loss_shape):
    """Sample weights of ``dtype`` and ``shape``: real, and broadcastable to the unreduced
    loss's shape."""
    if np.dtype(dtype).kind not in "biuf":
        raise TypeError(f"sample_weight must hold real numbers, got dtype {dtype}")
    try:
        fits = np.broadcast_shapes(tuple(shape), tuple(loss_shape)) == tuple(loss_shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"sample_weight of shape {tuple(shape)} does not broadcast to the unreduced loss's shape {loss_shape}"
        )


def check_class_weight(shape, width):
    if tuple(shape) != (width,):
        raise ValueError(f"class_weight must have shape ({width},), one weight per class, got {tuple(shape)}")


def gradients_out(spec, out, want):
    """``out`` as a tuple of one array per differentiable input (None if absent); each
    path checks that they are its own kind with :func:`check_out_like`."""
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
    return outs


def check_out_like(out, like, name):
    """``out`` for input ``name`` has ``like``'s shape and dtype."""
    if tuple(out.shape) != tuple(like.shape) or out.dtype != like.dtype:
        raise ValueError(
            f"out for {name} must have shape {tuple(like.shape)} and dtype {like.dtype}, "
            f"got {tuple(out.shape)} {out.dtype}"
        )


# --- the reduction ------------------------------------------------------------------------


def denominator(spec, options, arrays, count):
    """The divisor of "mean": the number of losses, or the loss's own (sparse
    cross-entropy's counted rows or their class weights)."""
    return float(count) if spec.denominator is None else spec.denominator(options, arrays)


def gradient_scale(spec, reduction, denominator):
    """What a kernel multiplies every gradient by: 1/denominator for a "mean" (0 when
    nothing is counted, so every gradient is 0), else 1; a loss finished from its sum
    (RMSE) scales its gradient after, in :func:`reduce_total`."""
    if reduction == "mean" and spec.finish is None:
        return 1.0 / denominator if denominator != 0.0 else 0.0
    return 1.0


def reduce_total(spec, reduction, total, denominator):
    """``(loss, gradient factor)`` from a kernel's weighted loss sum: a "mean" divides
    (NaN when nothing is counted), a finished loss (RMSE) is computed from the sum, and
    the factor is what its gradients still need (1 for every other loss)."""
    if spec.finish is not None:
        return spec.finish(total, denominator if reduction == "mean" else 1.0)
    if reduction == "mean":
        return (total / denominator if denominator != 0.0 else math.nan), 1.0
    return total, 1.0
