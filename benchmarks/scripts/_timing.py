"""The benchmarks' timer: the median of many calls after a warm-up."""

import statistics
import time


def timed(fn, repeats, warmup=1):
    """Median seconds per call of ``fn()`` over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)
