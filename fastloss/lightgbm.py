"""LightGBM custom objectives from fastloss losses: ``fastloss.lightgbm.objective(name, **options)``.

    >>> import lightgbm as lgb, fastloss.lightgbm as fll
    >>> model = lgb.train({"objective": fll.objective("sigmoid_binary_cross_entropy")}, train_set)

The objective has LightGBM's signature ``objective(preds, train_data) -> (grad, hess)``:
per-sample gradient and hessian diagonal of the loss at the raw scores, with the Dataset's
labels and weights, from one fused pass; multi-class scores are (n, num_class). As for
XGBoost, the hessians are the loss's own (exact softmax diagonal; 2 for r^2).

Install with ``pip install "fastloss[lightgbm]"``.
"""

try:
    import lightgbm  # noqa: F401 - a clear error now rather than at training time
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError('fastloss.lightgbm needs LightGBM: pip install "fastloss[lightgbm]"') from exc

from . import _boosting
from ._boosting import SUPPORTED

__all__ = ["SUPPORTED", "objective"]


def objective(name, **options):
    """LightGBM custom objective ``objective(preds, train_data) -> (grad, hess)`` for ``name``."""
    return _boosting.objective(name, options, "LightGBM", lambda d: (d.get_label(), d.get_weight()))
