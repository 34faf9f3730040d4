"""Check fastloss's direct kernel launches (fastloss/cuda/launch.py) against numba-cuda's
own typing and argument flattening, without a GPU.

Run as a script (``python tests/launch_check.py``) by test_cuda_launch.py, in a process of
its own without the simulator (the simulator has no device arrays of numba-cuda's real
kind). Device arrays are made over made-up pointers with a stand-in context: nothing
touches a driver. For arrays of random shapes, strides and dtypes, the type the direct
launch gives each array is the type numba-cuda's typeof gives the same array, and the
parameters it flattens are the ones numba-cuda's ``_Kernel._prepare_args`` appends; for
numbers and tuples, arguments of the same kind get the same numba type. Exits non-zero
with the first counterexample.
"""

import os
import pathlib
import sys
import types

os.environ["NUMBA_ENABLE_CUDASIM"] = "0"
# This checkout's fastloss, not an installed copy (see ptx_compile.py).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from numba.cuda.cudadrv import devicearray, driver  # noqa: E402
from numba.cuda.dispatcher import _Kernel  # noqa: E402
from numba.cuda.typing.typeof import Purpose, typeof  # noqa: E402

from fastloss.cuda import launch  # noqa: E402

CONTEXT = types.SimpleNamespace()  # stands for a CUDA context: only stored by the pointers
devicearray.devices.get_context = lambda: CONTEXT  # empty arrays ask for one
DTYPES = [np.dtype(t) for t in ("float64", "float32", "float16", "int16", "int32", "int64", "uint8", "bool")]


def numba_view(ptr, shape, strides, dtype):
    """numba-cuda's device array over made-up memory at ``ptr``."""
    extent = 0 if 0 in shape else dtype.itemsize + sum((n - 1) * s for n, s in zip(shape, strides))
    data = driver.MemoryPointer(CONTEXT, driver.binding.CUdeviceptr(ptr), size=extent)
    return devicearray.DeviceNDArray(shape, strides, dtype, gpu_data=data)


def numba_params(ty, value):
    """The kernel parameters numba-cuda appends for ``value`` of type ``ty``."""
    kernel = types.SimpleNamespace(extensions=[])
    kernel._prepare_args = lambda *a: _Kernel._prepare_args(kernel, *a)
    params = []
    _Kernel._prepare_args(kernel, ty, value, 0, [], params)
    return [(type(p), getattr(p, "value", p)) for p in params]


@st.composite
def arrays(draw):
    """(pointer, shape, strides in bytes, dtype): C or F order, transposed, sliced,
    broadcast (stride 0), with dimensions of 0 and 1."""
    dtype = draw(st.sampled_from(DTYPES))
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim)))
    order = draw(st.sampled_from(["C", "F", "any"]))
    strides = []
    step = dtype.itemsize
    dims = range(ndim - 1, -1, -1) if order == "C" else range(ndim)
    for d in dims:
        strides.append(step)
        step *= max(shape[d], 1)
    strides = strides[::-1] if order == "C" else strides
    if order == "any":
        strides = [dtype.itemsize * draw(st.integers(0, 6)) for _ in range(ndim)]
    ptr = draw(st.sampled_from([0x7F0000000000, 0x7F0000001000 + 256 * draw(st.integers(0, 8))]))
    return ptr, shape, tuple(strides), dtype


@settings(max_examples=1500, deadline=None, database=None)
@given(arrays())
def check_arrays(described):
    view = numba_view(*described)
    want = typeof(view, Purpose.argument)
    got = launch.array_type(launch.array_kind(described))
    assert got == want, f"{described}: typed {got}, numba-cuda types {want}"
    params = []
    launch.flatten_array(described, params)
    mine = [(type(p), p) for p in params]
    assert mine == numba_params(want, view), f"{described}: {mine} != {numba_params(want, view)}"
    assert launch.describe(view) == (view.device_ctypes_pointer.value, view.shape, view.strides, view.dtype)


SCALARS = [0, 1, -5, 2**31, 2**62, 2**63 - 1, -(2**63), 2**63, 2**64 - 1, 1.5, -0.0, float("nan"), float("inf"),
           True, False, (1.0,), (1.0, 2.5), (0.5, 1.0, 2.0), (1, 2.0), np.int64(3), np.float32(2.0), np.float64(1.0)]


def check_scalars():
    """Arguments of one kind get one numba type, and are never taken for arrays."""
    types_of_kind = {}
    for v in SCALARS:
        assert launch.describe(v) is None, v
        kind = launch.scalar_kind(v)
        types_of_kind.setdefault(kind, set()).add(typeof(v, Purpose.argument))
    for kind, found in types_of_kind.items():
        assert len(found) == 1, f"{kind}: {found}"


def main():
    check_arrays()
    check_scalars()
    print("ok: direct launches type and flatten arguments as numba-cuda does")
    return 0


if __name__ == "__main__":
    sys.exit(main())
