import zlib

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
