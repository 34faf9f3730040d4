"""Independent float64 references for every loss, and input generators for the tests.

Written from the contract (docs/contract.md, section 5) with NumPy/SciPy only: nothing
here imports fastloss. Each reference takes float64 arrays (class axis last) and the
loss's options and returns the unreduced, unweighted per-sample losses. ``make_inputs``
draws inputs away from kinks and clip boundaries so that finite differences are valid.
"""

import numpy as np
from scipy.special import expit, log_expit, log_softmax, pseudo_huber, softmax, xlogy


def _all01(y):
    return np.all((y == 0) | (y == 1))


def ref_mse(x, y):
    return (x - y) ** 2


def ref_mae(x, y):
    return np.abs(x - y)


def ref_msle(x, y, eps=1e-7):
    return (np.log1p(np.maximum(x, eps)) - np.log1p(np.maximum(y, eps))) ** 2


def ref_mape(x, y, eps=1e-7):
    return 100.0 * np.abs(x - y) / np.maximum(np.abs(y), eps)


def ref_huber(x, y, delta=1.0):
    r = x - y
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def ref_pseudo_huber(x, y, delta=1.0):
    return pseudo_huber(delta, x - y)


def ref_log_cosh(x, y):
    r = np.asarray(x - y, dtype=np.float64)
    big = np.abs(r) > 700  # cosh overflows there: log(cosh r) = logaddexp(r, -r) - log 2
    with np.errstate(over="ignore"):
        return np.where(big, np.logaddexp(r, -r) - np.log(2.0), np.log(np.cosh(r)))


def ref_poisson(x, y, log_input=False, eps=1e-7):
    if log_input:
        return np.exp(x) - y * x
    return x - xlogy(y, x + eps)


def ref_bce(p, y, eps=1e-7):
    q = np.clip(p, eps, 1 - eps)
    return -(xlogy(y, q) + xlogy(1 - y, 1 - q))


def ref_sigmoid_bce(z, y, pos_weight=None, label_smoothing=0.0):
    t = y * (1 - label_smoothing) + label_smoothing / 2
    pw = 1.0 if pos_weight is None else np.asarray(pos_weight, dtype=np.float64)
    return -(pw * t * log_expit(z) + (1 - t) * log_expit(-z))


def ref_hinge(x, y):
    t = 2 * y - 1 if _all01(y) else y
    return np.maximum(0.0, 1 - t * x)


def ref_squared_hinge(x, y):
    return ref_hinge(x, y) ** 2


def ref_sigmoid_focal(z, y, alpha=0.25, gamma=2.0):
    p = expit(z)
    ce = ref_sigmoid_bce(z, y)
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None and alpha >= 0:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    return loss


def ref_categorical_hinge(x, y):
    pos = (y * x).sum(-1)
    neg = ((1 - y) * x).max(-1)
    return np.maximum(0.0, neg - pos + 1)


def ref_categorical_ce(p, y, eps=1e-7, label_smoothing=0.0):
    c = p.shape[-1]
    t = y * (1 - label_smoothing) + label_smoothing / c
    q = np.clip(p / p.sum(-1, keepdims=True), eps, 1 - eps)
    return -(t * np.log(q)).sum(-1)


def ref_softmax_ce(z, y, label_smoothing=0.0):
    c = z.shape[-1]
    t = y * (1 - label_smoothing) + label_smoothing / c
    return -(t * log_softmax(z, axis=-1)).sum(-1)


def ref_sparse_ce(z, labels, ignore_index=None, class_weight=None, label_smoothing=0.0):
    c = z.shape[-1]
    w = np.ones(c) if class_weight is None else np.asarray(class_weight, dtype=np.float64)
    lsm = log_softmax(z, axis=-1)
    out = np.zeros(z.shape[:-1])
    for idx in np.ndindex(*z.shape[:-1]):
        lab = int(labels[idx])
        if ignore_index is not None and lab == ignore_index:
            continue
        nll = -w[lab] * lsm[idx][lab]
        smooth = -(w * lsm[idx]).sum()
        out[idx] = (1 - label_smoothing) * nll + label_smoothing / c * smooth
    return out


def denominator_sparse_ce(z, labels, ignore_index=None, class_weight=None, label_smoothing=0.0):
    """PyTorch's divisor for "mean": the counted rows, or their class weights' sum."""
    lab = labels.reshape(-1)
    if ignore_index is not None:
        lab = lab[lab != ignore_index]
    if class_weight is None:
        return float(lab.size)
    return float(np.asarray(class_weight, dtype=np.float64)[lab].sum())


def ref_kl(p, q, eps=1e-7):
    q = np.clip(q, eps, 1)
    p = np.clip(p, eps, 1)
    return (q * np.log(q / p)).sum(-1)


def ref_softmax_kl(z, q, log_target=False):
    lsm = log_softmax(z, axis=-1)
    if log_target:
        qq = np.exp(q)
        return np.where(qq > 0, qq * (q - lsm), 0.0).sum(-1)
    return (xlogy(q, q) - q * lsm).sum(-1)


def ref_jsd(zp, zq, beta=0.5):
    p = softmax(zp, axis=-1)
    q = softmax(zq, axis=-1)
    m = beta * p + (1 - beta) * q
    return beta * (p * np.log(p / m)).sum(-1) + (1 - beta) * (q * np.log(q / m)).sum(-1)


def ref_softmax_focal(z, y, alpha=0.25, gamma=2.0):
    if np.issubdtype(np.asarray(y).dtype, np.integer):
        y = np.eye(z.shape[-1])[y]
    alpha = 1.0 if alpha is None else alpha
    p = softmax(z, axis=-1)
    return -(alpha * y * (1 - p) ** gamma * log_softmax(z, axis=-1)).sum(-1)


def ref_gan_discriminator(real, fake):
    return -log_expit(real) - log_expit(-fake)


def ref_gan_generator(fake, saturating=False):
    return log_expit(-fake) if saturating else -log_expit(fake)


def ref_triplet(a, p, n, margin=1.0, p_norm=2.0, squared=False, eps=1e-6):
    if squared:
        d1 = ((a - p) ** 2).sum(-1)
        d2 = ((a - n) ** 2).sum(-1)
    else:
        d1 = (np.abs(a - p + eps) ** p_norm).sum(-1) ** (1 / p_norm)
        d2 = (np.abs(a - n + eps) ** p_norm).sum(-1) ** (1 / p_norm)
    return np.maximum(0.0, d1 - d2 + margin)


def ref_vae(mu, logvar):
    return -0.5 * (1 + logvar - mu**2 - np.exp(logvar)).sum(-1)


def triplet_options(options):
    """The reference names the norm's order ``p_norm`` (``p`` is fastloss's name)."""
    o = dict(options)
    if "p" in o:
        o["p_norm"] = o.pop("p")
    return o


REFERENCES = {
    "mean_squared_error": ref_mse,
    "mean_absolute_error": ref_mae,
    "root_mean_squared_error": ref_mse,  # reduced by sqrt in the tests
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
    "categorical_hinge": ref_categorical_hinge,
    "categorical_cross_entropy": ref_categorical_ce,
    "softmax_cross_entropy": ref_softmax_ce,
    "sparse_softmax_cross_entropy": ref_sparse_ce,
    "kl_divergence": ref_kl,
    "softmax_kl_divergence": ref_softmax_kl,
    "js_divergence": ref_jsd,
    "softmax_focal_loss": ref_softmax_focal,
    "gan_discriminator_loss": ref_gan_discriminator,
    "gan_generator_loss": ref_gan_generator,
    "triplet_margin_loss": ref_triplet,
    "vae_kl_divergence": ref_vae,
}


def reference(name, arrays, options):
    """Unreduced float64 reference losses of ``name``."""
    fn = REFERENCES[name]
    if name == "triplet_margin_loss":
        options = triplet_options(options)
    arrays = [a if np.issubdtype(a.dtype, np.integer) else a.astype(np.float64) for a in arrays]
    return np.asarray(fn(*arrays, **options), dtype=np.float64)


def reduce_reference(name, per_sample, reduction, weights, arrays, options):
    """Reduce reference losses as contract section 1 says (with RMSE's and sparse CE's rules)."""
    w = 1.0 if weights is None else np.broadcast_to(weights, per_sample.shape)
    weighted = w * per_sample
    if reduction == "none":
        return weighted
    total = weighted.sum()
    if name == "root_mean_squared_error":
        return np.sqrt(total / per_sample.size if reduction == "mean" else total)
    if reduction == "sum":
        return total
    if name == "sparse_softmax_cross_entropy":
        den = denominator_sparse_ce(*arrays, **options)
    else:
        den = per_sample.size
    return total / den


# --- inputs -------------------------------------------------------------------------------

ELEMENTWISE_SHAPE = (3, 4)
ROW_SHAPE = (4, 5)


def make_inputs(name, rng, dtype=np.float64, shape=None):
    """Inputs for ``name`` away from kinks and clip boundaries (so finite differences hold)."""
    rows = name in ROWWISE
    shape = shape or (ROW_SHAPE if rows else ELEMENTWISE_SHAPE)
    c = shape[-1]

    def normal(scale=1.0):
        return (rng.normal(size=shape) * scale).astype(dtype)

    def simplex():
        return rng.dirichlet(np.ones(c), size=shape[:-1]).astype(dtype)

    def binary():
        return rng.integers(0, 2, size=shape).astype(dtype)

    if name in ("mean_squared_logarithmic_error", "poisson"):
        return rng.uniform(0.2, 3.0, shape).astype(dtype), rng.uniform(0.0, 3.0, shape).astype(dtype)
    if name == "mean_absolute_percentage_error":
        return normal(), (rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)).astype(dtype)
    if name in ("mean_absolute_error", "huber", "pseudo_huber", "log_cosh", "mean_squared_error",
                "root_mean_squared_error"):
        x = normal(2.0)
        y = x + (rng.uniform(0.1, 3.0, shape) * rng.choice([-1, 1], shape)).astype(dtype)
        return x, y  # |r| in [0.1, 3] (away from sign(0) and, for Huber, mostly from |r| = 1)
    if name == "binary_cross_entropy":
        return rng.uniform(0.05, 0.95, shape).astype(dtype), rng.uniform(0, 1, shape).astype(dtype)
    if name in ("sigmoid_binary_cross_entropy", "sigmoid_focal_loss"):
        return normal(3.0), rng.uniform(0, 1, shape).astype(dtype)
    if name in ("hinge", "squared_hinge"):
        x = (rng.uniform(0.1, 2.0, shape) * rng.choice([-1, 1], shape)).astype(dtype)
        return x, binary()  # 1 - y x is never 0 for |x| != 1
    if name == "categorical_hinge":
        return normal(), np.eye(c, dtype=dtype)[rng.integers(0, c, shape[:-1])]
    if name in ("categorical_cross_entropy", "kl_divergence"):
        p = rng.uniform(0.1, 1.0, shape)
        return (p / p.sum(-1, keepdims=True)).astype(dtype), simplex()
    if name in ("softmax_cross_entropy", "softmax_kl_divergence"):
        return normal(2.0), simplex()
    if name == "sparse_softmax_cross_entropy":
        return normal(2.0), rng.integers(0, c, shape[:-1])
    if name == "softmax_focal_loss":
        return normal(2.0), simplex()
    if name in ("js_divergence", "gan_discriminator_loss", "vae_kl_divergence"):
        return normal(2.0), normal(1.0)
    if name == "gan_generator_loss":
        return (normal(3.0),)
    if name == "triplet_margin_loss":
        return normal(), normal(), normal()
    raise KeyError(name)


ROWWISE = {
    "categorical_hinge", "categorical_cross_entropy", "softmax_cross_entropy",
    "sparse_softmax_cross_entropy", "kl_divergence", "softmax_kl_divergence", "js_divergence",
    "softmax_focal_loss", "triplet_margin_loss", "vae_kl_divergence",
}

#: Option sets each loss is tested with (the defaults first).
OPTION_CASES = {
    "mean_squared_error": [{}],
    "mean_absolute_error": [{}],
    "root_mean_squared_error": [{}],
    "mean_squared_logarithmic_error": [{}, {"eps": 0.5}],
    "mean_absolute_percentage_error": [{}, {"eps": 1.0}],
    "huber": [{}, {"delta": 0.3}, {"delta": 5.0}],
    "pseudo_huber": [{}, {"delta": 0.25}, {"delta": 4.0}],
    "log_cosh": [{}],
    "poisson": [{}, {"log_input": True}, {"eps": 0.1}],
    "binary_cross_entropy": [{}, {"eps": 1e-3}],
    "sigmoid_binary_cross_entropy": [{}, {"pos_weight": 3.0}, {"label_smoothing": 0.2},
                                     {"pos_weight": np.array([0.5, 1.0, 2.0, 4.0])}],
    "hinge": [{}],
    "squared_hinge": [{}],
    "sigmoid_focal_loss": [{}, {"alpha": None, "gamma": 0.5}, {"alpha": 0.6, "gamma": 0.0},
                           {"alpha": -1.0, "gamma": 3.0}],
    "categorical_hinge": [{}],
    "categorical_cross_entropy": [{}, {"label_smoothing": 0.1}, {"eps": 1e-3}],
    "softmax_cross_entropy": [{}, {"label_smoothing": 0.1}],
    "sparse_softmax_cross_entropy": [
        {}, {"label_smoothing": 0.2}, {"ignore_index": 1},
        {"class_weight": np.array([0.5, 2.0, 1.0, 3.0, 0.25])},
        {"class_weight": np.array([0.5, 2.0, 1.0, 3.0, 0.25]), "label_smoothing": 0.3, "ignore_index": 2},
    ],
    "kl_divergence": [{}, {"eps": 1e-3}],
    "softmax_kl_divergence": [{}, {"log_target": True}],
    "js_divergence": [{}, {"beta": 0.2}, {"beta": 0.9}],
    "softmax_focal_loss": [{}, {"alpha": None, "gamma": 0.5}, {"gamma": 0.0}, {"labels": True}],
    "gan_discriminator_loss": [{}],
    "gan_generator_loss": [{}, {"saturating": True}],
    "triplet_margin_loss": [{}, {"p": 1.0}, {"p": 3.0, "margin": 0.5}, {"squared": True, "margin": 2.0}],
    "vae_kl_divergence": [{}],
}


def prepared(name, options, rng, dtype=np.float64, shape=None):
    """(arrays, options) for one case; ``labels`` in the options asks for integer labels,
    and the softmax_kl ``log_target`` case gets log-probabilities."""
    options = dict(options)
    arrays = list(make_inputs(name, rng, dtype, shape))
    if options.pop("labels", False):
        arrays[1] = rng.integers(0, arrays[0].shape[-1], arrays[0].shape[:-1])
    if name == "softmax_kl_divergence" and options.get("log_target"):
        arrays[1] = np.log(arrays[1])
    if name in _KINKS:  # redraw rows whose hinge is within finite-difference reach of 0
        for _ in range(100):
            near = np.abs(_KINKS[name](arrays, options)) < 0.05
            if not near.any():
                break
            fresh = make_inputs(name, rng, dtype, shape)
            for a, f in zip(arrays, fresh):
                a[near] = f[near]
    return arrays, options


def _triplet_margin_term(arrays, options):
    o = triplet_options(options)
    a, p, n = (x.astype(np.float64) for x in arrays)
    if o.get("squared"):
        d1, d2 = ((a - p) ** 2).sum(-1), ((a - n) ** 2).sum(-1)
    else:
        q, eps = o.get("p_norm", 2.0), o.get("eps", 1e-6)
        d1 = (np.abs(a - p + eps) ** q).sum(-1) ** (1 / q)
        d2 = (np.abs(a - n + eps) ** q).sum(-1) ** (1 / q)
    return d1 - d2 + o.get("margin", 1.0)


def _categorical_hinge_inner(arrays, options):
    x, y = (a.astype(np.float64) for a in arrays)
    return ((1 - y) * x).max(-1) - (y * x).sum(-1) + 1


_KINKS = {"triplet_margin_loss": _triplet_margin_term, "categorical_hinge": _categorical_hinge_inner}
