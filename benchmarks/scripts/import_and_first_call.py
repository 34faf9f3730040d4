"""Import and first call in a fresh process, against importing NumPy (and Numba) alone.

    python benchmarks/scripts/import_and_first_call.py

Issue 3's budget: ``import fastloss`` plus a first small call at most 50 ms beyond the
time to import NumPy and Numba, with no Numba compilation. Medians of fresh processes.
"""

import statistics
import subprocess
import sys

BASE = "import time; t = time.perf_counter(); import numpy{extra}; print(time.perf_counter() - t)"
CALL = (
    "import time; t = time.perf_counter(); import numpy as np, fastloss as fl\n"
    "z = np.zeros((256, 10), np.float32); y = np.arange(256) % 10\n"
    "fl.sparse_softmax_cross_entropy(z, y)\n"
    "import sys; print(time.perf_counter() - t, 'numba' in sys.modules)"
)


def run(code):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def main(repeats=7):
    numpy_only = statistics.median(float(run(BASE.format(extra=""))[0]) for _ in range(repeats))
    with_numba = statistics.median(float(run(BASE.format(extra=", numba"))[0]) for _ in range(repeats))
    calls = [run(CALL) for _ in range(repeats)]
    first = statistics.median(float(c[0]) for c in calls)
    print(f"import numpy:                                  {numpy_only * 1e3:6.1f} ms")
    print(f"import numpy, numba:                           {with_numba * 1e3:6.1f} ms")
    print(f"import numpy, fastloss + first sparse CE call: {first * 1e3:6.1f} ms"
          f"  (numba imported: {calls[0][1]})")
    print(f"beyond numpy alone: {(first - numpy_only) * 1e3:.1f} ms; "
          f"beyond numpy + numba: {(first - with_numba) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
