"""Property tests (hypothesis): random shapes and values against the references, and the
algebra of reductions: "sum" is the sum of "none", "mean" is "sum" over the count, and
``out=`` gives the same numbers."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from reference import reference

import fastloss as fl

pytestmark = pytest.mark.usefixtures("cpu_backend")

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

ELEMENTWISE = {
    # name: (value range of the prediction, target strategy maker, options)
    "mean_squared_error": (1e3, "real", {}),
    "mean_absolute_error": (1e3, "real", {}),
    "huber": (1e3, "real", {"delta": 1.5}),
    "pseudo_huber": (1e3, "real", {"delta": 0.7}),
    "log_cosh": (1e3, "real", {}),
    "sigmoid_binary_cross_entropy": (1e4, "unit", {"label_smoothing": 0.1}),
    "sigmoid_focal_loss": (50.0, "binary", {"gamma": 1.5}),
    "gan_generator_loss": (1e4, None, {}),
    "poisson": (30.0, "positive", {"log_input": True}),
}


def _floats(bound):
    return st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def elementwise_case(draw):
    name = draw(st.sampled_from(sorted(ELEMENTWISE)))
    bound, kind, options = ELEMENTWISE[name]
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))
    x = draw(hnp.arrays(np.float64, shape, elements=_floats(bound)))
    if kind is None:
        return name, [x], options
    elements = {
        "real": _floats(bound),
        "unit": st.floats(0, 1),
        "binary": st.sampled_from([0.0, 1.0]),
        "positive": st.floats(0, 20),
    }[kind]
    return name, [x, draw(hnp.arrays(np.float64, shape, elements=elements))], options


@st.composite
def rowwise_case(draw):
    name = draw(st.sampled_from(["sparse_softmax_cross_entropy", "softmax_cross_entropy",
                                 "softmax_kl_divergence", "vae_kl_divergence"]))
    rows = draw(st.integers(0, 4))
    width = draw(st.integers(1, 6))
    bound = 20.0 if name == "vae_kl_divergence" else 1e4
    z = draw(hnp.arrays(np.float64, (rows, width), elements=_floats(bound)))
    if name == "sparse_softmax_cross_entropy":
        y = draw(hnp.arrays(np.int64, (rows,), elements=st.integers(0, width - 1)))
        return name, [z, y], {"label_smoothing": draw(st.sampled_from([0.0, 0.25]))}
    if name == "vae_kl_divergence":
        return name, [z, draw(hnp.arrays(np.float64, (rows, width), elements=_floats(20.0)))], {}
    raw = draw(hnp.arrays(np.float64, (rows, width), elements=st.floats(0, 1)))
    total = raw.sum(-1, keepdims=True)
    y = np.divide(raw, total, out=np.full_like(raw, 1.0 / width), where=total > 0)
    return name, [z, y], {}


def _check(name, arrays, options):
    n = arrays[0].size if len(arrays[0].shape) == 0 or name in ELEMENTWISE else arrays[0].shape[0]
    none = fl.compute(name, *arrays, reduction="none", **options)
    total = fl.compute(name, *arrays, reduction="sum", **options)
    mean = fl.compute(name, *arrays, reduction="mean", **options)
    ref = reference(name, arrays, options)
    scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
    np.testing.assert_allclose(none.loss, ref, rtol=1e-12, atol=1e-12 * scale)
    np.testing.assert_allclose(total.loss, none.loss.sum(), rtol=1e-12, atol=1e-12 * scale)
    if n:
        np.testing.assert_allclose(mean.loss, total.loss / n, rtol=1e-15, atol=0)
    else:
        assert np.isnan(mean.loss) and total.loss == 0.0
    grads = none.grad if isinstance(none.grad, tuple) else (none.grad,)
    np.testing.assert_array_equal(grads[0], (total.grad if isinstance(total.grad, tuple) else (total.grad,))[0])
    outs = tuple(np.empty_like(g) for g in grads)
    again = fl.compute(name, *arrays, reduction="none", out=outs if len(outs) > 1 else outs[0], **options)
    for g, o in zip(grads, outs):
        np.testing.assert_array_equal(g, o)
    np.testing.assert_array_equal(again.loss, none.loss)
    for g in grads:
        assert np.all(np.isfinite(g)), "gradient must be finite for finite inputs"


@SETTINGS
@given(elementwise_case())
def test_elementwise_properties(case):
    _check(*case)


@SETTINGS
@given(rowwise_case())
def test_rowwise_properties(case):
    _check(*case)
