"""What the first call of a loss costs in a fresh process: import, compile (cold cache),
load from the on-disk cache (warm), and a steady-state call.

    python benchmarks/scripts/first_call.py [--backend numba]

Each figure is the median of several fresh processes; the cold runs use an empty
NUMBA_CACHE_DIR, the warm runs one that the cold runs filled.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

PROBE = r"""
LABELLED = ("sparse_softmax_cross_entropy", "softmax_focal_loss")
import time
t0 = time.perf_counter()
import numpy, numba
t1 = time.perf_counter()
import fastloss as fl
t2 = time.perf_counter()
import numpy as np
x = np.random.default_rng(0).normal(size=(256, 10)).astype(np.float32)
labels = np.arange(256) % 10
t3 = time.perf_counter()
getattr(fl, NAME)(x, labels if NAME in LABELLED else x[::-1].copy(), backend=BACKEND)
t4 = time.perf_counter()
for _ in range(1000):
    getattr(fl, NAME)(x, labels if NAME in LABELLED else x[::-1].copy(), backend=BACKEND)
t5 = time.perf_counter()
print(json.dumps({"numpy_numba": t1 - t0, "fastloss": t2 - t1, "first": t4 - t3, "steady": (t5 - t4) / 1000}))
"""


def run(name, cache_dir, backend):
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    src = f"import json\nNAME = {name!r}\nBACKEND = {backend!r}\n" + PROBE
    out = subprocess.run([sys.executable, "-c", src], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(repeats=3):
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="auto")
    backend = parser.parse_args().backend
    print(f"backend={backend!r}")
    print(f"{'loss (float32, 256x10)':34s} {'import numpy+numba':>18s} {'import fastloss':>15s} "
          f"{'first call cold':>15s} {'first call cached':>17s} {'steady call':>11s}")
    for name in ("mean_squared_error", "sparse_softmax_cross_entropy", "softmax_focal_loss"):
        cold, warm = [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as d:
                cold.append(run(name, d, backend))
                warm.append(run(name, d, backend))
        med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
        print(f"{name:34s} {med(warm, 'numpy_numba') * 1e3:16.0f}ms {med(warm, 'fastloss') * 1e3:13.0f}ms "
              f"{med(cold, 'first') * 1e3:13.0f}ms {med(warm, 'first') * 1e3:15.0f}ms "
              f"{med(warm, 'steady') * 1e6:9.1f}us")


if __name__ == "__main__":
    main()
