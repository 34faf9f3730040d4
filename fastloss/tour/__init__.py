"""``python -m fastloss tour``: the seed articles' experiments trained on fastloss gradients.

Regression, binary and three-class classification with every loss the articles compare
(plus the robust and focal variants fastloss adds), and the model-specific losses (triplet,
VAE, GAN) on small problems; a results table per task and PNG figures. Needs the ``tour``
extra: ``pip install "fastloss[tour]"``.
"""

import pathlib
import time

import numpy as np

from . import tasks

FULL = {"n": 5000, "epochs": 50, "steps": 1500}
QUICK = {"n": 1000, "epochs": 4, "steps": 120}


def _require():
    missing = []
    for module in ("sklearn", "matplotlib", "tqdm"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise SystemExit(
            f"the tour needs {', '.join(missing)}: install the extra with  pip install \"fastloss[tour]\""
        )


def _table(title, runs):
    metric = runs[0].metric
    lines = [
        "",
        title,
        f"  {'loss':24s} {'train loss':>11s} {'test loss':>10s} {'train ' + metric:>14s} "
        f"{'test ' + metric:>13s} {'ms/epoch':>9s}",
    ]
    for r in runs:
        fmt = "{:14.4f} {:13.4f}" if metric == "MSE" else "{:14.1%} {:13.1%}"
        lines.append(
            f"  {r.loss:24s} {r.train_loss[-1]:11.4f} {r.test_loss[-1]:10.4f} "
            + fmt.format(r.train_metric, r.test_metric)
            + f" {r.seconds_per_epoch * 1e3:9.1f}"
        )
    return "\n".join(lines)


def run(out="fastloss-tour", quick=False, seed=0, echo=print):
    """Run the tour; returns {task: [Run, ...]} and writes the figures into ``out``."""
    _require()
    from tqdm.auto import tqdm

    from . import figures

    cfg = QUICK if quick else FULL
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = {}
    plan = [
        ("Regression (make_regression, 20 features; MLP 20-25-1)", "regression", tasks.REGRESSION,
         tasks.regression_data(cfg["n"]), 25, cfg["epochs"], "MSE"),
        ("Binary classification (two circles; MLP 2-50-1)", "circles", tasks.CIRCLES,
         tasks.circles_data(cfg["n"]), 50, cfg["epochs"], "accuracy"),
        ("Three-class blobs (MLP 2-50-3; 10% for training)", "blobs", tasks.BLOBS,
         tasks.blobs_data(cfg["n"]), 50, cfg["epochs"], "accuracy"),
    ]
    for title, key, settings, data, hidden, epochs, metric in plan:
        runs = [tasks.train(s, data, hidden, epochs, metric, np.random.default_rng(seed), tqdm)
                for s in settings]
        results[key] = runs
        echo(_table(title, runs))
        figures.loss_curves(title.split(" (")[0], runs, out / f"{key}_loss_curves.png")

    triplet = tasks.triplet_embedding(cfg["steps"], np.random.default_rng(seed), tqdm)
    vae = tasks.vae(cfg["steps"] * 2, np.random.default_rng(seed + 1), tqdm)
    gan = tasks.gan(cfg["steps"] * 4, np.random.default_rng(seed + 2), tqdm)
    results["model_specific"] = {"triplet": triplet, "vae": vae, "gan": gan}
    rec, kl = np.mean(vae["history"][-50:], axis=0)
    echo("\nModel-specific losses")
    echo(f"  triplet margin loss (digits -> 2-D): 1-NN test accuracy {triplet['before']:.1%} untrained, "
         f"{triplet['after']:.1%} trained; final loss {np.mean(triplet['losses'][-50:]):.3f}")
    echo(f"  VAE KL term (1-D mixture of two Gaussians): reconstruction MSE {rec:.3f}, KL {kl:.3f} per sample")
    echo(f"  GAN pair (target N(3, 0.5)): generated mean {gan['samples'].mean():.2f}, "
         f"std {gan['samples'].std():.2f}")
    figures.generative(triplet, vae, gan, out / "model_specific.png")
    figures.gallery(out / "loss_gallery.png")
    echo(f"\nFigures written to {out.resolve()}; the tour took {time.perf_counter() - started:.0f} s.")
    return results
