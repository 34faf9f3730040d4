"""The narrow-row variant of sparse softmax cross-entropy (``losses/cross_entropy.py``,
``sparse_softmax_cross_entropy_rows``): a tile of rows with fewer than LANES classes side by
side. It must give, row by row, the bits of the row function it stands in for, on every
option, extreme input and tile boundary."""

import math
import sys

import numpy as np
import pytest
from reference import ref_sparse_ce

import fastloss as fl
from fastloss import _config
from fastloss.losses import cross_entropy, divergences

OPTIONS = [
    # (label_smoothing, ignore_index, has_ignore_index), class weights
    ((0.0, 0.0, 0.0), None),
    ((0.2, 0.0, 0.0), None),
    ((0.0, 1.0, 1.0), None),
    ((0.3, 2.0, 1.0), "weights"),
    ((0.0, -100.0, 1.0), "weights"),
]


def _tile(rng, rows, width):
    z = rng.normal(scale=3.0, size=(rows, width))
    z[0] = -np.inf  # a fully masked row: NaN
    z[1, : width // 2] = -np.inf  # a partly masked row
    z[2, -1] = 1e4  # one logit dominates
    z[3] = -1e4
    z[4, 0] = np.nan
    labels = rng.integers(0, width, rows)
    labels[5] = 1  # ignored under ignore_index=1
    return z, labels


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # Python-level NaN and inf arithmetic
@pytest.mark.parametrize("params, weights", OPTIONS)
@pytest.mark.parametrize("width", [2, 5, 10])
@pytest.mark.parametrize("want", ["grad", "hess", "both", "loss"])
def test_python_rows_match_the_row_function_bit_for_bit(params, weights, width, want, rng):
    rows = 8
    z, labels = _tile(rng, rows, width)
    if params[2] and params[1] >= 0:
        labels[6] = int(params[1])
    if params[1] < 0:
        labels[7] = int(params[1])  # an ignore_index outside [0, C) is never read
    cw = rng.uniform(0.1, 3.0, width) if weights else np.empty(0)
    gs = rng.uniform(0.1, 2.0, rows)
    gs[4] = 0.0  # a zero weight on the row with a NaN: NaN, as 0 * NaN is
    empty = np.empty((rows, 0))
    g_rows = np.full((rows, width), 7.0) if want in ("grad", "both") else empty
    h_rows = np.full((rows, width), 7.0) if want in ("hess", "both") else empty
    # The row function's loss-only path sums in another order.
    _assert_rows_match(cross_entropy.sparse_softmax_cross_entropy, z, labels, cw, g_rows, h_rows, gs, params,
                       exact_loss=want != "loss")


def _assert_rows_match(row_fn, z, y, c, g_rows, h_rows, gs, params, exact_loss=True):
    """Run the narrow form of ``row_fn`` (its Python source) on the tile ``z`` and check
    it against ``row_fn`` row by row: the same bits of loss, gradient and hessian (the
    wanted ones: ``g_rows`` / ``h_rows`` of width 0 are not wanted)."""
    rows, width = z.shape
    loss = np.empty(rows)
    rows_fn = getattr(sys.modules[row_fn.__module__], row_fn.__name__ + "_rows")
    rows_fn.py_func(z.reshape(-1), y.reshape(-1), c, g_rows.reshape(-1), h_rows.reshape(-1), gs, params, loss)
    for r in range(rows):
        g = np.full(width, 7.0, g_rows.dtype) if g_rows.size else np.empty(0, g_rows.dtype)
        h = np.full(width, 7.0, h_rows.dtype) if h_rows.size else np.empty(0, h_rows.dtype)
        expected = row_fn.py_func(z[r], y[r], z[r], c, g, np.empty(0), np.empty(0), h, gs[r], params)
        if exact_loss:
            np.testing.assert_array_equal(loss[r], expected, err_msg=f"row {r}")
        else:
            np.testing.assert_allclose(loss[r], expected, rtol=1e-15, err_msg=f"row {r}")
        if g.size:
            np.testing.assert_array_equal(g_rows[r], g, err_msg=f"row {r}")
        if h.size:
            np.testing.assert_array_equal(h_rows[r], h, err_msg=f"row {r}")


@pytest.mark.parametrize("width", [1, 3, 10, _config.NARROW_MAX_WIDTH, _config.NARROW_MAX_WIDTH + 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_tile_boundary_against_the_reference(width, dtype, cpu_backend, rng):
    """Row counts around whole tiles (of :func:`narrow_rows` rows), with sample weights,
    against the float64 reference; the two backends run the same tiles."""
    per = _config.narrow_rows(width)
    for rows in (1, per - 1, per, per + 1, 2 * per + 3):
        z = rng.normal(scale=2.0, size=(rows, width)).astype(dtype)
        labels = rng.integers(0, width, rows)
        w = rng.uniform(-0.5, 2.0, rows)
        res = fl.sparse_softmax_cross_entropy(z, labels, sample_weight=w, reduction="none",
                                              label_smoothing=0.1)
        z64 = z.astype(np.float64)
        per_row = ref_sparse_ce(z64, labels, label_smoothing=0.1)
        prob = np.exp(z64 - z64.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)
        grad = prob - 0.1 / width
        grad[np.arange(rows), labels] -= 0.9
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(res.loss, w * per_row, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(res.grad, w[:, None] * grad, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("width", [4, 10, 40])
def test_backends_give_the_same_bits(width, rng):
    if "cython" not in fl.backends():
        pytest.skip("the Cython extension is not built")
    rows = 3 * _config.narrow_rows(width) + 5
    z = rng.normal(scale=4.0, size=(rows, width)).astype(np.float32)
    labels = rng.integers(0, width, rows)
    cw = rng.uniform(0.5, 2.0, width)
    kw = dict(class_weight=cw, label_smoothing=0.05, ignore_index=2, hessian=True)
    a = fl.sparse_softmax_cross_entropy(z, labels, backend="numba", **kw)
    b = fl.sparse_softmax_cross_entropy(z, labels, backend="cython", **kw)
    assert a.loss.tobytes() == b.loss.tobytes()
    assert a.grad.tobytes() == b.grad.tobytes()
    assert a.hess.tobytes() == b.hess.tobytes()


def test_large_narrow_input_runs_in_parallel_chunks_with_the_same_bits(rng, monkeypatch):
    """Chunks of narrow rows, serial and parallel, on both backends: the same bits."""
    rows = _config.PARALLEL_MIN_SIZE // 10 + 999
    z = rng.normal(size=(rows, 10))
    labels = rng.integers(0, 10, rows)
    first = fl.sparse_softmax_cross_entropy(z, labels)
    monkeypatch.setattr(_config, "PARALLEL_MIN_SIZE", math.inf)
    for backend in fl.backends():
        if backend == "cuda":
            continue
        again = fl.sparse_softmax_cross_entropy(z, labels, backend=backend)
        assert again.loss.tobytes() == first.loss.tobytes(), backend
        assert again.grad.tobytes() == first.grad.tobytes(), backend


# softmax_cross_entropy_rows: the same for dense (one-hot or soft) targets.

def _dense_tile(rng, rows, width):
    z, _ = _tile(rng, rows, width)
    y = rng.dirichlet(np.ones(width), rows)
    y[5] = 0.0
    y[5, 0] = 1.0  # one-hot
    y[6, :] = 0.0  # no target at all: loss 0, gradient 0
    y[7, 0] = -0.5  # a negative target weight (any real is accepted)
    y[1, 0] = 1.0  # a target on a masked (-inf) logit: an infinite loss
    return z, y


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # Python-level NaN and inf arithmetic
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("width", [2, 5, 10])
@pytest.mark.parametrize("want", ["grad", "hess", "both", "loss"])
def test_dense_python_rows_match_the_row_function_bit_for_bit(smoothing, width, want, rng):
    rows = 8
    z, y = _dense_tile(rng, rows, width)
    gs = rng.uniform(0.1, 2.0, rows)
    empty = np.empty((rows, 0))
    g_rows = np.full((rows, width), 7.0) if want in ("grad", "both") else empty
    h_rows = np.full((rows, width), 7.0) if want in ("hess", "both") else empty
    _assert_rows_match(cross_entropy.softmax_cross_entropy, z, y, np.empty(0), g_rows, h_rows, gs, (smoothing,))


@pytest.mark.parametrize("width", [1, 3, 10, _config.NARROW_MAX_WIDTH, _config.NARROW_MAX_WIDTH + 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_tile_boundaries_against_the_reference(width, dtype, cpu_backend, rng):
    """Soft targets, row counts around whole tiles, sample weights and label smoothing,
    against a float64 NumPy reference: loss -sum_j t_j log_softmax(z)_j, gradient
    T softmax - t."""
    per = _config.narrow_rows(width)
    for rows in (1, per - 1, per, per + 1, 2 * per + 3):
        z = rng.normal(scale=2.0, size=(rows, width)).astype(dtype)
        y = rng.dirichlet(np.ones(width), rows).astype(dtype)
        w = rng.uniform(-0.5, 2.0, rows)
        res = fl.softmax_cross_entropy(z, y, sample_weight=w, reduction="none", label_smoothing=0.1,
                                       backend=cpu_backend)
        z64 = z.astype(np.float64)
        t = y.astype(np.float64) * 0.9 + 0.1 / width
        shifted = z64 - z64.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        grad = t.sum(axis=1, keepdims=True) * np.exp(log_p) - t
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(res.loss, w * -(t * log_p).sum(axis=1), rtol=rtol, atol=rtol)
        np.testing.assert_allclose(res.grad, w[:, None] * grad, rtol=rtol, atol=rtol)


#: loss -> its options and a hessian flag, for the compiled comparisons below.
DENSE_NARROW = {
    "softmax_cross_entropy": dict(label_smoothing=0.05, hessian=True),
    "kl_divergence": {},
    "kl_divergence eps=0": dict(eps=0.0),
    "categorical_cross_entropy": dict(label_smoothing=0.1),
    "softmax_kl_divergence": {},
    "softmax_kl_divergence log_target": dict(log_target=True),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(DENSE_NARROW))
@pytest.mark.parametrize("width", [4, 10, 40])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_narrow_form_gives_the_row_function_bits_compiled(case, width, dtype, rng, monkeypatch):
    """Compiled, a narrow form gives its row function's numbers (Numba with narrow rows
    turned off runs the row function), and the Cython extension gives them too: the same
    bits, save the sign of a NaN (the masked and NaN rows), which no compiler keeps."""
    name = case.split()[0]
    rows = 3 * _config.narrow_rows(width) + 5
    z, y = _dense_tile(rng, rows, width)
    if name in ("kl_divergence", "categorical_cross_entropy"):  # probabilities: a softmax of the finite logits
        finite = np.where(np.isfinite(z), z, -30.0)
        e = np.exp(finite - finite.max(axis=1, keepdims=True))
        z = e / e.sum(axis=1, keepdims=True)
        z[3, 0] = 0.0  # a prediction of 0 (clipped to eps, or log 0 with eps = 0)
        z[4, 0] = np.nan
        y = np.abs(y)
    if name == "softmax_kl_divergence":
        y = np.abs(y)
        if "log_target" in case:
            y = np.log(y + 1e-3)
    z, y = z.astype(dtype), y.astype(dtype)
    kw = dict(DENSE_NARROW[case], reduction="none")
    outputs = ("loss", "grad", "hess") if kw.get("hessian") else ("loss", "grad")
    loss_fn = getattr(fl, name)
    with np.errstate(all="ignore"):
        narrow = loss_fn(z, y, backend="numba", **kw)
        monkeypatch.setattr(_config, "NARROW_MAX_WIDTH", 0)
        row_by_row = loss_fn(z, y, backend="numba", **kw)
        monkeypatch.undo()
        for out in outputs:
            np.testing.assert_array_equal(getattr(narrow, out), getattr(row_by_row, out), err_msg=out)
        if "cython" in fl.backends():
            cython = loss_fn(z, y, backend="cython", **kw)
            for out in outputs:
                np.testing.assert_array_equal(getattr(cython, out), getattr(narrow, out), err_msg=out)


@pytest.mark.parametrize("width", [1, 3, 10, _config.NARROW_MAX_WIDTH, _config.NARROW_MAX_WIDTH + 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kl_tile_boundaries_against_the_reference(width, dtype, cpu_backend, rng):
    """Soft targets, row counts around whole tiles and sample weights, against a float64
    NumPy reference: loss sum_j q_j (log q_j - log_softmax(z)_j), gradient Q softmax - q."""
    per = _config.narrow_rows(width)
    for rows in (1, per - 1, per, per + 1, 2 * per + 3):
        z = rng.normal(scale=2.0, size=(rows, width)).astype(dtype)
        q = rng.dirichlet(np.ones(width), rows).astype(dtype)
        w = rng.uniform(-0.5, 2.0, rows)
        res = fl.softmax_kl_divergence(z, q, sample_weight=w, reduction="none", backend=cpu_backend)
        z64, q64 = z.astype(np.float64), q.astype(np.float64)
        shifted = z64 - z64.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        grad = q64.sum(axis=1, keepdims=True) * np.exp(log_p) - q64
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(res.loss, w * (q64 * (np.log(q64) - log_p)).sum(axis=1), rtol=rtol, atol=rtol)
        np.testing.assert_allclose(res.grad, w[:, None] * grad, rtol=rtol, atol=rtol)


# softmax_kl_divergence_rows: targets q (or log q), one row at a time in the row function.

@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # Python-level NaN and inf arithmetic
@pytest.mark.parametrize("log_target", [0.0, 1.0])
@pytest.mark.parametrize("width", [2, 5, 10])
@pytest.mark.parametrize("want_grad", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kl_python_rows_match_the_row_function_bit_for_bit(log_target, width, want_grad, dtype, rng):
    rows = 8
    z, y = _dense_tile(rng, rows, width)
    y = np.abs(y)  # probabilities (zeros included: 0 log 0 = 0)
    if log_target:
        with np.errstate(divide="ignore"):
            y = np.log(y)
    z, y = z.astype(dtype), y.astype(dtype)
    gs = rng.uniform(0.1, 2.0, rows)
    g_rows = np.full((rows, width), 7.0, dtype) if want_grad else np.empty((rows, 0), dtype)
    _assert_rows_match(divergences.softmax_kl_divergence, z, y, np.empty(0), g_rows, np.empty((rows, 0), dtype), gs,
                       (log_target,))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # Python-level NaN and inf arithmetic
@pytest.mark.parametrize("eps", [1e-7, 0.0])
@pytest.mark.parametrize("width", [2, 5, 10])
@pytest.mark.parametrize("want_grad", [True, False])
def test_kl_probabilities_python_rows_match_the_row_function_bit_for_bit(eps, width, want_grad, rng):
    rows = 8
    x = rng.dirichlet(np.ones(width), rows)
    x[0, 0] = 0.0
    x[1, 0] = np.nan
    x[2, 0] = 1.5  # outside [eps, 1]: clipped, no gradient
    y = rng.dirichlet(np.ones(width), rows)
    y[3, :] = 0.0
    gs = rng.uniform(0.1, 2.0, rows)
    g_rows = np.full((rows, width), 7.0) if want_grad else np.empty((rows, 0))
    _assert_rows_match(divergences.kl_divergence, x, y, np.empty(0), g_rows, np.empty((rows, 0)), gs, (eps,))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # Python-level NaN and inf arithmetic
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("width", [2, 5, 10])
@pytest.mark.parametrize("want_grad", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cce_python_rows_match_the_row_function_bit_for_bit(smoothing, width, want_grad, dtype, rng):
    rows = 8
    x = rng.uniform(0.0, 3.0, (rows, width))  # unnormalised: the loss normalises each row
    x[0, 0] = 0.0
    x[1, 0] = np.nan
    x[2, :] = 0.0  # a row of zeros: 0 / 0
    x[3, 0] = 1e30  # one dominant value: the others clip to eps
    y = rng.dirichlet(np.ones(width), rows)
    y[4, :] = 0.0
    x, y = x.astype(dtype), y.astype(dtype)
    gs = rng.uniform(0.1, 2.0, rows)
    g_rows = np.full((rows, width), 7.0, dtype) if want_grad else np.empty((rows, 0), dtype)
    _assert_rows_match(cross_entropy.categorical_cross_entropy, x, y, np.empty(0), g_rows, np.empty((rows, 0), dtype),
                       gs, (1e-7, smoothing))
