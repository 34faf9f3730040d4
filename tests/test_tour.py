"""``python -m fastloss tour --quick`` runs end to end: its tables and valid PNG figures."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIGURES = ["regression_loss_curves.png", "circles_loss_curves.png", "blobs_loss_curves.png",
           "loss_gallery.png", "model_specific.png"]


@pytest.fixture(scope="module")
def quick_tour(tmp_path_factory):
    for module in ("sklearn", "matplotlib", "tqdm"):
        pytest.importorskip(module)
    out = tmp_path_factory.mktemp("tour")
    run = subprocess.run([sys.executable, "-m", "fastloss", "tour", "--quick", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=out,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout, out


def test_tables_name_every_task_and_loss(quick_tour):
    stdout, _ = quick_tour
    for heading in ("Regression", "Binary classification", "Three-class blobs", "Model-specific losses"):
        assert heading in stdout
    for loss in ("mean squared error", "mean squared log error", "mean absolute error", "Huber", "pseudo-Huber",
                 "log-cosh", "binary cross-entropy", "hinge", "squared hinge", "sigmoid focal", "categorical CE",
                 "sparse softmax CE", "KL divergence", "softmax focal", "triplet margin loss", "VAE", "GAN"):
        assert loss in stdout
    assert "nan" not in stdout.lower()


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
