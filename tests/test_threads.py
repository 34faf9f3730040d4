"""fastloss.set_num_threads, get_num_threads and num_threads (contract section 7): the count
each CPU backend runs with, OMP_NUM_THREADS as the default, and results that do not depend
on it."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import SESSION_ENV

import fastloss as fl
from fastloss import _config, cpu_cython, cpu_numba


@pytest.fixture(autouse=True)
def _restore_count():
    before = fl.get_num_threads()
    yield
    fl.set_num_threads(before)


def _count_in_subprocess(env):
    code = "import fastloss; print(fastloss.get_num_threads())"
    env = {k: v for k, v in SESSION_ENV.items() if k != "OMP_NUM_THREADS"} | env
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_default_is_omp_num_threads_else_every_core():
    assert _count_in_subprocess({"OMP_NUM_THREADS": "1"}) == 1
    assert _count_in_subprocess({"OMP_NUM_THREADS": "3"}) == 3
    assert _count_in_subprocess({}) == len(os.sched_getaffinity(0))
    assert _count_in_subprocess({"OMP_NUM_THREADS": "zero"}) == len(os.sched_getaffinity(0))


def test_set_and_block():
    fl.set_num_threads(3)
    assert fl.get_num_threads() == 3
    with fl.num_threads(1):
        assert fl.get_num_threads() == 1
        with fl.num_threads(2):
            assert fl.get_num_threads() == 2
        assert fl.get_num_threads() == 1
    assert fl.get_num_threads() == 3


def test_a_block_holds_in_its_own_thread_only():
    seen = []
    inside, release = threading.Event(), threading.Event()

    def worker():
        with fl.num_threads(1):
            inside.set()
            release.wait(10)
            seen.append(fl.get_num_threads())

    fl.set_num_threads(2)
    t = threading.Thread(target=worker)
    t.start()
    inside.wait(10)
    seen.append(fl.get_num_threads())
    release.set()
    t.join()
    assert seen == [2, 1]


@pytest.mark.parametrize("bad,error", [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError),
                                       ("2", TypeError)])
def test_bad_counts(bad, error):
    with pytest.raises(error, match="threads"):
        fl.set_num_threads(bad)
    with pytest.raises(error, match="threads"):
        with fl.num_threads(bad):
            pass


def _large(rng):
    rows = 2 * _config.PARALLEL_MIN_SIZE // 100
    return rng.normal(size=(rows, 100)).astype(np.float32), rng.integers(0, 100, rows)


@pytest.mark.skipif(not cpu_cython.OPENMP, reason="the extension was built without OpenMP")
def test_cython_runs_the_count_asked_for(rng, monkeypatch):
    z, labels = _large(rng)
    asked = []
    entry = cpu_cython.entry

    def spy(math_fn):
        fn = entry(math_fn)
        return lambda *args: asked.append(args[-1]) or fn(*args)

    monkeypatch.setattr(cpu_cython, "entry", spy)
    for n in (1, 2, 3):
        with fl.num_threads(n):
            fl.sparse_softmax_cross_entropy(z, labels, backend="cython")
    assert asked == [1, 2, 3]


@pytest.mark.slow
def test_numba_runs_the_count_asked_for(rng, monkeypatch):
    import numba

    z, labels = _large(rng)
    launched = []
    launch = cpu_numba._parallel_launch

    def spy(k, args, threads):
        launched.append(threads)
        return launch(k, args, threads)

    monkeypatch.setattr(cpu_numba, "_parallel_launch", spy)
    before = numba.get_num_threads()
    with fl.num_threads(1):  # one thread: the serial driver, no parallel launch
        fl.sparse_softmax_cross_entropy(z, labels, backend="numba")
    with fl.num_threads(2):
        fl.sparse_softmax_cross_entropy(z, labels, backend="numba")
    assert launched == [2]
    assert numba.get_num_threads() == before  # Numba's own count is left as it was


@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_results_do_not_depend_on_the_count(backend, rng):
    if backend == "cython" and not cpu_cython.AVAILABLE:
        pytest.skip("no extension")
    z, labels = _large(rng)
    x = rng.normal(size=z.size)
    results = []
    for n in (1, 2, 3):
        with fl.num_threads(n):
            ce = fl.sparse_softmax_cross_entropy(z, labels, label_smoothing=0.1, backend=backend)
            mse = fl.mse(x, x[::-1].copy(), backend=backend)
        results.append((ce.loss, ce.grad, mse.loss, mse.grad))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
