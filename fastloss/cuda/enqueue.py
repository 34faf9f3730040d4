"""The kernels of a call queued on the caller's stream, each with its grid, its scratch
arrays from the thread's workspace (:mod:`.workspace`) and its arguments: the loss
kernel, the label check before it (and the copy of its verdict to the host), hinge's 0/1
rule before it, and RMSE's finish after it.

Nothing here waits for the GPU but the label check's ``wait``, which the call path
(:mod:`.call`) calls once the loss kernel is queued behind the check.
"""

from types import SimpleNamespace

import numpy as np
from numba import cuda

from .. import _plan
from . import checks, elementwise, kernel_choice
from .kernel_choice import grid, kernel, loss_kernel, row_grid, row_kernel, row_layout
from .launch import launch
from .workspace import workspace

_empties = {}


def empty(dtype, rows, count):
    """A zero-length array (an output that is not wanted, a missing weight)."""
    shape = (count, 0) if rows else (0,)
    key = (np.dtype(dtype), shape)
    e = _empties.get(key)
    if e is None:
        e = _empties[key] = cuda.device_array(shape, dtype=dtype)
    return e


def loss_kernel_launch(caller, spec, math_fn, work, aux, weights, params, scale, loss_out, buffers, hess, shape2d,
                       rows, factor, loss_dtype, reduced, gate):
    """Queue the loss kernel; return the device arrays of the float64 sum of the weighted
    losses and (when ``reduced``) of that sum times ``factor``, in ``loss_dtype``.
    ``gate``: what a kernel decided before it, the label check's verdict for a row
    kernel or hinge's rule for an element-wise one (None: nothing)."""
    count = shape2d[0]
    x = work[0]
    dt = caller.dtype(x)  # the kernels' dtype (int16: bfloat16 bits)

    def out(a):
        return empty(dt, rows, count) if a is None else a

    y = work[1] if len(work) > 1 else x
    gx = out(buffers[0])
    gy = out(buffers[1]) if spec.grads > 1 else empty(dt, rows, count)
    h = out(hess)
    lo = loss_out if loss_out is not None else empty(loss_dtype, False, 0)
    w = weights if weights is not None else empty(np.float64, False, 0)
    space = workspace(caller)
    total = space.array("total", (1,), np.float64)
    value = caller.empty((1,), loss_dtype) if reduced else None
    val = value if reduced else empty(loss_dtype, False, 0)
    tail = (space.counter, factor, total, val)
    if rows and count == 0:  # no rows, no blocks: the sum is 0
        total = caller.from_host(np.zeros(1))
        if value is not None:
            value = caller.from_host(np.array([0.0 * factor], dtype=loss_dtype))
        return total, value
    if rows:  # a warp or a block per row
        c = aux if aux is not None else empty(np.float64, False, 0)
        layout = row_layout(shape2d[1])
        blocks = row_grid(count, layout)
        partials = space.array("partials", (blocks,), np.float64)
        vv = work[2] if len(work) > 2 else x
        gv = out(buffers[2]) if spec.grads > 2 else empty(dt, rows, count)
        g = gate if gate is not None else empty(np.float64, False, 0)
        launch(row_kernel(math_fn, layout, dt), blocks, layout[0], caller,
               x, y, vv, c, w, params, scale, lo, gx, gy, gv, h, g, partials, *tail)
    else:
        blocks = grid(count)
        partials = space.array("partials", (blocks,), np.float64)
        c = aux if aux is not None else x
        rule = gate if gate is not None else empty(np.float64, False, 0)
        launch(loss_kernel(math_fn, dt == np.int16, gate is not None), blocks, kernel_choice.THREADS, caller,
               x, y, c, w, params, scale, lo, gx, gy, h, rule, partials, *tail)
    return total, value


def finish(caller, spec, total, n, value, grad):
    """Queue :func:`.elementwise.finish_kernel`: the loss from the sum ``total`` and
    divisor ``n`` into ``value``, and the gradient (1-D) scaled by its factor (None: not
    wanted)."""
    g = grad if grad is not None else empty(np.float64, False, 0)
    val = value if value is not None else empty(np.float64, False, 0)
    k = kernel((spec.finish, "finish"), lambda threads: elementwise.finish_kernel(spec.finish, threads))
    launch(k, grid(g.shape[0]), kernel_choice.THREADS, caller, total, n, val, g)


class LabelCheck(SimpleNamespace):
    """A queued label check: ``gate`` for the loss kernel; ``wait()`` for the host, which
    raises for a bad label; ``settle()``, which only waits (the verdict's copy lands in
    memory this thread's next call reuses: a call that fails must not leave it pending)."""


def label_check(caller, labels, width, ignore, class_weight, mean):
    """Queue :func:`.checks.label_check_kernel` on ``labels`` (contract section 3: no
    kernel ever reads with a bad one), with ``class_weight`` (float64 on the device, or
    None: the loss kernel's, :func:`.staging.aux_array`) and ``mean``
    (``checks.MEAN_*``) saying what the gate divides by, and the copy of its verdict to
    the host. Its ``wait()``, called once the loss kernel is queued behind it, raises the
    CPU's error for a label out of range (the loss kernel, gated, wrote nothing). Nothing
    is copied to the device, and the host waits for the check alone, not for the loss
    kernel."""
    blocks = grid(labels.shape[0])
    space = workspace(caller)
    stats = space.array("label stats", (3, blocks + 1), np.int64)  # per block, then the grid's: min, max, count
    weights = space.array("label weights", (blocks,), np.float64) if class_weight is not None else None
    gate = space.array("label gate", (3,), np.float64)
    nothing = empty(np.float64, False, 0)
    launch(kernel("label_check", checks.label_check_kernel), blocks, kernel_choice.THREADS, caller,
           labels, 0 if ignore is None else ignore, ignore is not None, width,
           nothing if class_weight is None else class_weight, mean,
           stats, nothing if weights is None else weights, space.counter, gate)
    verdict = caller.to_host_later(gate)

    def wait():
        if verdict()[0] != 0.0:
            lo, hi, _ = caller.to_host(stats)[:, -1]
            _plan.check_label_range(int(lo), int(hi), width, ignore)

    return LabelCheck(gate=gate, wait=wait, settle=verdict)


def zero_one_rule(caller, t):
    """Queue :func:`.checks.zero_one_rule_kernel` on hinge's targets ``t`` (1-D) and
    return the device array that decides its rule, which the loss kernel queued behind
    it reads."""
    blocks = grid(t.shape[0])
    space = workspace(caller)
    others = space.array("rule", (1,), np.float64)
    launch(kernel("zero_one_rule", checks.zero_one_rule_kernel), blocks, kernel_choice.THREADS, caller,
           t, space.array("rule partials", (blocks,), np.float64), space.counter, others, empty(np.float64, False, 0))
    return others
