"""Threads and fork: concurrent calls give the bits of serial calls, and a process that
ran a parallel kernel can fork and call losses in the child (as multiprocessing and
PyTorch's DataLoader do)."""

import os
import pathlib
import subprocess
import sys
import threading

import numpy as np
import pytest

import fastloss as fl

ROOT = pathlib.Path(__file__).resolve().parent.parent
LARGE = 1 << 17  # above the parallel threshold

FORK = """
import multiprocessing as mp, sys
import numpy as np, fastloss as fl
backend = sys.argv[1]
x = np.random.default_rng(0).normal(size={n}).astype(np.float32)
z = x.reshape(-1, 16)
labels = np.arange(len(z)) % 16
def compute():
    return (float(fl.huber(x, x[::-1].copy(), backend=backend).loss),
            float(fl.sparse_softmax_cross_entropy(z, labels, backend=backend).loss))
parent = compute()
def child(q):
    q.put(compute())
ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
p.join(60)
if p.is_alive():
    p.kill()
    print("HUNG")
elif p.exitcode != 0:
    print("DIED", p.exitcode)
else:
    print("OK" if q.get(timeout=10) == parent else "DIFFERENT")
"""


LAYERS = [None, "omp", "workqueue"]  # None: Numba's choice (TBB where installed)


@pytest.mark.slow
@pytest.mark.parametrize("layer", LAYERS, ids=lambda x: x or "default")
@pytest.mark.parametrize("backend", fl.backends())
def test_fork_after_a_parallel_call(backend, layer):
    if layer and backend != "numba":
        pytest.skip("the threading layer is Numba's")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if layer:
        env["NUMBA_THREADING_LAYER"] = layer
    out = subprocess.run([sys.executable, "-c", FORK.format(n=LARGE), backend], capture_output=True, text=True,
                         timeout=240, env=env)
    assert out.stdout.strip().splitlines()[-1] == "OK", out.stdout + out.stderr[-2000:]


THREADS = """
import sys, threading
import numpy as np, fastloss as fl
x = np.random.default_rng(0).normal(size={n}).astype(np.float32)
serial = fl.huber(x, x[::-1].copy(), backend="numba")
bad = []
def work():
    for _ in range(20):
        r = fl.huber(x, x[::-1].copy(), backend="numba")
        if not (np.array_equal(r.loss, serial.loss) and np.array_equal(r.grad, serial.grad)):
            bad.append(1)
ts = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
import numba
print(numba.threading_layer(), "OK" if not bad else "DIFFERENT")
"""


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["omp", "workqueue"])
def test_threads_under_every_numba_layer(layer):
    """workqueue aborts on concurrent launches unless they are serialised: they are."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_THREADING_LAYER": layer}
    out = subprocess.run([sys.executable, "-c", THREADS.format(n=LARGE)], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [layer, "OK"]


@pytest.mark.parametrize("backend", fl.backends())
def test_threads_get_the_bits_of_serial_calls(backend):
    rng = np.random.default_rng(1)
    cases = []
    for size in (LARGE, 256):
        x = rng.normal(size=size).astype(np.float32)
        y = rng.normal(size=size).astype(np.float32)
        z = x.reshape(-1, 16)
        labels = rng.integers(0, 16, len(z))
        cases.append(("huber", (x, y)))
        cases.append(("sparse_softmax_cross_entropy", (z, labels)))
        cases.append(("sigmoid_binary_cross_entropy", (x, (y > 0).astype(np.float32))))
    serial = [fl.compute(name, *arrays, backend=backend) for name, arrays in cases]
    failures = []

    def worker(seed):
        order = np.random.default_rng(seed).permutation(len(cases) * 5) % len(cases)
        for i in order:
            name, arrays = cases[i]
            res = fl.compute(name, *arrays, backend=backend)
            if not (np.array_equal(res.loss, serial[i].loss) and np.array_equal(res.grad, serial[i].grad)):
                failures.append((name, i))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    assert not failures
