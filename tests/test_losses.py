"""Every loss and option against the float64 references of tests/reference.py: values for
each reduction, dtype and weighting; gradients and hessians by finite differences."""

import numpy as np
import pytest
from conftest import ALL_LOSSES, HESSIAN_LOSSES
from reference import OPTION_CASES, ROWWISE, prepared, reduce_reference, reference

import fastloss as fl

pytestmark = pytest.mark.usefixtures("cpu_backend")

CASES = [(name, i) for name in ALL_LOSSES for i in range(len(OPTION_CASES[name]))]
CASE_IDS = [f"{name}-{i}" for name, i in CASES]


def test_every_loss_has_a_reference_and_cases():
    assert set(OPTION_CASES) == set(ALL_LOSSES)


def _weights(name, arrays, rng):
    shape = arrays[0].shape[:-1] if name in ROWWISE else arrays[0].shape
    return rng.uniform(-0.5, 2.0, size=shape)


def _reductions(name):
    return ("mean", "sum") if name == "root_mean_squared_error" else ("mean", "sum", "none")


def _objective(name, options, reduction, weights, k):
    """The reduced reference as a function of differentiable input ``k`` (a scalar: the sum
    of the losses for "none", as contract section 1 defines that gradient)."""

    def f(arrays, xk):
        arrays = list(arrays)
        arrays[k] = xk
        per = reference(name, arrays, options)
        return float(np.sum(reduce_reference(name, per, reduction, weights, arrays, options)))

    return f


# Fourth-order central differences at steps (2, 1, 0, -1, -2) h, over 12 h^order.
_STENCILS = {1: (-1, 8, 0, -8, 1), 2: (-1, 16, -30, 16, -1)}


def _central(f, arrays, x, order, h_rel=1e-3):
    """d^order f / dx_i^order for every element of ``x`` (the diagonal for order 2)."""
    out = np.empty_like(x)
    for idx in np.ndindex(*x.shape):
        h = h_rel * max(1.0, abs(x[idx]))
        total = 0.0
        for step, weight in zip((2, 1, 0, -1, -2), _STENCILS[order]):
            if weight:
                xs = x.copy()
                xs[idx] += step * h
                total += weight * f(arrays, xs)
        out[idx] = total / (12 * h**order)
    return out


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,case", CASES, ids=CASE_IDS)
def test_value_matches_reference(name, case, dtype, weighted, rng):
    arrays, options = prepared(name, OPTION_CASES[name][case], rng, dtype)
    weights = _weights(name, arrays, rng) if weighted else None
    per = reference(name, arrays, options)
    rtol = 1e-12 if dtype == np.float64 else 2e-6
    for reduction in _reductions(name):
        res = fl.compute(name, *arrays, reduction=reduction, sample_weight=weights, **options)
        expected = reduce_reference(name, per, reduction, weights, arrays, options)
        assert res.loss.dtype == dtype
        assert res.loss.shape == np.shape(expected)
        scale = max(1.0, float(np.max(np.abs(expected)))) if np.size(expected) else 1.0
        np.testing.assert_allclose(res.loss, expected, rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("name,case", CASES, ids=CASE_IDS)
def test_gradient_matches_finite_differences(name, case, rng):
    arrays, options = prepared(name, OPTION_CASES[name][case], rng)
    weights = _weights(name, arrays, rng)
    n_grads = len(fl.losses()[name].differentiable)
    for reduction in _reductions(name):
        res = fl.compute(name, *arrays, reduction=reduction, sample_weight=weights, **options)
        grads = res.grad if n_grads > 1 else (res.grad,)
        assert len(grads) == n_grads
        for k in range(n_grads):
            f = _objective(name, options, reduction, weights, k)
            expected = _central(f, arrays, arrays[k], 1)
            assert grads[k].shape == arrays[k].shape and grads[k].dtype == arrays[k].dtype
            scale = max(1e-3, float(np.max(np.abs(expected))))
            np.testing.assert_allclose(grads[k], expected, rtol=1e-6, atol=1e-8 * scale)


@pytest.mark.float32
@pytest.mark.parametrize("name,case", CASES, ids=CASE_IDS)
def test_float32_gradient_matches_float64(name, case, rng):
    arrays, options = prepared(name, OPTION_CASES[name][case], rng, np.float32)
    g32 = fl.compute(name, *arrays, **options).grad
    g64 = fl.compute(name, *[a.astype(np.float64) if a.dtype == np.float32 else a for a in arrays],
                     **options).grad
    for a, b in zip(g32 if isinstance(g32, tuple) else (g32,), g64 if isinstance(g64, tuple) else (g64,)):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-6 * max(1e-3, float(np.abs(b).max())))


@pytest.mark.parametrize("name", HESSIAN_LOSSES)
def test_hessian_matches_finite_differences(name, rng):
    for options in OPTION_CASES[name]:
        arrays, options = prepared(name, options, rng)
        weights = _weights(name, arrays, rng)
        for reduction in _reductions(name):
            res = fl.compute(name, *arrays, reduction=reduction, sample_weight=weights, hessian=True, **options)
            f = _objective(name, options, reduction, weights, 0)
            expected = _central(f, arrays, arrays[0], 2)
            scale = max(1e-3, float(np.max(np.abs(expected))))
            np.testing.assert_allclose(res.hess, expected, rtol=1e-5, atol=1e-6 * scale)


def test_hessian_is_offered_where_spec_requires():
    required = {"mean_squared_error", "pseudo_huber", "log_cosh", "poisson", "sigmoid_binary_cross_entropy",
                "sparse_softmax_cross_entropy", "softmax_cross_entropy"}
    assert required <= set(HESSIAN_LOSSES)


@pytest.mark.parametrize("name", sorted(ROWWISE - {"sparse_softmax_cross_entropy"}))
def test_class_axis_can_be_any_axis(name, rng):
    arrays, options = prepared(name, OPTION_CASES[name][0], rng, shape=(3, 2, 5))
    moved = [np.moveaxis(a, -1, 1) for a in arrays]
    last = fl.compute(name, *arrays, reduction="none", **options)
    mid = fl.compute(name, *moved, reduction="none", axis=1, **options)
    np.testing.assert_allclose(mid.loss, last.loss, rtol=1e-14)
    for g_mid, g_last in zip(mid.grad if isinstance(mid.grad, tuple) else (mid.grad,),
                             last.grad if isinstance(last.grad, tuple) else (last.grad,)):
        np.testing.assert_allclose(g_mid, np.moveaxis(g_last, -1, 1), rtol=1e-14)


def test_sparse_labels_follow_the_class_axis(rng):
    z = rng.normal(size=(2, 5, 3))  # classes on axis 1, as PyTorch's (N, C, L)
    labels = rng.integers(0, 5, size=(2, 3))
    res = fl.sparse_softmax_cross_entropy(z, labels, axis=1, reduction="none")
    expected = reference("sparse_softmax_cross_entropy", [np.moveaxis(z, 1, -1), labels], {})
    np.testing.assert_allclose(res.loss, expected, rtol=1e-13)
    assert res.grad.shape == z.shape


@pytest.mark.parametrize("name", ["mean_squared_error", "huber", "sigmoid_binary_cross_entropy", "poisson"])
def test_leading_dimensions_are_arbitrary(name, rng):
    for shape in [(), (7,), (2, 3, 4), (1, 1, 2, 1, 3)]:
        arrays, options = prepared(name, {}, rng, shape=shape if shape else (1,))
        if not shape:
            arrays = [a.reshape(()) for a in arrays]
        res = fl.compute(name, *arrays, reduction="none", **options)
        assert res.loss.shape == shape and res.grad.shape == shape
        np.testing.assert_allclose(res.loss, reference(name, arrays, options), rtol=1e-13)
