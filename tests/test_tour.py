"""``python -m fastloss tour --quick`` runs end to end: its tables and valid PNG figures."""

import atexit
import importlib.util
import pathlib
import shutil
import sys
import tempfile

import pytest
from conftest import SESSION_ENV

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIGURES = ["regression_loss_curves.png", "circles_loss_curves.png", "blobs_loss_curves.png",
           "loss_gallery.png", "model_specific.png"]


NEEDS = ("sklearn", "matplotlib", "tqdm")


def _quick_tour(run):
    """(the tour's output, its folder), or None where it cannot run."""
    if any(importlib.util.find_spec(module) is None for module in NEEDS):
        return None
    out = pathlib.Path(tempfile.mkdtemp(prefix="fastloss-tour-"))
    atexit.register(shutil.rmtree, out, True)
    done = run([sys.executable, "-m", "fastloss", "tour", "--quick", "--out", str(out)], timeout=300, cwd=out,
               env={**SESSION_ENV, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, out


@pytest.fixture
def quick_tour(background):
    result = background()
    if result is None:
        pytest.skip(f"the tour needs {', '.join(NEEDS)}")
    return result


@pytest.mark.background(job=_quick_tour)
def test_tables_name_every_task_and_loss(quick_tour):
    stdout, _ = quick_tour
    for heading in ("Regression", "Binary classification", "Three-class blobs", "Model-specific losses"):
        assert heading in stdout
    for loss in ("mean squared error", "mean squared log error", "mean absolute error", "Huber", "pseudo-Huber",
                 "log-cosh", "binary cross-entropy", "hinge", "squared hinge", "sigmoid focal", "categorical CE",
                 "sparse softmax CE", "KL divergence", "softmax focal", "triplet margin loss", "VAE", "GAN"):
        assert loss in stdout
    assert "nan" not in stdout.lower()


@pytest.mark.background(job=_quick_tour)
def test_figures_are_valid_pngs(quick_tour):
    from PIL import Image  # matplotlib's own dependency

    _, out = quick_tour
    for name in FIGURES:
        path = out / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        with Image.open(path) as im:
            im.verify()
            assert im.size[0] > 400 and im.size[1] > 200


def test_training_learns(tmp_path):
    """The full-size circles task with cross-entropy beats 80% test accuracy (the article's setup)."""
    pytest.importorskip("sklearn")
    import numpy as np

    from fastloss.tour import tasks

    data = tasks.circles_data(5000)
    run = tasks.train(tasks.CIRCLES[0], data, 50, 50, "accuracy", np.random.default_rng(0), lambda x, **k: x)
    assert run.test_metric > 0.80
    assert run.train_loss[-1] < run.train_loss[0]
