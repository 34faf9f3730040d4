"""The float32 forms of element-wise losses (``<loss>_float32``, see fastloss.losses):
which calls run them, that every CPU path gives the same bits as their plain Python
source, and the accuracy of their float32 softplus and sigmoid (logistic_single) over
every scale of float32 logits, against a float64 reference.
"""

import numpy as np
import pytest

import fastloss as fl
from fastloss import _registry
from fastloss.losses import binary, float32_form, generative

#: Largest error of softplus(+-x) and sigmoid(+-x) in float32 (logistic_single) over the
#: grid below, in ulp of the float32 result, measured through the loss: 1.95 for
#: softplus, 2.71 for sigmoid(-|x|) = e / (1 + e), taken as e r with r = 1 / (1 + e) (the
#: errors of e, of 1 + e, of r and of the product add up). Contract section 4's 1e-6 is
#: some 16 ulp.
MAX_ULP_LOGISTIC = 3.0


def test_float32_forms_are_registered_element_wise_losses():
    """float32_form finds the float32 forms of sigmoid BCE and the GAN losses; every form
    found belongs to an element-wise loss (row-wise losses take float32 inside their row
    functions)."""
    assert float32_form(binary.sigmoid_binary_cross_entropy) is binary.sigmoid_binary_cross_entropy_float32
    assert float32_form(generative.gan_generator) is generative.gan_generator_float32
    assert float32_form(generative.gan_discriminator) is generative.gan_discriminator_float32
    assert float32_form(binary.binary_cross_entropy) is None
    for spec in _registry.SPECS:
        if float32_form(spec.math) is not None:
            assert spec.family == "elementwise", spec.name


def _python(fn, x, y, p):
    """The plain Python source of a loss form, element by element, given float64 values
    as the drivers give them (NumPy scalars, so that NumPy promotes a float32 with them
    as C does; a float32 form rounds its logits back to float32 itself), rounded to the
    input's dtype: (loss, gradient to x, gradient to y, hessian)."""
    rows = [fn(np.float64(a), np.float64(b), np.float64(0.0), p) for a, b in zip(x, y)]
    return tuple(np.array([r[k] for r in rows], dtype=x.dtype) for k in range(4))


#: loss -> (its module's math function name, number of inputs, the math's parameters for
#: the options used, options, whether the second input is a target in [0, 1]).
FORMS = {
    "sigmoid_binary_cross_entropy": (binary.sigmoid_binary_cross_entropy, 2, (0.0, 1.0, 0.0), {}, True),
    "gan_generator_loss": (generative.gan_generator, 1, (0.0,), {}, False),
    "gan_generator_loss saturating": (generative.gan_generator, 1, (1.0,), {"saturating": True}, False),
    "gan_discriminator_loss": (generative.gan_discriminator, 2, (), {}, False),
}
CALLS = {
    "fast path": {},
    "cython": {"backend": "cython"},
    "numba": {"backend": "numba"},
}


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(FORMS))
def test_every_path_runs_the_form_of_its_dtype(case, call, dtype, rng):
    """float32 logits run a loss's float32 form, float64 logits its float64 math, on the
    fast path and on either backend: losses, gradients (and sigmoid BCE's hessian) are
    bit for bit those of the form's Python source (the two forms round differently, so
    running the other one fails here)."""
    math_fn, n_inputs, params, options, target = FORMS[case]
    x = np.concatenate([rng.standard_normal(300) * 6, [0.0, -0.0, 1e-30, -88.0, 90.0, -1e4, 1e4]]).astype(dtype)
    if target:
        y = rng.random(x.size).astype(dtype)
        y[:100] = np.round(y[:100])
    else:
        y = rng.permutation(x)
    arrays = (x, y)[:n_inputs]
    options = dict(options, **CALLS[call], reduction="none")
    hessian = case == "sigmoid_binary_cross_entropy" and call != "fast path"
    if hessian:
        options["hessian"] = True
    res = getattr(fl, case.split()[0])(*arrays, **options)
    form = float32_form(math_fn) if dtype == np.float32 else math_fn
    loss, gx, gy, hess = _python(form, x, y if n_inputs > 1 else x, params)
    np.testing.assert_array_equal(res.loss, loss)
    if n_inputs == 2 and not target:
        np.testing.assert_array_equal(res.grad[0], gx)
        np.testing.assert_array_equal(res.grad[1], gy)
    else:
        np.testing.assert_array_equal(res.grad, gx)
    if hessian:
        np.testing.assert_array_equal(res.hess, hess)


def _logistic_grid():
    """Every 97th float32 of [-110, 110] (dense in ulps at every scale, past both flush
    points), and the specials."""
    top = np.array(110.0, np.float32).view(np.uint32)
    pos = np.arange(0, top, 97, dtype=np.uint32).view(np.float32)
    return np.concatenate([-pos[::-1], pos, np.float32([-np.inf, np.inf, 87.3, 87.4, -87.3, -87.4])])


def _reference(x):
    """softplus(x) and sigmoid(x) in float64 (their error is far below a float32 ulp)."""
    with np.errstate(over="ignore"):
        softplus = np.logaddexp(0.0, x)
        sigmoid = np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))
    return softplus, sigmoid


def _ulp(got, ref):
    """|got - ref| in ulp of float32 at ref, where ref is a normal float32 (below it the
    float32 forms flush to 0, which contract section 4 allows)."""
    normal = np.abs(ref) >= np.finfo(np.float32).tiny
    g = got.astype(np.float64)
    ulp = np.abs(g[normal] - ref[normal]) / np.spacing(np.abs(ref[normal]).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(g[~normal]) < np.finfo(np.float32).tiny)
    return ulp


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_float32_softplus_and_sigmoid_accuracy(backend):
    """With targets 0 and 1 the float32 BCE's per-sample loss is softplus(x) and
    softplus(-x), its gradient sigmoid(x) and -sigmoid(-x): each within MAX_ULP_LOGISTIC
    ulp of float32 over the whole grid, infinities exact."""
    x = _logistic_grid()
    worst = 0.0
    for target, sign in ((0.0, 1.0), (1.0, -1.0)):
        y = np.full_like(x, target)
        res = fl.sigmoid_binary_cross_entropy(x, y, reduction="none", backend=backend)
        softplus, sigmoid = _reference(sign * x.astype(np.float64))
        finite = np.isfinite(x)
        worst = max(worst, _ulp(res.loss[finite], softplus[finite]).max())
        worst = max(worst, _ulp(sign * res.grad[finite], sigmoid[finite]).max())
        assert np.array_equal(res.loss[~finite], softplus[~finite])
        assert np.array_equal(sign * res.grad[~finite], sigmoid[~finite])
    assert worst <= MAX_ULP_LOGISTIC, f"{backend}: {worst:.3f} ulp"


def test_float32_form_propagates_nan(rng):
    """A NaN logit gives a NaN loss and gradient for its own sample only."""
    x = rng.standard_normal(64).astype(np.float32)
    x[5] = np.nan
    res = fl.sigmoid_binary_cross_entropy(x, np.ones_like(x), reduction="none")
    assert np.isnan(res.loss[5]) and np.isnan(res.grad[5])
    assert np.isfinite(np.delete(res.loss, 5)).all() and np.isfinite(np.delete(res.grad, 5)).all()
