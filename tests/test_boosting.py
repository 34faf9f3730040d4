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


class TestScikitLearnAPIs:
    """The same objective object in the libraries' scikit-learn estimators, classifiers and
    regressors, binary and multi-class, with sample weights: the models equal those trained
    through the native APIs with the same objective."""

    def _native(self, library, X, y, obj, w, params):
        if library == "xgboost":
            xgb = pytest.importorskip("xgboost")
            booster = xgb.train({"tree_method": "hist", "max_depth": 3, "eta": 0.3, "base_score": 0.0, **params},
                                xgb.DMatrix(X, label=y, weight=w), 15, obj=obj)
            return booster.predict(xgb.DMatrix(X), output_margin=True)
        lgb = pytest.importorskip("lightgbm")
        model = lgb.train({**TestLightGBM.base, "objective": obj, **params},
                          lgb.Dataset(X, label=y, weight=w, params={"verbose": -1}), 15)
        return model.predict(X, raw_score=True)

    def _sklearn(self, library, estimator, X, y, obj, w):
        if library == "xgboost":
            xgb = pytest.importorskip("xgboost")
            cls = getattr(xgb, estimator)
            # A binary classifier reads base_score as a probability: 0.5 is the margin 0.
            start = 0.5 if estimator == "XGBClassifier" and y.max() == 1 else 0.0
            model = cls(n_estimators=15, tree_method="hist", max_depth=3, learning_rate=0.3, base_score=start,
                        objective=obj).fit(X, y, sample_weight=w)
            return model.get_booster().predict(xgb.DMatrix(X), output_margin=True)
        lgb = pytest.importorskip("lightgbm")
        cls = getattr(lgb, estimator.replace("XGB", "LGBM"))
        base = {k: v for k, v in TestLightGBM.base.items() if k != "learning_rate"}
        model = cls(n_estimators=15, learning_rate=0.3, objective=obj, **base).fit(X, y, sample_weight=w)
        return model.predict(X, raw_score=True)

    @pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
    @pytest.mark.parametrize("case", ["regressor", "binary", "multiclass"])
    def test_estimators_train_as_the_native_api(self, library, case, rng):
        adapter = pytest.importorskip(f"fastloss.{library}")
        X, target, binary = _data(rng)
        w = rng.uniform(0.5, 2.0, len(X))
        if case == "regressor":
            y, name, estimator, params = target, "mse", "XGBRegressor", {}
        elif case == "binary":
            y, name, estimator, params = binary, "sigmoid_binary_cross_entropy", "XGBClassifier", {}
        else:
            X, y = _data(rng, classes=3)
            name, estimator, params = "sparse_softmax_cross_entropy", "XGBClassifier", {"num_class": 3}
        obj = adapter.objective(name)
        ours = self._sklearn(library, estimator, X, y, obj, w)
        native = self._native(library, X, y, obj, w, params)
        np.testing.assert_allclose(ours, native, rtol=1e-5, atol=1e-5)
        if case != "regressor":
            predicted = ours.argmax(axis=1) if ours.ndim == 2 else (ours > 0)
            assert (predicted == y).mean() > 0.8


class TestCatBoost:
    cb = pytest.importorskip("catboost")
    flc = pytest.importorskip("fastloss.catboost")

    def test_derivatives_are_the_negated_loss_derivatives(self, rng):
        margins, labels = rng.normal(size=50), rng.uniform(0, 1, 50)
        w = rng.uniform(0.5, 2.0, 50)
        ders = self.flc.objective("sigmoid_binary_cross_entropy", label_smoothing=0.1).calc_ders_range(
            margins, labels, w)
        want = fl.sigmoid_binary_cross_entropy(margins, labels, reduction="none", hessian=True, sample_weight=w,
                                               label_smoothing=0.1)
        np.testing.assert_allclose(ders[:, 0], -want.grad, rtol=1e-14)
        np.testing.assert_allclose(ders[:, 1], -want.hess, rtol=1e-14)
        der1, der2 = self.flc.objective("sparse_softmax_cross_entropy").calc_ders_multi(margins[:4], 2.0, 1.5)
        want = fl.sparse_softmax_cross_entropy(margins[None, :4], np.array([2]), reduction="none", hessian=True,
                                               sample_weight=np.array([1.5]))
        np.testing.assert_allclose(der1, -want.grad[0], rtol=1e-14)
        np.testing.assert_allclose(der2, np.diag(-want.hess[0]), rtol=1e-14)

    def test_models_equal_numpy_objectives(self, rng):
        """Trained models equal those of the same objectives written in NumPy (CatBoost's
        signs: the derivatives of the negated loss)."""
        kw = dict(iterations=15, depth=3, learning_rate=0.3, random_seed=0, verbose=0, thread_count=1,
                  allow_writing_files=False)
        X, y, _ = _data(rng)
        w = rng.uniform(0.5, 2.0, len(X))
        fits = [self.cb.CatBoostRegressor(loss_function=obj, eval_metric="RMSE", **kw).fit(X, y, sample_weight=w)
                for obj in (self.flc.objective("mse"), _NumpySquaredError())]
        np.testing.assert_allclose(fits[0].predict(X), fits[1].predict(X), rtol=1e-9, atol=1e-9)
        X, y = _data(rng, n=150, classes=3)
        fits = [self.cb.CatBoostClassifier(loss_function=obj, eval_metric="MultiClass", classes_count=3, **kw)
                .fit(X, y) for obj in (self.flc.objective("sparse_softmax_cross_entropy"), _NumpySoftmax())]
        raw = [f.predict(X, prediction_type="RawFormulaVal") for f in fits]
        np.testing.assert_allclose(raw[0], raw[1], rtol=1e-9, atol=1e-9)

    def test_classifiers_learn(self, rng):
        X, _, y = _data(rng)
        kw = dict(iterations=20, depth=3, learning_rate=0.3, random_seed=0, verbose=0, allow_writing_files=False)
        model = self.cb.CatBoostClassifier(loss_function=self.flc.objective("sigmoid_binary_cross_entropy"),
                                           eval_metric="Logloss", **kw).fit(X, y)
        assert ((model.predict(X, prediction_type="RawFormulaVal") > 0) == y).mean() > 0.85
        X, y = _data(rng, n=200, classes=3)
        model = self.cb.CatBoostClassifier(loss_function=self.flc.objective("sparse_softmax_cross_entropy"),
                                           eval_metric="MultiClass", classes_count=3, **kw).fit(X, y)
        assert (model.predict(X, prediction_type="RawFormulaVal").argmax(axis=1) == y).mean() > 0.8


class _NumpySquaredError:
    no_jit = True

    def calc_ders_range(self, approxes, targets, weights):
        a, t = np.asarray(approxes), np.asarray(targets)
        w = 1.0 if weights is None else np.asarray(weights)
        return np.column_stack((2 * (t - a) * w, -2 * w * np.ones_like(a)))


class _NumpySoftmax:
    no_jit = True

    def calc_ders_multi(self, approx, target, weight):
        grad, hess = _softmax_reference(np.asarray(approx)[None, :], np.array([target]))
        return -grad[0] * weight, np.diag(-hess[0] * weight)


@pytest.mark.parametrize("module,extra", [("xgboost", "xgboost"), ("lightgbm", "lightgbm"), ("catboost", "catboost")])
def test_missing_library_names_the_extra(module, extra):
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            f"try:\n import fastloss.{module}\nexcept ImportError as e: print(e)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert f'pip install "fastloss[{extra}]"' in done.stdout, done.stdout + done.stderr
