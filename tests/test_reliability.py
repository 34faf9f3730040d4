"""Threads and fork: concurrent calls give the bits of serial calls, and a process that
ran a parallel kernel can fork and call losses in the child (as multiprocessing and
PyTorch's DataLoader do)."""

import os
import threading

import numpy as np
import pytest
from conftest import CPU_BACKENDS, python_job

import fastloss as fl

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
FORK_CASES = [(backend, layer) for backend in CPU_BACKENDS for layer in LAYERS if backend == "numba" or not layer]


def _fork_job(backend, layer):
    layers = {"NUMBA_THREADING_LAYER": layer} if layer else {}
    return python_job("-c", FORK.format(n=LARGE), backend, timeout=240, **layers)


@pytest.mark.slow
@pytest.mark.parametrize("backend, layer", [
    pytest.param(backend, layer, id=f"{backend}-{layer or 'default'}",
                 marks=pytest.mark.background(job=_fork_job(backend, layer)))
    for backend, layer in FORK_CASES])
def test_fork_after_a_parallel_call(backend, layer, background):
    """(``layer``: Numba's threading layer; None for Numba's choice, TBB where installed.)"""
    out = background()
    assert out.stdout.strip().splitlines()[-1:] == ["OK"], out.stdout + out.stderr[-2000:]


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
@pytest.mark.parametrize("layer", [
    pytest.param(layer, marks=pytest.mark.background(job=python_job("-c", THREADS.format(n=LARGE),
                                                                   NUMBA_THREADING_LAYER=layer)))
    for layer in ("omp", "workqueue")])
def test_threads_under_every_numba_layer(layer, background):
    """workqueue aborts on concurrent launches unless they are serialised: they are."""
    out = background()
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [layer, "OK"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", CPU_BACKENDS)
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
        order = np.random.default_rng(seed).permutation(len(cases) * 20) % len(cases)  # 120 calls
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


LEAKS = """
import numpy as np, fastloss as fl
rng = np.random.default_rng(0)
small = rng.normal(size=(64, 10)).astype(np.float32)
labels = rng.integers(0, 10, 64)
big = rng.normal(size=fl._config.PARALLEL_MIN_SIZE).astype(np.float32)  # the smallest parallel input
out_small = np.empty_like(small)
out_big = np.empty_like(big)
calls = [
    lambda: fl.sparse_softmax_cross_entropy(small, labels),
    lambda: fl.sparse_softmax_cross_entropy(small, labels, backend="numba", out=out_small),
    lambda: fl.huber(small, small[::-1].copy(), delta=0.5, reduction="none"),
    lambda: fl.softmax_focal_loss(small.astype(np.float64), labels, gamma=0.5, sample_weight=np.ones(64)),
    lambda: fl.triplet_margin_loss(small, small[::-1].copy(), small + 1),
    lambda: fl.mse(big, big[::-1].copy(), out=out_big),
    lambda: fl.sigmoid_binary_cross_entropy(big, (big > 0).astype(np.float32), backend="numba", grad="only"),
    lambda: fl.js_divergence(small, small[::-1].copy(), backend="cython"),
]
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
for i in range(4000):
    calls[i % len(calls)]()
before = rss()
for i in range({n}):
    calls[i % len(calls)]()
print((rss() - before) / 2**20)
"""


LEAK_CALLS = 40_000
LEAK_LIMIT_MB = 2.0  # 52 bytes a call; the growth seen without a leak: 0.12 MB


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads the resident size from /proc")
@pytest.mark.background(job=python_job("-c", LEAKS.format(n=LEAK_CALLS), timeout=600))
def test_no_memory_growth_over_many_calls(background):
    out = background()
    assert out.returncode == 0, out.stderr[-2000:]
    growth_mb = float(out.stdout.strip().splitlines()[-1])
    assert growth_mb < LEAK_LIMIT_MB


def _free_memory():
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 0


BEYOND_INT32 = """
import sys
import numpy as np, fastloss as fl
n = 2**31 + 17
# np.zeros maps pages of zeros that the kernel only reads: no 8 GiB to write first
# (that took some 20 s). The 17 elements past 2^31 hold -1e4 (softplus(1e4) = 1e4 each,
# 1e-4 of the total): an index that wrapped at 2^31, or a count cut short, is caught.
x = np.zeros(n, dtype=np.float32)
x[2**31:] = -1e4
res = fl.gan_generator_loss(x, grad=False, reduction="sum", backend=sys.argv[1])
print(res.grad is None, repr(float(res.loss)))
"""


@pytest.mark.slow
@pytest.mark.skipif(_free_memory() < 16 * 2**30, reason="needs 16 GB of free memory")
@pytest.mark.parametrize("backend", [
    pytest.param(backend, marks=pytest.mark.background(job=python_job("-c", BEYOND_INT32, backend)))
    for backend in CPU_BACKENDS])
def test_more_than_2_to_the_31_elements(backend, background):
    out = background()
    assert out.returncode == 0, out.stderr[-2000:]
    no_grad, loss = out.stdout.split()
    expected = (2**31) * np.log(2.0) + 17 * 1e4  # softplus(-x): log 2 at x = 0
    assert no_grad == "True"
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)


INTERRUPT = """
import os, signal, threading, time
import numpy as np, fastloss as fl
x = np.random.default_rng(0).normal(size=1 << 24).astype(np.float32)
y = np.zeros_like(x)
reference = fl.log_cosh(x, y)
threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
interrupted = False
try:
    deadline = time.time() + 30
    while time.time() < deadline:
        fl.log_cosh(x, y)
except KeyboardInterrupt:
    interrupted = True
after = fl.log_cosh(x, y)
same = np.array_equal(after.loss, reference.loss) and np.array_equal(after.grad, reference.grad)
print("interrupted" if interrupted else "not interrupted", "OK" if same else "DIFFERENT")
"""


@pytest.mark.slow
@pytest.mark.background(job=python_job("-c", INTERRUPT, timeout=120))
def test_keyboard_interrupt_leaves_the_process_usable(background):
    out = background()
    assert out.stdout.split() == ["interrupted", "OK"], out.stdout + out.stderr[-2000:]
