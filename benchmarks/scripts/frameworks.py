"""fastloss inside PyTorch against PyTorch's own losses, forward + backward, in one run.

    python benchmarks/scripts/frameworks.py [--repeats 7] [--quick]

For each case (float32): ``fastloss.torch.<loss>`` and ``torch.nn.functional``'s loss,
eager and under ``torch.compile``, each timed as ``loss = f(x, y); loss.backward()`` on a
leaf tensor, in rounds that interleave the four (so a drift of the machine hits all of
them), after warm-up. Prints the median and minimum of each and the ratio PyTorch /
fastloss of the medians (above 1: fastloss is faster).
"""

import argparse
import time

import numpy as np
import torch

import fastloss.torch as flt

F = torch.nn.functional


def cases(quick):
    g = torch.Generator().manual_seed(0)
    shapes = [(256, 10), (4096, 1000)] + ([] if quick else [(8192, 32000)])
    for n, c in shapes:
        z = torch.randn(n, c, generator=g)
        y = torch.randint(0, c, (n,), generator=g)
        yield f"sparse CE ({n}, {c})", z, y, flt.sparse_softmax_cross_entropy, F.cross_entropy
    n = 10**6 if quick else 10**7
    z = torch.randn(n, generator=g)
    t = (torch.rand(n, generator=g) > 0.5).float()
    yield f"BCE with logits {n:.0e}", z, t, flt.sigmoid_binary_cross_entropy, F.binary_cross_entropy_with_logits
    yield f"MSE {n:.0e}", z, torch.randn(n, generator=g), flt.mse, F.mse_loss


def step(fn, x, y):
    x = x.detach().requires_grad_(True)
    fn(x, y).backward()
    return x.grad


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smaller cases")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| case | fastloss eager ms (median, min) | PyTorch eager | ratio | fastloss compiled | PyTorch compiled "
          "| ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, x, y, ours, theirs in cases(args.quick):
        runs = {"ours": ours, "theirs": theirs,
                "ours_c": torch.compile(ours, fullgraph=True), "theirs_c": torch.compile(theirs, fullgraph=True)}
        inner = max(1, int(2e-3 / max(1e-9, _once(runs["theirs"], x, y))))  # about 2 ms a sample
        for fn in runs.values():  # warm-up and compilation
            for _ in range(2):
                step(fn, x, y)
        times = {k: [] for k in runs}
        for _ in range(args.repeats):
            for k, fn in runs.items():
                t = time.perf_counter()
                for _ in range(inner):
                    step(fn, x, y)
                times[k].append((time.perf_counter() - t) / inner * 1e3)
        med = {k: float(np.median(v)) for k, v in times.items()}
        low = {k: min(v) for k, v in times.items()}

        def cell(k, med=med, low=low):
            return f"{med[k]:.3g}, {low[k]:.3g}"

        print(f"| {label} | {cell('ours')} | {cell('theirs')} | {med['theirs'] / med['ours']:.2f}x "
              f"| {cell('ours_c')} | {cell('theirs_c')} | {med['theirs_c'] / med['ours_c']:.2f}x |", flush=True)


def _once(fn, x, y):
    t = time.perf_counter()
    step(fn, x, y)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
