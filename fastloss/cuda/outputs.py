"""Where a call's gradients go: ``out=`` checked, written straight into where the
kernels' layout allows, else delivered from the kernels' buffers in the caller's shape
and dtype (and copied into ``out=``)."""

import numpy as np

from .. import _plan
from .._arrays import is_device_array
from .arrays import BFLOAT16, adopt


def check_out(caller, spec, out, natives, metas, want):
    """``out`` as a tuple of one device array per differentiable input, checked."""
    outs = _plan.gradients_out(spec, out, want)
    if outs is None:
        return None
    checked = []
    for o, m, name in zip(outs, metas, spec.inputs):
        if not is_device_array(o):
            raise TypeError(f"out for {name} must be a device array like the inputs, got {type(o).__name__}")
        _, (o,) = adopt([o], [name])
        _plan.check_out_like(caller.meta(o), m, name)
        checked.append(o)
    return tuple(checked)


def writes_directly(caller, target, k, work, storage, axis, rows, shape):
    """Whether gradient ``k`` can be written straight into ``target``: the kernels'
    layout and dtype, and no overlap with what the kernel reads except its own input
    exactly (kernels read an element, or a row, before writing it)."""
    target_dtype = caller.meta(target).dtype
    if target_dtype is BFLOAT16:
        if storage != np.int16:  # bfloat16 computed through a float32 copy
            return False
    elif np.dtype(target_dtype) != storage:
        return False
    if rows and axis != len(shape) - 1:
        return False
    if not caller.is_c_contiguous(target):
        return False
    lo, hi = caller.pointer(target)
    for j, arr in enumerate(work):
        a_lo, a_hi = caller.pointer(arr)
        if a_lo < hi and lo < a_hi and not (j == k and (a_lo, a_hi) == (lo, hi)):
            return False
    return True


def deliver(caller, buf, target, like, shape, axis, rows):
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
