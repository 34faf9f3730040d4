"""Where backend="auto" should switch from Cython to Numba: both backends timed on the same
inputs, for several losses and sizes, in one run.

    python benchmarks/scripts/crossover.py                   # four losses, 2^8 to 2^24
    python benchmarks/scripts/crossover.py --every-loss 4000000   # every loss, one size

For each loss and size it prints the median time of a full call (validation, allocation,
kernel, result) on each backend and the ratio numba / cython (> 1: Cython is faster).
Sizes from 2^16 elements run in parallel on both backends (OpenMP and Numba's prange).
``--every-loss`` takes the asv suite's inputs (rows of 10 classes), float32 and float64.
"""

import os
import sys
from functools import partial

import numpy as np
from _timing import timed

import fastloss as fl


def cases(size, rng):
    x = rng.normal(size=size).astype(np.float32)
    y = rng.normal(size=size).astype(np.float32)
    rows = max(1, size // 10)
    z = rng.normal(size=(rows, 10)).astype(np.float32)
    labels = rng.integers(0, 10, rows)
    return {
        "mean_squared_error": (x, y),
        "huber": (x, y),
        "sigmoid_binary_cross_entropy": (x, (y > 0).astype(np.float32)),
        "sparse_softmax_cross_entropy (C=10)": (z, labels),
    }


def main():
    rng = np.random.default_rng(0)
    sizes = [2**k for k in range(8, 25, 2)]
    print(f"{'loss':38s} {'size':>9s} {'cython':>10s} {'numba':>10s} {'numba/cython':>13s}")
    for size in sizes:
        repeats = max(5, min(2000, 2_000_000 // size))
        for name, arrays in cases(size, rng).items():
            fn = getattr(fl, name.split(" ")[0])
            tc = timed(lambda fn=fn, arrays=arrays: fn(*arrays, backend="cython"), repeats)
            tn = timed(lambda fn=fn, arrays=arrays: fn(*arrays, backend="numba"), repeats)
            print(f"{name:38s} {arrays[0].size:9d} {tc * 1e6:8.1f}us {tn * 1e6:8.1f}us {tn / tc:13.2f}")


def every_loss(size):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from bench_losses import make_inputs

    repeats = max(15, min(2000, 60_000_000 // size))
    print(f"{'loss':38s} {'dtype':>8s} {'cython':>10s} {'numba':>10s} {'numba/cython':>13s}")
    for dtype in ("float32", "float64"):
        for name in sorted(fl.losses()):
            arrays = make_inputs(name, size, dtype)
            tc = timed(partial(fl.compute, name, *arrays, backend="cython"), repeats)
            tn = timed(partial(fl.compute, name, *arrays, backend="numba"), repeats)
            print(f"{name:38s} {dtype:>8s} {tc * 1e3:8.2f}ms {tn * 1e3:8.2f}ms {tn / tc:13.2f}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--every-loss"]:
        every_loss(int(sys.argv[2]))
    else:
        main()
