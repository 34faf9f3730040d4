"""Custom objectives for gradient-boosting libraries, from the registry.

A boosting library asks, each round, for the gradient and hessian diagonal of the loss
of every sample with respect to its raw margin (score). fastloss computes both in one
fused pass (``reduction="none"``, ``hessian=True``) with the data set's labels and
weights. :class:`Objective` is one callable for both of a library's APIs: the native one
calls it with ``(margins, data set)``, the scikit-learn one with ``(y_true, y_pred[,
sample_weight[, group]])``. The adapters in :mod:`fastloss.xgboost`,
:mod:`fastloss.lightgbm` and :mod:`fastloss.catboost` only say how each library's data set
gives its labels and weights.

Threads: a library calls the objective between its own parallel loops, whose OpenMP
threads (XGBoost ships its own OpenMP runtime) may still be spinning on every core. An
objective therefore runs on ``num_threads`` threads, 1 by default, which is already faster
than the same objective in NumPy (``benchmarks/scripts/boosting.py``).
"""

import numpy as np

import fastloss as _fl

from ._threads import num_threads as _num_threads

#: Losses with a hessian whose targets can be a data set's label vector.
SUPPORTED = (
    "mean_squared_error", "pseudo_huber", "log_cosh", "poisson", "sigmoid_binary_cross_entropy",
    "sparse_softmax_cross_entropy",
)


class Objective:
    """A custom objective for ``library``: ``obj(margins, data) -> (grad, hess)`` in the
    native API, ``obj(y_true, y_pred, sample_weight=None, group=None) -> (grad, hess)`` in
    the scikit-learn one. ``labels_and_weights(data)`` reads a native data set."""

    def __init__(self, name, options, library, labels_and_weights, num_threads=1):
        self.compute = gradient_and_hessian(name, options, library, num_threads)
        self.labels_and_weights = labels_and_weights
        self.__name__ = f"fastloss_{_fl.lookup(name).name}"

    def __call__(self, first, second, sample_weight=None, group=None):
        if hasattr(second, "get_label"):  # native: (margins, data set)
            return self.compute(first, *self.labels_and_weights(second))
        return self.compute(second, first, sample_weight)  # scikit-learn: (y_true, y_pred)

    def __repr__(self):
        return f"<fastloss objective {self.__name__[len('fastloss_'):]}>"


def gradient_and_hessian(name, options, library, num_threads=1):
    """``f(margins, labels, weights) -> (grad, hess)`` for loss ``name`` (or an alias),
    on ``num_threads`` threads.

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
        else:
            if margins.ndim == 2 and margins.shape[1] == 1:
                margins = margins[:, 0]
            # The libraries keep labels (and weights) in float32 beside float64 margins: one
            # dtype keeps the call on the compiled fast path (some 10 us, not 100).
            labels = labels.astype(margins.dtype, copy=False)
        weights = None if weights is None or np.size(weights) == 0 else np.asarray(weights, dtype=np.float64)
        with _num_threads(num_threads):
            res = loss(margins, labels, reduction="none", hessian=True, sample_weight=weights, **options)
        return res.grad, res.hess

    return compute
