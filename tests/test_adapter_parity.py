"""Every adapter gives fastloss's own numbers: for every loss, each of its option cases
(ignore_index, class_weight, smoothing, ...), every reduction, with and without per-sample
weights, the adapter's value and gradient equal the plain call's. (Keras, whose backend is
chosen at import, is checked the same way in a subprocess: tests/keras_parity.py.)"""

import numpy as np
import pytest
from conftest import ALL_LOSSES, tiered
from reference import OPTION_CASES, ROWWISE, prepared

import fastloss as fl


def _cases(name, rng, dtype=np.float64):
    """(arrays, options, reduction, sample_weight) for every option case of ``name``."""
    for case in OPTION_CASES[name]:
        arrays, options = prepared(name, case, rng, dtype=dtype)
        loss_shape = arrays[0].shape[:-1] if name in ROWWISE else arrays[0].shape
        weights = rng.uniform(0.2, 2.0, loss_shape)
        for reduction in ("mean", "sum") if name == "root_mean_squared_error" else ("mean", "sum", "none"):
            for w in (None, weights):
                yield arrays, options, reduction, w


def _grads(res):
    return res.grad if isinstance(res.grad, tuple) else (res.grad,)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_torch(name, rng):
    torch = pytest.importorskip("torch")
    flt = pytest.importorskip("fastloss.torch")
    n_grads = len(fl.losses()[name].differentiable)
    for arrays, options, reduction, w in _cases(name, rng):
        want = fl.compute(name, *arrays, reduction=reduction, sample_weight=w, **options)
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
        for t in tensors[:n_grads]:
            t.requires_grad_(True)
        loss = getattr(flt, name)(*tensors, reduction=reduction, sample_weight=w, **options)
        loss.sum().backward()
        what = f"{name} {options} {reduction} weighted={w is not None}"
        np.testing.assert_array_equal(loss.detach().numpy(), want.loss, err_msg=what)
        for t, g in zip(tensors, _grads(want)):
            np.testing.assert_array_equal(t.grad.numpy(), g, err_msg=what)


@pytest.mark.parametrize("name", tiered(ALL_LOSSES))
def test_jax(name, rng):
    jax = pytest.importorskip("jax")
    flj = pytest.importorskip("fastloss.jax")
    n_grads = len(fl.losses()[name].differentiable)
    # float32: JAX without x64 casts float64 inputs, sample weights included, down.
    for arrays, options, reduction, w in _cases(name, rng, np.float32):
        w = None if w is None else w.astype(np.float32)
        want = fl.compute(name, *arrays, reduction=reduction, sample_weight=w, **options)

        def total(w, *diff, arrays=arrays, options=options, reduction=reduction):
            value = getattr(flj, name)(*diff, *arrays[n_grads:], reduction=reduction, sample_weight=w, **options)
            return value.sum(), value

        # Under jit, with the weights traced as Keras's are.
        step = jax.jit(jax.value_and_grad(total, argnums=tuple(range(1, n_grads + 1)), has_aux=True))
        (_, value), grads = step(w, *arrays[:n_grads])
        what = f"{name} {options} {reduction} weighted={w is not None}"
        np.testing.assert_array_equal(np.asarray(value), want.loss, err_msg=what)
        for g, ref in zip(grads, _grads(want)):
            np.testing.assert_array_equal(np.asarray(g), ref, err_msg=what)


@pytest.mark.parametrize("name", tiered(ALL_LOSSES))
def test_dask(name, rng):
    da = pytest.importorskip("dask.array")
    for arrays, options, reduction, w in _cases(name, rng):
        want = fl.compute(name, *arrays, reduction=reduction, sample_weight=w, **options)
        lazy = [da.from_array(a, chunks=(2,) + tuple(-1 for _ in a.shape[1:])) if a.ndim else a for a in arrays]
        res = fl.compute(name, *lazy, reduction=reduction, sample_weight=None if w is None else da.from_array(w, 2),
                         **options)
        what = f"{name} {options} {reduction} weighted={w is not None}"
        np.testing.assert_allclose(res.loss.compute(), want.loss, rtol=1e-12, atol=1e-15, err_msg=what)
        for g, ref in zip(_grads(res), _grads(want)):
            np.testing.assert_allclose(g.compute(), ref, rtol=1e-12, atol=1e-15, err_msg=what)


def _boosting_cases(rng):
    from fastloss._boosting import SUPPORTED

    for name in SUPPORTED:
        for case in OPTION_CASES[name]:
            arrays, options = prepared(name, case, rng, shape=(12, 3) if name in ROWWISE else (12,))
            if "pos_weight" in options and np.ndim(options["pos_weight"]):
                continue  # a per-column weight: no column in a one-output objective
            margins, labels = arrays[0], arrays[1]
            if name == "sparse_softmax_cross_entropy":
                labels = rng.integers(0, 3, 12)
                if options.get("ignore_index") is not None:
                    labels[::4] = options["ignore_index"]
                if options.get("class_weight") is not None:
                    options["class_weight"] = options["class_weight"][:3]
            for w in (None, rng.uniform(0.2, 2.0, 12)):
                yield name, margins, labels, options, w


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_boosting_objectives(library, rng):
    lib = pytest.importorskip(library)
    adapter = pytest.importorskip(f"fastloss.{library}")
    for name, margins, labels, options, w in _boosting_cases(rng):
        X = rng.normal(size=(12, 2))
        label = labels.astype(np.float64)
        data = (lib.DMatrix(X, label=label, weight=w) if library == "xgboost"
                else lib.Dataset(X, label=label, weight=w, free_raw_data=False).construct())
        grad, hess = adapter.objective(name, **options)(margins, data)
        # Both libraries keep labels and weights in float32: the objective sees those.
        labels = labels.astype(np.float32).astype(labels.dtype)
        w = None if w is None else w.astype(np.float32)
        want = fl.compute(name, margins, labels, reduction="none", hessian=True, sample_weight=w, **options)
        what = f"{library} {name} {options} weighted={w is not None}"
        np.testing.assert_allclose(grad, want.grad, rtol=1e-12, atol=1e-15, err_msg=what)
        np.testing.assert_allclose(hess, want.hess, rtol=1e-12, atol=1e-15, err_msg=what)
