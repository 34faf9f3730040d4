"""fastloss.xgboost and fastloss.lightgbm objectives: trained models match the libraries'
built-in objectives where the gradients and hessians agree (binary logistic; squared error
without regularisation), and a NumPy reference objective for multi-class."""

import subprocess
import sys

import numpy as np
import pytest

import fastloss as fl


def _data(rng, n=400, classes=None):
    X = rng.normal(size=(n, 5))
    score = X[:, 0] - 0.5 * X[:, 1] + 0.3 * X[:, 2] * X[:, 3]
    if classes is None:
        return X, score + 0.1 * rng.normal(size=n), (score > 0).astype(float)
    return X, np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])).astype(float)


def _softmax_reference(margins, labels):
    """Independent NumPy multi-class objective: p - onehot, p (1 - p)."""
    z = margins - margins.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    onehot = np.eye(margins.shape[1])[labels.astype(int)]
    return p - onehot, p * (1 - p)


class TestXGBoost:
    xgb = pytest.importorskip("xgboost")
    flx = pytest.importorskip("fastloss.xgboost")

    def _train(self, params, X, y, obj=None, rounds=15, weight=None):
        d = self.xgb.DMatrix(X, label=y, weight=weight)
        booster = self.xgb.train({"tree_method": "hist", "max_depth": 3, "eta": 0.3, **params}, d, rounds, obj=obj)
        return booster.predict(self.xgb.DMatrix(X), output_margin=True)

    def test_binary_matches_binary_logistic(self, rng):
        X, _, y = _data(rng)
        ours = self._train({"base_score": 0.0}, X, y, self.flx.objective("sigmoid_binary_cross_entropy"))
        theirs = self._train({"objective": "binary:logistic", "base_score": 0.5}, X, y)
        np.testing.assert_allclose(ours, theirs, atol=1e-3)

    def test_squared_error_matches_reg_squarederror_without_regularisation(self, rng):
        X, y, _ = _data(rng)
        plain = {"base_score": 0.0, "lambda": 0.0, "min_child_weight": 0.0}
        ours = self._train(plain, X, y, self.flx.objective("mse"))
        theirs = self._train({**plain, "objective": "reg:squarederror"}, X, y)
        np.testing.assert_allclose(ours, theirs, atol=1e-3)

    def test_multiclass_matches_a_numpy_objective(self, rng):
        X, y = _data(rng, classes=3)
        params = {"num_class": 3, "base_score": 0.0, "disable_default_eval_metric": 1}
        ours = self._train(params, X, y, self.flx.objective("sparse_softmax_cross_entropy"))
        ref = self._train(params, X, y, lambda p, d: _softmax_reference(p, d.get_label()))
        np.testing.assert_allclose(ours, ref, atol=1e-3)
        assert (ours.argmax(axis=1) == y).mean() > 0.8

    def test_weights_reach_the_gradient(self, rng):
        X, _, y = _data(rng, n=50)
        w = rng.uniform(0.1, 3.0, size=50).astype(np.float32)  # XGBoost stores weights as float32
        margins = rng.normal(size=50).astype(np.float32)
        grad, hess = self.flx.objective("sigmoid_binary_cross_entropy")(margins, self.xgb.DMatrix(X, label=y, weight=w))
        want = fl.sigmoid_binary_cross_entropy(margins, y.astype(np.float32), reduction="none", hessian=True,
                                               sample_weight=w)
        np.testing.assert_allclose(grad, want.grad)
        np.testing.assert_allclose(hess, want.hess)

    def test_bad_objectives(self):
        with pytest.raises(ValueError, match="hessian"):
            self.flx.objective("huber")
        with pytest.raises(TypeError, match="per-sample"):
            self.flx.objective("mse", reduction="mean")


class TestLightGBM:
    lgb = pytest.importorskip("lightgbm")
    fll = pytest.importorskip("fastloss.lightgbm")
    base = {"verbose": -1, "num_leaves": 8, "learning_rate": 0.3, "deterministic": True, "num_threads": 1}

    def _train(self, params, X, y, rounds=15, weight=None):
        ds = self.lgb.Dataset(X, label=y, weight=weight, params={"verbose": -1})
        model = self.lgb.train({**self.base, **params}, ds, rounds)
        return model.predict(X, raw_score=True)

    def test_binary_matches_binary(self, rng):
        X, _, y = _data(rng)
        ours = self._train({"objective": self.fll.objective("sigmoid_binary_cross_entropy")}, X, y)
        theirs = self._train({"objective": "binary", "boost_from_average": False}, X, y)
        np.testing.assert_allclose(ours, theirs, atol=1e-3)

    def test_squared_error_matches_regression_without_regularisation(self, rng):
        X, y, _ = _data(rng)
        plain = {"lambda_l2": 0.0, "min_sum_hessian_in_leaf": 0.0, "boost_from_average": False}
        ours = self._train({**plain, "objective": self.fll.objective("mse")}, X, y)
        theirs = self._train({**plain, "objective": "regression"}, X, y)
        np.testing.assert_allclose(ours, theirs, atol=1e-3)

    def test_multiclass_matches_a_numpy_objective(self, rng):
        X, y = _data(rng, classes=3)
        params = {"num_class": 3}
        ours = self._train({**params, "objective": self.fll.objective("sparse_softmax_cross_entropy")}, X, y)
        ref = self._train({**params, "objective": lambda p, d: _softmax_reference(p, d.get_label())}, X, y)
        np.testing.assert_allclose(ours, ref, atol=1e-3)
        assert (ours.argmax(axis=1) == y).mean() > 0.8


@pytest.mark.parametrize("module,extra", [("xgboost", "xgboost"), ("lightgbm", "lightgbm")])
def test_missing_library_names_the_extra(module, extra):
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            f"try:\n import fastloss.{module}\nexcept ImportError as e: print(e)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert f'pip install "fastloss[{extra}]"' in done.stdout, done.stdout + done.stderr
