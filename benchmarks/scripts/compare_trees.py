"""The small call in two source trees of fastloss, side by side: a refactoring must not slow it.

    git worktree add /tmp/before <commit> && (cd /tmp/before && python setup.py build_ext --inplace)
    python benchmarks/scripts/compare_trees.py /tmp/before .

Sparse softmax cross-entropy, value and gradient, float32 (256, 10): NumPy arrays, PyTorch
CPU tensors and JAX CPU arrays through ``fastloss.<loss>``, and the general (Python) path.
Each round runs every case in a fresh interpreter per tree, the trees alternating; the
table gives the median over rounds of each round's median, and the minimum.
"""

import json
import os
import subprocess
import sys

ROUNDS = 7

CHILD = r"""
import json, time, numpy as np, fastloss as fl
from fastloss import _api
rng = np.random.default_rng(0)
z = rng.normal(size=(256, 10)).astype(np.float32)
labels = rng.integers(0, 10, 256)
cases = {"numpy": (z, labels)}
try:
    import torch
    cases["torch tensor"] = (torch.from_numpy(z), torch.from_numpy(labels))
except ImportError:
    pass
try:
    import jax.numpy as jnp
    cases["jax array"] = (jnp.asarray(z), jnp.asarray(labels.astype(np.int32)))
except ImportError:
    pass

def median_us(fn, n=2000):
    for _ in range(100):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e6

out = {}
for name, (a, b) in cases.items():
    out[name] = median_us(lambda: fl.sparse_softmax_cross_entropy(a, b))
fast, _api.FAST_CALL = _api.FAST_CALL, None
out["numpy, general path"] = median_us(lambda: fl.sparse_softmax_cross_entropy(z, labels))
_api.FAST_CALL = fast
print(json.dumps(out))
"""


def run(tree):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=os.path.abspath(tree),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(old, new):
    results = {old: [], new: []}
    for _ in range(ROUNDS):
        for tree in (old, new):
            results[tree].append(run(tree))
    cases = list(results[new][0])
    print(f"| case | {old}: median (min) µs | {new}: median (min) µs | new / old |")
    print("| --- | --- | --- | --- |")
    for case in cases:
        cells = []
        for tree in (old, new):
            values = sorted(r[case] for r in results[tree] if case in r)
            cells.append((values[len(values) // 2], values[0]) if values else None)
        text = [f"{m:.2f} ({lo:.2f})" if c else "—" for c in cells for m, lo in [c or (0, 0)]]
        ratio = f"{cells[1][0] / cells[0][0]:.2f}" if all(cells) else "—"
        print(f"| {case} | {text[0]} | {text[1]} | {ratio} |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
