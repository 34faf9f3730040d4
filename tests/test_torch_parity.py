"""Parity with PyTorch: fastloss's loss value and gradient against torch autograd.

Every reduction ("mean", "sum", "none"), float64 and float32 inputs (the reference is always
computed by autograd on float64 tensors holding the same values, so float32 results only
carry their own rounding), small random shapes including a 3-D case for element-wise losses
and ``axis=1`` for class-axis losses (PyTorch's (N, C, L) layout). Losses PyTorch has are
compared with ``torch.nn.functional``; the others are written out in torch ops from
contract section 5 (torchvision's sigmoid focal loss, the hinges, GAN and VAE terms, the
Keras-style probability losses, the JSD, ...). PyTorch has no ``sample_weight``: weighted
results are compared with ``(w * per_sample).sum()`` (and ``/ count`` for "mean", the Keras
convention).
"""

import math

import numpy as np
import pytest

import fastloss as fl

pytestmark = pytest.mark.usefixtures("cpu_backend")

torch = pytest.importorskip("torch")
F = torch.nn.functional

REDUCTIONS = ("mean", "sum", "none")
DTYPES = (np.float64, np.float32)
# float64: both sides are float64 computations that differ only in rounding order.
# float32: fastloss returns float32; the reference is float64 math on the same values.
RTOL = {np.float64: 1e-12, np.float32: 2e-5}
EW_SHAPES = [(7,), (4, 5), (2, 3, 4)]
# (shape of the logits, axis of fastloss): (N, C) with the class axis last, and PyTorch's
# (N, C, L) layout with the class axis 1.
ROW_LAYOUTS = [((6, 5), -1), ((3, 5, 4), 1)]


# --- helpers ------------------------------------------------------------------------------


def _tensor(a, requires_grad=False):
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return torch.tensor(a.astype(np.float64), requires_grad=requires_grad)
    return torch.tensor(a.astype(np.int64))


def _close(got, ref, rtol, what):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    assert np.all(np.isfinite(ref)), f"{what}: the reference is not finite (bad test data)"
    # Relative error, with the same absolute error allowed near zero (scale of the array).
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale, err_msg=what)


def _reduce(per, reduction):
    if reduction == "none":
        return per
    return per.sum() if reduction == "sum" else per.mean()


def _check(name, arrays, torch_loss, reduction, *, ngrad=1, sample_weight=None, denominator=None, **opts):
    """fastloss ``name`` on ``arrays`` against ``torch_loss(*tensors, reduction=...)``.

    With ``sample_weight`` the reference is built from torch's "none" result:
    ``sum(w * l)``, divided by ``denominator`` (default: the number of losses) for "mean".
    """
    dtype = arrays[0].dtype
    rtol = RTOL[dtype.type]
    res = fl.compute(name, *arrays, reduction=reduction, sample_weight=sample_weight, **opts)
    ts = [_tensor(a, i < ngrad) for i, a in enumerate(arrays)]
    if sample_weight is None:
        ref = torch_loss(*ts, reduction=reduction)
    else:
        per = torch_loss(*ts, reduction="none") * _tensor(np.asarray(sample_weight, dtype=np.float64))
        if reduction == "none":
            ref = per
        elif reduction == "sum":
            ref = per.sum()
        else:
            ref = per.sum() / (per.numel() if denominator is None else denominator)
    ref.sum().backward()
    assert isinstance(res.loss, np.ndarray) and res.loss.dtype == dtype, f"{name}: loss dtype"
    _close(res.loss, ref.detach().numpy(), rtol, f"{name} loss ({reduction}, {dtype})")
    grads = res.grad if ngrad > 1 else (res.grad,)
    assert isinstance(grads, tuple) and len(grads) == ngrad
    for k in range(ngrad):
        g = grads[k]
        assert g.shape == arrays[k].shape and g.dtype == dtype, f"{name}: gradient {k} shape/dtype"
        _close(g, ts[k].grad.numpy(), rtol, f"{name} grad[{k}] ({reduction}, {dtype})")
    return res


def _softplus(x):
    """log(1 + exp(x)) accurate everywhere (F.softplus returns x itself above its threshold 20)."""
    return torch.logaddexp(x, torch.zeros_like(x))


def _onehot_or_soft(rng, shape, axis, soft):
    """Target rows along ``axis``: one-hot, or probability rows with some exact zeros."""
    c = shape[axis]
    moved = shape[:axis] + shape[axis + 1:] + (c,) if axis != -1 else shape
    if soft:
        t = rng.uniform(0.0, 1.0, size=moved)
        t[t < 0.25] = 0.0
        t[..., 0] += 0.1  # no all-zero row
        t /= t.sum(-1, keepdims=True)
    else:
        t = np.eye(c)[rng.integers(0, c, size=moved[:-1])]
    return np.moveaxis(t, -1, axis) if axis != -1 else t


# --- element-wise losses PyTorch has ----------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", EW_SHAPES)
def test_mse_loss(shape, reduction, dtype):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape).astype(dtype)
    y = rng.normal(size=shape).astype(dtype)
    _check("mse", [x, y], lambda a, b, reduction: F.mse_loss(a, b, reduction=reduction), reduction)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", EW_SHAPES)
def test_l1_loss_with_exact_zeros(shape, reduction, dtype):
    rng = np.random.default_rng(2)
    x = rng.normal(size=shape).astype(dtype)
    y = rng.normal(size=shape).astype(dtype)
    y.flat[::3] = x.flat[::3]  # r = 0: torch's sign(0) = 0 gives a zero gradient there
    res = _check("mae", [x, y], lambda a, b, reduction: F.l1_loss(a, b, reduction=reduction), reduction)
    assert np.all(res.grad.flat[::3] == 0.0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", EW_SHAPES)
@pytest.mark.parametrize("delta", [0.25, 0.3, 1.0, 2.5])
def test_huber_loss(delta, shape, reduction, dtype):
    rng = np.random.default_rng(3)
    x = rng.normal(scale=2.0, size=shape)
    y = rng.normal(size=shape)
    # Points exactly at |r| = delta (the quadratic side owns the boundary, as in torch).
    y.flat[0], x.flat[0] = 0.0, delta
    y.flat[1], x.flat[1] = 0.0, -delta
    y.flat[2], x.flat[2] = 0.5, 0.5 + delta  # exact for the dyadic deltas
    y.flat[3], x.flat[3] = 1.0, 1.0  # r = 0
    x, y = x.astype(dtype), y.astype(dtype)
    _check(
        "huber", [x, y],
        lambda a, b, reduction: F.huber_loss(a, b, delta=delta, reduction=reduction), reduction, delta=delta,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", EW_SHAPES)
@pytest.mark.parametrize("log_input", [False, True])
@pytest.mark.parametrize("eps", [None, 1e-3])
def test_poisson_nll_loss(eps, log_input, shape, reduction, dtype):
    rng = np.random.default_rng(4)
    x = (rng.normal(size=shape) if log_input else rng.uniform(0.05, 3.0, size=shape)).astype(dtype)
    y = rng.poisson(1.5, size=shape).astype(dtype)  # includes zeros
    y.flat[0] = 0.0
    opts = {"log_input": log_input}
    if eps is not None:
        opts["eps"] = eps
    torch_eps = 1e-7 if eps is None else eps  # fastloss's default eps is 1e-7, torch's 1e-8

    def ref(a, b, reduction):
        return F.poisson_nll_loss(a, b, log_input=log_input, full=False, eps=torch_eps, reduction=reduction)

    _check("poisson", [x, y], ref, reduction, **opts)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", EW_SHAPES)
@pytest.mark.parametrize("pos_weight", [None, "scalar", "per_class"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_binary_cross_entropy_with_logits(label_smoothing, pos_weight, shape, reduction, dtype):
    rng = np.random.default_rng(5)
    z = rng.normal(scale=3.0, size=shape).astype(dtype)
    y = rng.integers(0, 2, size=shape).astype(dtype)
    y.flat[::4] = rng.uniform(size=y.flat[::4].shape)  # some soft targets
    y = y.astype(dtype)
    opts = {"label_smoothing": label_smoothing}
    pw_t = None
    if pos_weight == "scalar":
        opts["pos_weight"] = 2.5
        pw_t = torch.tensor(2.5, dtype=torch.float64)
    elif pos_weight == "per_class":
        pw = rng.uniform(0.2, 4.0, size=shape[-1:])
        opts["pos_weight"] = pw
        pw_t = torch.tensor(pw)

    def ref(a, b, reduction):
        b = b * (1 - label_smoothing) + label_smoothing / 2  # smoothing written out in torch
        return F.binary_cross_entropy_with_logits(a, b, pos_weight=pw_t, reduction=reduction)

    _check("sigmoid_binary_cross_entropy", [z, y], ref, reduction, **opts)


# --- class-axis losses PyTorch has --------------------------------------------------------


SPARSE_CE_CASES = [
    # (ignore_index, use class_weight, label_smoothing)
    (None, False, 0.0),
    (-100, False, 0.0),
    (None, True, 0.0),
    (None, False, 0.1),
    (-100, True, 0.0),
    (-100, False, 0.2),
    (None, True, 0.15),
    (-100, True, 0.15),
    (2, True, 0.1),  # an ignore_index that is also a valid class
]


def _sparse_ce_data(layout, dtype, ignore_index, seed, label_dtype=np.int64):
    (shape, axis) = layout
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=2.0, size=shape).astype(dtype)
    c = shape[1] if axis == 1 else shape[-1]
    lshape = (shape[0],) + shape[2:] if axis == 1 else shape[:-1]
    labels = rng.integers(0, c, size=lshape)
    if ignore_index is not None:
        labels.flat[1] = ignore_index
        labels.flat[-2] = ignore_index
        if ignore_index == -100:
            labels.flat[3] = ignore_index
    return z, labels.astype(label_dtype), c, axis


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("layout", ROW_LAYOUTS)
@pytest.mark.parametrize("ignore_index,weighted,label_smoothing", SPARSE_CE_CASES)
def test_cross_entropy_class_indices(ignore_index, weighted, label_smoothing, layout, reduction, dtype):
    z, labels, c, axis = _sparse_ce_data(layout, dtype, ignore_index, 6)
    cw = np.linspace(0.3, 2.0, c) if weighted else None
    opts = {"axis": axis, "label_smoothing": label_smoothing}
    if ignore_index is not None:
        opts["ignore_index"] = ignore_index
    if weighted:
        opts["class_weight"] = cw

    def ref(a, b, reduction):
        return F.cross_entropy(
            a, b, weight=None if cw is None else torch.tensor(cw),
            ignore_index=-100 if ignore_index is None else ignore_index,
            label_smoothing=label_smoothing, reduction=reduction,
        )

    res = _check("sparse_softmax_cross_entropy", [z, labels], ref, reduction, **opts)
    if ignore_index is not None:
        ignored = labels == ignore_index
        assert np.all(np.moveaxis(res.grad, axis, -1)[ignored] == 0.0)
        if reduction == "none":
            assert np.all(res.loss[ignored] == 0.0)


@pytest.mark.parametrize("label_dtype", [np.int32, np.uint8, np.int16])
def test_cross_entropy_any_integer_label_dtype(label_dtype):
    z, labels, c, axis = _sparse_ce_data(ROW_LAYOUTS[0], np.float64, None, 7, label_dtype)
    assert labels.dtype == label_dtype
    _check(
        "sparse_softmax_cross_entropy", [z, labels],
        lambda a, b, reduction: F.cross_entropy(a, b, reduction=reduction), "mean",
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_class_indices_sample_weight(weighted, reduction, dtype):
    # Contract section 1: sample_weight multiplies the numerator only; "mean" still divides
    # by the number of counted rows, or with class_weight by the sum of class_weight[label]
    # over them.
    z, labels, c, axis = _sparse_ce_data(ROW_LAYOUTS[0], dtype, -100, 8)
    cw = np.linspace(0.5, 1.7, c) if weighted else None
    w = np.linspace(-1.0, 2.0, labels.size)
    w[2] = 0.0
    counted = labels != -100
    denominator = float(cw[labels[counted]].sum()) if weighted else float(counted.sum())
    opts = {"ignore_index": -100, "label_smoothing": 0.1}
    if weighted:
        opts["class_weight"] = cw

    def ref(a, b, reduction):
        return F.cross_entropy(
            a, b, weight=None if cw is None else torch.tensor(cw), ignore_index=-100,
            label_smoothing=0.1, reduction=reduction,
        )

    _check(
        "sparse_softmax_cross_entropy", [z, labels], ref, reduction,
        sample_weight=w, denominator=denominator, **opts,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("layout", ROW_LAYOUTS)
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cross_entropy_probabilities(label_smoothing, soft, layout, reduction, dtype):
    shape, axis = layout
    rng = np.random.default_rng(9)
    z = rng.normal(scale=2.0, size=shape).astype(dtype)
    y = _onehot_or_soft(rng, shape, 1 if axis == 1 else -1, soft).astype(dtype)

    def ref(a, b, reduction):
        return F.cross_entropy(a, b, label_smoothing=label_smoothing, reduction=reduction)

    _check("softmax_cross_entropy", [z, y], ref, reduction, axis=axis, label_smoothing=label_smoothing)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("layout", ROW_LAYOUTS)
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_of_log_softmax(log_target, layout, reduction, dtype):
    shape, axis = layout
    dim = 1 if axis == 1 else -1
    rng = np.random.default_rng(10)
    z = rng.normal(scale=2.0, size=shape).astype(dtype)
    if log_target:
        q = rng.normal(size=shape)
        q = q - np.log(np.exp(q).sum(dim, keepdims=True))  # log-probabilities
    else:
        q = _onehot_or_soft(rng, shape, dim, soft=True)  # has exact zeros: 0 log 0 = 0
    q = q.astype(dtype)

    def ref(a, b, reduction):
        lsm = F.log_softmax(a, dim=dim)
        if reduction == "mean" and a.ndim == 2:
            return F.kl_div(lsm, b, reduction="batchmean", log_target=log_target)
        per = F.kl_div(lsm, b, reduction="none", log_target=log_target).sum(dim)
        # batchmean divides by size(0) only; for (N, C, L) the mean over rows is over N * L.
        return _reduce(per, reduction)

    _check("softmax_kl_divergence", [z, q], ref, reduction, axis=axis, log_target=log_target)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("margin,eps", [(1.0, 1e-6), (0.5, 1e-3), (2.0, 0.0)])
def test_triplet_margin_loss(margin, eps, p, reduction, dtype):
    rng = np.random.default_rng(11)
    a = rng.normal(size=(8, 5))
    pos = a + rng.normal(scale=1.0, size=a.shape)
    neg = a + rng.normal(scale=0.3, size=a.shape)  # negatives nearer than positives: active rows
    neg[::3] += 5.0  # far negatives: those rows are clamped to 0 (gradient 0)
    arrays = [v.astype(dtype) for v in (a, pos, neg)]

    def ref(x, y, v, reduction):
        return F.triplet_margin_loss(x, y, v, margin=margin, p=p, eps=eps, reduction=reduction)

    res = _check("triplet_margin_loss", arrays, ref, reduction, ngrad=3, margin=margin, p=p, eps=eps)
    if reduction == "none":
        assert np.any(res.loss == 0.0) and np.any(res.loss > 0.0), "want active and inactive rows"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_triplet_margin_loss_squared(reduction, dtype):
    rng = np.random.default_rng(12)
    a, pos, neg = (rng.normal(size=(7, 4)).astype(dtype) for _ in range(3))

    def ref(x, y, v, reduction):
        per = torch.clamp(((x - y) ** 2).sum(-1) - ((x - v) ** 2).sum(-1) + 0.7, min=0)
        return _reduce(per, reduction)

    _check("triplet_margin_loss", [a, pos, neg], ref, reduction, ngrad=3, margin=0.7, squared=True)


# --- losses written out in torch ops ------------------------------------------------------


def _focal_torchvision(alpha, gamma):
    """torchvision.ops.sigmoid_focal_loss (reduction "none"), transcribed."""

    def per(inputs, targets):
        p = torch.sigmoid(inputs)
        ce_loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
        p_t = p * targets + (1 - p) * (1 - targets)
        loss = ce_loss * ((1 - p_t) ** gamma)
        if alpha is not None and alpha >= 0:
            alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
            loss = alpha_t * loss
        return loss

    return per


def _map01(y):
    return 2 * y - 1 if bool(torch.all((y == 0) | (y == 1))) else y


def _hinge(x, y):
    return torch.clamp(1 - _map01(y) * x, min=0)


def _squared_hinge(x, y):
    return torch.clamp(1 - _map01(y) * x, min=0) ** 2


def _categorical_hinge(dim):
    def per(x, y):
        pos = (y * x).sum(dim)
        neg = torch.amax((1 - y) * x, dim=dim)  # amax shares the gradient among ties
        return torch.clamp(1 + neg - pos, min=0)

    return per


def _bce_probs(eps):
    def per(p, y):
        q = torch.clamp(p, eps, 1 - eps)
        return -(y * torch.log(q) + (1 - y) * torch.log(1 - q))

    return per


def _cce_probs(eps, ls, dim):
    def per(p, y):
        c = p.shape[dim]
        t = y * (1 - ls) + ls / c
        q = torch.clamp(p / p.sum(dim, keepdim=True), eps, 1 - eps)
        return -(t * torch.log(q)).sum(dim)

    return per


def _kl_probs(eps, dim):
    def per(p, q):
        qc = torch.clamp(q, eps, 1)
        pc = torch.clamp(p, eps, 1)
        return (qc * (torch.log(qc) - torch.log(pc))).sum(dim)

    return per


def _jsd(beta, dim):
    def per(zp, zq):
        lp = F.log_softmax(zp, dim=dim)
        lq = F.log_softmax(zq, dim=dim)
        lm = torch.logaddexp(lp + math.log(beta), lq + math.log1p(-beta))
        return (beta * lp.exp() * (lp - lm) + (1 - beta) * lq.exp() * (lq - lm)).sum(dim)

    return per


def _softmax_focal(alpha, gamma, dim):
    def per(z, y):
        lp = F.log_softmax(z, dim=dim)
        if not torch.is_floating_point(y):
            y = torch.moveaxis(F.one_hot(y, z.shape[dim]).to(z.dtype), -1, dim)
        a = 1.0 if alpha is None else alpha
        return -(a * y * (1 - lp.exp()) ** gamma * lp).sum(dim)

    return per


def _vae(dim):
    def per(mu, logvar):
        return -0.5 * (1 + logvar - mu**2 - torch.exp(logvar)).sum(dim)

    return per


def _pseudo_huber(delta):
    def per(x, y):
        return delta**2 * (torch.sqrt(1 + ((x - y) / delta) ** 2) - 1)

    return per


def _msle(eps):
    def per(x, y):
        return (torch.log1p(torch.clamp(x, min=eps)) - torch.log1p(torch.clamp(y, min=eps))) ** 2

    return per


def _mape(eps):
    def per(x, y):
        return 100 * torch.abs(x - y) / torch.clamp(torch.abs(y), min=eps)

    return per


def _gan_disc(zr, zf):
    return _softplus(-zr) + _softplus(zf)


def _gan_gen(saturating):
    def per(z):
        return -_softplus(z) if saturating else _softplus(-z)

    return per


def _data_regression(rng, shape):
    return [rng.normal(size=shape), rng.normal(size=shape)]


def _data_positive(rng, shape):
    x, y = rng.uniform(0.0, 3.0, size=shape), rng.uniform(0.0, 3.0, size=shape)
    x.flat[0] = -0.5  # below eps: the clamp's gradient is 0
    return [x, y]


def _data_mape(rng, shape):
    x, y = rng.normal(size=shape), rng.normal(size=shape)
    y.flat[1] = 0.0  # divided by eps
    return [x, y]


def _data_logits_binary(rng, shape):
    z = rng.normal(scale=2.5, size=shape)
    y = rng.integers(0, 2, size=shape).astype(np.float64)
    y.flat[::3] = rng.uniform(size=y.flat[::3].shape)
    return [z, y]


def _data_logits_01(rng, shape):
    return [rng.normal(scale=2.5, size=shape), rng.integers(0, 2, size=shape).astype(np.float64)]


def _data_probs_binary(rng, shape):
    return [rng.uniform(0.02, 0.98, size=shape), rng.uniform(size=shape)]


def _data_hinge_pm1(rng, shape):
    x = rng.normal(size=shape)
    y = np.where(rng.uniform(size=shape) < 0.5, -1.0, 1.0)
    x.flat[0], y.flat[0] = 1.0, 1.0  # exactly at the kink: the clamp passes the gradient
    x.flat[1], y.flat[1] = -1.0, -1.0
    return [x, y]


def _data_hinge_01(rng, shape):
    x = rng.normal(size=shape)
    y = rng.integers(0, 2, size=shape).astype(np.float64)
    x.flat[0], y.flat[0] = 1.0, 1.0
    x.flat[1], y.flat[1] = -1.0, 0.0
    return [x, y]


def _data_hinge_real(rng, shape):
    return [rng.normal(size=shape), rng.uniform(-1.5, 1.5, size=shape)]  # no 0/1 mapping


def _data_two_logits(rng, shape):
    return [rng.normal(scale=3.0, size=shape), rng.normal(scale=3.0, size=shape)]


def _data_one_logit(rng, shape):
    return [rng.normal(scale=3.0, size=shape)]


def _data_onehot_pred(rng, shape, dim):
    return [rng.normal(size=shape), _onehot_or_soft(rng, shape, dim, soft=False)]


def _data_soft_pred(rng, shape, dim):
    return [rng.normal(size=shape), _onehot_or_soft(rng, shape, dim, soft=True)]


def _data_prob_rows(rng, shape, dim):
    p = rng.uniform(0.05, 1.0, size=shape)  # not normalised: Keras normalises
    return [p, _onehot_or_soft(rng, shape, dim, soft=True)]


def _data_kl_rows(rng, shape, dim):
    p = _onehot_or_soft(rng, shape, dim, soft=True) * 0.9 + 0.1 / shape[dim]
    return [p, _onehot_or_soft(rng, shape, dim, soft=True)]


def _data_two_row_logits(rng, shape, dim):
    return [rng.normal(scale=2.0, size=shape), rng.normal(scale=2.0, size=shape)]


def _data_logits_labels(rng, shape, dim):
    z = rng.normal(scale=2.0, size=shape)
    lshape = shape[:dim] + shape[dim + 1:] if dim != -1 else shape[:-1]
    return [z, rng.integers(0, shape[dim], size=lshape)]


def _data_logits_soft(rng, shape, dim):
    return [rng.normal(scale=2.0, size=shape), _onehot_or_soft(rng, shape, dim, soft=True)]


def _data_vae(rng, shape, dim):
    return [rng.normal(size=shape), rng.normal(size=shape)]


# (id, loss name, options, per-sample torch function (or a factory of dim), data maker, number of
# differentiable inputs, family)
EW_FORMULAS = [
    ("pseudo_huber_d1", "pseudo_huber", {}, _pseudo_huber(1.0), _data_regression, 1),
    ("pseudo_huber_d07", "pseudo_huber", {"delta": 0.7}, _pseudo_huber(0.7), _data_regression, 1),
    ("log_cosh", "log_cosh", {}, lambda x, y: torch.log(torch.cosh(x - y)), _data_regression, 1),
    ("msle", "msle", {}, _msle(1e-7), _data_positive, 1),
    ("msle_eps", "msle", {"eps": 0.1}, _msle(0.1), _data_positive, 1),
    ("mape", "mape", {}, _mape(1e-7), _data_mape, 1),
    ("bce_probs", "binary_cross_entropy", {}, _bce_probs(1e-7), _data_probs_binary, 1),
    ("bce_probs_eps", "binary_cross_entropy", {"eps": 0.05}, _bce_probs(0.05), _data_probs_binary, 1),
    ("hinge_pm1", "hinge", {}, _hinge, _data_hinge_pm1, 1),
    ("hinge_01", "hinge", {}, _hinge, _data_hinge_01, 1),
    ("hinge_real", "hinge", {}, _hinge, _data_hinge_real, 1),
    ("squared_hinge_pm1", "squared_hinge", {}, _squared_hinge, _data_hinge_pm1, 1),
    ("squared_hinge_01", "squared_hinge", {}, _squared_hinge, _data_hinge_01, 1),
    ("gan_discriminator", "gan_discriminator_loss", {}, _gan_disc, _data_two_logits, 2),
    ("gan_generator", "gan_generator_loss", {}, _gan_gen(False), _data_one_logit, 1),
    ("gan_generator_sat", "gan_generator_loss", {"saturating": True}, _gan_gen(True), _data_one_logit, 1),
]
for _alpha in (0.25, None, -1.0, 0.8):
    for _gamma in (0.0, 0.5, 2.0):
        EW_FORMULAS.append((
            f"sigmoid_focal_a{_alpha}_g{_gamma}", "sigmoid_focal_loss", {"alpha": _alpha, "gamma": _gamma},
            _focal_torchvision(_alpha, _gamma),
            _data_logits_binary if _alpha == 0.25 else _data_logits_01, 1,
        ))

ROW_FORMULAS = [
    ("categorical_hinge_onehot", "categorical_hinge", {}, _categorical_hinge, _data_onehot_pred, 1),
    ("categorical_hinge_soft", "categorical_hinge", {}, _categorical_hinge, _data_soft_pred, 1),
    ("cce", "categorical_cross_entropy", {}, lambda d: _cce_probs(1e-7, 0.0, d), _data_prob_rows, 1),
    (
        "cce_ls", "categorical_cross_entropy", {"label_smoothing": 0.1, "eps": 1e-3},
        lambda d: _cce_probs(1e-3, 0.1, d), _data_prob_rows, 1,
    ),
    ("kl_divergence", "kl_divergence", {}, lambda d: _kl_probs(1e-7, d), _data_kl_rows, 1),
    ("kl_divergence_eps", "kl_divergence", {"eps": 0.02}, lambda d: _kl_probs(0.02, d), _data_kl_rows, 1),
    ("js_half", "js_divergence", {}, lambda d: _jsd(0.5, d), _data_two_row_logits, 2),
    ("js_beta03", "js_divergence", {"beta": 0.3}, lambda d: _jsd(0.3, d), _data_two_row_logits, 2),
    ("vae", "vae_kl_divergence", {}, _vae, _data_vae, 2),
]
for _alpha in (0.25, None):
    for _gamma in (0.0, 0.5, 2.0):
        for _maker in (_data_logits_labels, _data_logits_soft):
            ROW_FORMULAS.append((
                f"softmax_focal_a{_alpha}_g{_gamma}_{_maker.__name__[12:]}", "softmax_focal_loss",
                {"alpha": _alpha, "gamma": _gamma},
                (lambda a, g: lambda d: _softmax_focal(a, g, d))(_alpha, _gamma), _maker, 1,
            ))


def _per_sample_ref(per):
    def ref(*ts, reduction):
        return _reduce(per(*ts), reduction)

    return ref


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(7,), (2, 3, 4)])
@pytest.mark.parametrize("case", EW_FORMULAS, ids=[c[0] for c in EW_FORMULAS])
def test_elementwise_formulas(case, shape, reduction, dtype):
    _, name, opts, per, maker, ngrad = case
    arrays = [a.astype(dtype) for a in maker(np.random.default_rng(13), shape)]
    _check(name, arrays, _per_sample_ref(per), reduction, ngrad=ngrad, **opts)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("layout", ROW_LAYOUTS)
@pytest.mark.parametrize("case", ROW_FORMULAS, ids=[c[0] for c in ROW_FORMULAS])
def test_rowwise_formulas(case, layout, reduction, dtype):
    _, name, opts, per_factory, maker, ngrad = case
    shape, axis = layout
    dim = 1 if axis == 1 else -1
    data = maker(np.random.default_rng(14), shape, dim)
    arrays = [a.astype(dtype) if a.dtype.kind == "f" else a for a in data]
    _check(name, arrays, _per_sample_ref(per_factory(dim)), reduction, ngrad=ngrad, axis=axis, **opts)


def test_categorical_hinge_ties_share_the_gradient():
    # Two equal maxima of (1 - y) * pred: torch.amax (and Keras) split the gradient evenly.
    x = np.array([[2.0, 0.5, 2.0, -1.0], [0.3, 0.3, 0.1, 0.3]])
    y = np.array([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    _check("categorical_hinge", [x, y], _per_sample_ref(_categorical_hinge(-1)), "sum")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", EW_SHAPES)
def test_root_mean_squared_error(shape, weighted, reduction, dtype):
    rng = np.random.default_rng(15)
    x, y = (rng.normal(size=shape).astype(dtype) for _ in range(2))
    w = rng.uniform(0.0, 2.0, size=shape) if weighted else None

    def ref(a, b, reduction):
        s = ((a - b) ** 2 * (1.0 if w is None else _tensor(w))).sum()
        return torch.sqrt(s / a.numel()) if reduction == "mean" else torch.sqrt(s)

    res = fl.rmse(x, y, reduction=reduction, sample_weight=w)
    ts = [_tensor(x, True), _tensor(y)]
    r = ref(*ts, reduction=reduction)
    r.backward()
    _close(res.loss, r.detach().numpy(), RTOL[dtype], "rmse loss")
    _close(res.grad, ts[0].grad.numpy(), RTOL[dtype], "rmse grad")
    assert res.grad.dtype == dtype


# --- sample weights -----------------------------------------------------------------------

WEIGHTED = [
    ("mse", {}, lambda a, b: F.mse_loss(a, b, reduction="none"), _data_regression, 1),
    ("mae", {}, lambda a, b: F.l1_loss(a, b, reduction="none"), _data_regression, 1),
    (
        "huber", {"delta": 0.5}, lambda a, b: F.huber_loss(a, b, delta=0.5, reduction="none"),
        _data_regression, 1,
    ),
    (
        "sigmoid_binary_cross_entropy", {"pos_weight": 3.0},
        lambda a, b: F.binary_cross_entropy_with_logits(
            a, b, pos_weight=torch.tensor(3.0, dtype=torch.float64), reduction="none"
        ),
        _data_logits_binary, 1,
    ),
    ("gan_discriminator_loss", {}, _gan_disc, _data_two_logits, 2),
    ("sigmoid_focal_loss", {}, _focal_torchvision(0.25, 2.0), _data_logits_binary, 1),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", WEIGHTED, ids=[c[0] for c in WEIGHTED])
@pytest.mark.parametrize("wshape", ["full", "broadcast"])
def test_sample_weight_elementwise(wshape, case, reduction, dtype):
    name, opts, per, maker, ngrad = case
    shape = (4, 5)
    rng = np.random.default_rng(16)
    arrays = [a.astype(dtype) for a in maker(rng, shape)]
    # any real weights: negative and zero included; "broadcast" has shape (1, 5)
    w = rng.uniform(-1.0, 2.0, size=shape if wshape == "full" else (1, shape[1]))
    w.flat[0] = 0.0
    # torch broadcasts the (1, 5) weights against the (4, 5) per-element losses itself.
    _check(name, arrays, lambda *ts, reduction: per(*ts), reduction, ngrad=ngrad, sample_weight=w, **opts)


ROW_WEIGHTED = [
    ("softmax_cross_entropy", {"label_smoothing": 0.1},
     lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1, reduction="none"), _data_logits_soft, 1),
    ("softmax_kl_divergence", {},
     lambda z, q: F.kl_div(F.log_softmax(z, dim=1), q, reduction="none").sum(1), _data_logits_soft, 1),
    ("triplet_margin_loss", {"margin": 2.0},
     lambda a, p, n: F.triplet_margin_loss(a, p, n, margin=2.0, reduction="none"), None, 3),
    ("js_divergence", {}, _jsd(0.5, 1), _data_two_row_logits, 2),
    ("vae_kl_divergence", {}, _vae(1), _data_vae, 2),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", ROW_WEIGHTED, ids=[c[0] for c in ROW_WEIGHTED])
def test_sample_weight_rowwise(case, reduction, dtype):
    name, opts, per, maker, ngrad = case
    rng = np.random.default_rng(17)
    shape = (6, 4)
    if maker is None:
        arrays = [rng.normal(size=shape).astype(dtype) for _ in range(3)]
    else:
        arrays = [a.astype(dtype) if a.dtype.kind == "f" else a for a in maker(rng, shape, 1)]
    w = np.array([1.5, -0.5, 0.0, 2.0, 0.25, 1.0])
    _check(name, arrays, lambda *ts, reduction: per(*ts), reduction, ngrad=ngrad, sample_weight=w, **opts)
