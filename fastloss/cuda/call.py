"""The call path for device arrays: validate, lay out, launch, deliver.

It carries out the plan of :mod:`fastloss._plan` as :func:`fastloss._api.evaluate` does on the
host, so that a bad argument gets the same error on either side: the inputs adopted by their framework's
array class (:mod:`.arrays`), the options that bring arrays staged on the device
(:mod:`.staging`), ``out=`` checked (:mod:`.outputs`), the kernels queued
(:mod:`.enqueue`, which asks :mod:`.kernel_choice` which kernel runs), the results
delivered (:mod:`.outputs`). What needs the data (the label range, the denominator of a
sparse cross-entropy, hinge's 0/1 rule) is computed by a kernel queued before the loss
kernel, which reads it from the device. Only a call with integer labels then waits, for
the label check's verdict alone, to raise for a bad label; every other call only queues
kernels on the caller's stream and returns device arrays. Scratch arrays (partial sums,
the label check's, the blocks' ticket counter) come from the thread's workspace for the
stream (:mod:`.workspace`); a call allocates its results.
"""

import math

import numpy as np
from numba.cuda import config as cuda_config

from .. import _plan
from .._arrays import is_device_array
from .._result import LossResult
from ..losses import float32_form
from . import checks, enqueue, outputs, staging
from .arrays import BFLOAT16, adopt
from .workspace import forget


def evaluate(spec, arrays, common, options):
    """``spec``'s loss of device ``arrays``; ``common`` holds reduction, sample_weight,
    grad, out, hessian and axis (:class:`fastloss._plan.Common`)."""
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
    metas = [caller.meta(a) for a in natives]
    plan = _plan.layout(spec, metas, common.axis)
    dtype, compute, sparse, rows, axis = plan.dtype, plan.compute, plan.sparse, plan.rows, plan.axis
    shape, loss_shape, width, count, shape2d = plan.shape, plan.loss_shape, plan.width, plan.count, plan.shape2d
    math_fn = spec.math_for(sparse, options)
    # What kernels read and write: the input's dtype; bfloat16 as its bits (int16), which
    # the kernels convert themselves, when every float input is bfloat16 (a kernel reads
    # all its float arrays alike: targets of another dtype send the call through float32
    # copies, as do RMSE, whose finish scales a float32 gradient, and hinge, whose 0/1
    # rule reads the targets' values).
    native_bf16 = (spec.finish is None and not spec.data_params
                   and all(m.dtype is BFLOAT16 for i, m in enumerate(metas) if not (i == 1 and sparse)))
    loss_storage = compute if dtype is BFLOAT16 else np.dtype(dtype)
    storage = np.dtype(np.int16) if native_bf16 else loss_storage
    if not rows and loss_storage.itemsize <= 4:  # float32 and narrower: the float32 form, as on the CPU
        math_fn = float32_form(math_fn) or math_fn

    work = []
    for i, a in enumerate(natives):
        if i == 1 and sparse:
            work.append(caller.kernel_layout(a, -1, False, (count,)))
        else:
            work.append(caller.kernel_layout(a, axis, rows, shape2d, keep_bf16=native_bf16))
    weights = staging.sample_weights(caller, common.sample_weight, loss_shape, count)
    aux = staging.aux_array(caller, spec, options, metas, width, rows, shape2d)

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
    rule = enqueue.zero_one_rule(caller, work[1]) if spec.data_params and options["targets"] == "auto" else None
    params = spec.params(options, (metas[0], True) if spec.data_params else metas)
    params = tuple(float(v) for v in params) or (0.0,)

    # Outputs: gradients straight into out= where its layout allows, else into buffers.
    outs = outputs.check_out(caller, spec, common.out, natives, metas, want)
    n_grads = spec.grads if want else 0
    buffers = []
    for k in range(spec.grads):
        if k >= n_grads:
            buffers.append(None)
            continue
        target_out = outs[k] if outs is not None else None
        if target_out is not None and outputs.writes_directly(caller, target_out, k, work, storage, axis, rows, shape):
            buffers.append(caller.kernel_layout(target_out, axis, rows, shape2d, keep_bf16=native_bf16))
        else:
            buffers.append(caller.empty(shape2d, storage))
    hess = caller.empty(shape2d, storage) if hessian else None
    keep_loss = reduction == "none" and want != "only"
    loss_out = caller.empty((count,), loss_storage) if keep_loss else None

    scale = _plan.gradient_scale(spec, reduction, denominator)
    reduced = want != "only" and not keep_loss and spec.finish is None
    # The loss kernel reduces the sum on the device: times the mean's 1/denominator (NaN
    # when nothing is counted), the same value _plan.reduce_total gives on the host.
    factor = (1.0 / denominator if denominator != 0.0 else math.nan) if reduction == "mean" else 1.0
    # The label check is queued right before the loss kernel, and waited for right after:
    # nothing between them raises but a failed launch, which waits for it too.
    labels = None
    if mean is not None:
        labels = enqueue.label_check(caller, work[1], width, options.get("ignore_index"), aux, mean)
    gate = labels.gate if labels is not None else rule
    try:
        total, value = enqueue.loss_kernel_launch(caller, spec, math_fn, work, aux, weights, params, scale, loss_out,
                                                   buffers, hess, shape2d, rows, factor, loss_storage, reduced, gate)
    except BaseException:
        if labels is not None:
            labels.settle()
        raise
    if labels is not None:  # a bad label raises here, nothing written
        labels.wait()

    # The loss: reduced in the same launch; RMSE's finished from the sum by a second kernel.
    if spec.finish is not None:
        finished = caller.empty((1,), loss_storage) if want != "only" else None
        enqueue.finish(caller, spec, total, denominator if reduction == "mean" else 1.0, finished,
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
            outputs.deliver(caller, buffers[k], outs[k] if outs is not None else None, natives[k], shape, axis, rows)
            for k in range(spec.grads)
        )
        grads = grads[0] if spec.grads == 1 else grads
    h = outputs.deliver(caller, hess, None, natives[0], shape, axis, rows) if hessian else None
    return LossResult(value, grads, h)
