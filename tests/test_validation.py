"""Contract section 3 (docs/contract.md): bad input gets a clear ValueError/TypeError
before any kernel runs.

Every test here runs with the kernels replaced by a tripwire, so an error raised by a
kernel (or a kernel reached at all) fails the test.
"""

import numpy as np
import pytest

import fastloss as fl
from fastloss import _api


class Tripwire:
    @staticmethod
    def run(*args, **kwargs):
        raise AssertionError("a kernel ran on bad input")


@pytest.fixture(autouse=True)
def no_kernel(monkeypatch):
    monkeypatch.setattr(_api, "_backend", lambda backend, size: Tripwire)


X = np.zeros((4, 3))
LABELS = np.array([0, 1, 2, 1])


def test_mismatched_shapes():
    with pytest.raises(ValueError, match="target has shape"):
        fl.mse(X, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="shape"):
        fl.softmax_cross_entropy(X, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="without its class axis"):
        fl.sparse_softmax_cross_entropy(X, np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="shape"):
        fl.triplet_margin_loss(X, X, np.zeros((4, 2)))


@pytest.mark.parametrize("bad", [np.zeros((4, 3), dtype=int), np.zeros((4, 3), dtype=bool)])
def test_non_float_predictions(bad):
    with pytest.raises(TypeError, match="floating-point"):
        fl.mse(bad, X)


@pytest.mark.parametrize("bad", [np.zeros((4, 3), dtype=complex), np.zeros((4, 3), dtype=object)])
def test_complex_or_object_arrays(bad):
    with pytest.raises(TypeError):
        fl.mse(bad, X)
    with pytest.raises(TypeError):
        fl.mse(X, bad)
    with pytest.raises(TypeError):
        fl.mse(X, X, sample_weight=bad)


def test_differentiable_inputs_of_different_dtypes():
    with pytest.raises(TypeError, match="must match"):
        fl.gan_discriminator_loss(X, X.astype(np.float32))


@pytest.mark.parametrize("labels", [np.array([0, 1, 3, 1]), np.array([0, -1, 2, 1]),
                                    np.array([0, 1, 2**40, 1]), np.array([0, 1, 2, 3], dtype=np.uint8)])
def test_labels_out_of_range(labels):
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        fl.sparse_softmax_cross_entropy(X, labels)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        fl.softmax_focal_loss(X, labels)


def test_ignore_index_is_the_only_label_allowed_outside_the_range():
    with pytest.raises(ValueError, match="ignore_index=-100"):
        fl.sparse_softmax_cross_entropy(X, np.array([0, -100, 5, 1]), ignore_index=-100)


def test_labels_must_be_integers():
    with pytest.raises(TypeError, match="integer"):
        fl.sparse_softmax_cross_entropy(X, LABELS.astype(float))


@pytest.mark.parametrize("name,option", [("huber", "delta"), ("pseudo_huber", "delta"),
                                         ("triplet_margin_loss", "margin"), ("sigmoid_focal_loss", "gamma"),
                                         ("softmax_focal_loss", "gamma"), ("binary_cross_entropy", "eps"),
                                         ("mean_squared_logarithmic_error", "eps"), ("kl_divergence", "eps")])
@pytest.mark.parametrize("value", [-1.0, np.inf, np.nan])
def test_negative_or_non_finite_scalars(name, option, value):
    arrays = (X, X, X) if name == "triplet_margin_loss" else (X, X)
    with pytest.raises(ValueError, match=option):
        fl.compute(name, *arrays, **{option: value})


@pytest.mark.parametrize("value", [-0.1, 1.5, np.nan])
def test_label_smoothing_outside_unit_interval(value):
    with pytest.raises(ValueError, match="label_smoothing"):
        fl.softmax_cross_entropy(X, X, label_smoothing=value)
    with pytest.raises(ValueError, match="label_smoothing"):
        fl.sparse_softmax_cross_entropy(X, LABELS, label_smoothing=value)


@pytest.mark.parametrize("value", [0.0, 1.0, -0.5])
def test_jsd_beta_strictly_inside_unit_interval(value):
    with pytest.raises(ValueError, match="beta"):
        fl.js_divergence(X, X, beta=value)


def test_norm_order_below_one():
    with pytest.raises(ValueError, match="p must"):
        fl.triplet_margin_loss(X, X, X, p=0.5)


def test_option_of_the_wrong_type():
    with pytest.raises(TypeError, match="delta"):
        fl.huber(X, X, delta="1")
    with pytest.raises(TypeError, match="squared"):
        fl.triplet_margin_loss(X, X, X, squared=1)


def test_unknown_reduction_backend_and_keyword():
    with pytest.raises(ValueError, match="reduction"):
        fl.mse(X, X, reduction="avg")
    with pytest.raises(ValueError, match="backend"):
        fl.mse(X, X, backend="tpu")
    with pytest.raises(TypeError, match="unexpected keyword"):
        fl.mse(X, X, delta=1.0)
    with pytest.raises(ValueError, match="grad"):
        fl.mse(X, X, grad="yes")


def test_backends_not_built_yet_say_so(monkeypatch):
    from fastloss import _api, cpu_cython

    monkeypatch.setattr(cpu_cython, "AVAILABLE", False)
    monkeypatch.setattr(_api, "FAST_CALL", None)  # without the extension there is no fast path either
    with pytest.raises(ValueError, match="cython"):
        fl.mse(X, X, backend="cython")
    with pytest.raises(ValueError, match="cuda"):
        fl.mse(X, X, backend="cuda")


def test_rmse_has_no_unreduced_form():
    with pytest.raises(ValueError, match="reduction"):
        fl.rmse(X, X, reduction="none")


def test_hessian_on_a_loss_without_one():
    with pytest.raises(ValueError, match="no hessian"):
        fl.mae(X, X, hessian=True)


def test_weights_and_per_class_arrays_of_the_wrong_shape():
    with pytest.raises(ValueError, match="sample_weight"):
        fl.mse(X, X, sample_weight=np.ones(4))  # (4,) does not broadcast to (4, 3)
    with pytest.raises(ValueError, match="sample_weight"):
        fl.softmax_cross_entropy(X, X, sample_weight=np.ones(3))  # one per row: (4,)
    with pytest.raises(ValueError, match="class_weight"):
        fl.sparse_softmax_cross_entropy(X, LABELS, class_weight=np.ones(4))
    with pytest.raises(ValueError, match="pos_weight"):
        fl.sigmoid_binary_cross_entropy(X, X, pos_weight=np.ones(4))


def test_out_of_the_wrong_shape_dtype_or_kind():
    with pytest.raises(ValueError, match="out"):
        fl.mse(X, X, out=np.empty((3, 4)))
    with pytest.raises(ValueError, match="out"):
        fl.mse(X, X, out=np.empty((4, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="out"):
        fl.mse(X, X, out=[[0.0] * 3] * 4)
    ro = np.empty((4, 3))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fl.mse(X, X, out=ro)
    with pytest.raises(ValueError, match="2 arrays"):
        fl.js_divergence(X, X, out=np.empty((4, 3)))


def test_axis_out_of_range_and_scalar_logits():
    with pytest.raises(ValueError, match="axis"):
        fl.softmax_cross_entropy(X, X, axis=2)
    with pytest.raises(ValueError, match="dimension"):
        fl.softmax_cross_entropy(np.float64(1.0), np.float64(1.0))


def test_wrong_number_of_arrays():
    with pytest.raises(TypeError):
        fl.mse(X)
    with pytest.raises(TypeError):
        fl.mse(X, X, X)


def test_nan_and_inf_in_data_are_not_errors(monkeypatch):
    monkeypatch.undo()  # this one runs the kernels
    x = np.array([0.0, np.nan, np.inf, 1.0])
    res = fl.mse(x, np.zeros(4), reduction="none")
    assert np.isnan(res.loss[1]) and np.isinf(res.loss[2]) and res.loss[3] == 1.0 and res.loss[0] == 0.0
    assert np.isnan(res.grad[1]) and np.isinf(res.grad[2]) and res.grad[3] == 2.0
