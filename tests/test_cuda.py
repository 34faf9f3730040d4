"""The CUDA backend against the CPU backend, every loss and option case.

In CI these run on Numba's CUDA simulator (conftest sets ``NUMBA_ENABLE_CUDASIM=1``) on
tiny shapes; with ``NUMBA_ENABLE_CUDASIM=0`` on a machine with a GPU they run for real.
The CPU backend is itself tested against float64 references (test_losses.py), so
agreement with it, within the dtype's accuracy, is agreement with the references.
"""

import sys
import threading

import numpy as np
import pytest
from conftest import ALL_LOSSES, ROOT, python_job
from reference import OPTION_CASES, ROWWISE, prepared

import fastloss as fl

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed (pip install 'fastloss[cuda]')")
from numba import cuda  # noqa: E402

if not cuda.is_available():  # pragma: no cover - a real run on a machine without a GPU
    pytest.skip("no GPU and the CUDA simulator is off", allow_module_level=True)


@pytest.fixture(scope="module", autouse=True)
def _fast_simulator():
    """The simulator runs a Python thread per GPU thread, and its block manager polls them
    while holding the GIL: at Python's default switch interval (5 ms) most of a launch is
    spent waiting for the GIL. A short interval runs the same kernels several times faster.
    Switching that often exposes a race in the simulator itself (two threads of a block can
    each allocate their own copy of a ``cuda.shared.array``), closed here with a lock. On a
    GPU (NUMBA_ENABLE_CUDASIM=0), or with a simulator of another shape, nothing changes."""
    from numba.cuda import config as cuda_config

    if not cuda_config.ENABLE_CUDASIM:
        yield
        return
    from numba.cuda.simulator import kernelapi

    shared = getattr(kernelapi, "FakeCUDAShared", None)
    if shared is None or not hasattr(shared(0), "_allocations") or not hasattr(kernelapi, "numpy_support"):
        yield
        return
    original = shared.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if alignment is not None or shape == 0:
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, kernelapi.types.Type):
            dtype = kernelapi.numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)  # the simulator's key: the caller's file and line
        key = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            found = self._allocations.get(key)
            if found is None:
                found = self._allocations[key] = np.empty(shape, dtype)
        return found

    interval = sys.getswitchinterval()
    shared.array = array
    sys.setswitchinterval(1e-4)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        shared.array = original


CASES = [(name, i) for name in ALL_LOSSES for i in range(len(OPTION_CASES[name]))]
TOL = {np.float64: dict(rtol=1e-12, atol=1e-13), np.float32: dict(rtol=2e-6, atol=1e-6)}


def dev(a):
    return cuda.to_device(np.ascontiguousarray(a))


def host(a):
    return None if a is None else np.asarray(a.copy_to_host())


def _device_options(options):
    """class_weight goes to the device; pos_weight stays a host setting (both are allowed)."""
    return {k: (dev(v.astype(np.float64)) if k == "class_weight" else v) for k, v in options.items()}


def _reductions(name):
    return ("mean", "sum") if name == "root_mean_squared_error" else ("mean", "sum", "none")


def _close(got, want, dtype):
    np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name,case", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_matches_the_cpu_backend(name, case, dtype, rng):
    arrays, options = prepared(name, OPTION_CASES[name][case], rng, dtype)
    spec_hessian = fl.losses()[name].hessian
    loss_shape = arrays[0].shape[:-1] if name in ROWWISE else arrays[0].shape
    weights = rng.uniform(-0.5, 2.0, size=loss_shape)
    # float64 checks every reduction (and weights with "mean"); float32, which runs the same
    # kernels in another specialisation, one weighted mean (the simulator is slow).
    combos = [(r, None) for r in _reductions(name)] + [("mean", weights)]
    for reduction, sample_weight in combos if dtype is np.float64 else combos[-1:]:
        kw = dict(reduction=reduction, hessian=spec_hessian)
        cpu = fl.compute(name, *arrays, **options, **kw, sample_weight=sample_weight)
        gpu = fl.compute(
            name, *[dev(a) for a in arrays], **_device_options(options), **kw,
            sample_weight=None if sample_weight is None else dev(sample_weight),
        )
        _close(host(gpu.loss), cpu.loss, dtype)
        assert host(gpu.loss).dtype == np.dtype(dtype)
        cpu_grads = cpu.grad if isinstance(cpu.grad, tuple) else (cpu.grad,)
        gpu_grads = gpu.grad if isinstance(gpu.grad, tuple) else (gpu.grad,)
        assert len(gpu_grads) == len(cpu_grads)
        for g, c in zip(gpu_grads, cpu_grads):
            assert host(g).shape == c.shape and host(g).dtype == c.dtype
            _close(host(g), c, dtype)
        if spec_hessian:
            _close(host(gpu.hess), cpu.hess, dtype)


@pytest.mark.parametrize("name", ["mean_squared_error", "sigmoid_binary_cross_entropy", "softmax_cross_entropy",
                                  "sparse_softmax_cross_entropy", "triplet_margin_loss"])
def test_float16_computes_in_float32_and_returns_float16(name, rng):
    arrays, options = prepared(name, OPTION_CASES[name][0], rng, np.float16)
    cpu = fl.compute(name, *arrays, **options)
    gpu = fl.compute(name, *[dev(a) for a in arrays], **options)
    assert host(gpu.loss).dtype == np.float16
    np.testing.assert_allclose(host(gpu.loss), cpu.loss, rtol=1e-3)
    for g, c in zip(gpu.grad if isinstance(gpu.grad, tuple) else (gpu.grad,),
                    cpu.grad if isinstance(cpu.grad, tuple) else (cpu.grad,)):
        assert host(g).dtype == np.float16
        np.testing.assert_allclose(host(g).astype(np.float32), c.astype(np.float32), rtol=2e-3, atol=1e-4)


def test_grad_only_and_loss_only(rng):
    z, labels = rng.normal(size=(5, 4)), rng.integers(0, 4, 5)
    cpu = fl.sparse_softmax_cross_entropy(z, labels)
    only = fl.sparse_softmax_cross_entropy(dev(z), dev(labels), grad="only")
    assert only.loss is None
    _close(host(only.grad), cpu.grad, np.float64)
    loss = fl.sparse_softmax_cross_entropy(dev(z), dev(labels), grad=False)
    assert loss.grad is None
    _close(host(loss.loss), cpu.loss, np.float64)


def test_out_is_written_in_place(rng):
    z, labels = rng.normal(size=(6, 5)), rng.integers(0, 5, 6)
    want = fl.sparse_softmax_cross_entropy(z, labels, label_smoothing=0.1)
    dz = dev(z)
    res = fl.sparse_softmax_cross_entropy(dz, dev(labels), label_smoothing=0.1, out=dz)
    assert res.grad is dz
    _close(host(dz), want.grad, np.float64)
    _close(host(res.loss), want.loss, np.float64)
    # A separate out= receives the gradient, and the logits stay as they were.
    dz, out = dev(z), dev(np.zeros_like(z))
    res = fl.sparse_softmax_cross_entropy(dz, dev(labels), label_smoothing=0.1, out=out)
    assert res.grad is out
    _close(host(out), want.grad, np.float64)
    np.testing.assert_array_equal(host(dz), z)


def test_inputs_are_never_written(rng):
    x, y = rng.normal(size=10), rng.normal(size=10)
    dx, dy = dev(x), dev(y)
    fl.huber(dx, dy, reduction="none", hessian=False)
    np.testing.assert_array_equal(host(dx), x)
    np.testing.assert_array_equal(host(dy), y)


def test_the_same_input_gives_the_same_bits(rng):
    x, y = rng.normal(size=300), rng.normal(size=300)
    first = fl.log_cosh(dev(x), dev(y))
    again = fl.log_cosh(dev(x), dev(y))
    assert host(first.loss).tobytes() == host(again.loss).tobytes()
    assert host(first.grad).tobytes() == host(again.grad).tobytes()


def test_bad_labels_raise_the_cpu_error_before_any_gradient_is_written(rng):
    z = rng.normal(size=(4, 3))
    dz = dev(z)
    for labels in (np.array([0, 1, 3, 2]), np.array([0, -1, 2, 2])):
        with pytest.raises(ValueError) as cpu_err:
            fl.sparse_softmax_cross_entropy(z, labels)
        with pytest.raises(ValueError) as gpu_err:
            fl.sparse_softmax_cross_entropy(dz, dev(labels), out=dz)
        assert str(gpu_err.value) == str(cpu_err.value)
        np.testing.assert_array_equal(host(dz), z)  # out=logits was not touched
        # The loss kernel is queued before the call waits for the check: gated, it
        # writes nothing into another out= either, at any reduction.
        out = dev(np.full_like(z, 7.0))
        for reduction in ("mean", "sum", "none"):
            with pytest.raises(ValueError, match="labels must be in"):
                fl.sparse_softmax_cross_entropy(dz, dev(labels), out=out, reduction=reduction)
            np.testing.assert_array_equal(host(out), 7.0)
    # ignore_index is allowed, even out of range.
    res = fl.sparse_softmax_cross_entropy(dz, dev(np.array([0, -100, 2, -100])), ignore_index=-100)
    want = fl.sparse_softmax_cross_entropy(z, np.array([0, -100, 2, -100]), ignore_index=-100)
    _close(host(res.loss), want.loss, np.float64)


@pytest.mark.parametrize("rows", [3, 45], ids=["one-block", "grid-turns"])
@pytest.mark.parametrize("weighted", [False, True])
def test_every_row_ignored_gives_nan_mean_and_zero_gradient(rows, weighted, rng):
    """The label check's gate carries the mean's denominator: 0 counted rows (or class
    weights) give a NaN mean and a zero gradient, however many blocks counted."""
    z = rng.normal(size=(rows, 4))
    class_weight = dev(np.array([0.5, 1.0, 2.0, 4.0])) if weighted else None
    res = fl.sparse_softmax_cross_entropy(dev(z), dev(np.full(rows, -1)), ignore_index=-1, class_weight=class_weight)
    assert np.isnan(host(res.loss))
    np.testing.assert_array_equal(host(res.grad), 0.0)


@pytest.mark.parametrize("width", [5, 40], ids=["warp-rows", "block-rows"])
@pytest.mark.parametrize("name", ["sparse_softmax_cross_entropy", "softmax_cross_entropy", "softmax_kl_divergence",
                                  "js_divergence", "softmax_focal_loss"])
def test_a_row_with_every_logit_masked_is_nan_in_that_row_only(name, width, rng):
    """A row of -inf logits has no softmax: its loss and gradient are NaN, as on the CPU
    (and in PyTorch), and no other row is touched. The row's sum of exponentials is 0
    there: log 0 and 1 / 0 are taken as the GPU takes them (the simulator's Python would
    raise)."""
    arrays, options = prepared(name, OPTION_CASES[name][0], rng, np.float64, shape=(3, width))
    arrays[0][1] = -np.inf
    arrays[0][2, 1] = -np.inf  # partly masked: a number (inf where a target weighs the masked class)
    cpu = fl.compute(name, *arrays, **options, reduction="none")
    gpu = fl.compute(name, *[dev(a) for a in arrays], **_device_options(options), reduction="none")
    loss = host(gpu.loss)
    assert np.isnan(loss[1]) and not np.isnan(loss[[0, 2]]).any()
    _close(loss, cpu.loss, np.float64)
    for g, c in zip(*(r.grad if isinstance(r.grad, tuple) else (r.grad,) for r in (gpu, cpu))):
        g = host(g)
        assert np.isnan(g[1]).all() and not np.isnan(g[[0, 2]]).any()
        _close(g, c, np.float64)


@pytest.mark.parametrize("width", [5, 40], ids=["warp-rows", "block-rows"])
@pytest.mark.parametrize("name", ["sparse_softmax_cross_entropy", "softmax_cross_entropy", "softmax_kl_divergence",
                                  "js_divergence", "softmax_focal_loss"])
def test_a_nan_or_inf_logit_spreads_to_its_row_only(name, width, rng):
    """A NaN logit, a lone +inf logit (its softmax weight is exp(inf - inf)) or two of them
    make their row's loss and gradient NaN, as on the CPU (and in PyTorch), and touch no
    other row. The GPU's online log-sum-exp would otherwise give a lone +inf the weight 1
    and its row a finite gradient."""
    arrays, options = prepared(name, OPTION_CASES[name][0], rng, np.float64, shape=(5, width))
    arrays[0][1, 2] = np.nan
    arrays[0][2, 3] = np.inf
    arrays[0][3, [0, 4]] = np.inf
    with np.errstate(invalid="ignore"):
        cpu = fl.compute(name, *arrays, **options, reduction="none")
    gpu = fl.compute(name, *[dev(a) for a in arrays], **_device_options(options), reduction="none")
    loss = host(gpu.loss)
    assert np.isnan(loss[1:4]).all() and not np.isnan(loss[[0, 4]]).any()
    _close(loss, cpu.loss, np.float64)
    g, c = (r.grad[0] if isinstance(r.grad, tuple) else r.grad for r in (gpu, cpu))
    g = host(g)
    assert np.isnan(g[1:4]).all() and not np.isnan(g[[0, 4]]).any()
    _close(g, c, np.float64)


@pytest.mark.parametrize("gamma", [2.0, 2.5])
def test_focal_targets_outside_0_1_give_nan_as_on_the_cpu(gamma):
    """A target outside [0, 1] makes the focal modulator a power of a negative base:
    NaN in pow_nonneg on every backend, though the device's pow has whole powers of one."""
    x = np.array([-0.6, 0.3, 2.0, 3.0])
    y = np.array([-3.0, 0.5, 2.0, 1.5])
    with np.errstate(invalid="ignore"):
        cpu = fl.sigmoid_focal_loss(x, y, gamma=gamma, reduction="none")
    gpu = fl.sigmoid_focal_loss(dev(x), dev(y), gamma=gamma, reduction="none")
    assert np.isnan(cpu.loss[[0, 2, 3]]).all() and np.isfinite(cpu.loss[1])
    _close(host(gpu.loss), cpu.loss, np.float64)
    _close(host(gpu.grad), cpu.grad, np.float64)


def test_a_launch_that_raised_leaves_the_next_ones_intact(rng):
    """Simulator only (a GPU's exp gives inf, Python's raises): the simulator raises a
    launch's first exception at once and leaves the block's other threads running, some
    waiting in a simulated warp exchange. Those must give up and be gone before the next
    launch, or it reads the dead launch's grid (its label check then refuses valid
    labels)."""
    from numba.cuda import config as cuda_config

    if not cuda_config.ENABLE_CUDASIM:
        pytest.skip("a real GPU raises nothing here")
    x, y = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    y[1, 1] = 1e300  # log_target: exp(1e300) overflows in the simulated lane
    with pytest.raises(OverflowError):
        fl.softmax_kl_divergence(dev(x), dev(y), log_target=True, reduction="none")
    z, labels = rng.normal(size=(4, 6)), np.array([1, 3, 4, 2])
    want = fl.sparse_softmax_cross_entropy(z, labels, reduction="none").loss
    for _ in range(2):
        _close(host(fl.sparse_softmax_cross_entropy(dev(z), dev(labels), reduction="none").loss), want, np.float64)


def _this_threads_counter():
    """The ticket counter of the calling thread's workspace for Numba device arrays on the
    default stream (what the tests' calls use), on the host."""
    from fastloss.cuda import arrays, workspace

    return int(host(workspace.workspace(arrays.InterfaceCaller(None, None)).counter)[0])


@pytest.mark.parametrize("name", ["mean_squared_error", "sparse_softmax_cross_entropy", "hinge",
                                  "root_mean_squared_error", "categorical_hinge"])
def test_calls_allocate_only_their_results(name, rng, monkeypatch):
    """A call's scratch arrays (partial sums, total, label statistics and verdict,
    hinge's rule, the blocks' ticket counter) come from the thread's workspace: once it
    exists, a call allocates its results alone, and clears no counter (every kernel's
    last block puts it back to 0)."""
    from fastloss.cuda import arrays

    arrays_in, options = prepared(name, OPTION_CASES[name][0], rng)
    args = [dev(a) for a in arrays_in]
    first = fl.compute(name, *args, **options, backend="cuda")
    assert _this_threads_counter() == 0
    made = []
    empty, zeros = arrays.Caller.empty, arrays.Caller.zeros
    monkeypatch.setattr(arrays.Caller, "empty", lambda self, shape, dtype: made.append(shape)
                        or empty(self, shape, dtype))
    monkeypatch.setattr(arrays.Caller, "zeros", lambda self, shape, dtype: made.append(("zeros", shape))
                        or zeros(self, shape, dtype))
    res = fl.compute(name, *args, **options, backend="cuda")
    x = arrays_in[0]
    assert made == [x.shape if name in ROWWISE else (x.size,), (1,)], made  # the gradient, the loss
    monkeypatch.undo()
    assert _this_threads_counter() == 0
    assert host(res.loss).tobytes() == host(first.loss).tobytes()
    assert host(res.grad).tobytes() == host(first.grad).tobytes()


def test_threads_have_workspaces_of_their_own():
    from fastloss.cuda import arrays, workspace

    caller = arrays.InterfaceCaller(None, None)
    mine = workspace.workspace(caller)
    assert workspace.workspace(caller) is mine
    found = []
    other = threading.Thread(target=lambda: found.append(workspace.workspace(caller)))
    other.start()
    other.join()
    assert found and found[0] is not mine


def test_a_call_that_raised_leaves_a_workspace_with_a_zero_counter(rng):
    """Simulator only: a launch that raised may leave tickets taken in its counter. The
    call forgets its thread's workspace, and the next reduced calls are right."""
    from numba.cuda import config as cuda_config

    if not cuda_config.ENABLE_CUDASIM:
        pytest.skip("a real GPU raises nothing here")
    x, y = rng.normal(size=(40, 6)), rng.normal(size=(40, 6))
    y[-1, 1] = 1e300  # log_target: exp(1e300) overflows, in the last block, after the others took tickets
    with pytest.raises(OverflowError):
        fl.softmax_kl_divergence(dev(x), dev(y), log_target=True)
    assert _this_threads_counter() == 0
    y[-1, 1] = 0.0
    want = fl.softmax_kl_divergence(x, y, log_target=True).loss
    for _ in range(2):
        _close(host(fl.softmax_kl_divergence(dev(x), dev(y), log_target=True).loss), want, np.float64)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_special_values_give_what_the_cpu_gives(name, rng):
    """NaN, infinities, zeros and huge values sprinkled into every float input give the
    CPU's losses and gradients, NaN where it has NaN (this found a lone +inf logit and a
    focal target outside [0, 1] treated otherwise on the GPU). The simulator runs Python's
    math, which raises where a GPU gives inf or NaN: such a draw is drawn again."""
    specials = [np.nan, np.inf, -np.inf, 0.0, 1e4, -1e4, 1e300, -1e300]
    reduction = "mean" if name == "root_mean_squared_error" else "none"
    for _ in range(20):
        arrays, options = prepared(name, OPTION_CASES[name][0], rng, np.float64,
                                   shape=(4, 6) if name in ROWWISE else (9,))
        for a in arrays:
            if a.dtype.kind == "f":
                a.reshape(-1)[rng.integers(0, a.size, 3)] = rng.choice(specials, 3)
        try:
            gpu = fl.compute(name, *[dev(a) for a in arrays], **_device_options(options), reduction=reduction)
        except (OverflowError, ValueError) as exc:  # the simulator's Python math
            assert "math" in str(exc), exc
            continue
        with np.errstate(all="ignore"):
            cpu = fl.compute(name, *arrays, **options, reduction=reduction)
        grads = (r.grad if isinstance(r.grad, tuple) else (r.grad,) for r in (gpu, cpu))
        for got, want in [(gpu.loss, cpu.loss), *zip(*grads)]:
            got = host(got)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            _close(got, want, np.float64)
        return
    pytest.fail("every draw raised in the simulator's Python math")


def test_extreme_logits_stay_finite():
    z = np.array([[1e4, -1e4, 0.0], [-np.inf, 0.0, -np.inf], [-1e4, -1e4, -1e4]])
    labels = np.array([1, 1, 0])
    cpu = fl.sparse_softmax_cross_entropy(z, labels, reduction="none")
    gpu = fl.sparse_softmax_cross_entropy(dev(z), dev(labels), reduction="none")
    _close(host(gpu.loss), cpu.loss, np.float64)
    _close(host(gpu.grad), cpu.grad, np.float64)
    assert np.isfinite(host(gpu.grad)).all()
    x = np.array([1e4, -1e4, 30.0, -30.0, 0.0])
    y = np.array([0.0, 1.0, 0.0, 1.0, 0.5])
    cpu = fl.sigmoid_binary_cross_entropy(x, y, reduction="none")
    gpu = fl.sigmoid_binary_cross_entropy(dev(x), dev(y), reduction="none")
    _close(host(gpu.loss), cpu.loss, np.float64)
    _close(host(gpu.grad), cpu.grad, np.float64)


@pytest.mark.parametrize("width", [4, 40], ids=["warp-rows", "block-rows"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_a_masked_class_of_weight_0_adds_nothing_to_the_smoothing_sum(dtype, width, rng):
    """Label smoothing sums cw_j (m - z_j) over the classes: a class of weight 0 adds 0
    even where its logit is -inf (masked), as on the CPU, not 0 * inf = NaN."""
    z = rng.normal(size=(3, width)).astype(dtype)
    z[:, 2] = -np.inf
    labels = np.array([0, 1, width - 1])
    class_weight = rng.uniform(0.5, 2.0, width)
    class_weight[2] = 0.0
    options = {"class_weight": class_weight, "label_smoothing": 0.1}
    cpu = fl.sparse_softmax_cross_entropy(z, labels, **options, reduction="none")
    gpu = fl.sparse_softmax_cross_entropy(dev(z), dev(labels), **options, reduction="none")
    assert np.isfinite(cpu.loss).all()
    _close(host(gpu.loss), cpu.loss, dtype)
    _close(host(gpu.grad), cpu.grad, dtype)


def test_empty_inputs():
    e = np.empty(0)
    assert host(fl.mse(dev(e), dev(e), reduction="sum").loss) == 0.0
    assert np.isnan(host(fl.mse(dev(e), dev(e)).loss))
    assert host(fl.mse(dev(e), dev(e), reduction="none").loss).shape == (0,)


@pytest.mark.parametrize("name", ["hinge", "squared_hinge"])
def test_hinge_decides_its_0_1_rule_on_the_device(name, rng):
    """Targets all 0 or 1 (NaN aside) are mapped to -1/1: the rule is decided over every
    block of a grid that turns more than once, one target anywhere deciding it."""
    from fastloss.cuda import kernel_choice

    n = 3 * kernel_choice.THREADS * kernel_choice.MAX_BLOCKS + 5
    x = rng.normal(size=n)
    zero_one = rng.integers(0, 2, n).astype(np.float64)
    zero_one[7] = np.nan
    for where in (None, 0, n // 2, n - 1):
        y = zero_one.copy()
        if where is not None:
            y[where] = -1.0  # one target that is not 0 or 1: no mapping
        cpu = fl.compute(name, x, y, reduction="none")
        gpu = fl.compute(name, dev(x), dev(y), reduction="none")
        _close(host(gpu.loss), cpu.loss, np.float64)
        _close(host(gpu.grad), cpu.grad, np.float64)


@pytest.mark.parametrize("targets", ["zero_one", "signed"])
def test_hinge_targets_option_on_the_device(targets, rng):
    """An explicit ``targets`` is not overruled by the device's 0/1 rule."""
    x = rng.normal(size=50)
    y = rng.integers(0, 2, 50).astype(np.float64)
    cpu = fl.hinge(x, y, targets=targets, reduction="none")
    gpu = fl.hinge(dev(x), dev(y), targets=targets, reduction="none")
    _close(host(gpu.loss), cpu.loss, np.float64)
    _close(host(gpu.grad), cpu.grad, np.float64)


# Integer labels are checked by a kernel whose verdict the host reads after queuing the
# loss kernel; hinge's 0/1 rule is decided by a kernel and read by the loss kernel.
# Nothing else reads back.


def _count_reads(monkeypatch):
    """Lists that fill with the device arrays read back at once and later."""
    from fastloss.cuda import arrays

    now, later = [], []
    to_host, to_host_later = arrays.Caller.to_host, arrays.Caller.to_host_later
    monkeypatch.setattr(arrays.Caller, "to_host", lambda self, a: now.append(a) or to_host(self, a))
    monkeypatch.setattr(arrays.Caller, "to_host_later", lambda self, a: later.append(a) or to_host_later(self, a))
    return now, later


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_only_labels_are_read_back(name, rng, monkeypatch):
    """Every other call only queues kernels: no device-to-host copy (RMSE included: its
    finish runs on the device; hinge: its rule too)."""
    arrays_in, options = prepared(name, OPTION_CASES[name][0], rng)
    sparse = any(a.dtype.kind in "iu" for a in arrays_in)
    now, later = _count_reads(monkeypatch)
    res = fl.compute(name, *(dev(a) for a in arrays_in), **_device_options(options), backend="cuda")
    assert (len(now), len(later)) == (0, int(sparse)), f"{name}: {now}, {later}"
    monkeypatch.undo()
    cpu = fl.compute(name, *arrays_in, **options)
    _close(host(res.loss), cpu.loss, np.float64)


@pytest.mark.parametrize("weighted", [False, True])
def test_the_label_check_reads_back_once_after_the_loss_kernel_is_queued(weighted, rng, monkeypatch):
    """A sparse call reads one small array back (the check's verdict; the denominator
    of the mean, class weights' too, stays on the device), waits for it only once the
    loss kernel is queued, and copies nothing to the device (a PyTorch copy up waits
    for the stream too)."""
    from fastloss.cuda import arrays, enqueue

    z, labels = rng.normal(size=(45, 3)), rng.integers(0, 3, 45)
    class_weight = dev(np.array([0.5, 1.0, 2.0])) if weighted else None
    now, later = _count_reads(monkeypatch)
    copies, order = [], []
    from_host, launch, check = arrays.Caller.from_host, enqueue.loss_kernel_launch, enqueue.label_check
    monkeypatch.setattr(arrays.Caller, "from_host", lambda self, a: copies.append(a) or from_host(self, a))
    monkeypatch.setattr(enqueue, "loss_kernel_launch", lambda *args: order.append("loss kernel") or launch(*args))

    def checked(*args):
        labels_check = check(*args)
        wait = labels_check.wait
        labels_check.wait = lambda: order.append("wait") or wait()
        return labels_check

    monkeypatch.setattr(enqueue, "label_check", checked)
    res = fl.sparse_softmax_cross_entropy(dev(z), dev(labels), class_weight=class_weight, ignore_index=1)
    assert (len(now), len(later), len(copies)) == (0, 1, 0)
    assert order == ["loss kernel", "wait"]
    monkeypatch.undo()
    cpu = fl.sparse_softmax_cross_entropy(z, labels, class_weight=None if class_weight is None else host(class_weight),
                                          ignore_index=1)
    _close(host(res.loss), cpu.loss, np.float64)
    _close(host(res.grad), cpu.grad, np.float64)


def test_class_weight_goes_to_the_device_once_and_is_checked(rng, monkeypatch):
    """Host class weights are copied to the device once per call (the label check and
    the loss kernel share the copy), and a wrong shape is an error."""
    from fastloss.cuda import arrays

    z, labels = dev(rng.normal(size=(5, 3))), dev(np.array([0, 2, 1, 1, 0]))
    copies = []
    from_host = arrays.Caller.from_host
    monkeypatch.setattr(arrays.Caller, "from_host", lambda self, a: copies.append(a) or from_host(self, a))
    weights = np.array([0.5, 1.0, 2.0])
    res = fl.sparse_softmax_cross_entropy(z, labels, class_weight=weights)
    assert len(copies) == 1
    want = fl.sparse_softmax_cross_entropy(host(z), host(labels), class_weight=weights)
    _close(host(res.loss), want.loss, np.float64)
    with pytest.raises(ValueError, match="one weight per class"):
        fl.sparse_softmax_cross_entropy(z, labels, class_weight=np.ones(4))


def test_a_failed_launch_still_waits_for_the_label_checks_copy(rng, monkeypatch):
    """The verdict's copy goes to memory that the thread's next call reuses (perhaps on
    another stream): a call whose loss kernel fails to launch waits for the copy, without
    raising for the labels, and raises the launch's error."""
    from fastloss.cuda import enqueue

    check, events = enqueue.label_check, []

    def checked(*args):
        labels_check = check(*args)
        settle = labels_check.settle
        labels_check.settle = lambda: events.append("settle") or settle()
        labels_check.wait = lambda: events.append("wait")
        return labels_check

    def failed(*args):
        raise RuntimeError("no launch")

    monkeypatch.setattr(enqueue, "label_check", checked)
    monkeypatch.setattr(enqueue, "loss_kernel_launch", failed)
    with pytest.raises(RuntimeError, match="no launch"):
        fl.sparse_softmax_cross_entropy(dev(rng.normal(size=(4, 3))), dev(np.array([0, 5, 1, 2])))
    assert events == ["settle"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_rmse_finish_scales_every_gradient_element(dtype, rng):
    """RMSE's finish kernel scales the gradient in a grid-stride loop, four elements at a
    time and then a tail: more elements than eight turns of the grid, and five more."""
    from fastloss.cuda import kernel_choice

    n = 8 * kernel_choice.THREADS * kernel_choice.MAX_BLOCKS + 5
    x, y = rng.normal(size=n).astype(dtype), rng.normal(size=n).astype(dtype)
    w = rng.uniform(0.5, 2.0, size=n)
    for reduction in ("mean", "sum"):
        cpu = fl.root_mean_squared_error(x, y, sample_weight=w, reduction=reduction)
        gpu = fl.root_mean_squared_error(dev(x), dev(y), sample_weight=dev(w), reduction=reduction)
        _close(host(gpu.loss), cpu.loss, dtype)
        _close(host(gpu.grad), cpu.grad, dtype)


def test_host_and_device_arrays_mixed_are_an_error(rng):
    x = rng.normal(size=5)
    with pytest.raises(ValueError, match="host memory"):
        fl.mse(dev(x), x)
    with pytest.raises(ValueError, match="host memory"):
        fl.mse(x, dev(x))
    with pytest.raises(ValueError, match="on the GPU"):
        fl.mse(dev(x), dev(x), sample_weight=np.ones(5))


def test_backend_choices(rng):
    x = rng.normal(size=5)
    with pytest.raises(ValueError, match="device arrays"):
        fl.mse(x, x, backend="cuda")
    with pytest.raises(ValueError, match="on a GPU"):
        fl.mse(dev(x), dev(x), backend="numba")
    _close(host(fl.mse(dev(x), dev(x + 1.0), backend="cuda").loss), 1.0, np.float64)


def test_numba_arrays_in_other_layouts_get_a_clear_error(rng):
    z = rng.normal(size=(4, 3))
    with pytest.raises(ValueError, match="class axis last"):
        fl.softmax_cross_entropy(dev(z), dev(np.full((4, 3), 1 / 3)), axis=0)


@pytest.mark.parametrize("name", ["mean_squared_error", "sigmoid_binary_cross_entropy", "sparse_softmax_cross_entropy",
                                  "softmax_cross_entropy", "softmax_kl_divergence"])
def test_longer_inputs_take_the_unrolled_loops(name, rng):
    """Enough elements (and a wide enough row) that each thread handles several groups of
    four, and a tail: the kernels' unrolled loops against the CPU."""
    arrays, options = prepared(name, {}, rng, np.float64, shape=(7, 53))
    for sample_weight in (None, rng.uniform(0.5, 2.0, size=arrays[0].shape[:-1] if name in ROWWISE else (7, 53))):
        kw = dict(hessian=fl.losses()[name].hessian, sample_weight=sample_weight, reduction="none")
        cpu = fl.compute(name, *arrays, **options, **kw)
        gpu = fl.compute(name, *[dev(a) for a in arrays], **options, **{**kw, "sample_weight": (
            None if sample_weight is None else dev(sample_weight))})
        _close(host(gpu.loss), cpu.loss, np.float64)
        _close(host(gpu.grad), cpu.grad, np.float64)
        if cpu.hess is not None:
            _close(host(gpu.hess), cpu.hess, np.float64)


# The class-axis losses whose block-per-row kernels came with issue #5 (item 2), and an
# option case of each: (name, options); ``labels`` asks for integer labels.
NEW_ROW_KERNELS = [
    ("categorical_hinge", {}),
    ("categorical_cross_entropy", {"label_smoothing": 0.1}),
    ("kl_divergence", {}),
    ("js_divergence", {"beta": 0.3}),
    ("softmax_focal_loss", {"gamma": 0.5}),
    ("softmax_focal_loss", {"labels": True}),
    ("triplet_margin_loss", {}),
    ("triplet_margin_loss", {"p": 3.0}),
    ("triplet_margin_loss", {"squared": True}),
    ("vae_kl_divergence", {}),
]
NEW_IDS = [f"{n}-{'-'.join(map(str, o.values())) or 'default'}" for n, o in NEW_ROW_KERNELS]


def _grads(res):
    return res.grad if isinstance(res.grad, tuple) else (res.grad,)


def _against_cpu(name, arrays, options, **kw):
    """The loss under both backends, compared; the device result is returned."""
    cpu = fl.compute(name, *arrays, **options, **kw)
    gpu = fl.compute(name, *[dev(a) for a in arrays], **options, **kw)
    _close(host(gpu.loss), cpu.loss, np.float64)
    for g, c in zip(_grads(gpu), _grads(cpu)):
        _close(host(g), c, np.float64)
    return gpu


def test_every_class_axis_loss_has_a_row_kernel():
    """Every row-wise math of the registry (integer-label forms included) has a kernel in
    the table: there is no thread-per-row fallback."""
    from fastloss.cuda import kernel_choice

    for spec in fl._registry.SPECS:
        if spec.family == "rowwise":
            for math_fn in (spec.math, spec.sparse_math):
                assert math_fn is None or math_fn in kernel_choice.ROW_KERNELS, (spec.name, math_fn)


@pytest.mark.parametrize("width", [5, 53], ids=["warp-rows", "block-rows"])
@pytest.mark.parametrize("name,options", NEW_ROW_KERNELS, ids=NEW_IDS)
def test_row_kernels_on_narrow_and_wide_rows(name, options, width, rng):
    """Rows narrow enough for a warp each (narrower than the warp: idle lanes; 3 rows, so
    the second block has a warp without a row) and rows wide enough for a block each
    (each thread loops over its share), per row with sample weights, against the CPU;
    run twice, the same bits."""
    arrays, options = prepared(name, options, rng, np.float64, shape=(3, width))
    weights = rng.uniform(-0.5, 2.0, size=3)
    cpu = fl.compute(name, *arrays, **options, reduction="none", sample_weight=weights)
    runs = [fl.compute(name, *[dev(a) for a in arrays], **options, reduction="none", sample_weight=dev(weights))
            for _ in range(2 if width == 53 else 1)]
    gpu = runs[0]
    _close(host(gpu.loss), cpu.loss, np.float64)
    for g, c in zip(_grads(gpu), _grads(cpu)):
        _close(host(g), c, np.float64)
    for again in runs[1:]:
        assert host(again.loss).tobytes() == host(gpu.loss).tobytes()
        for a, b in zip(_grads(again), _grads(gpu)):
            assert host(a).tobytes() == host(b).tobytes()


@pytest.mark.parametrize("width", [9, 21], ids=["warp-rows", "block-rows"])
@pytest.mark.parametrize("name,options", NEW_ROW_KERNELS, ids=NEW_IDS)
def test_row_kernels_write_their_gradients_in_place(name, options, width, rng):
    """out= the differentiable inputs themselves: every element a row's reductions need
    is read before any thread overwrites it."""
    arrays, options = prepared(name, options, rng, np.float64, shape=(3, width))
    want = fl.compute(name, *arrays, **options, reduction="sum")
    devs = [dev(a) for a in arrays]
    outs = tuple(devs[:len(_grads(want))])
    res = fl.compute(name, *devs, **options, reduction="sum", out=outs[0] if len(outs) == 1 else outs)
    _close(host(res.loss), want.loss, np.float64)
    for g, o, c in zip(_grads(res), outs, _grads(want)):
        assert g is o
        _close(host(o), c, np.float64)


@pytest.mark.parametrize("loads", [1, 3, 8])
@pytest.mark.parametrize("width", [13, 61], ids=["warp-rows", "block-rows"])
@pytest.mark.parametrize("name,options", [("sparse_softmax_cross_entropy", {"label_smoothing": 0.1}),
                                          ("softmax_cross_entropy", {}), ("js_divergence", {}),
                                          ("kl_divergence", {}), ("softmax_focal_loss", {"labels": True}),
                                          ("categorical_hinge", {})])
def test_any_number_of_loads_in_flight(name, options, width, loads, rng, monkeypatch):
    """The row passes with another number of loads in flight (gpu_variants.py compares
    them on a GPU): rows that take the unrolled loop once or more and then the tail, or
    only the tail; per-row losses, gradients (in place) and hessians against the CPU, for
    every kind of row pass (log-sum-exp; gradients with a target row, integer labels,
    class weights)."""
    from fastloss.cuda import rows

    monkeypatch.setattr(rows, "LOADS_IN_FLIGHT", loads)
    arrays, options = prepared(name, options, rng, np.float64, shape=(3, width))
    hessian = fl.losses()[name].hessian
    cpu = fl.compute(name, *arrays, **options, reduction="none", hessian=hessian)
    devs = [dev(a) for a in arrays]
    gpu = fl.compute(name, *devs, **options, reduction="none", hessian=hessian, out=devs[0] if
                     len(_grads(cpu)) == 1 else tuple(devs[:len(_grads(cpu))]))
    _close(host(gpu.loss), cpu.loss, np.float64)
    for g, c in zip(_grads(gpu), _grads(cpu)):
        _close(host(g), c, np.float64)
    if hessian:
        _close(host(gpu.hess), cpu.hess, np.float64)


@pytest.mark.parametrize("width", [13, 61], ids=["warp-rows", "block-rows"])
@pytest.mark.parametrize("case", range(len(OPTION_CASES["sparse_softmax_cross_entropy"])))
def test_the_float32_cross_entropy_gradient_variant(case, width, rng, monkeypatch):
    """rows_cross_entropy.FLOAT32_CE_GRADIENT (gpu_variants.py times it): float32 logits' sparse
    cross-entropy gradient and hessian computed in float32, against the CPU's to
    float32's accuracy; and it is another kernel (the shipped one computes in float64)."""
    from fastloss.cuda import rows_cross_entropy

    name = "sparse_softmax_cross_entropy"
    arrays, options = prepared(name, OPTION_CASES[name][case], rng, np.float32, shape=(5, width))
    if "class_weight" in options:
        options["class_weight"] = rng.uniform(0.25, 3.0, width)
    arrays[0][0] *= 30.0  # a row of widely spread logits
    cpu = fl.compute(name, *arrays, **options, reduction="none", hessian=True)
    shipped = fl.compute(name, *(dev(a) for a in arrays), **options, reduction="none", hessian=True)
    monkeypatch.setattr(rows_cross_entropy, "FLOAT32_CE_GRADIENT", True)
    gpu = fl.compute(name, *(dev(a) for a in arrays), **options, reduction="none", hessian=True)
    _close(host(gpu.loss), cpu.loss, np.float32)
    _close(host(gpu.grad), cpu.grad, np.float32)
    _close(host(gpu.hess), cpu.hess, np.float32)
    assert host(gpu.loss).tobytes() == host(shipped.loss).tobytes()  # the loss's arithmetic is the same
    if case == 0:
        assert host(gpu.grad).tobytes() != host(shipped.grad).tobytes()  # float32 rounds otherwise


@pytest.mark.parametrize("width", [6, 40], ids=["warp-rows", "block-rows"])
@pytest.mark.parametrize("name,options", [("sparse_softmax_cross_entropy", {"label_smoothing": 0.1}),
                                          ("softmax_cross_entropy", {}), ("kl_divergence", {}),
                                          ("categorical_hinge", {}), ("triplet_margin_loss", {})])
def test_row_kernels_loop_over_more_rows_than_the_grid(name, options, width, rng):
    """More rows than the grid's groups (the simulator's grid holds at most 4 blocks):
    each warp or block takes several rows in turn, the last turn with groups left
    without a row."""
    from fastloss.cuda import kernel_choice

    assert (kernel_choice.row_layout(width)[1] == kernel_choice.WARP) == (width <= kernel_choice.WARP_ROW_WIDTH)
    _rows_past_the_grid_against_cpu(name, options, width, kernel_choice.WARP, rng)


def _rows_past_the_grid_against_cpu(name, options, width, group, rng):
    """Twice as many rows as the grid's groups of ``group`` threads, and three more:
    per-row losses and the in-place gradients against the CPU, the sum against the
    per-row losses' (which the blocks add in their own order)."""
    from fastloss.cuda import kernel_choice

    rows = 2 * kernel_choice.MAX_ROW_BLOCKS * (kernel_choice.THREADS // group) + 3
    arrays, options = prepared(name, options, rng, np.float64, shape=(rows, width))
    cpu = fl.compute(name, *arrays, **options, reduction="none")
    gpu = _against_cpu(name, arrays, options, reduction="none")
    devs = [dev(a) for a in arrays]
    outs = tuple(devs[:len(_grads(cpu))])
    total = fl.compute(name, *devs, **options, reduction="sum", out=outs[0] if len(outs) == 1 else outs)
    np.testing.assert_allclose(host(total.loss), host(gpu.loss).sum(), rtol=1e-13)
    for o, c in zip(outs, _grads(cpu)):
        _close(host(o), c, np.float64)


SEGMENT_CASES = [("sparse_softmax_cross_entropy", {"label_smoothing": 0.1}), ("softmax_cross_entropy", {}),
                 *NEW_ROW_KERNELS]


@pytest.mark.parametrize("lane_elements,width", [(1, 2), (2, 3), (8, 5), (8, 9)])
@pytest.mark.parametrize("name,options", SEGMENT_CASES,
                         ids=[f"{n}-{'-'.join(map(str, o.values())) or 'default'}" for n, o in SEGMENT_CASES])
def test_rows_narrower_than_a_warp_take_a_segment_of_it(name, options, lane_elements, width, rng, monkeypatch):
    """Rows narrower than a warp take a segment of one (``kernel_choice.ROW_LANE_ELEMENTS``):
    under the simulator's 4-lane warps, segments of 1 and 2 lanes with up to 5 elements
    each, and more rows than the grid's segments, so that in the last turn some segments
    of a warp have a row and others have stopped (each shuffles among its own lanes).
    Per-row losses and the in-place gradients against the CPU, the sum against theirs."""
    from fastloss.cuda import kernel_choice

    monkeypatch.setattr(kernel_choice, "ROW_LANE_ELEMENTS", lane_elements)
    group = kernel_choice.row_layout(width)[1]
    assert group < kernel_choice.WARP
    _rows_past_the_grid_against_cpu(name, options, width, group, rng)


def test_bad_labels_in_any_block_are_found(rng):
    """The label check's blocks leave their extremes for the last block to merge: a bad
    label anywhere in a grid of several blocks (and grid-stride turns) raises."""
    z = rng.normal(size=(45, 3))
    for bad in (3, -2, 2**62 + 1, -(2**62) - 1):  # the last two are not float64 numbers: kept exact
        for row in (0, 17, 44):
            labels = rng.integers(0, 3, size=45)
            labels[row] = bad
            with pytest.raises(ValueError) as cpu_err:
                fl.sparse_softmax_cross_entropy(z, labels)
            with pytest.raises(ValueError) as gpu_err:
                fl.sparse_softmax_cross_entropy(dev(z), dev(labels))
            assert str(gpu_err.value) == str(cpu_err.value)


def test_categorical_hinge_shares_the_gradient_among_ties():
    """Ties of the max spread over the threads of the block (8 under the simulator):
    the merged count must be exact. Rows: a one-hot target whose 0 ties other slots, a
    soft target with every slot tied, and ties 20 slots apart."""
    x = np.zeros((3, 21))
    y = np.zeros((3, 21))
    x[0, [2, 9, 17]] = 2.0
    y[0, 5] = 1.0
    x[1] = 1.5
    y[1] = 0.25
    x[2, [0, 20]] = 3.0
    x[2, 10] = -1.0
    y[2, 10] = 1.0
    res = _against_cpu("categorical_hinge", [x, y], {}, reduction="none")
    g = host(res.grad)
    np.testing.assert_allclose(g[0, [2, 9, 17]], 1.0 / 3.0, rtol=1e-15)
    np.testing.assert_allclose(g[2, [0, 20]], 0.5, rtol=1e-15)


@pytest.mark.parametrize("eps", [1e-7, 0.0])
@pytest.mark.parametrize("name", ["kl_divergence", "categorical_cross_entropy"])
def test_zero_targets_and_clipped_probabilities(name, eps, rng):
    """Targets of exactly 0 (their terms are 0, never 0 log 0), predictions of 0 and
    above 1 (clipped, with a zero gradient where the clip holds). With eps = 0 the
    predictions are 0 only where the targets are (the simulator's Python log raises at 0
    where a GPU gives -inf)."""
    p = rng.uniform(0.05, 1.0, size=(3, 11))
    p[:, 3:5] = 0.0
    p[1, 8] = 1.5
    if eps:
        p[0, :3] = 0.0
        p[2, :] = 0.0
        p[2, 6] = 1.0
    q = rng.uniform(0.0, 1.0, size=(3, 11))
    q[:, 3:7] = 0.0
    q /= q.sum(-1, keepdims=True)
    options = {"eps": eps} if name == "kl_divergence" or eps else {}
    if name == "categorical_cross_entropy" and eps == 0.0:
        options = {"eps": 1e-12}
    _against_cpu(name, [p, q], options, reduction="none")


@pytest.mark.background(job=python_job(str(ROOT / "benchmarks" / "scripts" / "gpu_call_overhead.py"), "--tiny",
                                        "--calls", "2", "--top", "3", "--numba"))
def test_the_call_overhead_script_runs(background):
    """benchmarks/scripts/gpu_call_overhead.py (the launch-overhead diagnosis for a GPU
    machine) on tiny shapes, so that it works when a GPU comes (run as these tests run:
    under the simulator unless NUMBA_ENABLE_CUDASIM=0)."""
    done = background()
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("µs of host time per call") == 3, done.stdout
    assert "empty numba-cuda launch, 17 arrays" in done.stdout


def _bfloat16(a):
    """``a`` rounded to bfloat16 (to nearest, ties to even), as (int16 bit patterns, their
    float32 values): PyTorch's rounding, written out here."""
    b = np.asarray(a, dtype=np.float32).view(np.int32).astype(np.int64)
    bits = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.int16)
    return bits, (bits.astype(np.int32) << 16).view(np.float32)


def _bf16_launch(name, inputs, sparse, options, in_place):
    """The kernel of ``name`` for bfloat16 bits (what PyTorch bfloat16 tensors get on
    a GPU), launched as the call path launches it: float inputs as int16 bit patterns,
    integer labels (``sparse``) as they are; (per-row losses in float32, the gradients'
    bits)."""
    from fastloss._registry import SPECS
    from fastloss.cuda import arrays, enqueue
    from fastloss.losses import float32_form

    spec = next(s for s in SPECS if s.name == name)
    rows = spec.family == "rowwise"
    options = {o.name: o.check(options.get(o.name, o.default)) for o in spec.options}
    math_fn = spec.math_for(sparse, options)
    if not rows:  # computed in float32: the float32 form, where there is one
        math_fn = float32_form(math_fn) or math_fn
    shape = inputs[0].shape
    n = shape[0] if rows else inputs[0].size
    metas = [arrays.Meta(shape=a.shape, dtype=np.dtype(np.float32), ndim=a.ndim, size=a.size) for a in inputs]
    params = tuple(float(v) for v in spec.params(options, metas)) or (0.0,)
    work = [dev(a) for a in inputs]
    grads = [work[k] if in_place else cuda.device_array(shape, np.int16) for k in range(spec.grads)]
    loss = cuda.device_array(n, np.float32)
    class_weight = options.get("class_weight")
    aux = None if class_weight is None else dev(np.asarray(class_weight, np.float64))
    enqueue.loss_kernel_launch(arrays.Caller(), spec, math_fn, work, aux, None, params, 1.0, loss, grads, None, shape,
                               rows, 1.0, np.float32, False, None)
    return host(loss), [host(g) for g in grads]


def _bf16_against_cpu(name, arrays, sparse, options):
    """``name`` on the bfloat16 roundings of the float ``arrays`` (:func:`_bf16_launch`)
    against the CPU's float32 results on the same values: each loss to float32's
    accuracy, each gradient within half a bfloat16 step (plus float32's error) and
    mostly the very bits of the CPU's rounded to bfloat16. Returns (input bits, losses,
    gradient bits)."""
    bits, values = zip(*(_bfloat16(a) if a.dtype.kind == "f" else (a, a) for a in arrays))
    loss, grad_bits = _bf16_launch(name, bits, sparse, options, in_place=False)
    cpu = fl.compute(name, *values, reduction="none", **options)
    _close(loss, cpu.loss, np.float32)
    for g_bits, c in zip(grad_bits, _grads(cpu)):
        g = (g_bits.astype(np.int32) << 16).view(np.float32)
        np.testing.assert_allclose(g, c, rtol=2.0**-8 + 2e-6, atol=1e-6 * np.abs(c).max())
        assert (g_bits == _bfloat16(c)[0]).mean() > 0.9
    return bits, loss, grad_bits


BF16_ROW_CASES = [
    ("sparse_softmax_cross_entropy", {}),
    ("sparse_softmax_cross_entropy", {"label_smoothing": 0.1}),
    ("sparse_softmax_cross_entropy", {"class_weight": "per class", "label_smoothing": 0.3, "ignore_index": 2}),
    ("softmax_cross_entropy", {"label_smoothing": 0.2}),
    ("softmax_kl_divergence", {}),
    *NEW_ROW_KERNELS,
]


@pytest.mark.parametrize("width", [5, 40], ids=["warp-rows", "block-rows"])
@pytest.mark.parametrize("name,options", BF16_ROW_CASES,
                         ids=[f"{n}-{'-'.join(map(str, o.values())) or 'default'}" for n, o in BF16_ROW_CASES])
def test_bfloat16_bits_in_every_row_kernel(name, options, width, rng):
    """bfloat16 in, bfloat16 out, float32 inside: each row's loss is the CPU's float32
    loss of the same (bfloat16) values, and each gradient the CPU's float32 gradient
    rounded to bfloat16 (within half a bfloat16 step, plus float32's error); in place
    (``out=`` the inputs) the same bits."""
    weights = options.get("class_weight") == "per class"
    arrays, options = prepared(name, {k: v for k, v in options.items() if k != "class_weight"}, rng, np.float32,
                               shape=(6, width))
    if weights:
        options["class_weight"] = rng.uniform(0.25, 3.0, width)
    if name in ("sparse_softmax_cross_entropy", "softmax_cross_entropy", "softmax_kl_divergence"):
        arrays[0][1, 2] = -np.inf  # a masked logit
    sparse = len(arrays) > 1 and arrays[1].dtype.kind in "iu"
    bits, loss, grad_bits = _bf16_against_cpu(name, arrays, sparse, options)
    if width == 40:
        in_place_loss, in_place_bits = _bf16_launch(name, bits, sparse, options, in_place=True)
        np.testing.assert_array_equal(in_place_loss, loss)
        for a, b in zip(in_place_bits, grad_bits):
            np.testing.assert_array_equal(a, b)


BF16_ELEMENTWISE = [name for name in ALL_LOSSES if name not in ROWWISE
                    and name not in ("root_mean_squared_error", "hinge", "squared_hinge")]


@pytest.mark.parametrize("name", BF16_ELEMENTWISE)
def test_bfloat16_bits_in_the_elementwise_kernels(name, rng):
    """Element-wise losses on bfloat16 bits (RMSE and the hinges, whose finish or 0/1
    rule needs float values, take float32 copies): each element's loss is the CPU's
    float32 loss of the same values, each gradient the CPU's rounded to bfloat16."""
    arrays, options = prepared(name, OPTION_CASES[name][0], rng, np.float32, shape=(37,))
    _bf16_against_cpu(name, arrays, False, options)
