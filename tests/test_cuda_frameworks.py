"""PyTorch and CuPy device arrays through the CUDA backend: results of the caller's kind,
on its device and stream, in place, bfloat16, other layouts, JAX through DLPack.

These need a real GPU (run with ``NUMBA_ENABLE_CUDASIM=0``); under the simulator, and
without the framework, they skip.
"""

import numpy as np
import pytest
from conftest import ALL_LOSSES
from reference import OPTION_CASES, ROWWISE, prepared

import fastloss as fl

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed")
from numba.cuda import config as cuda_config  # noqa: E402

if cuda_config.ENABLE_CUDASIM:
    pytest.skip("framework device arrays need a real GPU (NUMBA_ENABLE_CUDASIM=0)", allow_module_level=True)
torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("PyTorch sees no GPU", allow_module_level=True)


def t(a, dtype=None):
    out = torch.as_tensor(np.ascontiguousarray(a), device="cuda")
    return out if dtype is None else out.to(dtype)


def n(x):
    return x.detach().float().cpu().numpy() if x.dtype == torch.bfloat16 else x.detach().cpu().numpy()


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_every_loss_with_torch_tensors(name, rng):
    arrays, options = prepared(name, OPTION_CASES[name][0], rng, np.float32)
    cpu = fl.compute(name, *arrays, **options, reduction="none" if name != "root_mean_squared_error" else "sum")
    gpu = fl.compute(name, *[t(a) for a in arrays], **options,
                     reduction="none" if name != "root_mean_squared_error" else "sum")
    assert isinstance(gpu.loss, torch.Tensor) and gpu.loss.is_cuda
    np.testing.assert_allclose(n(gpu.loss), cpu.loss, rtol=2e-6, atol=1e-6)
    grads = gpu.grad if isinstance(gpu.grad, tuple) else (gpu.grad,)
    for g, c in zip(grads, cpu.grad if isinstance(cpu.grad, tuple) else (cpu.grad,)):
        assert isinstance(g, torch.Tensor) and g.is_cuda and g.dtype == torch.float32
        np.testing.assert_allclose(n(g), c, rtol=2e-6, atol=1e-6)


def test_cross_entropy_in_place_on_logits_matches_pytorch(rng):
    z = rng.normal(size=(64, 1000)).astype(np.float32) * 4
    labels = rng.integers(0, 1000, 64)
    zt = t(z).requires_grad_(True)
    ref = torch.nn.functional.cross_entropy(zt, t(labels), label_smoothing=0.1)
    ref.backward()
    logits = t(z)
    res = fl.sparse_softmax_cross_entropy(logits, t(labels), label_smoothing=0.1, out=logits)
    assert res.grad.data_ptr() == logits.data_ptr()
    np.testing.assert_allclose(n(res.loss), n(ref), rtol=1e-6)
    np.testing.assert_allclose(n(logits), n(zt.grad), rtol=1e-5, atol=1e-9)


def test_bfloat16_computes_in_float32_and_returns_bfloat16(rng):
    z = rng.normal(size=(32, 100)).astype(np.float32)
    labels = rng.integers(0, 100, 32)
    zb = t(z, torch.bfloat16)
    res = fl.sparse_softmax_cross_entropy(zb, t(labels))
    assert res.loss.dtype == torch.bfloat16 and res.grad.dtype == torch.bfloat16
    want = fl.sparse_softmax_cross_entropy(n(zb), labels)
    np.testing.assert_allclose(n(res.loss), want.loss, rtol=1e-2)
    np.testing.assert_allclose(n(res.grad), want.grad, rtol=1e-2, atol=1e-4)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_every_loss_in_bfloat16(name, rng):
    """bfloat16 tensors in, bfloat16 out, float32 inside (the row kernels read the bits
    themselves): the CPU's float32 results on the same values, to bfloat16's precision."""
    arrays, options = prepared(name, OPTION_CASES[name][0], rng, np.float32)
    spec = fl.losses()[name]
    bf = [t(a, torch.bfloat16) if a.dtype.kind == "f" else t(a) for a in arrays]
    reduction = "none" if name != "root_mean_squared_error" else "sum"
    gpu = fl.compute(name, *bf, **options, reduction=reduction)
    cpu = fl.compute(name, *[n(b) if b.dtype == torch.bfloat16 else a for a, b in zip(arrays, bf)], **options,
                     reduction=reduction)
    assert gpu.loss.dtype == torch.bfloat16
    np.testing.assert_allclose(n(gpu.loss), cpu.loss, rtol=2.0**-7, atol=1e-6)
    grads = gpu.grad if isinstance(gpu.grad, tuple) else (gpu.grad,)
    for g, c in zip(grads, cpu.grad if isinstance(cpu.grad, tuple) else (cpu.grad,)):
        assert g.dtype == torch.bfloat16
        np.testing.assert_allclose(n(g), c, rtol=2.0**-7, atol=1e-6 * np.abs(c).max())
    assert len(grads) == len(spec.differentiable)


def test_bfloat16_logits_with_float32_targets(rng):
    """Float targets of another dtype than the bfloat16 logits: read as they are (the call
    goes through float32 copies), not as bfloat16 bits."""
    z = rng.normal(size=(16, 50)).astype(np.float32)
    q = rng.dirichlet(np.ones(50), size=16).astype(np.float32)
    zb = t(z, torch.bfloat16)
    for name in ("softmax_cross_entropy", "softmax_kl_divergence", "kl_divergence", "categorical_hinge"):
        gpu = fl.compute(name, zb, t(q), reduction="none")
        cpu = fl.compute(name, n(zb), q, reduction="none")
        np.testing.assert_allclose(n(gpu.loss), cpu.loss, rtol=2.0**-7, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(n(gpu.grad), cpu.grad, rtol=2.0**-7, atol=1e-6, err_msg=name)


def test_runs_on_the_callers_stream(rng):
    x = rng.normal(size=1 << 20).astype(np.float32)
    y = rng.normal(size=1 << 20).astype(np.float32)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        xt, yt = t(x), t(y)
        xt.mul_(2.0)  # queued on s: the loss must see it
        res = fl.mse(xt, yt)
    s.synchronize()
    np.testing.assert_allclose(n(res.loss), np.mean((2 * x.astype(np.float64) - y) ** 2), rtol=1e-6)


def test_the_label_check_sees_the_labels_of_the_callers_stream(rng):
    """Labels made good, or bad, by work queued on the caller's side stream: the device
    check runs after that work, and its verdict is read back on that stream."""
    z = rng.normal(size=(4096, 100)).astype(np.float32)
    labels = rng.integers(0, 100, 4096)
    want = fl.sparse_softmax_cross_entropy(z, labels)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        zt, lt = t(z), t(labels + 1000)
        lt.sub_(1000)  # queued on s: out of range until it runs
        res = fl.sparse_softmax_cross_entropy(zt, lt)
        lt[4000] = 100  # queued on s: a bad label
        with pytest.raises(ValueError, match="found 100"):
            fl.sparse_softmax_cross_entropy(zt, lt, out=zt)
    s.synchronize()
    np.testing.assert_allclose(n(res.loss), want.loss, rtol=1e-6)
    np.testing.assert_allclose(n(res.grad), want.grad, rtol=1e-5, atol=1e-9)
    np.testing.assert_array_equal(n(zt), z)  # the gated kernel wrote nothing


def test_other_layouts_and_axis(rng):
    z = rng.normal(size=(5, 7, 3))
    y = rng.dirichlet(np.ones(7), size=(5, 3)).transpose(0, 2, 1)
    cpu = fl.softmax_cross_entropy(z, y, axis=1, reduction="none")
    gpu = fl.softmax_cross_entropy(t(z), t(y), axis=1, reduction="none")
    np.testing.assert_allclose(n(gpu.loss), cpu.loss, rtol=1e-12)
    np.testing.assert_allclose(n(gpu.grad), cpu.grad, rtol=1e-12, atol=1e-15)
    x = rng.normal(size=(6, 4))
    tx = t(x).T  # not contiguous
    np.testing.assert_allclose(n(fl.mae(tx, tx * 0.5).grad), fl.mae(x.T, x.T * 0.5).grad)


def test_tensors_that_require_grad_are_read_not_copied(rng):
    x = t(rng.normal(size=8)).requires_grad_(True)
    res = fl.mse(x, x.detach() * 0)
    np.testing.assert_allclose(n(res.grad), 2 * n(x) / 8)


def test_cupy_arrays_give_cupy_arrays(rng):
    cp = pytest.importorskip("cupy")
    z = rng.normal(size=(16, 10))
    labels = rng.integers(0, 10, 16)
    res = fl.sparse_softmax_cross_entropy(cp.asarray(z), cp.asarray(labels), reduction="none")
    want = fl.sparse_softmax_cross_entropy(z, labels, reduction="none")
    assert isinstance(res.loss, cp.ndarray) and isinstance(res.grad, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(res.grad), want.grad, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="labels must be in"):
        fl.sparse_softmax_cross_entropy(cp.asarray(z), cp.asarray(labels + 10))


def test_mixing_libraries_or_host_memory_is_an_error(rng):
    x = rng.normal(size=4)
    with pytest.raises(ValueError, match="host memory"):
        fl.mse(t(x), x)
    cp = pytest.importorskip("cupy")
    with pytest.raises(ValueError, match="different libraries"):
        fl.mse(t(x), cp.asarray(x))


def test_jax_arrays_through_dlpack(rng):
    jax = pytest.importorskip("jax")
    if not any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("JAX sees no GPU")
    import jax.numpy as jnp

    x, y = rng.normal(size=10).astype(np.float32), rng.normal(size=10).astype(np.float32)
    res = fl.huber(jnp.asarray(x), jnp.asarray(y))
    assert isinstance(res.grad, jax.Array)
    np.testing.assert_allclose(np.asarray(res.grad), fl.huber(x, y).grad, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(ROWWISE))
def test_large_rows(name, rng):
    """Rows wider than a block's threads, in float32."""
    arrays, options = prepared(name, OPTION_CASES[name][0], rng, np.float32, shape=(70, 1000))
    cpu = fl.compute(name, *arrays, **options, reduction="none")
    gpu = fl.compute(name, *[t(a) for a in arrays], **options, reduction="none")
    np.testing.assert_allclose(n(gpu.loss), cpu.loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["sparse_softmax_cross_entropy", "softmax_cross_entropy", "kl_divergence",
                                  "triplet_margin_loss"])
@pytest.mark.parametrize("shape", [(70001, 40), (8195, 1100), (300007, 10), (600001, 3)],
                         ids=["warp-rows", "block-rows", "segments-of-16", "segments-of-4"])
def test_more_rows_than_the_grid(name, shape, rng):
    """More rows than the row kernels' grid holds groups (at most 4096 blocks: 32768
    warps, 4096 blocks of rows wider than 1024, or 65536 and 262144 segments of 16 and 4
    lanes for rows of 10 and 3), so that every group loops and, in the last turn, some
    segments of a warp have a row while others have stopped; float64 per-row losses, the
    sum and the gradient against the CPU."""
    from fastloss.cuda import kernel_choice

    assert shape[0] > kernel_choice.MAX_ROW_BLOCKS * (kernel_choice.THREADS // kernel_choice.row_layout(shape[1])[1])
    arrays, options = prepared(name, OPTION_CASES[name][0], rng, np.float64, shape=shape)
    cpu = fl.compute(name, *arrays, **options, reduction="none")
    gpu = fl.compute(name, *[t(a) for a in arrays], **options, reduction="none")
    np.testing.assert_allclose(n(gpu.loss), cpu.loss, rtol=1e-12, atol=1e-13)
    for g, c in zip(gpu.grad if isinstance(gpu.grad, tuple) else (gpu.grad,),
                    cpu.grad if isinstance(cpu.grad, tuple) else (cpu.grad,)):
        np.testing.assert_allclose(n(g), c, rtol=1e-12, atol=1e-13)
    total = fl.compute(name, *[t(a) for a in arrays], **options, reduction="sum")
    np.testing.assert_allclose(n(total.loss), cpu.loss.sum(), rtol=1e-12)


@pytest.mark.parametrize("name", ["mean_squared_error", "sigmoid_binary_cross_entropy",
                                  "sparse_softmax_cross_entropy", "softmax_kl_divergence", "triplet_margin_loss"])
def test_torch_adapter_on_cuda_tensors(name, rng):
    """fastloss.torch's autograd functions on CUDA tensors: the backward's gradients
    equal fastloss's own (CPU) gradients, on the tensors' device."""
    flt = pytest.importorskip("fastloss.torch")
    arrays, options = prepared(name, OPTION_CASES[name][0], rng, np.float64)
    n_grads = len(fl.losses()[name].differentiable)
    tensors = [t(a).requires_grad_(k < n_grads) for k, a in enumerate(arrays)]
    getattr(flt, name)(*tensors, **options).backward()
    cpu = fl.compute(name, *arrays, **options)
    for k, c in enumerate(cpu.grad if isinstance(cpu.grad, tuple) else (cpu.grad,)):
        assert tensors[k].grad.is_cuda
        np.testing.assert_allclose(n(tensors[k].grad), c, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["sparse_softmax_cross_entropy", "mean_squared_error", "root_mean_squared_error",
                                  "hinge", "triplet_margin_loss", "js_divergence"])
def test_direct_launches_give_the_bits_of_numba_cudas(name, rng, monkeypatch):
    """Once a kernel's plan exists, launches skip numba-cuda's dispatch
    (fastloss/cuda/launch.py): the same kernels, the same parameters, the same bits."""
    from fastloss.cuda import launch

    arrays, options = prepared(name, OPTION_CASES[name][0], rng, np.float32)
    args = [t(a) for a in arrays]
    monkeypatch.setattr(launch, "DIRECT", False)
    through_numba = fl.compute(name, *args, **options)
    monkeypatch.setattr(launch, "DIRECT", True)
    fl.compute(name, *args, **options)  # the plans are made on this call's launches
    direct = []
    run = launch._Plan.run
    monkeypatch.setattr(launch._Plan, "run", lambda self, *a: direct.append(self) or run(self, *a))
    res = fl.compute(name, *args, **options)
    assert direct, f"{name}: no launch was direct"
    assert n(res.loss).tobytes() == n(through_numba.loss).tobytes()
    grads = res.grad if isinstance(res.grad, tuple) else (res.grad,)
    want = through_numba.grad if isinstance(through_numba.grad, tuple) else (through_numba.grad,)
    for g, w in zip(grads, want):
        assert n(g).tobytes() == n(w).tobytes()
