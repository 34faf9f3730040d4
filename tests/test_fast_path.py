"""The compiled fast path (Cython) serves the common case exactly as the general path does,
hands everything else to the general path, and never involves Numba."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import ALL_LOSSES, SESSION_ENV
from reference import OPTION_CASES, ROWWISE, prepared

import fastloss as fl
from fastloss import _api, cpu_cython

pytestmark = pytest.mark.skipif(not cpu_cython.AVAILABLE, reason="the Cython extension is not built")
ROOT = pathlib.Path(__file__).resolve().parent.parent
FAST = [n for n in ALL_LOSSES if cpu_cython.fast_spec(fl._registry.REGISTRY[n], fl.LossResult)]


def _grads(res):
    return res.grad if isinstance(res.grad, tuple) else (res.grad,)


@pytest.fixture
def general_path_forbidden(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the general path ran")

    monkeypatch.setattr(fl, "evaluate", forbidden)


@pytest.fixture
def general_path_calls(monkeypatch):
    """A list that gets an entry each time a call takes the general path."""
    calls = []
    real = fl.evaluate
    monkeypatch.setattr(fl, "evaluate", lambda *a: calls.append(1) or real(*a))
    return calls


def test_every_loss_but_data_dependent_ones_has_a_fast_path():
    assert set(ALL_LOSSES) - set(FAST) == {"hinge", "squared_hinge", "root_mean_squared_error"}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FAST)
def test_fast_path_equals_general_path(name, dtype, reduction, rng, monkeypatch):
    arrays, _ = prepared(name, {}, rng, dtype)
    if arrays[0].ndim != 2:
        arrays = [a.reshape(a.shape[0], -1) if a.ndim > 1 else a for a in arrays]
    general = _api.evaluate(fl._registry.REGISTRY[name], tuple(arrays), {"reduction": reduction})
    calls = []
    real = _api.FAST_CALL
    monkeypatch.setattr(_api, "FAST_CALL", lambda *a: calls.append(1) or real(*a))
    fast = getattr(fl, name)(*arrays, reduction=reduction)
    assert calls and fast is not None
    assert fast.loss.dtype == general.loss.dtype and fast.loss.shape == general.loss.shape
    np.testing.assert_array_equal(fast.loss, general.loss)
    for a, b in zip(_grads(fast), _grads(general)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_common_case_never_reaches_the_general_path(general_path_forbidden, rng):
    z = rng.normal(size=(256, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 256)
    loss, grad = fl.sparse_softmax_cross_entropy(z, labels)
    assert loss.dtype == np.float32 and grad.shape == z.shape
    fl.mse(z, z[::-1].copy(), reduction="sum")
    fl.softmax_focal_loss(z, labels)


@pytest.mark.parametrize("case", [
    "bad_label", "negative_label", "option", "strided", "int32_labels", "float64_target_of_float32", "list",
])
def test_uncommon_cases_take_the_general_path(case, rng):
    z = rng.normal(size=(8, 4))
    labels = rng.integers(0, 4, 8)
    kwargs = {}
    if case == "bad_label":
        labels[3] = 4
    elif case == "negative_label":
        labels[0] = -1
    elif case == "option":
        kwargs = {"label_smoothing": 0.1}
    elif case == "strided":
        z = np.asfortranarray(z)
    elif case == "int32_labels":
        labels = labels.astype(np.int32)
    elif case == "list":
        z = z.tolist()
    if case in ("bad_label", "negative_label"):
        with pytest.raises(ValueError, match="labels must be in"):
            fl.sparse_softmax_cross_entropy(z, labels)
        return
    if case == "float64_target_of_float32":
        x = z.astype(np.float32)
        res = fl.mse(x, z)  # the target is cast to float32 by the general path
        np.testing.assert_allclose(res.loss, np.mean((x - z.astype(np.float32)).astype(np.float64) ** 2), rtol=1e-6)
        return
    res = fl.sparse_softmax_cross_entropy(z, labels, **kwargs)
    ref = _api.evaluate(fl._registry.REGISTRY["sparse_softmax_cross_entropy"], (np.asarray(z), labels), dict(kwargs))
    np.testing.assert_allclose(res.loss, ref.loss, rtol=1e-15)


def test_a_small_call_in_a_fresh_process_never_imports_numba():
    code = (
        "import sys, numpy as np, fastloss as fl\n"
        "z = np.zeros((256, 10), np.float32); y = np.arange(256) % 10\n"
        "fl.sparse_softmax_cross_entropy(z, y); fl.mse(z, z); fl.huber(z, z, delta=2.0)\n"
        "fl.sparse_softmax_cross_entropy(z, y, label_smoothing=0.1, reduction='none')\n"
        "print('numba' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         env={**SESSION_ENV, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "False"


CASES = [(n, i) for n in FAST for i in range(len(OPTION_CASES[n]))]


@pytest.mark.parametrize("name,case", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_options_on_the_fast_path_equal_the_general_path(name, case, rng):
    arrays, options = prepared(name, OPTION_CASES[name][case], rng, np.float32)
    spec = fl._registry.REGISTRY[name]
    other_math = bool(spec.option_math) and bool(options.get(spec.option_math[0]))
    takes_fast_path = not (set(options) & cpu_cython.ARRAY_OPTIONS) and not other_math
    params = cpu_cython.fast_params(spec, options, ())
    assert (params is not None) == takes_fast_path
    general = _api.evaluate(spec, tuple(arrays), {**options, "reduction": "none"})
    fast = getattr(fl, name)(*arrays, reduction="none", **options)
    np.testing.assert_array_equal(fast.loss, general.loss)
    for a, b in zip(_grads(fast), _grads(general)):
        np.testing.assert_array_equal(a, b)


def test_bad_options_fail_the_same_way_on_the_fast_path(rng):
    z = rng.normal(size=(8, 4)).astype(np.float32)
    labels = rng.integers(0, 4, 8)
    with pytest.raises(ValueError, match="label_smoothing"):
        fl.sparse_softmax_cross_entropy(z, labels, label_smoothing=2.0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        fl.sparse_softmax_cross_entropy(z, labels, delta=1.0)
    with pytest.raises(ValueError, match="reduction"):
        fl.sparse_softmax_cross_entropy(z, labels, reduction="avg")


KEYWORDS = {
    "grad=False": {"grad": False},
    "grad=only": {"grad": "only"},
    "grad=only,none": {"grad": "only", "reduction": "none"},
    "weights": {"sample_weight": "float64"},
    "weights-of-the-inputs-dtype,sum": {"sample_weight": "input", "reduction": "sum"},
    "weights,grad=False,none": {"sample_weight": "float64", "grad": False, "reduction": "none"},
    "backend=auto": {"backend": "auto"},
    "backend=cython": {"backend": "cython"},
    "hessian": {"hessian": True},
    "hessian,grad=False": {"hessian": True, "grad": False},
}


def _keywords(case, arrays, name, rng):
    kwargs = dict(KEYWORDS[case])
    if "sample_weight" in kwargs:
        shape = arrays[0].shape[:-1] if name in ROWWISE else arrays[0].shape
        dtype = np.float64 if kwargs["sample_weight"] == "float64" else arrays[0].dtype
        kwargs["sample_weight"] = rng.uniform(0, 2, size=shape).astype(dtype)
    return kwargs


@pytest.mark.parametrize("case", list(KEYWORDS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", FAST)
def test_call_keywords_on_the_fast_path_equal_the_general_path(name, dtype, case, rng, request):
    """grad, sample_weight, hessian and backend ("auto", "cython") stay on the fast path and
    give the general path's bits (hessian=True on a loss without one: the general path's
    error)."""
    arrays, _ = prepared(name, {}, rng, dtype)
    kwargs = _keywords(case, arrays, name, rng)
    spec = fl._registry.REGISTRY[name]
    if kwargs.get("hessian") and not spec.hessian:
        with pytest.raises(ValueError, match="has no hessian"):
            getattr(fl, name)(*arrays, **kwargs)
        return
    general = _api.evaluate(spec, tuple(arrays), dict(kwargs))
    request.getfixturevalue("general_path_forbidden")
    fast = getattr(fl, name)(*arrays, **kwargs)
    for a, b in [(fast.loss, general.loss), (fast.hess, general.hess),
                 *zip(_grads(fast), _grads(general))]:
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
    assert (fast.grad is None) == (general.grad is None) and (fast.loss is None) == (kwargs.get("grad") == "only")


@pytest.mark.parametrize("case", ["broadcast_weights", "int_weights", "strided_weights", "weights_of_another_shape",
                                  "numba", "numpy_bool_hessian", "bad_grad", "bad_backend", "reduction_not_a_string"])
def test_call_keywords_the_fast_path_leaves_to_the_general_path(case, rng):
    z = rng.normal(size=(8, 4))
    labels = rng.integers(0, 4, 8)
    w = rng.uniform(0, 2, size=8)
    kwargs = {
        "broadcast_weights": {"sample_weight": np.float64(0.5)},
        "int_weights": {"sample_weight": np.arange(8)},
        "strided_weights": {"sample_weight": np.repeat(w, 2)[::2]},
        "weights_of_another_shape": {"sample_weight": w[:, None]},
        "numba": {"backend": "numba"},
        "numpy_bool_hessian": {"hessian": np.True_},
        "bad_grad": {"grad": "yes"},
        "bad_backend": {"backend": "gpu"},
        "reduction_not_a_string": {"reduction": 1},
    }[case]
    if case == "numpy_bool_hessian":
        spec, arrays = fl._registry.REGISTRY["mean_squared_error"], (z, z[::-1].copy())
    else:
        spec, arrays = fl._registry.REGISTRY["sparse_softmax_cross_entropy"], (z, labels)
    if case in ("bad_grad", "bad_backend", "reduction_not_a_string", "weights_of_another_shape"):
        with pytest.raises(ValueError) as fast_error:
            getattr(fl, spec.name)(*arrays, **kwargs)
        with pytest.raises(ValueError) as general_error:
            _api.evaluate(spec, arrays, dict(kwargs))
        assert str(fast_error.value) == str(general_error.value)
        return
    res = getattr(fl, spec.name)(*arrays, **kwargs)
    ref = _api.evaluate(spec, arrays, dict(kwargs))
    np.testing.assert_array_equal(res.loss, ref.loss)
    np.testing.assert_array_equal(res.grad, ref.grad)
    if case == "numpy_bool_hessian":
        np.testing.assert_array_equal(res.hess, ref.hess)


@pytest.mark.parametrize("ignore", [-100, 2, "all"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ignore_index_on_the_fast_path_equals_the_general_path(ignore, reduction, dtype, rng,
                                                             general_path_forbidden):
    """Rows whose label is ignore_index count for nothing, and "mean" divides by the others
    (all ignored: nan, as the general path gives); with and without sample weights."""
    z = rng.normal(size=(37, 5)).astype(dtype)
    labels = rng.integers(0, 5, 37)
    if ignore == "all":
        ignore = 7
        labels[:] = 7
    else:
        labels[::3] = ignore
    spec = fl._registry.REGISTRY["sparse_softmax_cross_entropy"]
    for extra in ({}, {"sample_weight": rng.uniform(0, 2, size=37)}):
        kwargs = {"ignore_index": ignore, "reduction": reduction, **extra}
        with np.errstate(invalid="ignore"):
            general = _api.evaluate(spec, (z, labels), dict(kwargs))
        fast = fl.sparse_softmax_cross_entropy(z, labels, **kwargs)
        assert fast.loss.dtype == general.loss.dtype and fast.loss.shape == general.loss.shape
        np.testing.assert_array_equal(fast.loss, general.loss)
        np.testing.assert_array_equal(fast.grad, general.grad)
    if reduction == "mean" and labels[0] == 7:
        assert np.isnan(fast.loss) and not fast.grad.any()


def test_a_label_out_of_range_that_is_not_ignore_index_raises(rng):
    z = rng.normal(size=(8, 4))
    labels = rng.integers(0, 4, 8)
    labels[2], labels[5] = -100, 4
    with pytest.raises(ValueError, match="labels must be in"):
        fl.sparse_softmax_cross_entropy(z, labels, ignore_index=-100)


@pytest.mark.parametrize("in_place", [False, True], ids=["out", "out=input"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", [n for n in FAST if fl._registry.REGISTRY[n].grads == 1])
def test_out_on_the_fast_path_equals_the_general_path(name, dtype, in_place, rng, general_path_forbidden):
    """out= (a new array, or the prediction itself) is written by the fast path as the
    general path writes it, and is the result's gradient."""
    spec = fl._registry.REGISTRY[name]
    arrays, _ = prepared(name, {}, rng, dtype)
    general_arrays, fast_arrays = [a.copy() for a in arrays], [a.copy() for a in arrays]
    general_out = general_arrays[0] if in_place else np.empty_like(arrays[0])
    fast_out = fast_arrays[0] if in_place else np.empty_like(arrays[0])
    general = _api.evaluate(spec, tuple(general_arrays), {"out": general_out})
    fast = getattr(fl, name)(*fast_arrays, out=fast_out)
    assert fast.grad is fast_out and general.grad is general_out
    np.testing.assert_array_equal(fast_out, general_out)
    np.testing.assert_array_equal(fast.loss, general.loss)


@pytest.mark.parametrize("case", ["overlapping", "read_only", "other_shape", "other_dtype", "several_gradients",
                                  "grad=False"])
def test_out_the_fast_path_leaves_to_the_general_path(case, rng, general_path_calls):
    """An out= that overlaps an input other than exactly, or that the kernel cannot write
    (read-only, another shape or dtype), or a loss with several gradients: the general
    path serves it (or raises its error)."""
    buf = rng.normal(size=65)
    x, y = buf[1:], rng.normal(size=64)
    out = {"overlapping": buf[:-1], "read_only": np.empty(64), "other_shape": np.empty((8, 8)),
           "other_dtype": np.empty(64, np.float32), "several_gradients": None, "grad=False": np.empty(64)}[case]
    expected = _api.evaluate(fl._registry.REGISTRY["mean_squared_error"], (x.copy(), y), {})
    if case == "read_only":
        out.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            fl.mse(x, y, out=out)
    elif case in ("other_shape", "other_dtype"):
        with pytest.raises(ValueError, match="must have shape"):
            fl.mse(x, y, out=out)
    elif case == "grad=False":
        with pytest.raises(ValueError, match="grad=False"):
            fl.mse(x, y, out=out, grad=False)
    elif case == "several_gradients":
        a, p, n = (rng.normal(size=(8, 4)) for _ in range(3))
        outs = tuple(np.empty((8, 4)) for _ in range(3))
        res = fl.triplet_margin_loss(a, p, n, out=outs)
        ref = fl.triplet_margin_loss(a, p, n)
        for got, want, o in zip(res.grad, ref.grad, outs):
            assert got is o
            np.testing.assert_array_equal(got, want)
    else:
        res = fl.mse(x, y, out=out)
        assert res.grad is out
        np.testing.assert_array_equal(out, expected.grad)  # as if x had been read whole first
        np.testing.assert_array_equal(res.loss, expected.loss)
    assert general_path_calls


def test_out_that_is_also_the_target_takes_the_general_path(rng, general_path_calls):
    """out=x where the target is x as well: the general path decides (it computes into a
    buffer), as it would for any out= overlapping an input other than the prediction."""
    x = rng.normal(size=(6, 5))
    expected = fl.softmax_cross_entropy(x.copy(), x.copy())
    assert not general_path_calls  # (the fast path served that call)
    res = fl.softmax_cross_entropy(x, x, out=x)
    assert general_path_calls and res.grad is x
    np.testing.assert_array_equal(x, expected.grad)


@pytest.mark.parametrize("kwargs", [{}, {"reduction": "none", "label_smoothing": 0.1}, {"grad": "only"},
                                    {"ignore_index": 1, "sample_weight": np.linspace(0.5, 2.0, 8)}])
def test_pytorch_cpu_tensors_take_the_fast_path(kwargs, general_path_forbidden):
    """PyTorch CPU tensors are read through NumPy views by the compiled fast path, and the
    results come back as tensors, bit for bit those of the NumPy arrays."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    z, labels = rng.normal(size=(8, 5)).astype(np.float32), rng.integers(0, 5, 8)
    ours = fl.sparse_softmax_cross_entropy(torch.from_numpy(z), torch.from_numpy(labels), **kwargs)
    want = fl.sparse_softmax_cross_entropy(z, labels, **kwargs)
    for got, ref in ((ours.loss, want.loss), (ours.grad, want.grad)):
        if ref is None:
            assert got is None
            continue
        assert isinstance(got, torch.Tensor)
        np.testing.assert_array_equal(got.numpy(), ref)


def test_tensors_the_fast_path_cannot_view_take_the_general_path(general_path_calls):
    torch = pytest.importorskip("torch")
    z = torch.randn(4, 3)
    labels = torch.tensor([0, 1, 2, 0])
    fl.sparse_softmax_cross_entropy(z.to(torch.bfloat16), labels)
    fl.sparse_softmax_cross_entropy(z.requires_grad_(True), labels)  # read through detach(): fast
    assert general_path_calls == [1]


@pytest.mark.parametrize("kwargs", [{}, {"reduction": "none"}, {"ignore_index": 1}])
def test_jax_cpu_arrays_take_the_fast_path(kwargs, general_path_forbidden):
    """JAX CPU arrays (int32 labels, JAX's default) are read through DLPack by the compiled
    fast path; results come back as JAX arrays, bit for bit those of the NumPy arrays."""
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(1)
    z, labels = rng.normal(size=(8, 5)).astype(np.float32), rng.integers(0, 5, 8).astype(np.int32)
    ours = fl.sparse_softmax_cross_entropy(jnp.asarray(z), jnp.asarray(labels), **kwargs)
    want = fl.sparse_softmax_cross_entropy(z, labels.astype(np.intp), **kwargs)
    for got, ref in ((ours.loss, want.loss), (ours.grad, want.grad)):
        assert not isinstance(got, np.ndarray)
        np.testing.assert_array_equal(np.asarray(got), ref)
