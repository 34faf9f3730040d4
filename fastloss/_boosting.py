"""Custom objectives for gradient-boosting libraries, from the registry.

A boosting library asks, each round, for the gradient and hessian diagonal of the loss
of every sample with respect to its raw margin (score). fastloss computes both in one
fused pass (``reduction="none"``, ``hessian=True``) with the data set's labels and
weights. The adapters in :mod:`fastloss.xgboost` and :mod:`fastloss.lightgbm` only read
the labels and weights from each library's data set.
"""

import numpy as np

import fastloss as _fl

#: Losses with a hessian whose targets can be a data set's label vector.
SUPPORTED = (
    "mean_squared_error", "pseudo_huber", "log_cosh", "poisson", "sigmoid_binary_cross_entropy",
    "sparse_softmax_cross_entropy",
)


def objective(name, options, library, labels_and_weights):
    """A custom objective ``obj(margins, data) -> (grad, hess)`` for ``library``, reading
    the data set's labels and weights with ``labels_and_weights(data)``."""
    compute = gradient_and_hessian(name, options, library)

    def obj(margins, data):
        return compute(margins, *labels_and_weights(data))

    obj.__name__ = f"fastloss_{name}"
    return obj


def gradient_and_hessian(name, options, library):
    """``f(margins, labels, weights) -> (grad, hess)`` for loss ``name`` (or an alias).

    ``margins`` are (n,) for one output per sample, (n, K) for K classes (sparse softmax
    cross-entropy, whose labels arrive as floats and are taken as class indices).
    """
    spec = _fl.lookup(name)
    if spec.name not in SUPPORTED:
        raise ValueError(
            f"{library} objectives need a loss with a hessian and one label per sample; "
            f"{spec.name!r} is not one of {SUPPORTED}"
        )
    refused = {"reduction", "hessian", "grad", "out", "sample_weight"} & set(options)
    if refused:
        raise TypeError(f"the objective sets {sorted(refused)} itself (per-sample gradients and hessians)")
    loss = getattr(_fl, spec.name)
    classes = spec.name == "sparse_softmax_cross_entropy"

    def compute(margins, labels, weights):
        margins = np.asarray(margins)
        labels = np.asarray(labels)
        if classes:
            if margins.ndim != 2:
                raise ValueError(f"{library} gave margins of shape {margins.shape}; multi-class needs (n, K)")
            labels = np.rint(labels).astype(np.intp)
        elif margins.ndim == 2 and margins.shape[1] == 1:
            margins = margins[:, 0]
        weights = None if weights is None or np.size(weights) == 0 else np.asarray(weights)
        res = loss(margins, labels, reduction="none", hessian=True, sample_weight=weights, **options)
        return res.grad, res.hess

    return compute
