"""The registry: every loss fastloss has, with its inputs, options and math.

A :class:`LossSpec` says everything the generic call path needs to know about a loss;
``fastloss.<name>`` functions are generated from these entries, and :func:`fastloss.losses`
lists them.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import _options as opt
from .losses import binary, cross_entropy, divergences, embedding, focal, generative, hinge, regression
from .math.portable import Portable


@dataclass(frozen=True)
class LossSpec:
    """What the generic call path knows about one loss.

    family: ``"elementwise"`` (every element is a sample) or ``"rowwise"`` (a loss per row
    of the last, or ``axis``, axis).
    inputs: argument names, in order; the first ``grads`` of them get a gradient.
    target: how the second input is read: ``"float"`` (real, the first input's shape),
    ``"labels"`` (integers in [0, C), the shape without the class axis),
    ``"float_or_labels"`` (either, by dtype) or ``"none"`` (every input is differentiable).
    params: ``(options, arrays) -> tuple of floats`` handed to the math.
    aux: ``(options, arrays) -> array or None``, the math's per-element or per-class array.
    denominator: ``(options, arrays) -> float``, the divisor of ``"mean"`` where it is not
    the number of losses.
    finish: ``(sum, n) -> (loss, gradient factor)`` for a loss that is a function of the
    reduced sum (RMSE), ``n`` the divisor of the reduction (the number of losses for
    ``"mean"``, 1 for ``"sum"``); plain math, which the CUDA backend compiles as a device
    function.
    data_params: whether ``params`` may read the arrays (hinge's 0/1 rule), so that the
    parameters of the default options cannot be computed once, ahead of the data.
    """

    name: str
    family: str
    inputs: tuple
    math: Portable
    formula: str
    convention: str
    grads: int = 1
    target: str = "float"
    options: tuple = ()
    params: Callable = lambda o, a: ()
    hessian: bool = False
    sparse_math: Portable | None = None
    option_math: tuple = ()  # (option name, Portable): the math for calls with that option set
    aux: Callable | None = None
    denominator: Callable | None = None
    finish: Callable | None = None
    reductions: tuple = ("mean", "sum", "none")
    aliases: tuple = field(default=())
    data_params: bool = False

    def math_for(self, sparse, options):
        """The loss math of a call: ``sparse_math`` for integer labels, ``option_math``'s
        function where its option is set, else ``math``."""
        if sparse and self.sparse_math is not None:
            return self.sparse_math
        if self.option_math and options[self.option_math[0]]:
            return self.option_math[1]
        return self.math

    @property
    def option_names(self):
        return tuple(o.name for o in self.options)

    @property
    def option_map(self):
        return {o.name: o for o in self.options}


# --- options shared by several losses ---------------------------------------------------

EPS = opt.Option("eps", 1e-7, "clipping / stabilising constant", opt.nonnegative("eps"))
DELTA = opt.Option("delta", 1.0, "scale where the loss turns linear", opt.nonnegative("delta"))
LABEL_SMOOTHING = opt.Option(
    "label_smoothing", 0.0, "share of the target spread uniformly", opt.closed_unit("label_smoothing")
)
GAMMA = opt.Option("gamma", 2.0, "focusing exponent", opt.nonnegative("gamma"))


HINGE_TARGETS = opt.Option(
    "targets", "auto",
    "how y is read: 'auto' maps y to 2y - 1 when every y (NaN aside) is 0 or 1, as Keras does, "
    "'zero_one' always maps it, 'signed' takes y as given (-1/1)",
    opt.one_of("targets", ("auto", "zero_one", "signed")),
)


def _zero_one(o, a):
    """Whether hinge's targets are mapped from {0, 1} to {-1, 1}: the ``targets`` option,
    or with ``"auto"`` Keras's rule, every target 0 or 1 (NaN targets are left out of the
    decision, so that a NaN touches only its own sample). A device backend decides on the
    GPU and passes the answer, a bool, as the target."""
    if o["targets"] != "auto":
        return o["targets"] == "zero_one"
    t = a[1]
    if isinstance(t, bool):
        return t
    return bool(np.all((t == 0) | (t == 1) | np.isnan(t)))


def _rmse_finish(total, n):
    """RMSE from the weighted sum of squares S and the divisor n: sqrt(S / n), NaN where
    that has no real value (n = 0, the mean of nothing; S < 0, which negative weights
    can give; S NaN); the gradient 2 w r of S is multiplied by 1 / (2 n RMSE): NaN with
    a NaN loss, as PyTorch's ``sqrt`` gives, and 0 at RMSE = 0 (the subgradient, where
    PyTorch's would be NaN)."""
    loss = math.sqrt(total / n) if n != 0.0 and total >= 0.0 else math.nan
    return loss, (0.5 / (n * loss) if loss != 0.0 else 0.0)


def _pos_weight_array(o, a):
    pw = o["pos_weight"]
    if pw is None or pw.ndim == 0:
        return None
    try:
        return np.broadcast_to(pw, a[0].shape)
    except ValueError:
        raise ValueError(
            f"pos_weight of shape {pw.shape} does not broadcast to the logits' shape {a[0].shape}"
        ) from None


def _pos_weight_params(o, a):
    pw = o["pos_weight"]
    scalar = 1.0 if pw is None else (float(pw) if pw.ndim == 0 else 0.0)
    is_array = 0.0 if pw is None or pw.ndim == 0 else 1.0
    return (o["label_smoothing"], scalar, is_array)


def _sparse_ce_denominator(o, a):
    """Rows counted by ``"mean"``: those not ignored, or with class_weight the sum of
    class_weight[label] over them (PyTorch's ``cross_entropy``)."""
    labels = a[1]
    if o["ignore_index"] is not None:
        labels = labels[labels != o["ignore_index"]]
    if o["class_weight"] is None:
        return float(labels.size)
    return float(np.asarray(o["class_weight"], dtype=np.float64)[labels].sum())




SPECS = (
    # --- regression -------------------------------------------------------------------
    LossSpec(
        "mean_squared_error", "elementwise", ("pred", "target"), regression.squared_error,
        "r^2, r = pred - target", "Keras, PyTorch mse_loss", hessian=True, aliases=("mse",),
    ),
    LossSpec(
        "mean_absolute_error", "elementwise", ("pred", "target"), regression.absolute_error,
        "|r|, gradient sign(r) with sign(0) = 0", "Keras, PyTorch l1_loss", aliases=("mae",),
    ),
    LossSpec(
        "root_mean_squared_error", "elementwise", ("pred", "target"), regression.squared_error,
        "sqrt(sum(w r^2) / count) for \"mean\", sqrt(sum(w r^2)) for \"sum\"; gradient 0 where the loss is 0",
        "Keras RootMeanSquaredError", finish=_rmse_finish, reductions=("mean", "sum"),
        aliases=("rmse",),
    ),
    LossSpec(
        "mean_squared_logarithmic_error", "elementwise", ("pred", "target"),
        regression.squared_log_error,
        "(log1p(max(pred, eps)) - log1p(max(target, eps)))^2", "Keras msle",
        options=(EPS,), params=lambda o, a: (o["eps"],), aliases=("msle",),
    ),
    LossSpec(
        "mean_absolute_percentage_error", "elementwise", ("pred", "target"),
        regression.absolute_percentage_error,
        "100 |r| / max(|target|, eps)", "Keras mape",
        options=(EPS,), params=lambda o, a: (o["eps"],), aliases=("mape",),
    ),
    LossSpec(
        "huber", "elementwise", ("pred", "target"), regression.huber,
        "0.5 r^2 if |r| <= delta else delta (|r| - delta / 2)", "Keras Huber, PyTorch huber_loss",
        options=(DELTA,), params=lambda o, a: (o["delta"],), hessian=True,
    ),
    LossSpec(
        "pseudo_huber", "elementwise", ("pred", "target"), regression.pseudo_huber,
        "delta^2 (sqrt(1 + (r / delta)^2) - 1)", "scipy.special.pseudo_huber",
        options=(DELTA,), params=lambda o, a: (o["delta"],), hessian=True,
    ),
    LossSpec(
        "log_cosh", "elementwise", ("pred", "target"), regression.log_cosh,
        "log(cosh(r))", "Keras log_cosh", hessian=True,
    ),
    LossSpec(
        "poisson", "elementwise", ("pred", "target"), regression.poisson,
        "pred - target log(pred + eps); log_input: exp(pred) - target pred",
        "Keras poisson, PyTorch poisson_nll_loss(full=False)",
        options=(
            opt.Option("log_input", False, "pred is the log of the rate", opt.flag("log_input")),
            EPS,
        ),
        params=lambda o, a: (float(o["log_input"]), o["eps"]), hessian=True,
        option_math=("log_input", regression.poisson_log_rate),
    ),
    # --- binary and multi-label classification ----------------------------------------
    LossSpec(
        "binary_cross_entropy", "elementwise", ("p", "y"), binary.binary_cross_entropy,
        "-(y log q + (1 - y) log(1 - q)), q = clip(p, eps, 1 - eps)",
        "Keras binary_crossentropy(from_logits=False)",
        options=(EPS,), params=lambda o, a: (o["eps"],),
    ),
    LossSpec(
        "sigmoid_binary_cross_entropy", "elementwise", ("z", "y"),
        binary.sigmoid_binary_cross_entropy,
        "pos_weight y softplus(-z) + (1 - y) softplus(z); smoothing y -> y (1 - ls) + ls / 2",
        "PyTorch binary_cross_entropy_with_logits (multi-label)",
        options=(
            opt.Option(
                "pos_weight", None, "weight of the positive term (scalar or broadcast to z)",
                opt.optional_array("pos_weight"),
            ),
            LABEL_SMOOTHING,
        ),
        params=_pos_weight_params, aux=_pos_weight_array, hessian=True,
    ),
    LossSpec(
        "hinge", "elementwise", ("pred", "y"), hinge.hinge,
        "max(0, 1 - y pred); targets all in {0, 1} (NaN aside) are mapped to {-1, 1}", "Keras hinge",
        options=(HINGE_TARGETS,), params=lambda o, a: (float(_zero_one(o, a)),), data_params=True,
    ),
    LossSpec(
        "squared_hinge", "elementwise", ("pred", "y"), hinge.squared_hinge,
        "max(0, 1 - y pred)^2; targets all in {0, 1} are mapped to {-1, 1}", "Keras squared_hinge",
        options=(HINGE_TARGETS,), params=lambda o, a: (float(_zero_one(o, a)),), data_params=True,
    ),
    LossSpec(
        "sigmoid_focal_loss", "elementwise", ("z", "y"), focal.sigmoid_focal_loss,
        "alpha_t (1 - p_t)^gamma BCE(z, y), alpha_t = alpha y + (1 - alpha)(1 - y)",
        "torchvision sigmoid_focal_loss",
        options=(
            opt.Option(
                "alpha", 0.25, "weight of the positive class; None or negative: no weighting",
                opt.optional_real("alpha"),
            ),
            GAMMA,
        ),
        params=lambda o, a: (
            0.0 if o["alpha"] is None else o["alpha"],
            o["gamma"],
            float(o["alpha"] is not None and o["alpha"] >= 0.0),
        ),
    ),
    # --- multi-class: the class axis --------------------------------------------------
    LossSpec(
        "categorical_hinge", "rowwise", ("pred", "y"), hinge.categorical_hinge,
        "max(0, 1 + max_j((1 - y_j) pred_j) - sum_j y_j pred_j)", "Keras categorical_hinge",
    ),
    LossSpec(
        "categorical_cross_entropy", "rowwise", ("p", "y"), cross_entropy.categorical_cross_entropy,
        "-sum_j y_j log(clip(p_j / sum p, eps, 1 - eps)); smoothing y -> y (1 - ls) + ls / C",
        "Keras categorical_crossentropy(from_logits=False)",
        options=(EPS, LABEL_SMOOTHING), params=lambda o, a: (o["eps"], o["label_smoothing"]),
    ),
    LossSpec(
        "softmax_cross_entropy", "rowwise", ("z", "y"), cross_entropy.softmax_cross_entropy,
        "-sum_j y_j log_softmax(z)_j; smoothing y -> y (1 - ls) + ls / C",
        "PyTorch cross_entropy with probabilities, optax softmax_cross_entropy",
        options=(LABEL_SMOOTHING,), params=lambda o, a: (o["label_smoothing"],), hessian=True,
    ),
    LossSpec(
        "sparse_softmax_cross_entropy", "rowwise", ("z", "labels"),
        cross_entropy.sparse_softmax_cross_entropy,
        "logsumexp(z) - z_label (with class weights and smoothing as PyTorch)",
        "PyTorch cross_entropy with class indices",
        target="labels",
        options=(
            opt.Option("ignore_index", None, "label whose rows count for nothing",
                       opt.optional_index("ignore_index")),
            opt.Option("class_weight", None, "weight of each class, shape (C,)",
                       opt.optional_array("class_weight")),
            LABEL_SMOOTHING,
        ),
        params=lambda o, a: (
            o["label_smoothing"],
            0.0 if o["ignore_index"] is None else float(o["ignore_index"]),
            float(o["ignore_index"] is not None),
        ),
        aux=lambda o, a: o["class_weight"],
        denominator=_sparse_ce_denominator, hessian=True,
    ),
    LossSpec(
        "kl_divergence", "rowwise", ("p", "q"), divergences.kl_divergence,
        "sum_j q_j log(q_j / p_j), both clipped to [eps, 1]",
        "Keras kl_divergence(y_true=q, y_pred=p)",
        options=(EPS,), params=lambda o, a: (o["eps"],),
    ),
    LossSpec(
        "softmax_kl_divergence", "rowwise", ("z", "q"), divergences.softmax_kl_divergence,
        "sum_j q_j (log q_j - log_softmax(z)_j), 0 log 0 = 0",
        "PyTorch kl_div(log_softmax(z), q, reduction=\"batchmean\") per row",
        options=(opt.Option("log_target", False, "q is given as log q", opt.flag("log_target")),),
        params=lambda o, a: (float(o["log_target"]),),
    ),
    LossSpec(
        "js_divergence", "rowwise", ("z_p", "z_q"), divergences.js_divergence,
        "beta KL(P || M) + (1 - beta) KL(Q || M), M = beta P + (1 - beta) Q, P, Q softmaxes",
        "generalised JSD as in Liger-Kernel",
        grads=2, target="none",
        options=(opt.Option("beta", 0.5, "mixing weight, 0 < beta < 1", opt.open_unit("beta")),),
        params=lambda o, a: (o["beta"],),
    ),
    LossSpec(
        "softmax_focal_loss", "rowwise", ("z", "y"), focal.softmax_focal_loss,
        "-sum_j alpha y_j (1 - p_j)^gamma log p_j, p = softmax(z)",
        "Keras CategoricalFocalCrossentropy(from_logits=True)",
        target="float_or_labels", sparse_math=focal.sparse_softmax_focal_loss,
        options=(
            opt.Option("alpha", 0.25, "weight of every class; None: 1", opt.optional_real("alpha")),
            GAMMA,
        ),
        params=lambda o, a: (1.0 if o["alpha"] is None else o["alpha"], o["gamma"]),
    ),
    # --- generative models and embeddings ---------------------------------------------
    LossSpec(
        "gan_discriminator_loss", "elementwise", ("real_logits", "fake_logits"),
        generative.gan_discriminator,
        "softplus(-z_real) + softplus(z_fake)", "-[log D(x) + log(1 - D(G(z)))]",
        grads=2, target="none",
    ),
    LossSpec(
        "gan_generator_loss", "elementwise", ("fake_logits",), generative.gan_generator,
        "softplus(-z) (non-saturating); saturating: -softplus(z) = log(1 - D(G(z)))",
        "Goodfellow et al. 2014", target="none",
        options=(opt.Option("saturating", False, "use log(1 - D(G(z)))", opt.flag("saturating")),),
        params=lambda o, a: (float(o["saturating"]),),
    ),
    LossSpec(
        "triplet_margin_loss", "rowwise", ("anchor", "positive", "negative"),
        embedding.triplet_margin_loss,
        "max(0, d(a, p) - d(a, n) + margin), d(x, y) = ||x - y + eps||_p; squared: sum (x - y)^2",
        "PyTorch triplet_margin_loss", grads=3, target="none",
        options=(
            opt.Option("margin", 1.0, "required gap between the distances", opt.nonnegative("margin")),
            opt.Option("p", 2.0, "order of the norm (>= 1)", opt.at_least_one("p")),
            opt.Option("squared", False, "use squared Euclidean distances", opt.flag("squared")),
            opt.Option("eps", 1e-6, "added to the difference before the norm", opt.nonnegative("eps")),
        ),
        params=lambda o, a: (o["margin"], o["p"], o["eps"], float(o["squared"])),
    ),
    LossSpec(
        "vae_kl_divergence", "rowwise", ("mu", "logvar"), generative.vae_kl_divergence,
        "-0.5 sum_j (1 + logvar_j - mu_j^2 - exp(logvar_j)) per row", "Kingma and Welling 2014",
        grads=2, target="none",
    ),
)

REGISTRY = {s.name: s for s in SPECS}
ALIASES = {a: s.name for s in SPECS for a in s.aliases}


def export(namespace, make):
    """Put ``make(spec)`` into ``namespace`` under every loss's name and aliases (the
    package and each adapter generate their functions this way); returns the names."""
    for spec in SPECS:
        namespace[spec.name] = make(spec)
    for alias, name in ALIASES.items():
        namespace[alias] = namespace[name]
    return [*REGISTRY, *ALIASES]


def lookup(name):
    """The spec of the loss called ``name`` (or one of its aliases)."""
    spec = REGISTRY.get(ALIASES.get(name, name))
    if spec is None:
        raise ValueError(f"unknown loss {name!r}; fastloss.losses() lists them")
    return spec
