"""``python -m fastloss``: the tour (``tour``, the default) or a short demonstration (``demo``)."""

import argparse
import statistics
import time

import numpy as np

import fastloss as fl


def demo():
    """Compute a few losses with gradients on small random data and print them."""
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(8, 3)).astype(np.float32)
    target = rng.normal(size=(8, 3)).astype(np.float32)
    logits = rng.normal(scale=3.0, size=(8, 5)).astype(np.float32)
    labels = rng.integers(0, 5, size=8)
    cases = [
        ("mean_squared_error", (pred, target), {}),
        ("huber", (pred, target), {"delta": 0.5}),
        ("log_cosh", (pred, target), {}),
        ("sigmoid_binary_cross_entropy", (logits, (logits > 0).astype(np.float32)), {"label_smoothing": 0.1}),
        ("sparse_softmax_cross_entropy", (logits, labels), {}),
        ("softmax_focal_loss", (logits, labels), {"gamma": 2.0}),
        ("triplet_margin_loss", (pred, target, -target), {"margin": 1.0}),
    ]
    print(f"fastloss {fl.__version__}: {len(fl.losses())} losses; a few of them on random data\n")
    print(f"{'loss':32s} {'value':>10s}  {'|grad|':>9s}  {'first call':>10s}  {'later call':>9s}")
    for name, arrays, options in cases:
        t0 = time.perf_counter()
        loss, grad = fl.compute(name, *arrays, **options)
        first = time.perf_counter() - t0
        later = []
        for _ in range(200):
            t0 = time.perf_counter()
            fl.compute(name, *arrays, **options)
            later.append(time.perf_counter() - t0)
        g = grad[0] if isinstance(grad, tuple) else grad
        print(
            f"{name:32s} {float(loss):10.5f}  {float(np.linalg.norm(g)):9.5f}  "
            f"{first * 1e3:8.1f}ms  {statistics.median(later) * 1e6:7.1f}us"
        )
    print(f"\nBackends: {', '.join(fl.backends())} (auto uses Cython where it is built: no compilation;")
    print("the Numba backend compiles a loss's kernel on its first call). 'later call' is the median of 200 calls.")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastloss", description=__doc__)
    parser.add_argument("command", nargs="?", default="tour", choices=["tour", "demo"],
                        help="tour: the seed articles' experiments trained on fastloss gradients (needs the "
                             "'tour' extra); demo: a few losses on random data")
    parser.add_argument("--out", default="fastloss-tour", help="where the tour writes its figures")
    parser.add_argument("--quick", action="store_true", help="a ten-second version of the tour")
    parser.add_argument("--seed", type=int, default=0, help="the tour's random seed")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo()
    else:
        from . import tour

        tour.run(out=args.out, quick=args.quick, seed=args.seed)


if __name__ == "__main__":
    main()
