"""The options that bring arrays, staged on the device for the kernels: sample weights
(one float64 per unreduced loss), and the per-element or per-class array (pos_weight,
class_weight) as float64.

Host arrays among them are small settings and are copied to the device; device arrays
must be of the call's framework, whose array class (:mod:`.arrays`) broadcasts and
converts them.
"""

import numpy as np

from .. import _plan
from .._arrays import is_device_array
from .arrays import adopt


def float64_on_device(caller, value, name):
    """An option array (class_weight, pos_weight) as float64 on the device: host arrays
    are small settings and are copied there; device arrays must be the caller's kind."""
    if is_device_array(value):
        _, (native,) = adopt([value], [name])
        return caller.float64_copy(native, name)
    return caller.from_host(np.asarray(value, dtype=np.float64))


def aux_array(caller, spec, options, metas, width, rows, shape2d):
    """The loss's per-class (class_weight) or per-element (pos_weight) float64 array on
    the device, in the kernels' layout, or None where the loss has none or the option is
    a number (then it is one of the math's parameters)."""
    if spec.aux is None or rows:  # the class-axis aux array: class_weight (enqueue.label_check reads it too)
        if rows and spec.aux is not None and options.get("class_weight") is not None:
            class_weight = float64_on_device(caller, options["class_weight"], "class_weight")
            _plan.check_class_weight(class_weight.shape, width)
            return class_weight
        return None
    value = options.get("pos_weight")
    if value is None or (not is_device_array(value) and np.ndim(value) == 0):
        return None
    if is_device_array(value):
        _, (native,) = adopt([value], ["pos_weight"])
        broadcast = caller.broadcast(native, metas[0].shape, "pos_weight", "the logits' shape")
        return caller.float64_copy(broadcast, "pos_weight").reshape(shape2d)
    host = spec.aux(options, metas)
    return caller.from_host(np.ascontiguousarray(host, dtype=np.float64).reshape(shape2d))


def sample_weights(caller, sample_weight, loss_shape, count):
    """``sample_weight`` as ``count`` float64 weights on the device, one per unreduced
    loss (a number filled in; a device array broadcast to ``loss_shape``), or None."""
    if sample_weight is None:
        return None
    if not is_device_array(sample_weight):
        w = np.asarray(sample_weight)
        if w.ndim:
            raise ValueError("sample_weight must be on the GPU with the inputs (or a number)")
        _plan.check_sample_weight(w.dtype, w.shape, loss_shape)
        return caller.full((count,), np.float64, float(w))
    _, (w,) = adopt([sample_weight], ["sample_weight"])
    w = caller.broadcast(w, loss_shape, "sample_weight", "the unreduced loss's shape")
    return caller.float64_copy(w, "sample_weight").reshape(count)
