"""Gradient-boosting training time with fastloss's objectives, the same objectives written
in NumPy, and each library's built-in objective, in one run, rounds interleaved.

    python benchmarks/scripts/boosting.py [--rows 21000] [--rounds 100] [--repeats 3]

XGBoost and LightGBM (native APIs) and CatBoost, binary (sigmoid cross-entropy) and
5-class (softmax cross-entropy). CatBoost calls a multi-class objective once per sample
from Python, so its 5-class case trains on a tenth of the rows and rounds. Prints, per
case, the median and minimum seconds of each objective and the ratio NumPy / fastloss
(above 1: fastloss is faster).
"""

import argparse
import time

import numpy as np


def data(rows, classes, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, 10))
    score = X[:, 0] - 0.5 * X[:, 1] + 0.3 * X[:, 2] * X[:, 3] + 0.2 * rng.normal(size=rows)
    if classes == 2:
        return X, (score > 0).astype(np.float64)
    return X, np.digitize(score, np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])).astype(np.float64)


def numpy_derivatives(margins, labels, classes):
    """The reference objective: sigmoid or softmax cross-entropy, gradient and hessian."""
    if classes == 2:
        p = 1.0 / (1.0 + np.exp(-margins))
        return p - labels, p * (1.0 - p)
    z = margins - margins.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    grad = p.copy()
    grad[np.arange(len(labels)), labels.astype(np.intp)] -= 1.0
    return grad, p * (1.0 - p)


def loss_name(classes):
    return "sigmoid_binary_cross_entropy" if classes == 2 else "sparse_softmax_cross_entropy"


def xgboost_runs(X, y, classes, rounds):
    import xgboost as xgb

    import fastloss.xgboost as flx

    d = xgb.DMatrix(X, label=y)
    params = {"tree_method": "hist", "max_depth": 6, "base_score": 0.0, "disable_default_eval_metric": 1}
    if classes > 2:
        params["num_class"] = classes
    builtin = {**params, "objective": "binary:logistic" if classes == 2 else "multi:softprob"}
    builtin.pop("base_score")
    return {
        "fastloss": lambda: xgb.train(params, d, rounds, obj=flx.objective(loss_name(classes))),
        "numpy": lambda: xgb.train(params, d, rounds, obj=lambda p, dt: numpy_derivatives(p, dt.get_label(), classes)),
        "built-in": lambda: xgb.train(builtin, d, rounds),
    }


def lightgbm_runs(X, y, classes, rounds):
    import lightgbm as lgb

    import fastloss.lightgbm as fll

    d = lgb.Dataset(X, label=y, params={"verbose": -1}, free_raw_data=False).construct()
    params = {"verbose": -1, "num_leaves": 63}
    if classes > 2:
        params["num_class"] = classes
    builtin = {**params, "objective": "binary" if classes == 2 else "multiclass"}
    ours = {**params, "objective": fll.objective(loss_name(classes))}
    theirs = {**params, "objective": lambda p, dt: numpy_derivatives(p, dt.get_label(), classes)}
    return {
        "fastloss": lambda: lgb.train(ours, d, rounds),
        "numpy": lambda: lgb.train(theirs, d, rounds),
        "built-in": lambda: lgb.train(builtin, d, rounds),
    }


class NumpyCatBoostObjective:
    no_jit = True

    def __init__(self, classes):
        self.classes = classes

    def calc_ders_range(self, approxes, targets, weights):
        grad, hess = numpy_derivatives(np.asarray(approxes), np.asarray(targets), 2)
        return np.column_stack((-grad, -hess))

    def calc_ders_multi(self, approx, target, weight):
        grad, hess = numpy_derivatives(np.asarray(approx)[None, :], np.array([target]), self.classes)
        return -grad[0], np.diag(-hess[0])


def catboost_runs(X, y, classes, rounds):
    import catboost

    import fastloss.catboost as flc

    cls = catboost.CatBoostClassifier
    kw = dict(iterations=rounds, depth=6, verbose=0, random_seed=0, allow_writing_files=False)
    metric = "Logloss" if classes == 2 else "MultiClass"
    if classes > 2:
        kw["classes_count"] = classes
    return {
        "fastloss": lambda: cls(loss_function=flc.objective(loss_name(classes)), eval_metric=metric, **kw).fit(X, y),
        "numpy": lambda: cls(loss_function=NumpyCatBoostObjective(classes), eval_metric=metric, **kw).fit(X, y),
        "built-in": lambda: cls(loss_function=metric, **kw).fit(X, y),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=21000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--libraries", nargs="+", default=["xgboost", "lightgbm", "catboost"])
    args = parser.parse_args()
    makers = {"xgboost": xgboost_runs, "lightgbm": lightgbm_runs, "catboost": catboost_runs}
    print("| library | classes | rows x rounds | fastloss s (median, min) | NumPy objective s | built-in s "
          "| NumPy / fastloss |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for library in args.libraries:
        for classes in (2, 5):
            rows, rounds = args.rows, args.rounds
            if library == "catboost" and classes > 2:
                rows, rounds = rows // 10, max(1, rounds // 10)
            X, y = data(rows, classes)
            runs = makers[library](X, y, classes, rounds)
            times = {k: [] for k in runs}
            for run in runs.values():  # warm-up: compilation, first allocations
                run()
            for _ in range(args.repeats):
                for k, run in runs.items():
                    t = time.perf_counter()
                    run()
                    times[k].append(time.perf_counter() - t)
            med = {k: float(np.median(v)) for k, v in times.items()}
            low = {k: min(v) for k, v in times.items()}
            cells = [f"{med[k]:.2f}, {low[k]:.2f}" for k in ("fastloss", "numpy", "built-in")]
            print(f"| {library} | {classes} | {rows} x {rounds} | " + " | ".join(cells)
                  + f" | {med['numpy'] / med['fastloss']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
