"""The calling convention of contract sections 1-2 (docs/contract.md): the result object,
grad flags, out= and in-place, layouts, dtypes, the registry, aliases, and the parallel
path."""

import inspect
import sys

import numpy as np
import pytest
from conftest import ALL_LOSSES, CPU_BACKENDS, tiered
from reference import OPTION_CASES, ROWWISE, prepared

import fastloss as fl
from fastloss import _config

pytestmark = pytest.mark.usefixtures("cpu_backend")

MULTI = [n for n in ALL_LOSSES if len(fl.losses()[n].differentiable) > 1]


def _grads(res):
    return res.grad if isinstance(res.grad, tuple) else (res.grad,)


def _same(res_a, res_b, rtol=0.0):
    np.testing.assert_allclose(res_a.loss, res_b.loss, rtol=rtol)
    for a, b in zip(_grads(res_a), _grads(res_b)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=0)


def test_result_unpacks_as_loss_and_grad(rng):
    x, y = rng.normal(size=5), rng.normal(size=5)
    res = fl.mse(x, y)
    loss, grad = res
    assert loss is res.loss and grad is res.grad and res.hess is None
    assert isinstance(res.loss, np.ndarray) and res.loss.shape == ()
    np.testing.assert_allclose(loss, np.mean((x - y) ** 2), rtol=1e-15)
    np.testing.assert_allclose(grad, 2 * (x - y) / 5, rtol=1e-15)
    assert "LossResult" in repr(res)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_grad_flags(name, rng):
    arrays, options = prepared(name, OPTION_CASES[name][0], rng)
    full = fl.compute(name, *arrays, **options)
    loss_only = fl.compute(name, *arrays, grad=False, **options)
    grad_only = fl.compute(name, *arrays, grad="only", **options)
    assert loss_only.grad is None and grad_only.loss is None
    np.testing.assert_array_equal(loss_only.loss, full.loss)
    for a, b in zip(_grads(grad_only), _grads(full)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_inputs_are_never_modified(name, rng):
    arrays, options = prepared(name, OPTION_CASES[name][0], rng)
    copies = [a.copy() for a in arrays]
    for reduction in ("mean", "sum"):
        fl.compute(name, *arrays, reduction=reduction, **options)
    for a, c in zip(arrays, copies):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_out_receives_the_gradient(name, rng):
    arrays, options = prepared(name, OPTION_CASES[name][0], rng)
    expected = fl.compute(name, *arrays, **options)
    n = len(fl.losses()[name].differentiable)
    outs = tuple(np.full_like(a, np.nan) for a in arrays[:n])
    res = fl.compute(name, *arrays, out=outs if n > 1 else outs[0], **options)
    for got, out in zip(_grads(res), outs):
        assert got is out
    _same(res, expected)


@pytest.mark.parametrize("name, case", [(name, i) for name in ALL_LOSSES for i in range(len(OPTION_CASES[name]))])
def test_out_may_be_the_prediction_itself(name, case, rng):
    """Every option set: a kernel that writes the gradient over its input must read all it
    needs of that input first (label smoothing reads every logit again, for one)."""
    arrays, options = prepared(name, OPTION_CASES[name][case], rng)
    expected = fl.compute(name, *arrays, **options)
    n = len(fl.losses()[name].differentiable)
    inplace = [a.copy() for a in arrays]
    outs = tuple(inplace[:n])
    res = fl.compute(name, *inplace, out=outs if n > 1 else outs[0], **options)
    for got, buf in zip(_grads(res), outs):
        assert got is buf
    _same(res, expected)


@pytest.mark.parametrize("name", ["softmax_cross_entropy", "categorical_hinge", "mean_squared_error"])
def test_out_may_alias_the_target(name, rng):
    arrays, options = prepared(name, OPTION_CASES[name][0], rng)
    expected = fl.compute(name, *arrays, **options)
    target = arrays[1].copy()
    res = fl.compute(name, arrays[0], target, out=target, **options)
    assert res.grad is target
    _same(res, expected)


@pytest.mark.parametrize("order", ["F", "strided", "readonly"])
@pytest.mark.parametrize("name", ALL_LOSSES)
def test_any_memory_layout_gives_the_same_result(name, order, rng):
    arrays, options = prepared(name, OPTION_CASES[name][0], rng)
    reduction = "sum" if name == "root_mean_squared_error" else "none"
    expected = fl.compute(name, *arrays, reduction=reduction, **options)
    if order == "F":
        other = [np.asfortranarray(a) for a in arrays]
    elif order == "strided":
        other = []
        for a in arrays:
            big = np.zeros(tuple(2 * s for s in a.shape), dtype=a.dtype)
            view = big[tuple(slice(None, None, 2) for _ in a.shape)]
            view[...] = a
            other.append(view)
    else:
        other = [a.copy() for a in arrays]
        for a in other:
            a.flags.writeable = False
    res = fl.compute(name, *other, reduction=reduction, **options)
    _same(res, expected)
    if order == "F":  # and out= in Fortran order
        outs = tuple(np.asfortranarray(np.empty_like(a)) for a in arrays[: len(_grads(expected))])
        res = fl.compute(name, *other, reduction=reduction, out=outs if len(outs) > 1 else outs[0], **options)
        _same(res, expected)


@pytest.mark.float32
@pytest.mark.parametrize("name", ["huber", "sparse_softmax_cross_entropy", "js_divergence", "log_cosh"])
def test_half_precision_computes_in_float32(name, rng):
    arrays, options = prepared(name, OPTION_CASES[name][0], rng)
    half = [a.astype(np.float16) if a.dtype.kind == "f" else a for a in arrays]
    single = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in half]
    res16 = fl.compute(name, *half, **options)
    res32 = fl.compute(name, *single, **options)
    assert res16.loss.dtype == np.float16
    for g16, g32 in zip(_grads(res16), _grads(res32)):
        assert g16.dtype == np.float16
        np.testing.assert_array_equal(g16, g32.astype(np.float16))
    assert res16.loss == res32.loss.astype(np.float16)


@pytest.mark.parametrize("name", tiered(ALL_LOSSES))  # Numba compiles a parallel kernel per loss
def test_parallel_kernels_match_serial(name, rng, monkeypatch):
    arrays, options = prepared(name, OPTION_CASES[name][0], rng)
    weights = rng.uniform(0, 2, size=arrays[0].shape[:-1] if name in ROWWISE else arrays[0].shape)
    serial = fl.compute(name, *arrays, sample_weight=weights, reduction="sum", **options)
    monkeypatch.setattr(_config, "CHUNK_ELEMENTS", 7)  # several chunks, of whole rows
    chunked = fl.compute(name, *arrays, sample_weight=weights, reduction="sum", **options)
    monkeypatch.setattr(_config, "PARALLEL_MIN_SIZE", 0)
    parallel = fl.compute(name, *arrays, sample_weight=weights, reduction="sum", **options)
    np.testing.assert_allclose(chunked.loss, serial.loss, rtol=1e-13)
    np.testing.assert_array_equal(parallel.loss, chunked.loss)  # same chunks: same bits
    for a, b, c in zip(_grads(parallel), _grads(chunked), _grads(serial)):
        np.testing.assert_array_equal(a, b)
        if name == "root_mean_squared_error":  # its gradient is scaled by the (re-summed) loss
            np.testing.assert_allclose(b, c, rtol=1e-13)
        else:
            np.testing.assert_array_equal(b, c)


def test_large_input_takes_the_parallel_path_and_is_right(rng):
    n = 2 * _config.PARALLEL_MIN_SIZE + 3
    x, y = rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32)
    loss, grad = fl.huber(x, y, delta=0.7)
    r = x.astype(np.float64) - y
    ref = np.where(np.abs(r) <= 0.7, 0.5 * r * r, 0.7 * (np.abs(r) - 0.35)).mean()
    np.testing.assert_allclose(loss, ref, rtol=1e-6)
    np.testing.assert_allclose(grad, np.clip(r, -0.7, 0.7) / n, rtol=2e-6, atol=1e-12)


def test_registry_lists_every_loss_with_its_options_and_backends():
    infos = fl.losses()  # the contract's list of losses: tests/test_docs.py checks it against the registry
    huber = infos["huber"]
    assert huber.options == {"delta": 1.0}
    assert huber.backends == fl.backends() and "numba" in huber.backends
    assert infos["sparse_softmax_cross_entropy"].hessian
    assert infos["triplet_margin_loss"].differentiable == ("anchor", "positive", "negative")
    for name in infos:
        assert callable(getattr(fl, name))


@pytest.mark.parametrize("alias,name", [("mse", "mean_squared_error"), ("mae", "mean_absolute_error"),
                                        ("rmse", "root_mean_squared_error"),
                                        ("msle", "mean_squared_logarithmic_error"),
                                        ("mape", "mean_absolute_percentage_error")])
def test_aliases(alias, name, rng):
    x, y = rng.uniform(0.5, 2, 6), rng.uniform(0.5, 2, 6)
    assert getattr(fl, alias) is getattr(fl, name)
    _same(fl.compute(alias, x, y), getattr(fl, name)(x, y))


def test_compute_by_name_and_keyword_arrays(rng):
    x, y = rng.normal(size=4), rng.normal(size=4)
    _same(fl.compute("huber", x, y, delta=2.0), fl.huber(pred=x, target=y, delta=2.0))
    with pytest.raises(ValueError, match="unknown loss"):
        fl.compute("no_such_loss", x, y)


def test_signatures_and_docstrings_describe_the_options():
    sig = inspect.signature(fl.huber)
    assert list(sig.parameters)[:2] == ["pred", "target"]
    assert sig.parameters["delta"].default == 1.0
    assert sig.parameters["reduction"].default == "mean"
    assert "axis" in inspect.signature(fl.softmax_cross_entropy).parameters
    assert "delta" in fl.huber.__doc__ and "hessian" in fl.pseudo_huber.__doc__


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_backends_agree(name, rng):
    arrays, options = prepared(name, OPTION_CASES[name][-1], rng)
    reduction = "sum" if name == "root_mean_squared_error" else "none"
    results = [fl.compute(name, *arrays, reduction=reduction, backend=b, hessian=fl.losses()[name].hessian, **options)
               for b in CPU_BACKENDS]
    for other in results[1:]:
        np.testing.assert_allclose(other.loss, results[0].loss, rtol=1e-14, atol=1e-300)
        for a, b in zip(_grads(other), _grads(results[0])):
            np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-300)
        if other.hess is not None:
            np.testing.assert_allclose(other.hess, results[0].hess, rtol=1e-14, atol=1e-300)


def test_sample_weight_broadcasts(rng):
    x, y = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    col = rng.uniform(size=(3, 1))
    res = fl.mse(x, y, sample_weight=col, reduction="sum")
    np.testing.assert_allclose(res.loss, (col * (x - y) ** 2).sum(), rtol=1e-14)
    np.testing.assert_allclose(res.grad, 2 * col * (x - y), rtol=1e-14)
    scalar = fl.mse(x, y, sample_weight=3.0)
    np.testing.assert_allclose(scalar.loss, 3 * np.mean((x - y) ** 2), rtol=1e-14)


def test_sum_of_none_and_hessian_of_none(rng):
    z, y = rng.normal(size=(5, 3)), rng.dirichlet(np.ones(3), 5)
    none = fl.softmax_cross_entropy(z, y, reduction="none", hessian=True)
    total = fl.softmax_cross_entropy(z, y, reduction="sum", hessian=True)
    np.testing.assert_allclose(none.loss.sum(), total.loss, rtol=1e-14)
    np.testing.assert_array_equal(none.grad, total.grad)
    np.testing.assert_array_equal(none.hess, total.hess)


@pytest.mark.parametrize("name", ["hinge", "squared_hinge"])
@pytest.mark.parametrize("targets", ["auto", "zero_one", "signed"])
def test_hinge_targets_option_reads_y_as_asked(name, targets, rng):
    """``targets`` says how y is read; the reference maps it by hand (float64 NumPy)."""
    x = rng.normal(size=12)
    for y in (rng.integers(0, 2, 12).astype(np.float64), rng.choice([-1.0, 1.0], 12),
              np.array([0.0, 1.0, -1.0] * 4)):
        zero_one = bool(np.all((y == 0) | (y == 1))) if targets == "auto" else targets == "zero_one"
        t = 2 * y - 1 if zero_one else y
        margin = np.maximum(0.0, 1 - t * x)
        want = margin if name == "hinge" else margin**2
        dwant = -t * (margin > 0) if name == "hinge" else -2 * t * margin
        res = fl.compute(name, x, y, targets=targets, reduction="none")
        np.testing.assert_allclose(res.loss, want, rtol=1e-15, atol=0)
        np.testing.assert_allclose(res.grad, dwant, rtol=1e-15, atol=0)


def test_hinge_targets_option_is_checked():
    with pytest.raises(ValueError, match="targets must be one of"):
        fl.hinge(np.zeros(3), np.zeros(3), targets="pm1")


def test_array_handlers_take_calls_with_their_arrays(monkeypatch):
    """The hook through which Dask (and other array libraries) take a call: an array whose
    type's top-level module has a handler goes there, with the call read and checked."""
    from fastloss import _arrays

    class Lazy:  # an array type of a library named after this test module's package
        shape, dtype, ndim = (3,), np.dtype(np.float64), 1

    seen = []
    module = type("M", (), {"evaluate": staticmethod(lambda *a: seen.append(a) or "handled")})
    monkeypatch.setitem(sys.modules, "lazy_arrays_for_test", module)
    Lazy.__module__ = "lazy_arrays_for_test.core"
    monkeypatch.setattr(_arrays, "_handlers", {"lazy_arrays_for_test": "lazy_arrays_for_test:evaluate"})
    assert fl.huber(Lazy(), np.zeros(3), delta=2.0, reduction="sum") == "handled"
    spec, arrays, common, options, backend = seen[0]
    assert spec.name == "huber" and options == {"delta": 2.0} and common.reduction == "sum" and backend == "auto"
    with pytest.raises(ValueError, match="delta"):  # checked before the handler runs
        fl.huber(Lazy(), np.zeros(3), delta=-1.0)
