"""CatBoost custom objectives from fastloss losses: ``fastloss.catboost.objective(name, **options)``.

    >>> import catboost, fastloss.catboost as flc
    >>> model = catboost.CatBoostClassifier(loss_function=flc.objective("sigmoid_binary_cross_entropy"),
    ...                                     eval_metric="Logloss").fit(X, y)

The objective is an object with CatBoost's ``calc_ders_range(approxes, targets, weights)``
(one output per sample) and ``calc_ders_multi(approx, target, weight)`` (one object of K
classes, ``sparse_softmax_cross_entropy``), in CatBoost's sign convention: CatBoost
maximises, so the first and second derivatives returned are those of the *negated* loss,
``-grad`` and ``-hess``. For K classes the second derivative is the diagonal matrix of
the hessian's diagonal, as XGBoost and LightGBM take it. CatBoost needs ``eval_metric``
named beside a user-defined objective.

Install with ``pip install "fastloss[catboost]"``.
"""

try:
    import catboost  # noqa: F401 - a clear error now rather than at training time
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError('fastloss.catboost needs CatBoost: pip install "fastloss[catboost]"') from exc

import numpy as np

from . import _boosting
from ._boosting import SUPPORTED

__all__ = ["SUPPORTED", "Objective", "objective"]


class Objective:
    """CatBoost's custom-objective interface over one fastloss loss."""

    #: CatBoost compiles a custom objective's methods with Numba where it can; these call
    #: fastloss, which is compiled already.
    no_jit = True

    def __init__(self, name, options, num_threads=1):
        self.name = name
        self._compute = _boosting.gradient_and_hessian(name, options, "CatBoost", num_threads)

    def calc_ders_range(self, approxes, targets, weights):
        """(n, 2): each sample's (-gradient, -hessian) of the loss at its margin."""
        grad, hess = self._compute(np.asarray(approxes, dtype=np.float64), np.asarray(targets),
                                   None if weights is None else np.asarray(weights, dtype=np.float64))
        ders = np.empty((grad.shape[0], 2))
        np.negative(grad, out=ders[:, 0])
        np.negative(hess, out=ders[:, 1])
        return ders

    def calc_ders_multi(self, approx, target, weight):
        """One object's -gradient (K,) and -hessian (K, K, its diagonal) over its K margins."""
        grad, hess = self._compute(np.asarray(approx, dtype=np.float64)[None, :], np.asarray([target]),
                                   None if weight is None else np.asarray([weight], dtype=np.float64))
        return -grad[0], np.diag(-hess[0])


def objective(name, num_threads=1, **options):
    """A CatBoost custom objective (``loss_function=``) for loss ``name``, running on
    ``num_threads`` threads (see :mod:`fastloss._boosting`)."""
    return Objective(name, options, num_threads)
