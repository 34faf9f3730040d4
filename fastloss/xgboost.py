"""XGBoost custom objectives from fastloss losses: ``fastloss.xgboost.objective(name, **options)``.

    >>> import xgboost as xgb, fastloss.xgboost as flx
    >>> booster = xgb.train({"base_score": 0.0}, dtrain, obj=flx.objective("sigmoid_binary_cross_entropy"))
    >>> model = xgb.XGBClassifier(objective=flx.objective("sparse_softmax_cross_entropy")).fit(X, y)

The objective has both of XGBoost's signatures, ``obj(predt, dtrain) -> (grad, hess)``
for ``xgboost.train`` and ``obj(y_true, y_pred, sample_weight=None)`` for the
scikit-learn estimators (classifiers and regressors): per-sample
gradient and hessian diagonal of the loss at the raw margins, with the DMatrix's labels
and weights, from one fused pass. Multi-class (``sparse_softmax_cross_entropy``) gets
margins of shape (n, num_class) and returns that shape. The hessian is the exact diagonal
(p (1 - p) for softmax), where XGBoost's own ``multi:softprob`` uses 2 p (1 - p), and
mean squared error is r^2 (gradient 2 r, hessian 2), where ``reg:squarederror`` is r^2 / 2:
steps differ where regularisation or ``min_child_weight`` sees the scale.

Install with ``pip install "fastloss[xgboost]"``.
"""

try:
    import xgboost  # noqa: F401 - a clear error now rather than at training time
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError('fastloss.xgboost needs XGBoost: pip install "fastloss[xgboost]"') from exc

from . import _boosting
from ._boosting import SUPPORTED

__all__ = ["SUPPORTED", "objective"]


def objective(name, num_threads=1, **options):
    """XGBoost custom objective for loss ``name``, for both APIs: ``obj(preds, data) -> (grad,
    hess)`` natively, ``obj(y_true, y_pred, sample_weight=None)`` in the scikit-learn API. It
    runs on ``num_threads`` threads (see :mod:`fastloss._boosting`)."""
    return _boosting.Objective(name, options, "XGBoost", lambda d: (d.get_label(), d.get_weight()), num_threads)
