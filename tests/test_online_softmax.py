"""The online log-sum-exp of the softmax losses (``math/online_softmax.py``: ``softmax_blocks``).

A row wider than a block (``online_softmax.BLOCK`` logits) is read once, block by block, each block
with its own maximum; the losses that keep exp(z_j - m_b) in the gradient row rescale it
by exp(m_b - m) when they write the gradient. These tests use rows of several blocks
(the row's maximum in the first, a middle or the last block, masked and NaN blocks) on
both CPU backends against float64 references, and the Python source with tiny blocks.
"""

import math

import numpy as np
import pytest
from reference import ref_jsd, ref_softmax_ce, ref_softmax_focal, ref_softmax_kl, ref_sparse_ce
from scipy.special import softmax as ref_softmax

import fastloss as fl
from fastloss.losses import cross_entropy
from fastloss.math import online_softmax
from fastloss.math.reductions import LANES

#: The references form 0 * inf and 0 log 0 on masked logits (the tests patch those rows).
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

BLOCK = online_softmax.BLOCK  # (the tiny-block test patches the module's)
WIDTH = 2 * BLOCK + 77  # three blocks, the last one partial
RTOL = {np.float64: 1e-12, np.float32: 2e-6}


def _wide_logits(rng, rows, width, dtype):
    """Rows whose maximum sits in different blocks: the first (row 0), the last (row 1,
    a logit of 1e4: every earlier block is rescaled from far below), a middle one (row 2);
    row 3 has its first block masked (-inf) and its maximum in the second."""
    z = rng.normal(scale=3.0, size=(rows, width))
    z[0, 3] = 40.0
    z[1, -5] = 1e4
    z[2, BLOCK + 100] = 25.0
    z[3, : BLOCK] = -np.inf
    z[3, BLOCK + 7] = 30.0
    return z.astype(dtype)


def _probabilities(rng, rows, width):
    q = rng.uniform(0.0, 1.0, size=(rows, width))
    q[:, ::7] = 0.0  # zero targets: 0 log 0 = 0
    return q / q.sum(axis=1, keepdims=True)


SPARSE_OPTIONS = [
    {},
    {"label_smoothing": 0.2},
    {"label_smoothing": 0.1, "class_weight": "weights"},
    {"ignore_index": 1},
]


@pytest.mark.parametrize("options", SPARSE_OPTIONS, ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sparse_cross_entropy_over_blocks(options, dtype, cpu_backend, rng):
    rows = 5
    z = _wide_logits(rng, rows, WIDTH, dtype)
    labels = rng.integers(BLOCK, WIDTH, rows)  # row 3: not on a masked logit
    labels[4] = 1
    options = dict(options)
    if options.get("class_weight") == "weights":
        options["class_weight"] = rng.uniform(0.1, 2.0, WIDTH)
    res = fl.sparse_softmax_cross_entropy(z, labels, reduction="none", hessian=True, **options)
    z64 = z.astype(np.float64)
    expected = ref_sparse_ce(z64, labels, **options)
    if not options.get("label_smoothing"):  # the reference forms 0 * inf for the masked row
        sub = {k: (v[BLOCK:] if k == "class_weight" else v) for k, v in options.items()}
        expected[3] = ref_sparse_ce(z64[3:4, BLOCK:], labels[3:4] - BLOCK, **sub)[0]
    else:  # smoothing puts target mass on the masked logits: an infinite loss
        assert expected[3] == np.inf
    np.testing.assert_allclose(res.loss, expected, rtol=RTOL[dtype])
    # grad_j = A softmax_j - target_j, A = sum_j target_j (the class-weighted targets)
    ls = options.get("label_smoothing", 0.0)
    w = options.get("class_weight", np.ones(WIDTH))
    target = np.tile(ls / WIDTH * w, (rows, 1))
    target[np.arange(rows), labels] += (1 - ls) * w[labels]
    if "ignore_index" in options:
        target[labels == options["ignore_index"]] = 0.0
    p = ref_softmax(z64, axis=1)
    a = target.sum(axis=1, keepdims=True)
    atol = 1e-15 if dtype == np.float64 else 1e-9
    np.testing.assert_allclose(res.grad, a * p - target, rtol=RTOL[dtype], atol=atol)
    np.testing.assert_allclose(res.hess, a * p * (1 - p), rtol=RTOL[dtype], atol=atol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_soft_target_losses_over_blocks(dtype, cpu_backend, rng):
    rows = 4
    z = _wide_logits(rng, rows, WIDTH, dtype)
    q = _probabilities(rng, rows, WIDTH)
    q[3, : BLOCK] = 0.0  # no target mass on row 3's masked block
    q = (q / q.sum(axis=1, keepdims=True)).astype(dtype)
    z64, q64 = z.astype(np.float64), q.astype(np.float64)
    p = ref_softmax(z64, axis=1)
    atol = 1e-15 if dtype == np.float64 else 1e-9

    res = fl.softmax_cross_entropy(z, q, reduction="none", label_smoothing=0.1, hessian=True)
    t = q64 * 0.9 + 0.1 / WIDTH
    big_t = t.sum(axis=1, keepdims=True)
    expected = ref_softmax_ce(z64, q64, label_smoothing=0.1)
    assert expected[3] == np.inf  # smoothing puts target mass on the masked logits
    np.testing.assert_allclose(res.loss, expected, rtol=RTOL[dtype])
    np.testing.assert_allclose(res.grad, big_t * p - t, rtol=RTOL[dtype], atol=atol)
    np.testing.assert_allclose(res.hess, big_t * p * (1 - p), rtol=RTOL[dtype], atol=atol)

    res = fl.softmax_kl_divergence(z, q, reduction="none")
    expected = ref_softmax_kl(z64, q64)
    expected[3] = ref_softmax_kl(z64[3:4, BLOCK:], q64[3:4, BLOCK:])[0]  # (0 * -inf there)
    np.testing.assert_allclose(res.loss, expected, rtol=RTOL[dtype])
    np.testing.assert_allclose(res.grad, q64.sum(axis=1, keepdims=True) * p - q64, rtol=RTOL[dtype], atol=atol)


@pytest.mark.parametrize("name", ["js_divergence", "softmax_focal_loss", "sparse_focal"])
def test_other_softmax_losses_over_blocks(name, cpu_backend, rng):
    """Values against the references, gradients against central differences along a
    random direction (float64)."""
    rows = 4
    z = _wide_logits(rng, rows, WIDTH, np.float64)
    z[1, -5] = 60.0  # finite differences need no 1e4 logit
    if name == "js_divergence":
        zq = rng.normal(scale=2.0, size=z.shape)
        zq[3, : BLOCK] = -np.inf  # the same block masked in both
        expected = ref_jsd(z, zq)
        expected[3] = ref_jsd(z[3:4, BLOCK:], zq[3:4, BLOCK:])[0]  # (0 log 0/0 there)

        def call(x, **kw):
            return fl.js_divergence(x, zq, **kw)
    elif name == "softmax_focal_loss":
        y = _probabilities(rng, rows, WIDTH)
        y[3, : BLOCK] = 0.0
        expected = ref_softmax_focal(z, y)
        expected[3] = ref_softmax_focal(z[3:4, BLOCK:], y[3:4, BLOCK:])[0]  # (0 * -inf there)

        def call(x, **kw):
            return fl.softmax_focal_loss(x, y, **kw)
    else:
        # never a masked logit, nor a row's maximum (where the reference's 1 - p cancels)
        labels = np.array([BLOCK + 5, WIDTH - 3, BLOCK + 200, BLOCK + 9])
        expected = ref_softmax_focal(z, labels)
        expected[3] = ref_softmax_focal(z[3:4, BLOCK:], labels[3:4] - BLOCK)[0]  # (0 * -inf there)

        def call(x, **kw):
            return fl.softmax_focal_loss(x, labels, **kw)
    res = call(z, reduction="none")
    np.testing.assert_allclose(res.loss, expected, rtol=1e-12)
    grad = res.grad[0] if isinstance(res.grad, tuple) else res.grad
    assert np.all(np.isfinite(grad))
    v = rng.standard_normal(z.shape)
    v[~np.isfinite(z)] = 0.0  # masked logits stay -inf
    h = 1e-5
    rate = (float(call(z + h * v, reduction="sum", grad=False).loss)
            - float(call(z - h * v, reduction="sum", grad=False).loss)) / (2 * h)
    assert math.isclose(rate, float((grad * v).sum()), rel_tol=1e-6, abs_tol=1e-9)


def test_masked_and_nan_blocks_stay_in_their_rows(cpu_backend, rng):
    """A fully masked block adds nothing (the row equals its unmasked part), a NaN anywhere
    makes its row NaN (also in a block that holds nothing else), a row of -inf is NaN,
    and no other row is touched."""
    width = WIDTH
    z = rng.normal(size=(5, width))
    z[0, BLOCK: 2 * BLOCK] = -np.inf  # a masked middle block
    z[1, : BLOCK] = np.nan  # a block of NaN, the rest finite
    z[2] = -np.inf
    z[3, BLOCK:] = -np.inf  # everything but the first block masked
    labels = np.array([0, 5, 0, 3, 9])
    res = fl.sparse_softmax_cross_entropy(z, labels, reduction="none")
    unmasked = np.concatenate([z[0, : BLOCK], z[0, 2 * BLOCK:]])
    np.testing.assert_allclose(res.loss[0], ref_sparse_ce(unmasked[None], labels[:1])[0], rtol=1e-12)
    assert np.all(res.grad[0, BLOCK: 2 * BLOCK] == 0.0)
    assert np.isnan(res.loss[1]) and np.all(np.isnan(res.grad[1]))
    assert np.isnan(res.loss[2]) and np.all(np.isnan(res.grad[2]))
    np.testing.assert_allclose(res.loss[3], ref_sparse_ce(z[3:4, : BLOCK], labels[3:4])[0], rtol=1e-12)
    assert np.all(res.grad[3, BLOCK:] == 0.0)
    np.testing.assert_allclose(res.loss[4], ref_sparse_ce(z[4:5], labels[4:5])[0], rtol=1e-12)

    q = _probabilities(rng, 5, width)
    q[0, BLOCK: 2 * BLOCK] = 0.0  # no target mass on the masked block
    q[3, BLOCK:] = 0.0
    q /= q.sum(axis=1, keepdims=True)
    res = fl.softmax_cross_entropy(z, q, reduction="none")
    keep = np.r_[0: BLOCK, 2 * BLOCK: width]
    np.testing.assert_allclose(res.loss[0], ref_softmax_ce(z[0:1, keep], q[0:1, keep])[0], rtol=1e-12)
    assert np.isnan(res.loss[1]) and np.isnan(res.loss[2])
    np.testing.assert_allclose(res.loss[4], ref_softmax_ce(z[4:5], q[4:5])[0], rtol=1e-12)


@pytest.mark.parametrize("name", ["sparse_softmax_cross_entropy", "softmax_cross_entropy"])
def test_in_place_over_blocks(name, cpu_backend, rng):
    """out=logits on rows of several blocks: each block's logits are read before its
    exponentials overwrite them."""
    z = _wide_logits(rng, 4, WIDTH, np.float64)
    y = rng.integers(0, WIDTH, 4) if name.startswith("sparse") else _probabilities(rng, 4, WIDTH)
    fn = getattr(fl, name)
    expected = fn(z, y, label_smoothing=0.1)
    work = z.copy()
    res = fn(work, y, label_smoothing=0.1, out=work)
    assert res.grad is work
    np.testing.assert_array_equal(res.grad, expected.grad)
    assert float(res.loss) == float(expected.loss)


def test_more_blocks_than_lanes(cpu_backend, rng):
    """A row of more than LANES blocks of BLOCK: blocks grow (one maximum per lane)."""
    width = LANES * BLOCK + 1000
    z = rng.normal(scale=2.0, size=(1, width))
    z[0, -1] = 30.0
    labels = np.array([width - 2])
    res = fl.sparse_softmax_cross_entropy(z, labels, reduction="none", label_smoothing=0.1)
    np.testing.assert_allclose(res.loss, ref_sparse_ce(z, labels, label_smoothing=0.1), rtol=1e-12)
    target = np.full(width, 0.1 / width)
    target[labels[0]] += 0.9
    np.testing.assert_allclose(res.grad[0], ref_softmax(z[0]) - target, rtol=1e-12, atol=1e-18)


def test_block_size_bounds_the_blocks():
    for n in (0, 1, BLOCK, BLOCK * LANES, BLOCK * LANES + 1, 10**6, 10**7):
        size = online_softmax.block_size(np.empty(n))
        assert size >= BLOCK and size % LANES == 0
        assert -(-n // size) <= LANES


def test_python_source_with_tiny_blocks(monkeypatch, rng):
    """The portable source itself with blocks of LANES logits (many blocks per row):
    the loss and gradient of sparse cross-entropy with every option, against NumPy."""
    monkeypatch.setattr(online_softmax, "BLOCK", LANES)
    width = 3 * LANES + 5
    z = rng.normal(scale=3.0, size=width)
    z[2 * LANES + 1] = 20.0  # the maximum in the third block
    z[: LANES] = -np.inf  # the first block masked
    cw = rng.uniform(0.5, 2.0, width)
    label = 2 * LANES + 9
    ls = 0.2
    g = np.empty(width)
    h = np.empty(width)
    loss = cross_entropy.sparse_softmax_cross_entropy.py_func(
        z, label, z, cw, g, np.empty(0), np.empty(0), h, 1.0, (ls, 0.0, 0.0))
    np.testing.assert_allclose(loss, ref_sparse_ce(z[None], np.array([label]), class_weight=cw,
                                                   label_smoothing=ls)[0], rtol=1e-13)
    target = ls / width * cw
    target[label] += (1 - ls) * cw[label]
    p = ref_softmax(z)
    np.testing.assert_allclose(g, target.sum() * p - target, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(h, target.sum() * p * (1 - p), rtol=1e-13, atol=1e-15)
