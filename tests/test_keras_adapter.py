"""fastloss.keras: a seed article's model trains the same with fastloss's loss as with
Keras's own, on the torch and jax backends (each in a process of its own, since Keras
chooses its backend at import), and the Loss classes are generated from the registry. The
subprocesses run in the background (conftest.py)."""

import importlib.util
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from conftest import SESSION_ENV, python_job

# Keras picks its backend at import (TensorFlow by default): only look for it here.
if importlib.util.find_spec("keras") is None:
    pytest.skip("Keras is not installed", allow_module_level=True)
pytest.importorskip("sklearn")

SCRIPT = pathlib.Path(__file__).with_name("keras_seed.py")


def _seed_model(backend):
    def job(run):
        if importlib.util.find_spec(backend) is None:
            return None  # the test skips
        env = {**SESSION_ENV, "KERAS_BACKEND": backend}
        return run([sys.executable, str(SCRIPT), "8"], timeout=300, env=env)

    return job


@pytest.mark.parametrize("backend", [pytest.param(b, marks=pytest.mark.background(job=_seed_model(b)))
                                     for b in ("torch", "jax")])
def test_seed_model_trains_the_same(backend, background):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    done = background()
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == backend
    (theirs, acc_theirs), (ours, acc_ours) = result["keras"], result["fastloss"]
    np.testing.assert_allclose(ours, theirs, rtol=1e-5)
    assert abs(acc_ours - acc_theirs) <= 0.01
    assert ours[-1] < ours[0]


def _installed_backend():
    """A Keras backend that fastloss.keras supports and that is installed (JAX is in the
    test extras; PyTorch is optional), or None."""
    return next((b for b in ("jax", "torch") if importlib.util.find_spec(b) is not None), None)


def _generate_classes(run):
    backend = _installed_backend()
    if backend is None:
        return None  # the test skips
    code = (f"import os; os.environ['KERAS_BACKEND'] = {backend!r}\n"
            "import fastloss.keras as k\n"
            "print(len(k.__all__), k.SparseSoftmaxCrossEntropy(label_smoothing=0.1).get_config()['label_smoothing'])")
    return run([sys.executable, "-c", code], timeout=300)


@pytest.mark.background(job=_generate_classes)
def test_classes_are_generated_for_losses_with_targets(background):
    if _installed_backend() is None:
        pytest.skip("neither JAX nor PyTorch is installed")
    done = background()
    assert done.returncode == 0, done.stderr[-3000:]
    count, smoothing = done.stdout.split()
    # Every loss with a target to compare with, except RMSE (no per-sample value): 20.
    assert int(count) == 20 and float(smoothing) == 0.1


def test_missing_keras_names_the_extra():
    code = "import sys; sys.modules['keras'] = None\ntry:\n import fastloss.keras\nexcept ImportError as e: print(e)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert 'pip install "fastloss[keras]"' in done.stdout, done.stdout + done.stderr


PARITY = pathlib.Path(__file__).with_name("keras_parity.py")


def _backend_job(backend, *args):
    """``python *args`` on the Keras backend ``backend`` in the background; None (the test
    skips) where that backend is not installed."""
    job = python_job(*args, timeout=600, KERAS_BACKEND=backend)
    return lambda run: None if importlib.util.find_spec(backend) is None else job(run)


@pytest.mark.parametrize("backend", [pytest.param(b, marks=pytest.mark.background(job=_backend_job(b, str(PARITY))))
                                     for b in ("torch", "jax")])
def test_classes_give_fastloss_values_and_gradients(backend, background):
    """Every Keras class, option case, reduction, with and without fit's sample weights:
    the value and gradient of fastloss's plain call (tests/keras_parity.py); with
    ignore_index, Keras's own ignore_class; a mask as Keras's own losses take it."""
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    done = background()
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == backend and result["cases"] > 250
    assert result["failures"] == [], "\n".join(result["failures"][:20])


_ROUND_TRIP = """
import os, subprocess, sys, tempfile
import numpy as np, keras
import fastloss.keras as flk
path = os.path.join(tempfile.mkdtemp(), "model.keras")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
loss = flk.SparseSoftmaxCrossEntropy(ignore_index=-1, label_smoothing=0.1, class_weight=np.array([1.0, 2.0, 0.5]))
model.compile(loss=loss, optimizer="sgd")
X = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
y = np.arange(16) % 3
y[0] = -1
model.fit(X, y, epochs=1, verbose=0)
model.save(path)
# A new process: importing fastloss.keras registers the classes; no custom_objects.
load = ("import sys, numpy as np, keras, fastloss.keras\\n"
        "m = keras.models.load_model(sys.argv[1])\\n"
        "print(type(m.loss).__name__, m.loss.options, m.evaluate(*np.load(sys.argv[2]).values(), verbose=0))")
np.savez(path + ".npz", X=X, y=y)
done = subprocess.run([sys.executable, "-c", load, path, path + ".npz"], capture_output=True, text=True)
print(model.evaluate(X, y, verbose=0))
print(done.stdout.strip() or done.stderr[-2000:])
"""


@pytest.mark.parametrize("backend", [
    pytest.param(b, marks=pytest.mark.background(job=_backend_job(b, "-c", _ROUND_TRIP))) for b in ("torch", "jax")])
def test_saved_models_load_without_custom_objects(backend, background):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    done = background()
    assert done.returncode == 0, done.stderr[-3000:]
    before, after = done.stdout.strip().splitlines()[-2:]
    name, *rest = after.split(" ", 1)
    assert name == "SparseSoftmaxCrossEntropy", after
    assert "'ignore_index': -1" in rest[0] and "'class_weight': [1.0, 2.0, 0.5]" in rest[0]
    assert float(rest[0].rsplit(" ", 1)[-1]) == pytest.approx(float(before), rel=1e-6)


def test_keras_without_a_usable_backend_names_the_cause():
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "try:\n import fastloss.keras\nexcept ImportError as e: print(e)")
    env = {**SESSION_ENV, "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert "could not start" in done.stdout and "KERAS_BACKEND=torch" in done.stdout, done.stdout + done.stderr
