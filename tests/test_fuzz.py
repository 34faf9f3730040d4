"""Fuzzing every loss, option set, backend, dtype and layout with hypothesis.

For each drawn call: no crash and no exception at all for valid input; results of the
documented shape and dtype; a NaN in a sample touches that sample only (the other samples'
losses and gradients are bit-identical to a call where the NaN entries hold 0 instead);
finite inputs give a NaN-free loss (but for the documented undefined cases); and, for
moderate inputs, results equal the float64 references of tests/reference.py.

FASTLOSS_FUZZ_EXAMPLES sets the examples per loss (a campaign, with fresh random draws);
without it, the CI profile: 25 per loss, derandomised so that every run draws the same.
"""

import os

import numpy as np
import pytest
from conftest import ALL_LOSSES, CPU_BACKENDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reference import OPTION_CASES, ROWWISE, reference

import fastloss as fl

pytestmark = pytest.mark.slow  # long fuzzing: the slow tier

EXAMPLES = int(os.environ.get("FASTLOSS_FUZZ_EXAMPLES", "25"))
DERANDOMIZE = "FASTLOSS_FUZZ_EXAMPLES" not in os.environ
PROBABILITIES = {"binary_cross_entropy", "categorical_cross_entropy", "kl_divergence"}
LABELLED = {"sparse_softmax_cross_entropy"}
LABEL_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
SPECIAL = [0.0, -0.0, 1.0, -1.0, 1e4, -1e4, 1e30, -1e30, 5e-324, 1e-300, np.inf, -np.inf, np.nan]


def _values(draw, shape, dtype, unit, moderate):
    n = int(np.prod(shape))
    if moderate:
        elements = st.floats(0.0, 1.0) if unit else st.floats(-8.0, 8.0)
    else:
        base = st.floats(0.0, 1.0) if unit else st.floats(-50.0, 50.0)
        elements = st.one_of(base, base, st.sampled_from(SPECIAL))
    values = np.array(draw(st.lists(elements, min_size=n, max_size=n)), dtype=np.float64).reshape(shape)
    with np.errstate(over="ignore"):
        return values.astype(dtype)


def _layout(draw, a):
    kind = draw(st.sampled_from(["C", "C", "F", "strided", "readonly"]))
    if a.ndim == 0:  # NumPy's layout helpers would make it 1-D
        return a
    if kind == "F":
        return np.asfortranarray(a)
    if kind == "strided":
        big = np.zeros((2 * a.shape[0],) + a.shape[1:], dtype=a.dtype)
        big[::2] = a
        return big[::2]
    if kind == "readonly":
        a = a.copy()
        a.flags.writeable = False
    return a


@st.composite
def case(draw, name):
    info = fl.losses()[name]
    rows = name in ROWWISE
    moderate = draw(st.booleans())
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    if rows:
        shape = (draw(st.integers(0, 4)), draw(st.integers(1, 5)))
        if draw(st.booleans()):
            shape = (draw(st.integers(1, 2)),) + shape
    else:
        shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=3)))
    options = dict(draw(st.sampled_from(OPTION_CASES[name])))
    labels = options.pop("labels", False) or name in LABELLED
    if isinstance(options.get("class_weight"), np.ndarray) or isinstance(options.get("pos_weight"), np.ndarray):
        width = shape[-1] if shape else 1
        key = "class_weight" if "class_weight" in options else "pos_weight"
        if len(options[key]) != width:
            options.pop(key)
    if "ignore_index" in options and options["ignore_index"] >= shape[-1]:
        options.pop("ignore_index")
    arrays = []
    for i, _ in enumerate(info.inputs):
        if i == 1 and labels:
            lab = draw(st.lists(st.integers(0, shape[-1] - 1), min_size=int(np.prod(shape[:-1])),
                                max_size=int(np.prod(shape[:-1]))))
            arrays.append(np.array(lab).reshape(shape[:-1]).astype(draw(st.sampled_from(LABEL_DTYPES))))
            continue
        unit = name in PROBABILITIES or (i == 1 and name in {"binary_cross_entropy", "sigmoid_binary_cross_entropy",
                                                           "sigmoid_focal_loss", "softmax_cross_entropy",
                                                           "softmax_kl_divergence", "softmax_focal_loss",
                                                           "categorical_hinge"})
        if i == 1 and name in {"hinge", "squared_hinge"}:
            unit = True
        arrays.append(_values(draw, shape, dtype, unit, moderate))
    if name == "softmax_kl_divergence" and options.get("log_target"):
        with np.errstate(divide="ignore", invalid="ignore"):
            arrays[1] = np.log(arrays[1])
    arrays = [_layout(draw, a) for a in arrays]
    return name, arrays, options, draw(st.sampled_from(CPU_BACKENDS)), moderate


def _samples(name, a):
    """Per-sample 'has NaN' mask of an input (rows collapse the class axis)."""
    if a.dtype.kind != "f":
        return np.zeros(a.shape, bool)
    nan = np.isnan(a)
    return nan.any(-1) if name in ROWWISE else nan


def _in_domain(name, arrays, options):
    """Samples inside the loss's mathematical domain (outside it NaN is the right answer:
    the log of a negative Poisson rate or of a negative probability)."""
    x = np.asarray(arrays[0], dtype=np.float64)
    y = np.asarray(arrays[1], dtype=np.float64) if len(arrays) > 1 else None
    if name == "poisson" and not options.get("log_input"):
        return x + options.get("eps", 1e-7) > 0
    if name == "softmax_kl_divergence" and not options.get("log_target"):
        return (y >= 0).all(-1)
    if name == "sigmoid_focal_loss":
        return (y >= 0) & (y <= 1)
    return np.ones(x.shape[:-1] if name in ROWWISE else x.shape, bool)


def _grads(res):
    return res.grad if isinstance(res.grad, tuple) else (res.grad,)


def _check(name, arrays, options, backend, moderate):
    reduction = "sum" if name == "root_mean_squared_error" else "none"
    with np.errstate(all="ignore"):
        res = fl.compute(name, *arrays, reduction=reduction, backend=backend, **options)
    for g, a in zip(_grads(res), arrays):
        assert g.shape == a.shape and g.dtype == a.dtype
    if reduction == "sum":
        return
    loss_shape = arrays[0].shape[:-1] if name in ROWWISE else arrays[0].shape
    assert res.loss.shape == loss_shape and res.loss.dtype == arrays[0].dtype

    # NaN confinement: replace the NaN entries by 0 and compare every other sample bit for
    # bit. (Only the NaN entries: a sample's other values may legitimately matter beyond
    # it, as hinge's rule that targets all in {0, 1} are labels does.)
    bad = np.zeros(loss_shape, bool)
    for a in arrays:
        bad |= _samples(name, a)
    if bad.any():
        clean = []
        for a in arrays:
            c = np.array(a, copy=True)
            if c.dtype.kind == "f":
                c[np.isnan(c)] = 0.0
            clean.append(c)
        with np.errstate(all="ignore"):
            ref = fl.compute(name, *clean, reduction="none", backend=backend, **options)
        good = ~bad
        np.testing.assert_array_equal(res.loss[good], ref.loss[good])
        for g, r in zip(_grads(res), _grads(ref)):
            np.testing.assert_array_equal(g[good], r[good])

    # Finite inputs give no NaN loss (a categorical_cross_entropy row summing to 0 has no
    # normalisation: it is undefined, as in Keras).
    with np.errstate(all="ignore"):
        _no_nan_in_domain(name, arrays, options, res, loss_shape)
    _matches_reference(name, arrays, options, res, moderate)


def _no_nan_in_domain(name, arrays, options, res, loss_shape):
    finite = np.ones(loss_shape, bool)
    for a in arrays:
        if a.dtype.kind == "f":
            finite &= np.isfinite(a).all(-1) if name in ROWWISE else np.isfinite(a)
    if name == "categorical_cross_entropy":
        finite &= arrays[0].astype(np.float64).sum(-1) != 0
    finite &= _in_domain(name, arrays, options)
    assert not np.isnan(res.loss[finite]).any()


def _matches_reference(name, arrays, options, res, moderate):
    if moderate and res.loss.size:
        with np.errstate(all="ignore"):
            expected = reference(name, [np.asarray(a) for a in arrays], options)
        ok = np.isfinite(expected)
        rtol = 1e-5 if arrays[0].dtype == np.float32 else 1e-10
        scale = max(1.0, float(np.abs(expected[ok]).max())) if ok.any() else 1.0
        np.testing.assert_allclose(res.loss[ok], expected[ok], rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_fuzz(name):
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=DERANDOMIZE)
    @given(case(name))
    def run(c):
        _check(*c)

    run()


BAD_OPTIONS = {"delta": -1.0, "eps": np.nan, "gamma": -2.0, "margin": np.inf, "label_smoothing": 1.5, "beta": 1.0,
               "p": 0.5, "squared": "yes", "reduction": "avg", "backend": "tpu", "grad": "maybe", "axis": 7}


@st.composite
def bad_case(draw):
    name = draw(st.sampled_from(ALL_LOSSES))
    info = fl.losses()[name]
    shape = (3, 4)
    arrays = [np.zeros(shape) for _ in info.inputs]
    if name in LABELLED:
        arrays[1] = np.zeros(3, dtype=np.int64)
    fault = draw(st.sampled_from(["shape", "dtype", "option", "label", "missing", "extra"]))
    options = {}
    valid = False  # whether the drawn "fault" is in fact allowed
    if fault == "shape":
        i = draw(st.integers(0, len(arrays) - 1))
        new = draw(st.sampled_from([(2, 4), (3, 5), (12,), (3, 4, 1)]))
        arrays[i] = np.zeros(new, dtype=arrays[i].dtype)
        # One input has nothing to mismatch; labels only fix the rows, not the class width.
        valid = len(arrays) == 1 or (name in LABELLED and i == 0 and new == (3, 5))
    elif fault == "dtype":
        i = draw(st.integers(0, len(arrays) - 1))
        dtype = draw(st.sampled_from([np.complex128, object, np.str_, np.int32]))
        arrays[i] = arrays[i].astype(dtype)
        # Integer targets are fine; softmax_focal_loss reads them as labels, of another shape.
        valid = dtype is np.int32 and i >= len(info.differentiable) and name != "softmax_focal_loss"
    elif fault == "option":
        key = draw(st.sampled_from(sorted(set(BAD_OPTIONS) & (set(info.options) | {"reduction", "backend", "grad"}))))
        options[key] = BAD_OPTIONS[key]
    elif fault == "label":
        if name not in LABELLED:
            arrays[0] = np.zeros(shape, dtype=np.int64)
        else:
            arrays[1] = np.array([0, draw(st.sampled_from([-1, 4, 2**40])), 1])
    elif fault == "missing":
        arrays = arrays[:-1]
    else:
        arrays.append(np.zeros(shape))
    return name, arrays, options, valid


@settings(max_examples=10 * EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
          derandomize=DERANDOMIZE)
@given(bad_case())
def test_fuzz_bad_input_raises_only_documented_errors(c):
    name, arrays, options, valid = c
    if valid:
        fl.compute(name, *arrays, **options)
    else:
        with pytest.raises((ValueError, TypeError)):
            fl.compute(name, *arrays, **options)
