"""The benchmarks' timer: the median of many calls after a warm-up."""

import statistics
import time


def timed(fn, repeats, warmup=1, pause=0.0):
    """Median seconds per call of ``fn()`` over ``repeats`` calls, after ``warmup`` calls
    (and, first, ``pause`` seconds of sleep: other runtimes' OpenMP threads spin for a while
    after their work, as PyTorch's do, and a pause lets them sleep)."""
    time.sleep(pause)
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)
