import os
import pathlib
import subprocess
import sys
import threading
import zlib

# CUDA tests run on Numba's CUDA simulator unless told otherwise (NUMBA_ENABLE_CUDASIM=0
# on a machine with a GPU); this must be set before numba.cuda is imported.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
# The environment for the processes tests start, as the session began: libraries change
# os.environ when they run (Dask's process cluster sets OMP_NUM_THREADS=1 in its parent).
SESSION_ENV = dict(os.environ)

import numpy as np
import pytest

import fastloss as fl

ALL_LOSSES = sorted(fl.losses())
HESSIAN_LOSSES = sorted(n for n, info in fl.losses().items() if info.hessian)


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id, so every test sees its own fixed data."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)


CPU_BACKENDS = [b for b in fl.backends() if b != "cuda"]


#: The Numba backend's float32 and float16 runs of a module that sets
#: ``NUMBA_NARROW_FLOATS_APART = True``: its tests run on "numba" with float64 inputs only
#: and on this backend, in the slow tier, with the narrower ones (the module's helpers
#: read ``cpu_backend`` to choose; see "test tiers" below).
NUMBA_NARROW = "numba-narrow"


def pytest_generate_tests(metafunc):
    if "cpu_backend" in metafunc.fixturenames:
        backends = list(CPU_BACKENDS)
        if "numba" in backends and getattr(metafunc.module, "NUMBA_NARROW_FLOATS_APART", False):
            backends.append(pytest.param(NUMBA_NARROW, marks=pytest.mark.slow))
        metafunc.parametrize("cpu_backend", backends, indirect=True)


@pytest.fixture
def cpu_backend(request, monkeypatch):
    """Runs the test on one CPU backend: backend="auto" is sent to it."""
    from fastloss import _api

    forced = "numba" if request.param == NUMBA_NARROW else request.param
    choose = _api._backend
    monkeypatch.setattr(_api, "_backend", lambda backend, size: choose(forced if backend == "auto" else backend, size))
    if forced != "cython":  # the compiled fast path is Cython's
        monkeypatch.setattr(_api, "FAST_CALL", None)
    return request.param


# --- out-of-process checks on the idle core ---------------------------------------------
#
# Some tests only wait for another process that keeps one core busy (a C compiler, NVVM,
# Numba compiling, a framework's training run) and then check what it printed. The
# in-process tests leave the second of CI's two cores mostly idle, so such a test names
# its work ``@pytest.mark.background(job=job)``: when the test loop starts, the jobs of the
# selected tests run one after another on a thread (the same commands, never two at once),
# and each test checks its job's result when its turn comes: the ``background`` fixture is
# a function that returns it, waiting for it if need be. ``job(run)`` runs its commands
# with ``run(argv, **popen)``, which returns a ``subprocess.CompletedProcess`` with text
# output (``timeout=`` as for ``subprocess.run``). A job's return value or exception goes
# to its tests; a job that several tests name runs once. Those tests run last (in their
# collection order, which is their jobs'): the in-process tests keep the main loop busy
# while the jobs run, rather than the loop waiting, early, for a job it reached first.
# Under pytest-xdist (the default: pyproject.toml) a worker runs a job when its first
# test needs it, and once.


def pytest_configure(config):
    config.addinivalue_line("markers", "float32: the test runs float32 or float16 inputs (on Numba: the slow tier)")
    config.addinivalue_line(
        "markers", "background(job=job): job(run) starts with the test loop, on a thread; the test gets its result "
        "from the background fixture")


# --- test tiers ----------------------------------------------------------------------
#
# ``python -m pytest`` runs the core tier (pyproject.toml deselects ``slow``): every loss on
# both CPU backends against its references, validation, extremes, the adapters, and the
# CUDA backend under the simulator on REPRESENTATIVE_LOSSES (an element-wise loss, a binary
# one and a class-axis one); the Numba backend there runs float64 inputs. ``python -m
# pytest -m slow`` runs the rest, and CI runs both. Marked ``slow`` here, by rule: every
# test that waits for another process (a background job: builds, subprocesses, the tour,
# Keras), every simulator test but those of REPRESENTATIVE_LOSSES, and every Numba test
# with a float32 or float16 ``dtype`` parameter or the ``float32`` mark (from a fresh clone,
# compiling Numba's kernels is most of the core tier's time, and each dtype compiles them
# again); elsewhere tests carry the mark themselves (:func:`tiered` for tests of every loss).
#
# pytest-xdist runs the tiers on every core (pyproject.toml: ``-n auto --dist loadgroup``).
# The tests of one loss go to one worker, so each worker compiles only its own losses'
# Numba kernels, and the tests of one module that wait for background jobs go to one
# worker, so a job that several of them share runs once.

REPRESENTATIVE_LOSSES = {"mean_squared_error", "sigmoid_binary_cross_entropy", "sparse_softmax_cross_entropy"}


def tiered(names):
    """Loss names as parameters: REPRESENTATIVE_LOSSES in the core tier, the others slow."""
    return [n if n in REPRESENTATIVE_LOSSES else pytest.param(n, marks=pytest.mark.slow) for n in names]


def _narrow_float(value):
    """Whether a test parameter is a float dtype narrower than float64."""
    if not isinstance(value, (type, np.dtype)):
        return False
    try:
        dtype = np.dtype(value)
    except TypeError:
        return False
    return dtype.kind == "f" and dtype.itemsize < 8


def pytest_collection_modifyitems(config, items):
    """The tier rules above; then tests with a background job after all the others
    (stable: each group keeps its order)."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        loss = params.get("name") if params.get("name") in fl.losses() else None
        if item.get_closest_marker("background") is not None:
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.xdist_group(f"jobs of {item.path.name}"))  # a shared job runs once
        elif item.path.name == "test_cuda.py" and loss not in REPRESENTATIVE_LOSSES:
            item.add_marker(pytest.mark.slow)
        elif params.get("cpu_backend") == "numba" and (
                item.get_closest_marker("float32") or any(_narrow_float(v) for v in params.values())):
            item.add_marker(pytest.mark.slow)  # each dtype compiles each kernel again on Numba
        elif loss is not None:
            item.add_marker(pytest.mark.xdist_group(loss))
    items.sort(key=lambda item: item.get_closest_marker("background") is not None)


class _Background:
    def __init__(self):
        self.done = {}  # job -> threading.Event, in order of first use
        self.results = {}  # job -> (value, exception)
        self.lock = threading.Lock()
        self.proc = None
        self.stopping = False

    def start(self, items):
        if os.environ.get("PYTEST_XDIST_WORKER"):
            return  # a pytest-xdist worker collects every test but runs a share: jobs run when needed
        for item in items:
            marker = item.get_closest_marker("background")
            if marker is not None:
                self.done.setdefault(marker.kwargs["job"], threading.Event())  # a job several tests share runs once
        if self.done:
            threading.Thread(target=self._work, name="background tests", daemon=True).start()

    @staticmethod
    def _outcome(job, run):
        try:
            return job(run), None
        except BaseException as exc:  # noqa: BLE001 - raised again in the tests
            return None, exc

    def _work(self):
        for job, done in self.done.items():
            self.results[job] = self._outcome(job, self.run)
            done.set()

    def run(self, argv, timeout=None, **popen):
        with self.lock:
            if self.stopping:
                raise RuntimeError("the test session ended before this job ran")
            proc = self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                **popen)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        finally:
            with self.lock:
                self.proc = None
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def result(self, node):
        job = node.get_closest_marker("background").kwargs["job"]
        if job in self.done:
            self.done[job].wait()
        elif job not in self.results:  # not started with the loop: run it now, once
            self.results[job] = self._outcome(job, _run_here)
        value, exc = self.results[job]
        if exc is not None:
            raise exc
        return value

    def stop(self):
        with self.lock:
            self.stopping = True
            if self.proc is not None:
                self.proc.kill()


def _run_here(argv, timeout=None, **popen):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **popen)


_BACKGROUND = _Background()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtestloop(session):
    if not session.config.option.collectonly:
        _BACKGROUND.start(session.items)
    try:
        yield
    finally:
        _BACKGROUND.stop()


@pytest.fixture
def background(request):
    """A function returning the result of this test's ``@pytest.mark.background`` job."""
    return lambda: _BACKGROUND.result(request.node)


ROOT = pathlib.Path(__file__).resolve().parent.parent


def python_job(*args, timeout=300, **env):
    """A background job running ``python *args`` with this checkout first on its path and
    the environment variables ``env`` set; it returns the ``CompletedProcess``."""
    def job(run):
        return run([sys.executable, *args], timeout=timeout, env={**SESSION_ENV, "PYTHONPATH": str(ROOT), **env})

    return job
