"""LightGBM custom objectives from fastloss losses: ``fastloss.lightgbm.objective(name, **options)``.

    >>> import lightgbm as lgb, fastloss.lightgbm as fll
    >>> model = lgb.train({"objective": fll.objective("sigmoid_binary_cross_entropy")}, train_set)
    >>> model = lgb.LGBMClassifier(objective=fll.objective("sparse_softmax_cross_entropy")).fit(X, y)

The objective has both of LightGBM's signatures, ``objective(preds, train_data) -> (grad,
hess)`` for ``lightgbm.train`` and ``objective(y_true, y_pred, weight, group)`` for the
scikit-learn estimators (classifiers and regressors): per-sample gradient and hessian
diagonal of the loss at the raw scores, with the data set's labels and weights, from one
fused pass; multi-class scores are (n, num_class). As for XGBoost, the hessians are the
loss's own (exact softmax diagonal; 2 for r^2). A scikit-learn estimator with a custom
objective predicts raw scores (LightGBM's rule).

Install with ``pip install "fastloss[lightgbm]"``.
"""

try:
    import lightgbm  # noqa: F401 - a clear error now rather than at training time
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError('fastloss.lightgbm needs LightGBM: pip install "fastloss[lightgbm]"') from exc

from . import _boosting
from ._boosting import SUPPORTED

__all__ = ["SUPPORTED", "objective"]


def objective(name, num_threads=1, **options):
    """LightGBM custom objective for loss ``name``, for both APIs: ``obj(preds, data) -> (grad,
    hess)`` natively, ``obj(y_true, y_pred, sample_weight=None)`` in the scikit-learn API. It
    runs on ``num_threads`` threads (see :mod:`fastloss._boosting`)."""
    return _boosting.Objective(name, options, "LightGBM", lambda d: (d.get_label(), d.get_weight()), num_threads)
