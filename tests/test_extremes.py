"""Contract section 4 (numerics) and the extreme-input rules of section 3, for every loss
(docs/contract.md).

Every value and gradient is compared with a reference computed in mpmath at 50 digits from
the formulas of contract section 5, written out here independently of fastloss, in float64
and in float32 (the reference is computed from the float32 values themselves). The target
is contract section 4's: 1e-13 relative in float64, 1e-6 in float32, "or the same error in
absolute terms near zero" (used only where a comment says why; everywhere else the check is
relative, with only the dtype's smallest normal number as absolute slack, for results that
underflow).

Covered: logits of +-1e3 and +-1e4 (and +-inf where the value is finite) for the sigmoid and
softmax families, saturated focal losses with gamma in [0, 1), masked (-inf) logits, rows
that are entirely -inf, probabilities exactly 0 and 1, zero target probabilities, tiny and
huge residuals, tiny deltas, the VAE at logvar = +-50, every label ignored, empty inputs,
and NaN confined to its own sample.
"""

import math
import warnings

import numpy as np
import pytest
from conftest import NUMBA_NARROW
from mpmath import mp

import fastloss as fl

pytestmark = pytest.mark.usefixtures("cpu_backend")
# Numba compiles every kernel again for float32: in the core tier it runs float64 inputs,
# and its float32 runs are the slow tier's "numba-narrow" backend (conftest.py).
NUMBA_NARROW_FLOATS_APART = True

DTYPES = (np.float64, np.float32)
F64 = (np.float64,)
F32 = (np.float32,)
REDUCTIONS = ("none", "sum", "mean")
RTOL = {np.dtype(np.float64): 1e-13, np.dtype(np.float32): 1e-6}
INFO = fl.losses()


@pytest.fixture(autouse=True)
def _fifty_digits():
    with mp.workdps(50):
        yield


_backend_dtypes = {"cython": None, "numba": (np.float64,), NUMBA_NARROW: (np.float32,)}
_dtypes_here = None  # what check() runs on this test's backend (None: every dtype asked for)


@pytest.fixture(autouse=True)
def _dtypes_of_the_backend(request, cpu_backend):
    global _dtypes_here
    _dtypes_here = _backend_dtypes[cpu_backend]
    param = request.node.callspec.params.get("dtype")
    if param is not None and _dtypes_here is not None and np.dtype(param) not in map(np.dtype, _dtypes_here):
        pytest.skip(f"{np.dtype(param)} runs on the {cpu_backend!r} backend parameter instead")
    yield
    _dtypes_here = None


# --- mpmath references (contract section 5), per element or per row ---------------------


def M(v):
    """The exact value of a float (float32 values included) as an mpf."""
    return mp.mpf(float(v))


ZERO = mp.mpf(0)


def _sign(v):
    return mp.mpf(mp.sign(v))


def _xlogy(a, b):
    return ZERO if a == 0 else a * mp.log(b)


def _xdivy(a, b):
    return ZERO if a == 0 else a / b


def _softplus(v):
    return v + mp.log1p(mp.exp(-v)) if v > 0 else mp.log1p(mp.exp(v))


def _sigmoid(v):
    return 1 / (1 + mp.exp(-v))


def _clip(v, lo, hi):
    return min(max(v, lo), hi)


def _upper(eps):
    # The clip bound 1 - eps as the float64 number it is in floating point (Keras forms it
    # the same way). fastloss forms it from the float64 option for float32 inputs too.
    return M(1.0 - eps)


def ref_mse(x, y, o):
    r = x - y
    return r * r, 2 * r


def ref_mae(x, y, o):
    r = x - y
    return abs(r), _sign(r)


def ref_msle(x, y, o):
    eps = M(o["eps"])
    xc = max(x, eps)
    d = mp.log1p(xc) - mp.log1p(max(y, eps))
    return d * d, (2 * d / (1 + xc) if x >= eps else ZERO)


def ref_mape(x, y, o):
    s = 100 / max(abs(y), M(o["eps"]))
    r = x - y
    return s * abs(r), s * _sign(r)


def ref_huber(x, y, o):
    d = M(o["delta"])
    r = x - y
    if abs(r) <= d:
        return r * r / 2, r
    return d * (abs(r) - d / 2), d * _sign(r)


def _digits_for(t):
    """Working digits that keep 50 significant ones in 1 + t^2 - 1 (or cosh(t) - 1)."""
    return 50 + (int(-2 * mp.log10(abs(t))) + 5 if 0 < abs(t) < 1 else 0)


def ref_pseudo_huber(x, y, o):
    d = M(o["delta"])
    r = x - y
    if d == 0:
        return ZERO, ZERO
    with mp.workdps(_digits_for(r / d)):
        root = mp.sqrt(1 + (r / d) ** 2)
        return +(d * d * (root - 1)), +(r / root)


def ref_log_cosh(x, y, o):
    r = x - y
    with mp.workdps(_digits_for(r)):
        return +mp.log(mp.cosh(r)), +mp.tanh(r)


def ref_poisson(x, y, o):
    if o["log_input"]:
        e = mp.exp(x)
        return e - y * x, e - y
    s = x + M(o["eps"])
    return x - _xlogy(y, s), 1 - _xdivy(y, s)


def ref_bce(x, y, o):
    lo, hi = M(o["eps"]), _upper(o["eps"])
    q = _clip(x, lo, hi)
    loss = -(_xlogy(y, q) + _xlogy(1 - y, 1 - q))
    grad = _xdivy(1 - y, 1 - q) - _xdivy(y, q) if lo <= x <= hi else ZERO
    return loss, grad


def ref_sigmoid_bce(x, y, o):
    ls = M(o["label_smoothing"])
    t = y * (1 - ls) + ls / 2
    a = o["_pos_weight"] * t
    b = 1 - t
    loss = (a * _softplus(-x) if a != 0 else ZERO) + (b * _softplus(x) if b != 0 else ZERO)
    return loss, b * _sigmoid(x) - a * _sigmoid(-x)


def _hinge_margin(x, y, o):
    t = 2 * y - 1 if o["_map01"] else y
    return 1 - t * x, t


def ref_hinge(x, y, o):
    m, t = _hinge_margin(x, y, o)
    return (m, -t) if m >= 0 else (ZERO, ZERO)  # the clamp passes its gradient at 0


def ref_squared_hinge(x, y, o):
    m, t = _hinge_margin(x, y, o)
    return (m * m, -2 * m * t) if m >= 0 else (ZERO, ZERO)


def ref_sigmoid_focal(x, y, o):
    alpha, g = o["alpha"], M(o["gamma"])
    bce = (y * _softplus(-x) if y != 0 else ZERO) + ((1 - y) * _softplus(x) if y != 1 else ZERO)
    dbce = (1 - y) * _sigmoid(x) - y * _sigmoid(-x)
    q = y * _sigmoid(-x) + (1 - y) * _sigmoid(x)  # 1 - p_t
    dq = (1 - 2 * y) * _sigmoid(x) * _sigmoid(-x)
    at = alpha * y + (1 - alpha) * (1 - y) if alpha is not None and alpha >= 0 else 1
    grad = q**g * dbce + (g * q ** (g - 1) * dq * bce if g != 0 else ZERO)
    return at * q**g * bce, at * grad


def ref_gan_discriminator(x, y, o):
    return _softplus(-x) + _softplus(y), -_sigmoid(-x), _sigmoid(y)


def ref_gan_generator(x, y, o):
    if o["saturating"]:
        return -_softplus(x), -_sigmoid(x)
    return _softplus(-x), -_sigmoid(-x)


def _log_softmax(z):
    """log softmax of a row, accurate for any spread of the logits: with m the maximum,
    log p_j = (z_j - m) - log1p(sum over the other entries of exp(z_i - m))."""
    m = max(z)
    k = z.index(m)
    rest = mp.fsum(mp.exp(v - m) for i, v in enumerate(z) if i != k)
    lse = mp.log1p(rest)
    return [(v - m) - lse for v in z]


def _one_minus_p(p):
    """1 - p_j as the sum of the other probabilities (no cancellation)."""
    return [mp.fsum(pi for i, pi in enumerate(p) if i != j) for j in range(len(p))]


def ref_softmax_ce(rows, o):
    z, y = rows
    ls = M(o["label_smoothing"])
    t = [v * (1 - ls) + ls / len(z) for v in y]
    lp = _log_softmax(z)
    p = [mp.exp(v) for v in lp]
    total = mp.fsum(t)
    loss = -mp.fsum(tj * lj for tj, lj in zip(t, lp) if tj != 0)
    return loss, [[total * pj - tj for pj, tj in zip(p, t)]]


def ref_sparse_ce(rows, o):
    z, label = rows
    c = len(z)
    if o["ignore_index"] is not None and label == o["ignore_index"]:
        return ZERO, [[ZERO] * c]
    cw = [M(v) for v in o["class_weight"]] if o["class_weight"] is not None else [mp.mpf(1)] * c
    ls = M(o["label_smoothing"])
    k = ls / c
    lp = _log_softmax(z)
    p = [mp.exp(v) for v in lp]
    wy = cw[label] * (1 - ls)
    loss = -wy * lp[label] + (k * mp.fsum(-w * v for w, v in zip(cw, lp)) if ls != 0 else ZERO)
    a = wy + k * mp.fsum(cw)
    grad = [a * p[j] - k * cw[j] - (wy if j == label else 0) for j in range(c)]
    return loss, [grad]


def ref_categorical_ce(rows, o):
    p, y = rows
    c = len(p)
    lo, hi = M(o["eps"]), _upper(o["eps"])
    ls = M(o["label_smoothing"])
    t = [v * (1 - ls) + ls / c for v in y]
    s = mp.fsum(p)
    r = [v / s for v in p]
    q = [_clip(v, lo, hi) for v in r]
    loss = -mp.fsum(_xlogy(tj, qj) for tj, qj in zip(t, q))
    d = [-_xdivy(tj, qj) if lo <= rj <= hi else ZERO for tj, qj, rj in zip(t, q, r)]  # dloss / dr_j
    # r_j = p_j / s: dr_j / dp_k = [j = k] / s - p_j / s^2
    grad = [d[k] / s - mp.fsum(dj * pj for dj, pj in zip(d, p)) / s**2 for k in range(c)]
    return loss, [grad]


def ref_kl(rows, o):
    p, y = rows
    eps = M(o["eps"])
    q = [_clip(v, eps, 1) for v in y]
    r = [_clip(v, eps, 1) for v in p]
    loss = mp.fsum(qj * (mp.log(qj) - mp.log(rj)) for qj, rj in zip(q, r) if qj != 0)
    grad = [-qj / rj if eps <= pj <= 1 else ZERO for qj, rj, pj in zip(q, r, p)]
    return loss, [grad]


def ref_softmax_kl(rows, o):
    z, y = rows
    lp = _log_softmax(z)
    p = [mp.exp(v) for v in lp]
    if o["log_target"]:
        q, log_q = [mp.exp(v) for v in y], list(y)
    else:
        q, log_q = list(y), [mp.log(v) if v != 0 else ZERO for v in y]
    loss = mp.fsum(qj * (lq - lj) for qj, lq, lj in zip(q, log_q, lp) if qj != 0)
    total = mp.fsum(q)
    return loss, [[total * pj - qj for pj, qj in zip(p, q)]]


def ref_js(rows, o):
    zp, zq = rows
    b = M(o["beta"])
    lp, lq = _log_softmax(zp), _log_softmax(zq)
    pp, qq = [mp.exp(v) for v in lp], [mp.exp(v) for v in lq]
    lm = [mp.log(b * pj + (1 - b) * qj) for pj, qj in zip(pp, qq)]
    a = [b * (u - w) if pj != 0 else ZERO for u, w, pj in zip(lp, lm, pp)]
    c = [(1 - b) * (u - w) if qj != 0 else ZERO for u, w, qj in zip(lq, lm, qq)]
    sa = mp.fsum(pj * aj for pj, aj in zip(pp, a))
    sc = mp.fsum(qj * cj for qj, cj in zip(qq, c))
    # d/dP_j of the loss is a_j (the M terms cancel); through the softmax: P_k (a_k - sum P a).
    return sa + sc, [[pk * (ak - sa) for pk, ak in zip(pp, a)], [qk * (ck - sc) for qk, ck in zip(qq, c)]]


def ref_softmax_focal(rows, o):
    z, y = rows
    if isinstance(y, int):
        y = [mp.mpf(1) if j == y else ZERO for j in range(len(z))]
    alpha = mp.mpf(1) if o["alpha"] is None else M(o["alpha"])
    g = M(o["gamma"])
    lp = _log_softmax(z)
    p = [mp.exp(v) for v in lp]
    u = _one_minus_p(p)
    loss = -alpha * mp.fsum(yj * uj**g * lj for yj, uj, lj in zip(y, u, lp) if yj != 0)

    def big_g(lj, pj, uj):  # p_j d/dp_j [u^gamma log p], with its limit where u = 0
        if uj == 0:
            return mp.mpf(1) if g == 0 else ZERO
        return uj**g - g * pj * uj ** (g - 1) * lj

    gg = [big_g(lj, pj, uj) if yj != 0 else ZERO for yj, lj, pj, uj in zip(y, lp, p, u)]
    s = mp.fsum(yj * gj for yj, gj in zip(y, gg))
    return loss, [[-alpha * (yk * gk - pk * s) for yk, gk, pk in zip(y, gg, p)]]


def ref_categorical_hinge(rows, o):
    x, y = rows
    pos = mp.fsum(yj * xj for yj, xj in zip(y, x))
    u = [(1 - yj) * xj for yj, xj in zip(y, x)]
    neg = max(u)
    ties = sum(1 for v in u if v == neg)
    inner = 1 + neg - pos
    if inner < 0:
        return ZERO, [[ZERO] * len(x)]
    return inner, [[-yj + ((1 - yj) / ties if uj == neg else 0) for yj, uj in zip(y, u)]]


def _distance(a, b, o):
    if o["squared"]:
        t = [u - v for u, v in zip(a, b)]
        return mp.fsum(v * v for v in t), [2 * v for v in t]
    p, eps = M(o["p"]), M(o["eps"])
    t = [u - v + eps for u, v in zip(a, b)]
    d = mp.fsum(abs(v) ** p for v in t) ** (1 / p)
    if d == 0:
        return d, [ZERO] * len(t)
    return d, [_sign(v) * abs(v) ** (p - 1) / d ** (p - 1) for v in t]


def ref_triplet(rows, o):
    a, pos, neg = rows
    dp, gp = _distance(a, pos, o)
    dn, gn = _distance(a, neg, o)
    inner = dp - dn + M(o["margin"])
    act = 1 if inner >= 0 else 0  # the clamp passes its gradient at 0
    return max(inner, ZERO), [
        [act * (u - v) for u, v in zip(gp, gn)], [-act * u for u in gp], [act * v for v in gn],
    ]


def ref_vae(rows, o):
    mu, lv = rows
    loss = -mp.fsum(1 + v - m**2 - mp.exp(v) for m, v in zip(mu, lv)) / 2
    return loss, [list(mu), [-(1 - mp.exp(v)) / 2 for v in lv]]


ELEMENTWISE_REFS = {
    "mean_squared_error": ref_mse,
    "mean_absolute_error": ref_mae,
    "mean_squared_logarithmic_error": ref_msle,
    "mean_absolute_percentage_error": ref_mape,
    "huber": ref_huber,
    "pseudo_huber": ref_pseudo_huber,
    "log_cosh": ref_log_cosh,
    "poisson": ref_poisson,
    "binary_cross_entropy": ref_bce,
    "sigmoid_binary_cross_entropy": ref_sigmoid_bce,
    "hinge": ref_hinge,
    "squared_hinge": ref_squared_hinge,
    "sigmoid_focal_loss": ref_sigmoid_focal,
    "gan_discriminator_loss": ref_gan_discriminator,
    "gan_generator_loss": ref_gan_generator,
}
ROW_REFS = {
    "categorical_hinge": ref_categorical_hinge,
    "categorical_cross_entropy": ref_categorical_ce,
    "softmax_cross_entropy": ref_softmax_ce,
    "sparse_softmax_cross_entropy": ref_sparse_ce,
    "kl_divergence": ref_kl,
    "softmax_kl_divergence": ref_softmax_kl,
    "js_divergence": ref_js,
    "softmax_focal_loss": ref_softmax_focal,
    "triplet_margin_loss": ref_triplet,
    "vae_kl_divergence": ref_vae,
}


def reference(name, arrays, opts):
    """(per-sample losses, gradients of their sum, divisor of "mean") as mpf object arrays.
    Class-axis losses take the class axis last."""
    info = INFO[name]
    o = {**info.options, **opts}
    ngrad = len(info.differentiable)
    x = arrays[0]
    if info.family == "elementwise":
        fn = ELEMENTWISE_REFS[name]
        pos_weight = None
        if name == "sigmoid_binary_cross_entropy":
            pw = 1.0 if o["pos_weight"] is None else o["pos_weight"]
            pos_weight = np.broadcast_to(np.asarray(pw, dtype=np.float64), x.shape)
        if name in ("hinge", "squared_hinge"):
            o["_map01"] = bool(np.all((arrays[1] == 0) | (arrays[1] == 1)))
        losses = np.empty(x.shape, dtype=object)
        grads = [np.empty(x.shape, dtype=object) for _ in range(ngrad)]
        for idx in np.ndindex(x.shape):
            if pos_weight is not None:
                o["_pos_weight"] = M(pos_weight[idx])
            vals = [M(a[idx]) for a in arrays] + [None]
            out = fn(vals[0], vals[1], o)
            losses[idx] = mp.mpf(out[0])
            for k in range(ngrad):
                grads[k][idx] = mp.mpf(out[1 + k])
        return losses, grads, x.size
    fn = ROW_REFS[name]
    lead = x.shape[:-1]
    losses = np.empty(lead, dtype=object)
    grads = [np.empty(x.shape, dtype=object) for _ in range(ngrad)]
    for idx in np.ndindex(lead):
        rows = [int(a[idx]) if a.dtype.kind in "iu" else [M(v) for v in a[idx]] for a in arrays]
        loss, g = fn(rows, o)
        losses[idx] = mp.mpf(loss)
        for k in range(ngrad):
            grads[k][idx] = [mp.mpf(v) for v in g[k]]
    denominator = losses.size
    if name == "sparse_softmax_cross_entropy":
        labels = arrays[1]
        if o["ignore_index"] is not None:
            labels = labels[labels != o["ignore_index"]]
        denominator = labels.size if o["class_weight"] is None else mp.fsum(
            M(o["class_weight"][k]) for k in labels.ravel()
        )
    return losses, grads, denominator


# --- comparison ---------------------------------------------------------------------------


def assert_mp_close(got, ref, dtype, what, atol=None):
    """Every element of ``got`` within RTOL * |ref| + atol of the mpf ``ref`` (atol: the
    dtype's smallest normal number unless given, per element or scalar). NaN and inf
    references must be matched exactly; references beyond the dtype's range must be inf."""
    dtype = np.dtype(dtype)
    rtol, tiny, big = RTOL[dtype], np.finfo(dtype).tiny, np.finfo(dtype).max
    got = np.asarray(got)
    ref = np.asarray(ref, dtype=object)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    atol = np.broadcast_to(np.asarray(tiny if atol is None else atol, dtype=object), ref.shape)
    bad = []
    for idx in np.ndindex(ref.shape):
        g, r = float(got[idx]), ref[idx]
        if mp.isnan(r):
            ok = math.isnan(g)
        elif mp.isinf(r) or abs(r) > big:
            ok = g == (math.inf if r > 0 else -math.inf)
        else:
            ok = math.isfinite(g) and abs(mp.mpf(g) - r) <= rtol * abs(r) + atol[idx]
        if not ok:
            bad.append(f"at {idx}: got {g!r}, expected {mp.nstr(r, 17)}")
    assert not bad, f"{what} [{dtype}]: {len(bad)} wrong: " + "; ".join(bad[:6])


def _row_scale_atol(ref, rtol, floor=1.0):
    """The absolute slack contract section 4 allows "near zero": rtol times the larger of
    the row's largest |entry| and ``floor``, the gradient's natural scale (1 for softmax
    gradients p - t and unit-norm distance gradients, times the "mean" factor). Such
    gradients are differences (p - t, a_k - sum_j P_j a_j, g_pos - g_neg) that cancel where
    their terms nearly agree."""
    out = np.empty(ref.shape, dtype=object)
    for idx in np.ndindex(ref.shape[:-1]):
        row = ref[idx]
        out[idx] = [rtol * max(max(abs(v) for v in row), floor) + mp.mpf(1e-300)] * len(row)
    return out


def check(name, arrays, *, dtypes=DTYPES, reductions=REDUCTIONS, loss_abs=0.0, grad_rows=False, **opts):
    """fastloss ``name`` against the mpmath reference, value and every gradient, for each
    dtype and reduction, with warnings turned into errors.

    loss_abs: absolute slack of each sample's loss, in units of RTOL (0: relative only).
    grad_rows: allow each gradient row the absolute slack of :func:`_row_scale_atol`.
    """
    if _dtypes_here is not None:
        dtypes = [d for d in dtypes if np.dtype(d) in map(np.dtype, _dtypes_here)]
        if not dtypes:
            pytest.skip("these inputs' dtype runs on another backend parameter (conftest.NUMBA_NARROW)")
    results = {}
    for dtype in dtypes:
        dt = np.dtype(dtype)
        rtol = RTOL[dt]
        cast = [np.asarray(a) for a in arrays]
        cast = [a.astype(dt) if a.dtype.kind == "f" else a for a in cast]
        ref_loss, ref_grads, denominator = reference(name, cast, opts)
        for reduction in reductions:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                res = fl.compute(name, *cast, reduction=reduction, **opts)
            results[dt, reduction] = res
            f = 1 / mp.mpf(denominator) if reduction == "mean" else mp.mpf(1)
            what = f"{name} {opts} {reduction}"
            assert res.loss.dtype == dt, f"{what}: loss dtype {res.loss.dtype}"
            if reduction == "none":
                slack = rtol * loss_abs + np.finfo(dt).tiny
                assert_mp_close(res.loss, ref_loss, dt, what + " loss", atol=slack)
            else:
                total = mp.fsum(ref_loss.ravel())
                mag = mp.fsum(abs(v) for v in ref_loss.ravel()) + loss_abs * ref_loss.size
                slack = rtol * mag * f + np.finfo(dt).tiny
                assert_mp_close(res.loss, total * f, dt, what + " loss", atol=slack)
            grads = res.grad if len(ref_grads) > 1 else (res.grad,)
            assert len(grads) == len(ref_grads)
            for k, (g, rg) in enumerate(zip(grads, ref_grads)):
                assert g.shape == cast[k].shape and g.dtype == dt, f"{what}: gradient {k} shape/dtype"
                rg = rg * f
                atol = _row_scale_atol(rg, rtol, floor=f) if grad_rows else None
                assert_mp_close(g, rg, dt, f"{what} grad[{k}]", atol=atol)
    return results


# Logits at the extremes contract section 4 names (|z| up to 1e4), saturation (+-30) and near 0.
Z = np.array([1e4, -1e4, 1e3, -1e3, 30.0, -30.0, 0.0, 1e-3, -1e-3, 0.75])
Y3 = np.array([0.0, 1.0, 0.3])
ZG, YG = np.meshgrid(Z, Y3)  # (3, 10): every logit with every kind of target


# --- the sigmoid family -------------------------------------------------------------------


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("pos_weight", [None, 2.5, "array"])
def test_sigmoid_bce_extreme_logits(pos_weight, label_smoothing):
    pw = np.linspace(0.5, 4.0, Z.size) if pos_weight == "array" else pos_weight
    check("sigmoid_binary_cross_entropy", [ZG, YG], pos_weight=pw, label_smoothing=label_smoothing)


@pytest.mark.parametrize("pos_weight", [None, 3.0])
def test_sigmoid_bce_infinite_logits_with_matching_targets(pos_weight):
    # The positive term of an infinite logit has weight 0: loss 0, gradient 0, never NaN.
    z = np.array([np.inf, -np.inf, np.inf, -np.inf])
    y = np.array([1.0, 0.0, 0.0, 1.0])  # the last two are infinitely wrong: loss inf, gradient finite
    res = check("sigmoid_binary_cross_entropy", [z, y], pos_weight=pos_weight, reductions=("none",))
    for r in res.values():
        assert np.all(r.grad == [0.0, 0.0, 1.0, -(pos_weight or 1.0)])


@pytest.mark.parametrize("alpha", [0.25, None])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_sigmoid_focal_extreme_logits(gamma, alpha):
    res = check("sigmoid_focal_loss", [ZG, YG], alpha=alpha, gamma=gamma)
    for r in res.values():
        assert np.all(np.isfinite(r.grad))


def test_gan_discriminator_extreme_logits():
    check("gan_discriminator_loss", [Z, Z[::-1].copy()])


@pytest.mark.parametrize("saturating", [False, True])
def test_gan_generator_extreme_logits(saturating):
    check("gan_generator_loss", [Z], saturating=saturating)


# --- the softmax family -------------------------------------------------------------------

ZROWS = np.array([
    [1e4, -1e4, 0.0],
    [-1e3, 1e3, 999.0],
    [1e3, 1e3, -1e3],
    [0.5, -0.25, 2.0],
    [30.0, 0.0, -30.0],
    [-1e4, -1e4, -1e4],
])
LABELS = np.array([0, 2, 1, 1, 2, 0])
ONEHOT = np.eye(3)[LABELS]
SOFT = np.array([
    [0.2, 0.3, 0.5],
    [0.0, 0.5, 0.5],
    [0.5, 0.5, 0.0],
    [1.0, 0.0, 0.0],
    [0.1, 0.1, 0.8],
    [0.25, 0.0, 0.75],
])
# Softmax losses: (m - z_y) + log(d) cannot resolve log1p(s) for s below the ulp of d ~ 1,
# so a loss of 1e-20 comes out as 0. Contract section 4 allows the same error in absolute
# terms near zero, in units of the loss's natural scale (1 nat): loss_abs=1. Gradients
# p - t cancel in the same way: grad_rows=True allows RTOL times the row's largest entry.
SOFTMAX = {"loss_abs": 1.0, "grad_rows": True}


@pytest.mark.parametrize("target", ["onehot", "soft"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_softmax_cross_entropy_extreme_logits(target, label_smoothing):
    y = ONEHOT if target == "onehot" else SOFT
    check("softmax_cross_entropy", [ZROWS, y], label_smoothing=label_smoothing, **SOFTMAX)


@pytest.mark.parametrize(
    "opts",
    [
        {},
        {"class_weight": np.array([0.5, 2.0, 1.25])},
        {"label_smoothing": 0.1},
        {"class_weight": np.array([0.5, 2.0, 1.25]), "label_smoothing": 0.2, "ignore_index": 1},
    ],
    ids=["plain", "class_weight", "smoothing", "all"],
)
@pytest.mark.parametrize("label_dtype", [np.int64, np.int32])
def test_sparse_cross_entropy_extreme_logits(opts, label_dtype):
    check("sparse_softmax_cross_entropy", [ZROWS, LABELS.astype(label_dtype)], **opts, **SOFTMAX)


def test_sparse_cross_entropy_no_cancellation_at_large_logits():
    # logsumexp(z) - z_y for z ~ 1e4 with a gap of 1: the exact answer is log1p(e^-1) (no
    # precision lost to the size of the logits: (m - z_y) + log(sum exp(z - m))).
    z = np.array([[1e4, 1e4 - 1.0], [1e4 - 1.0, 1e4], [-1e4, -1e4 + 2.0]])
    check("sparse_softmax_cross_entropy", [z, np.array([0, 0, 0])])  # relative, no slack


@pytest.mark.parametrize("log_target", [False, True])
def test_softmax_kl_extreme_logits_and_zero_targets(log_target):
    # SOFT has exact zeros: 0 log 0 = 0 and the gradient stays finite.
    q = SOFT
    if log_target:
        with np.errstate(divide="ignore"):
            q = np.log(SOFT)  # log 0 = -inf: a zero target given as a log
    res = check("softmax_kl_divergence", [ZROWS, q], log_target=log_target, **SOFTMAX)
    for r in res.values():
        assert np.all(np.isfinite(r.loss)) and np.all(np.isfinite(r.grad))


@pytest.mark.parametrize("beta", [0.5, 0.1])
def test_js_divergence_extreme_logits(beta):
    zq = np.array([
        [-1e4, 0.0, 1e4],
        [1e3, -1e3, 999.0],
        [1e3, 1e3, -1e3],
        [0.25, 0.5, -2.0],
        [-30.0, 0.0, 30.0],
        [1e4, 0.0, -1e4],
    ])
    check("js_divergence", [ZROWS, zq], beta=beta, **SOFTMAX)


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.5, 0.9, 2.0])
@pytest.mark.parametrize("target", ["labels", "onehot", "soft"])
@pytest.mark.parametrize("alpha", [0.25, None])
def test_softmax_focal_saturated_logits(alpha, target, gamma):
    # gamma in [0, 1) with p_y -> 1: the textbook gradient has (1 - p)^(gamma - 1) = inf.
    y = {"labels": LABELS, "onehot": ONEHOT, "soft": SOFT}[target]
    res = check("softmax_focal_loss", [ZROWS, y], alpha=alpha, gamma=gamma, **SOFTMAX)
    for r in res.values():
        assert np.all(np.isfinite(r.grad))


def test_categorical_hinge_extreme_values():
    x = np.array([[1e4, -1e4, 0.5], [0.2, 0.1, -3.0], [1.0, 0.0, 0.0], [-1e4, 1e3, 1e4]])
    y = np.eye(3)[[0, 2, 0, 1]]
    check("categorical_hinge", [x, y])


# --- masked (-inf) logits -----------------------------------------------------------------

ZMASK = np.array([
    [-np.inf, 1.0, 2.0, -np.inf],
    [3.0, -np.inf, -np.inf, -np.inf],  # a single live class: p = 1 exactly
    [1e4, -np.inf, -1e4, 0.0],
    [0.5, -0.5, 0.25, -np.inf],
])
MASK_LABELS = np.array([2, 0, 3, 1])
MASK_SOFT = np.array([[0.0, 0.4, 0.6, 0.0], [1.0, 0.0, 0.0, 0.0], [0.3, 0.0, 0.2, 0.5], [0.2, 0.3, 0.5, 0.0]])
MASKED = np.isinf(ZMASK)


def _assert_masked_grad_zero(results, masked=MASKED, k=None):
    for r in results.values():
        g = r.grad if k is None else r.grad[k]
        assert np.all(g[masked] == 0.0), "masked logits must get gradient 0"
        assert np.all(np.isfinite(r.loss))


@pytest.mark.parametrize("target", ["onehot", "soft"])
def test_masked_logits_softmax_cross_entropy(target):
    y = np.eye(4)[MASK_LABELS] if target == "onehot" else MASK_SOFT
    _assert_masked_grad_zero(check("softmax_cross_entropy", [ZMASK, y], **SOFTMAX))


@pytest.mark.parametrize("class_weight", [None, np.array([1.0, 0.5, 2.0, 1.5])])
@pytest.mark.parametrize("want", [True, False])
def test_masked_logits_sparse_cross_entropy(class_weight, want):
    if want:
        res = check(
            "sparse_softmax_cross_entropy", [ZMASK, MASK_LABELS], class_weight=class_weight, **SOFTMAX
        )
        _assert_masked_grad_zero(res)
    else:  # the loss-only path (one-pass online log-sum-exp) must guard -inf - (-inf) too
        for dtype in _dtypes_here or DTYPES:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                res = fl.sparse_softmax_cross_entropy(
                    ZMASK.astype(dtype), MASK_LABELS, class_weight=class_weight, reduction="none", grad=False
                )
            ref, _, _ = reference(
                "sparse_softmax_cross_entropy", [ZMASK.astype(dtype), MASK_LABELS],
                {"class_weight": class_weight},
            )
            assert_mp_close(res.loss, ref, dtype, "loss-only path", atol=RTOL[np.dtype(dtype)])


@pytest.mark.parametrize("log_target", [False, True])
def test_masked_logits_softmax_kl(log_target):
    q = MASK_SOFT
    if log_target:
        with np.errstate(divide="ignore"):
            q = np.log(MASK_SOFT)
    _assert_masked_grad_zero(check("softmax_kl_divergence", [ZMASK, q], log_target=log_target, **SOFTMAX))


@pytest.mark.parametrize("where", ["zp", "both", "zq"])
def test_masked_logits_js_divergence(where):
    other = np.array(
        [[0.5, 1.0, -2.0, 3.0], [1.0, 2.0, 3.0, 4.0], [0.0, 1e3, -1e3, 2.0], [1.0, 1.0, 1.0, 1.0]]
    )
    if where == "both":
        other = np.where(MASKED, -np.inf, other)
    zp, zq = (ZMASK, other) if where != "zq" else (other, ZMASK)
    res = check("js_divergence", [zp, zq], **SOFTMAX)
    for r in res.values():
        assert np.all(np.isfinite(r.grad[0])) and np.all(np.isfinite(r.grad[1]))
        assert np.all(r.grad[0][np.isinf(zp)] == 0.0) and np.all(r.grad[1][np.isinf(zq)] == 0.0)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("target", ["labels", "soft"])
def test_masked_logits_softmax_focal(target, gamma):
    y = MASK_LABELS if target == "labels" else MASK_SOFT
    _assert_masked_grad_zero(check("softmax_focal_loss", [ZMASK, y], gamma=gamma, **SOFTMAX))


ALL_MASKED_CASES = [
    ("softmax_cross_entropy", lambda z: [z, SOFT[:3]], {}),
    ("sparse_softmax_cross_entropy", lambda z: [z, LABELS[:3]], {}),
    ("sparse_softmax_cross_entropy", lambda z: [z, LABELS[:3]], {"class_weight": np.array([1.0, 2.0, 0.5])}),
    ("softmax_kl_divergence", lambda z: [z, SOFT[:3]], {}),
    ("js_divergence", lambda z: [z, ZROWS[3:6]], {}),
    ("softmax_focal_loss", lambda z: [z, LABELS[:3]], {}),
    ("softmax_focal_loss", lambda z: [z, SOFT[:3]], {"gamma": 0.5}),
]


@pytest.mark.parametrize("case", ALL_MASKED_CASES, ids=lambda c: c[0] + ("_w" if c[2] else ""))
@pytest.mark.parametrize("dtype", DTYPES)
def test_row_with_every_logit_masked_is_nan_for_that_row_only(case, dtype):
    # Documented: a row whose logits are all -inf has no softmax; its loss and gradient are
    # NaN. The other rows keep their values (checked against the reference).
    name, make, opts = case
    z = np.array([[0.5, -1.0, 2.0], [-np.inf, -np.inf, -np.inf], [1e3, -1e3, 0.0]])
    arrays = [a.astype(dtype) if a.dtype.kind == "f" else a for a in make(z)]
    good = [0, 2]
    ref_loss, ref_grads, _ = reference(name, [a[good] for a in arrays], opts)
    rtol = RTOL[np.dtype(dtype)]
    for reduction in ("none", "sum"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = fl.compute(name, *arrays, reduction=reduction, **opts)
        g = res.grad[0] if isinstance(res.grad, tuple) else res.grad
        assert np.all(np.isnan(g[1])), f"{name}: the masked row's gradient should be NaN, got {g[1]}"
        slack = _row_scale_atol(ref_grads[0], rtol)
        assert_mp_close(g[good], ref_grads[0], dtype, f"{name} other rows' gradient", atol=slack)
        if reduction == "none":
            assert np.isnan(res.loss[1])
            assert_mp_close(res.loss[good], ref_loss, dtype, f"{name} other rows' loss", atol=rtol)
        else:
            assert np.isnan(res.loss)


# --- probabilities exactly 0 and 1 --------------------------------------------------------


def test_binary_cross_entropy_probabilities_0_and_1():
    # p = 0 with y = 0 costs -log(1 - eps) = 1.00000005e-7: log(1 - q) must be log1p(-q) to
    # keep 1e-13 relative (so must p = 1e-5, y = 0, where no clip is active).
    p = np.array([0.0, 1.0, 0.0, 1.0, 1e-300, 0.5, 1.0 - 1e-12, 1e-7, 0.3, 1e-8, 1.0, 1e-5])
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.5, 1.0, 1.0, 0.3, 0.7, 0.5, 0.0])
    res = check("binary_cross_entropy", [p, y])
    for r in res.values():
        assert np.all(np.isfinite(r.loss))
        assert np.all(r.grad[[0, 1, 2, 3, 10]] == 0.0), "gradient 0 where the clip is active"


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_smallest_normal_without_clip(dtype):
    # eps = 0: probabilities down to the smallest normal number, and 1 - ulp, unclipped.
    fi = np.finfo(dtype)
    p = np.array([fi.tiny, 1.0 - fi.epsneg, 0.5, fi.tiny], dtype=dtype)
    y = np.array([1.0, 0.0, 0.25, 0.0], dtype=dtype)
    check("binary_cross_entropy", [p, y], dtypes=(dtype,), eps=0.0)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_categorical_cross_entropy_probabilities_0_and_1(label_smoothing):
    p = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.7, 0.3, 0.0], [1e-300, 1.0, 1e-300], [2.0, 1.0, 1.0]])
    y = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0]])
    res = check("categorical_cross_entropy", [p, y], label_smoothing=label_smoothing)
    for r in res.values():
        assert np.all(np.isfinite(r.loss)) and np.all(np.isfinite(r.grad))
    if label_smoothing == 0.0:
        # Rows 0 and 1: every term with target mass is clipped, so the gradient is 0.
        for r in res.values():
            assert np.all(r.grad[:2] == 0.0)


def test_kl_divergence_probabilities_0_and_1():
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1e-300, 0.5, 0.5], [0.2, 0.3, 0.5]])
    q = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    res = check("kl_divergence", [p, q])
    for r in res.values():
        assert np.all(np.isfinite(r.loss)) and np.all(np.isfinite(r.grad))
        assert np.all(r.grad[p < 1e-7] == 0.0), "gradient 0 where the clip is active"


@pytest.mark.parametrize("eps", [1e-7, 0.0])
def test_kl_divergence_smallest_normal(eps):
    tiny = np.finfo(np.float64).tiny
    p = np.array([[tiny, 1.0 - tiny, 0.0 + tiny], [0.25, 0.25, 0.5]])
    q = np.array([[0.5, 0.25, 0.25], [tiny, 0.5, 0.5]])
    check("kl_divergence", [p, q], dtypes=F64, eps=eps)


# --- regression losses at tiny and huge residuals -----------------------------------------

XR64 = np.array([0.0, 1e-8, -1e-8, 3.25, -800.0, 1e100, -2e-300, 0.5, 7.0, 1e-300])
YR64 = np.array([0.0, 0.0, 2e-8, -1.0, 0.0, 5e99, 0.0, 0.5, 7.0 - 2.0**-40, -1e-300])
XR32 = np.array([0.0, 1e-8, -1e-8, 3.25, -800.0, 1e15, -2e-30, 0.5, 7.0, 1e-30])
YR32 = np.array([0.0, 0.0, 2e-8, -1.0, 0.0, 5e14, 0.0, 0.5, 7.0 - 2.0**-20, -1e-30])

REGRESSION = [
    ("mean_squared_error", {}),
    ("mean_absolute_error", {}),
    ("huber", {}),
    ("huber", {"delta": 0.5}),
    ("huber", {"delta": 1e-300}),
    ("pseudo_huber", {}),
    ("pseudo_huber", {"delta": 1e-3}),
    ("log_cosh", {}),
]


@pytest.mark.parametrize("name,opts", REGRESSION, ids=lambda v: str(v))
def test_regression_tiny_and_huge_residuals(name, opts):
    check(name, [XR64, YR64], dtypes=F64, **opts)
    check(name, [XR32, YR32], dtypes=F32, **opts)


@pytest.mark.parametrize("delta", [1e-300, 5e-324, 0.0])
def test_huber_tiny_delta_no_nan(delta):
    # r = 0 with a tiny delta: 0/0 in a naive backward pass (PyTorch #96813).
    x = np.array([0.0, 1e-300, -1e-300, 2e-300, 1.0, -3.0, 0.0])
    y = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.0])
    res = check("huber", [x, y], delta=delta)
    for r in res.values():
        assert not np.any(np.isnan(r.grad)) and not np.any(np.isnan(r.loss))
        assert r.grad[0] == 0.0 and r.grad[-1] == 0.0


def test_log_cosh_tiny_and_huge():
    r = np.array([1e-8, -1e-8, 1e-150, 800.0, -800.0, 30.0, 2.0, 2.0000001, 1e300])
    res = check("log_cosh", [r, np.zeros_like(r)], dtypes=F64)
    loss = res[np.dtype(np.float64), "none"].loss
    assert abs(loss[0] / 5e-17 - 1) < 1e-13  # ~ r^2 / 2, relative
    r32 = np.array([1e-8, -1e-8, 1e-30, 800.0, -800.0, 30.0, 2.0, 2.0000002, 1e30])
    check("log_cosh", [r32, np.zeros_like(r32)], dtypes=F32)


def test_pseudo_huber_tiny_and_huge():
    r = np.array([1e-8, -1e-8, 1e-200, 1e200, -1e200, 1.0, 1e154])
    res = check("pseudo_huber", [r, np.zeros_like(r)], dtypes=F64)
    r64 = res[np.dtype(np.float64), "none"]
    assert np.all(np.isfinite(r64.loss)) and np.all(np.isfinite(r64.grad))
    r32 = np.array([1e-8, -1e-8, 1e-30, 1e30, -1e30, 1.0])
    check("pseudo_huber", [r32, np.zeros_like(r32)], dtypes=F32)


def test_pseudo_huber_tiny_delta():
    # delta^2 (sqrt(1 + (r/delta)^2) - 1) ~ delta |r| when |r| >> delta: finite and
    # representable (1e-200 here) although delta^2 = 1e-400 underflows.
    r = np.array([1.0, -2.0, 1e-200, 0.0])
    check("pseudo_huber", [r, np.zeros_like(r)], dtypes=F64, delta=1e-200)


def test_msle_clamps_and_extremes():
    x = np.array([0.0, 1e-7, -0.5, 1e-30, 3.0, 1e100, 1e-8, 2.5, -1.0])
    y = np.array([1e-9, 0.0, 2.0, 0.0, 3.0, 1.0, 1e-8, -3.0, 5.0])
    res = check("mean_squared_logarithmic_error", [x, y], dtypes=F64)
    assert np.all(res[np.dtype(np.float64), "none"].grad[[2, 3, 6, 8]] == 0.0)  # below eps: clamped
    x32 = np.where(np.abs(x) > 1e30, 1e30, x)
    check("mean_squared_logarithmic_error", [x32, y], dtypes=F32)


def test_mape_zero_and_tiny_targets():
    x = np.array([1.0, 0.0, 1e-8, 5.0, -1e100, 2.0])
    y = np.array([0.0, 1e-300, 2e-8, 5.0, 3.0, -1e-3])
    check("mean_absolute_percentage_error", [x, y], dtypes=F64)
    check("mean_absolute_percentage_error", [np.where(x < -1e30, -1e30, x), y], dtypes=F32)


@pytest.mark.parametrize("eps", [1e-7, 1e-3])
def test_poisson_extremes(eps):
    x = np.array([1e-300, 0.0, 2.5, 1e100, 1e-8, 3.0])
    y = np.array([0.0, 3.0, 0.0, 2.0, 1e-8, 1e-300])
    check("poisson", [x, y], dtypes=F64, eps=eps)
    check("poisson", [np.clip(x, 0, 1e30), y], dtypes=F32, eps=eps)


def test_poisson_log_input_extremes():
    x = np.array([-1e4, -50.0, 0.0, 2.5, 700.0, -700.0])
    y = np.array([0.0, 1.0, 3.0, 0.0, 2.0, 1e-3])
    check("poisson", [x, y], dtypes=F64, log_input=True)
    check("poisson", [np.clip(x, -1e4, 80.0), y], dtypes=F32, log_input=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_rmse_extremes(reduction, dtype):
    big = 1e150 if dtype == np.float64 else 1e18  # squares near the top of the dtype's range
    x = np.array([big, 1e-8, 0.0, -3.0], dtype=dtype)
    y = np.array([0.0, 0.0, 0.0, -3.0], dtype=dtype)
    r = [M(a) - M(b) for a, b in zip(x, y)]
    n = len(r) if reduction == "mean" else 1
    value = mp.sqrt(mp.fsum(v * v for v in r) / n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fl.rmse(x, y, reduction=reduction)
    assert_mp_close(res.loss, value, dtype, "rmse loss")
    assert_mp_close(res.grad, np.array([v / (n * value) for v in r], dtype=object), dtype, "rmse grad")
    zero = fl.rmse(y, y, reduction=reduction)  # loss 0: the subgradient 0, never NaN
    assert zero.loss == 0.0 and np.all(zero.grad == 0.0)


@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_rmse_of_a_negative_weighted_sum_is_nan(reduction, backend):
    """Negative sample weights are allowed (contract section 1) and can make the weighted
    sum of squares negative: its square root is NaN, as np.sqrt gives, with NaN gradients,
    as PyTorch's sqrt gives; never an exception. A NaN in the data does the same."""
    x = np.array([1.0, 2.0, -0.5])
    y = np.zeros(3)
    w = np.array([1.0, -2.0, 3.0])  # sum of w r^2 = 1 - 8 + 0.75 < 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = fl.rmse(x, y, sample_weight=w, reduction=reduction, backend=backend)
        nan = fl.rmse(np.array([1.0, np.nan, 2.0]), y, reduction=reduction, backend=backend)
    assert np.isnan(res.loss) and np.isnan(res.grad).all()
    assert np.isnan(nan.loss) and np.isnan(nan.grad).all()
    positive = fl.rmse(x, y, sample_weight=np.abs(w), reduction=reduction, backend=backend)
    n = 3 if reduction == "mean" else 1
    value = np.sqrt(np.sum(np.abs(w) * x * x) / n)
    np.testing.assert_allclose(positive.loss, value, rtol=1e-15)
    np.testing.assert_allclose(positive.grad, np.abs(w) * x / (n * value), rtol=1e-15)


# --- binary classification at the edges ---------------------------------------------------


@pytest.mark.parametrize("name", ["hinge", "squared_hinge"])
@pytest.mark.parametrize("targets", ["01", "pm1", "real"])
def test_hinge_extremes(name, targets):
    x = np.array([1e4, -1e4, 1.0, 0.5, -1e-300, 1.0, -1.0, 1e-8])
    y = {
        "01": np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0]),
        "pm1": np.array([1.0, -1.0, 1.0, -1.0, 1.0, -1.0, -1.0, 1.0]),
        "real": np.array([0.5, -2.0, 1.0, 0.25, 3.0, -1.0, 2.0, 1e-8]),
    }[targets]
    check(name, [x, y], dtypes=F64)
    check(name, [np.where(np.abs(x) < 1e-30, -1e-30, x), y], dtypes=F32)


# --- embeddings and the VAE ---------------------------------------------------------------


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("squared", [False, True])
def test_triplet_extremes(p, squared):
    a = np.array([[0.0, 0.0, 0.0], [1e15, 0.0, 0.0], [1.0, 2.0, 3.0], [1e-8, -1e-8, 0.0]])
    pos = np.array([[1e-8, 0.0, 0.0], [-1e15, 0.0, 0.0], [1.0, 2.0, 3.5], [0.0, 0.0, 0.0]])
    neg = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [3e-8, 0.0, 0.0]])
    # Gradients g_pos - g_neg of two near-parallel unit vectors cancel: absolute slack at
    # their natural scale 1 (grad_rows).
    check("triplet_margin_loss", [a, pos, neg], p=p, squared=squared, eps=0.0, grad_rows=True)
    check("triplet_margin_loss", [a, pos, neg], p=p, squared=squared, margin=0.5, grad_rows=True)


def test_triplet_huge_coordinates_do_not_overflow():
    # ||t||_2 = 2e160 is a finite float64, but sum(t^2) = 4e320 is not: contract section 4 asks
    # for a form that is finite wherever the value is (a scaled norm, as hypot does).
    a = np.array([[1e160, 0.0], [0.0, 1e160]])
    pos = np.array([[-1e160, 0.0], [0.0, 0.0]])
    neg = np.array([[0.0, 0.0], [0.0, -1e160]])
    check("triplet_margin_loss", [a, pos, neg], dtypes=F64, eps=0.0, grad_rows=True)


@pytest.mark.float32
def test_triplet_squared_float32_overflow_is_inf_not_nan():
    # float32, squared: d_pos = 4e60 and d_neg = 1e60 exceed float32, the loss 3e60 rounds to
    # +inf in float32; inf - inf = NaN is garbage. The gradients (2e30, -4e30, 2e30) fit.
    a = np.array([[1e30, 0.0]], dtype=np.float32)
    pos = np.array([[-1e30, 0.0]], dtype=np.float32)
    neg = np.zeros((1, 2), dtype=np.float32)
    check("triplet_margin_loss", [a, pos, neg], dtypes=F32, squared=True, reductions=("none", "sum"))


def test_vae_extreme_logvar():
    mu = np.array([[1e-8, 0.0, 3.0, -1e-300], [0.5, -2.0, 1e100, 0.0]])
    lv = np.array([[50.0, -50.0, 0.0, 1e-10], [-700.0, 700.0, -1e-8, 50.0]])
    res = check("vae_kl_divergence", [mu, lv], dtypes=F64)
    assert all(np.all(np.isfinite(g)) for g in res[np.dtype(np.float64), "none"].grad)
    mu32 = np.array([[1e-8, 0.0, 3.0, -1e-30], [0.5, -2.0, 1e15, 0.0]])
    lv32 = np.array([[50.0, -50.0, 0.0, 1e-10], [-80.0, 80.0, -1e-8, 50.0]])
    check("vae_kl_divergence", [mu32, lv32], dtypes=F32)


# --- every label ignored ------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("class_weight", [None, np.array([1.0, 2.0, 0.5])])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_every_label_ignored(label_smoothing, class_weight, dtype):
    z = np.array([[0.5, -1.0, 2.0], [1e4, 0.0, -1e4], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], dtype=dtype)
    labels = np.full(4, -100)
    opts = {"ignore_index": -100, "class_weight": class_weight, "label_smoothing": label_smoothing}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean = fl.sparse_softmax_cross_entropy(z, labels, reduction="mean", **opts)
        total = fl.sparse_softmax_cross_entropy(z, labels, reduction="sum", **opts)
        none = fl.sparse_softmax_cross_entropy(z, labels, reduction="none", **opts)
        weighted = fl.sparse_softmax_cross_entropy(z, labels, sample_weight=np.arange(4.0), **opts)
    assert np.isnan(mean.loss) and mean.loss.dtype == dtype
    for r in (mean, total, none, weighted):
        assert r.grad.shape == z.shape and r.grad.dtype == dtype and np.all(r.grad == 0.0)
    assert total.loss == 0.0
    assert none.loss.shape == (4,) and np.all(none.loss == 0.0)
    assert np.isnan(weighted.loss)


# --- empty inputs, for every loss ---------------------------------------------------------


def _empty_inputs(name, dtype, lead):
    info = INFO[name]
    if info.family == "elementwise":
        shape = lead
        return [np.zeros(shape, dtype=dtype) for _ in info.inputs], shape
    shape = lead + (3,)
    arrays = [np.zeros(shape, dtype=dtype) for _ in info.inputs]
    if name == "sparse_softmax_cross_entropy":
        arrays[1] = np.zeros(lead, dtype=np.int64)
    return arrays, lead


EMPTY_CASES = [(name, {}) for name in INFO] + [
    ("softmax_focal_loss", {"labels": True}),
    ("sparse_softmax_cross_entropy", {"class_weight": np.ones(3), "ignore_index": 0}),
    ("sigmoid_binary_cross_entropy", {"pos_weight": 2.0}),
    ("sigmoid_binary_cross_entropy", {"pos_weight": np.ones(0)}),
]


@pytest.mark.parametrize("case", EMPTY_CASES, ids=lambda c: c[0] + ("+" if c[1] else ""))
@pytest.mark.parametrize("lead", [(0,), (2, 0)], ids=["0", "2x0"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_input(case, lead, dtype):
    name, opts = case
    opts = dict(opts)
    arrays, loss_shape = _empty_inputs(name, dtype, lead)
    if opts.pop("labels", False):
        arrays[1] = np.zeros(loss_shape, dtype=np.int32)
    info = INFO[name]
    reductions = ("mean", "sum") if name == "root_mean_squared_error" else ("mean", "sum", "none")
    for reduction in reductions:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no RuntimeWarning (0/0), no exception
            res = fl.compute(name, *arrays, reduction=reduction, **opts)
        if reduction == "sum":
            assert res.loss.shape == () and res.loss == 0.0, f"{name}: sum of nothing is 0, got {res.loss}"
        elif reduction == "mean":
            assert res.loss.shape == () and np.isnan(res.loss), f"{name}: mean of nothing is NaN: {res.loss}"
        else:
            assert res.loss.shape == loss_shape and res.loss.size == 0
        assert res.loss.dtype == dtype
        grads = res.grad if len(info.differentiable) > 1 else (res.grad,)
        assert len(grads) == len(info.differentiable)
        for g, a in zip(grads, arrays):
            assert g.shape == a.shape and g.dtype == dtype


# --- NaN stays in its own sample ----------------------------------------------------------

# One ordinary case per loss: (name, arrays, options). Finite values only; a NaN is put in.
_rng = np.random.default_rng(0)
_P = _rng.uniform(0.1, 0.9, size=(4, 3))
_Q = _P[::-1] / _P[::-1].sum(1, keepdims=True)
_ZR = np.array([[0.5, -1.0, 2.0], [1e3, 0.0, -1e3], [1.0, 2.0, 3.0], [-0.5, 0.25, 0.0]])
NAN_CASES = [
    ("mean_squared_error", [XR32[:8], YR32[:8]], {}),
    ("mean_absolute_error", [XR32[:8], YR32[:8]], {}),
    ("mean_squared_logarithmic_error", [np.array([0.5, 2.0, 3.0, 0.1]), np.array([1.0, 0.5, 3.0, 2.0])], {}),
    ("mean_absolute_percentage_error", [np.array([0.5, 2.0, 3.0, 0.1]), np.array([1.0, 0.5, 3.0, 0.0])], {}),
    ("huber", [XR32[:8], YR32[:8]], {}),
    ("pseudo_huber", [XR32[:8], YR32[:8]], {}),
    ("log_cosh", [XR32[:8], YR32[:8]], {}),
    ("poisson", [np.array([0.5, 2.0, 3.0, 0.1]), np.array([1.0, 0.5, 3.0, 2.0])], {}),
    ("poisson", [np.array([0.5, -2.0, 3.0, 0.1]), np.array([1.0, 0.5, 3.0, 2.0])], {"log_input": True}),
    ("binary_cross_entropy", [np.array([0.5, 0.0, 0.3, 0.9]), np.array([1.0, 0.5, 0.0, 1.0])], {}),
    ("sigmoid_binary_cross_entropy", [ZG[:, :4], YG[:, :4]], {"pos_weight": 2.0}),
    ("hinge", [np.array([0.5, 2.0, -3.0, 1.0]), np.array([1.0, 0.0, 1.0, 0.0])], {}),
    ("squared_hinge", [np.array([0.5, 2.0, -3.0, 1.0]), np.array([1.0, -1.0, 1.0, -1.0])], {}),
    ("sigmoid_focal_loss", [ZG[:, :4], YG[:, :4]], {"gamma": 0.5}),
    ("gan_discriminator_loss", [Z[:5], Z[5:]], {}),
    ("gan_generator_loss", [Z[:5]], {}),
    ("categorical_hinge", [_ZR, np.eye(3)[[0, 1, 2, 0]]], {}),
    ("categorical_cross_entropy", [_P, _Q], {}),
    ("softmax_cross_entropy", [_ZR, _Q], {}),
    ("sparse_softmax_cross_entropy", [_ZR, np.array([0, 1, 2, 0])], {"class_weight": np.arange(1.0, 4.0)}),
    ("kl_divergence", [_P / _P.sum(1, keepdims=True), _Q], {}),
    ("softmax_kl_divergence", [_ZR, _Q], {}),
    ("js_divergence", [_ZR, _ZR[::-1].copy()], {}),
    ("softmax_focal_loss", [_ZR, np.array([0, 1, 2, 0])], {}),
    ("softmax_focal_loss", [_ZR, _Q], {"gamma": 0.5}),
    ("triplet_margin_loss", [_ZR, _ZR[::-1].copy(), _P], {}),
    ("vae_kl_divergence", [_P, _P - 0.5], {}),
]


@pytest.mark.parametrize("case", NAN_CASES, ids=lambda c: c[0])
@pytest.mark.parametrize("which", [0, 1], ids=["in_pred", "in_target"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_stays_in_its_sample(case, which, dtype):
    name, arrays, opts = case
    arrays = [np.array(a, dtype=dtype) if a.dtype.kind == "f" else a for a in arrays]
    if which >= len(arrays) or arrays[which].dtype.kind != "f":
        pytest.skip("no such floating-point input")
    info = INFO[name]
    rows = info.family == "rowwise"
    ref_loss, ref_grads, _ = reference(name, arrays, opts)
    bad = [a.copy() for a in arrays]
    sample = 1  # the NaN goes into sample 1 (element 1, or row 1 at class 1)
    pos = (1, 1) if rows else np.unravel_index(1, bad[which].shape)
    bad[which][pos] = np.nan
    # This test is about containment, not accuracy (tested above): the other samples are
    # compared with absolute slack at the natural scale 1 (e.g. poisson's 1 - y / (x + eps)
    # cancels near x = y).
    rtol = RTOL[np.dtype(dtype)]
    for reduction in ("none", "sum"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = fl.compute(name, *bad, reduction=reduction, **opts)
        loss = np.asarray(res.loss)
        if reduction == "none":
            flat = loss.reshape(-1)
            assert np.isnan(flat[sample]), f"{name}: the NaN sample's loss is {flat[sample]}"
            keep = np.arange(flat.size) != sample
            assert_mp_close(flat[keep], ref_loss.reshape(-1)[keep], dtype, f"{name} other losses", atol=rtol)
        else:
            assert np.isnan(loss)
        grads = res.grad if isinstance(res.grad, tuple) else (res.grad,)
        for k, (g, rg) in enumerate(zip(grads, ref_grads)):
            if k == which:
                assert np.isnan(g[pos]), f"{name}: the gradient at the NaN is {g[pos]}"
            g2 = g.reshape(-1, g.shape[-1]) if rows else g.reshape(-1, 1)
            r2 = rg.reshape(g2.shape)
            keep = np.arange(g2.shape[0]) != sample
            assert_mp_close(g2[keep], r2[keep], dtype, f"{name} grad[{k}] of other samples",
                            atol=_row_scale_atol(r2[keep], rtol))
