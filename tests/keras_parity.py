"""fastloss.keras against fastloss itself and Keras's own losses, on the Keras backend named
by KERAS_BACKEND. Run as a script by test_keras_adapter.py; prints one JSON line: the
cases compared and every mismatch.

For every Keras class, each option case of tests/reference.py, each Keras reduction and
with and without ``fit``'s per-sample weights, the class's value and gradient (through the
backend's autograd) must equal the plain call's (``fastloss.<loss>`` with the matching
reduction and weights). SparseSoftmaxCrossEntropy with ignore_index must also equal Keras's
SparseCategoricalCrossentropy(ignore_class=...), and a Keras mask must take rows out of
the loss and out of the mean's count as Keras's own losses do.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/reference.py

import keras  # noqa: E402
import numpy as np  # noqa: E402
from reference import OPTION_CASES, prepared  # noqa: E402

import fastloss as fl  # noqa: E402
import fastloss.keras as flk  # noqa: E402

BACKEND = keras.backend.backend()
REDUCTIONS = {"sum_over_batch_size": "mean", "sum": "sum", None: "none"}


def value_and_grad(fn, pred):
    """fn(pred) and d sum(fn(pred)) / d pred, as NumPy arrays, through the backend."""
    if BACKEND == "torch":
        import torch

        x = torch.from_numpy(pred.copy()).requires_grad_(True)
        value = fn(x)
        value.sum().backward()
        return value.detach().numpy(), x.grad.numpy()
    import jax

    value, grad = jax.value_and_grad(lambda x: fn(x).sum())(pred)
    return np.asarray(fn(pred)), np.asarray(grad)


def class_name(name):
    return "".join(part.capitalize() for part in name.split("_"))


def compare(what, got, expected, failures, rtol):
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=rtol, atol=rtol * 1e-3, equal_nan=True):
        failures.append(f"{what}: got {got.ravel()[:4]} {got.shape}, expected {expected.ravel()[:4]} {expected.shape}")


def main():
    rng = np.random.default_rng(0)
    failures, cases = [], 0
    for name in sorted(fl.losses()):
        cls = getattr(flk, class_name(name), None)
        if cls is None:
            continue
        for options in OPTION_CASES[name]:
            if options.get("labels"):  # integer targets of a float-or-labels loss: not a Keras case
                continue
            arrays, options = prepared(name, options, rng, dtype=np.float32)
            pred, target = arrays[0], arrays[1]
            if target.dtype.kind in "iu":
                target = target.astype(np.int32)
            batch = pred.shape[0]
            weight = rng.uniform(0.2, 2.0, batch).astype(np.float32)
            for reduction, ours in REDUCTIONS.items():
                for w in (None, weight):
                    what = f"{name} {options} reduction={reduction} weighted={w is not None}"
                    cases += 1
                    try:
                        loss = cls(reduction=reduction, **options)
                        call = lambda x, loss=loss, w=w, t=target: loss(t, x, sample_weight=w)  # noqa: E731
                        value, grad = value_and_grad(call, pred)
                    except Exception as exc:  # noqa: BLE001 - every case is reported
                        failures.append(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")
                        continue
                    per_sample = None if w is None else w.reshape((batch,) + (1,) * (pred.ndim - 1 - (
                        fl.losses()[name].family == "rowwise")))
                    expected = fl.compute(name, pred, target, reduction=ours, sample_weight=per_sample, **options)
                    compare(what + " value", value, expected.loss, failures, 1e-5)
                    compare(what + " grad", grad, expected.grad, failures, 1e-5)

    # Keras's own loss with the same option, and rows every one of which is ignored.
    z = rng.normal(size=(8, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 8).astype(np.int32)
    labels[[1, 4, 5]] = -1
    theirs = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    ours = flk.SparseSoftmaxCrossEntropy(ignore_index=-1)
    for w in (None, rng.uniform(0.2, 2.0, 8).astype(np.float32)):
        v1, g1 = value_and_grad(lambda x, w=w: ours(labels, x, sample_weight=w), z)
        v2, g2 = value_and_grad(lambda x, w=w: theirs(labels, x, sample_weight=w), z)
        compare(f"ignore_index vs Keras ignore_class, weighted={w is not None} value", v1, v2, failures, 1e-5)
        compare(f"ignore_index vs Keras ignore_class, weighted={w is not None} grad", g1, g2, failures, 1e-5)
        cases += 1
    all_ignored = np.full(8, -1, dtype=np.int32)
    v, g = value_and_grad(lambda x: ours(all_ignored, x), z)
    compare("every row ignored: value NaN", v, np.nan, failures, 0)
    compare("every row ignored: gradient 0", g, np.zeros_like(z), failures, 0)

    if BACKEND == "torch":  # a Keras mask on the predictions (a tensor attribute: torch only)
        import torch

        mask = np.array([1, 1, 0, 1, 0, 1, 1, 1], dtype=bool)
        ok = labels.clip(0)

        def masked(loss, target):
            def fn(x):
                x = x * 1.0
                x._keras_mask = torch.from_numpy(mask)
                return loss(target, x)

            return fn

        v1, g1 = value_and_grad(masked(flk.SparseSoftmaxCrossEntropy(), ok), z)
        v2, g2 = value_and_grad(masked(keras.losses.SparseCategoricalCrossentropy(from_logits=True), ok), z)
        compare("masked rows vs Keras value", v1, v2, failures, 1e-5)
        compare("masked rows vs Keras grad", g1, g2, failures, 1e-5)
        x, y = rng.normal(size=(8, 1)).astype(np.float32), rng.normal(size=(8, 1)).astype(np.float32)
        v, g = value_and_grad(masked(flk.MeanSquaredError(), y), x)
        kept = mask[:, None]
        compare("masked MSE value", v, ((x - y) ** 2)[kept].sum() / kept.sum(), failures, 1e-5)
        compare("masked MSE grad", g, np.where(kept, 2 * (x - y) / kept.sum(), 0), failures, 1e-5)
        cases += 2

    try:
        flk.MeanSquaredError(reduction="mean_with_sample_weight")
        failures.append("mean_with_sample_weight was accepted")
    except ValueError:
        pass
    print(json.dumps({"backend": BACKEND, "cases": cases, "failures": failures}))


if __name__ == "__main__":
    main()
