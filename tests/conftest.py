import os
import zlib

# CUDA tests run on Numba's CUDA simulator unless told otherwise (NUMBA_ENABLE_CUDASIM=0
# on a machine with a GPU); this must be set before numba.cuda is imported.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

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


def pytest_generate_tests(metafunc):
    if "cpu_backend" in metafunc.fixturenames:
        metafunc.parametrize("cpu_backend", CPU_BACKENDS, indirect=True)


@pytest.fixture
def cpu_backend(request, monkeypatch):
    """Runs the test on one CPU backend: backend="auto" is sent to it."""
    from fastloss import _api

    forced = request.param
    choose = _api._backend
    monkeypatch.setattr(_api, "_backend", lambda backend, size: choose(forced if backend == "auto" else backend, size))
    if forced != "cython":  # the compiled fast path is Cython's
        monkeypatch.setattr(_api, "FAST_CALL", None)
    return forced
