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
# This checkout's fastloss, not an installed copy (see compile_kernels.py).
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
    ptr, shape, strides, dtype = described
    view = numba_view(*described)
    want = typeof(view, Purpose.argument)
    mine = launch.describe(view)
    assert mine[1] == launch.facts(shape, strides, dtype), f"{described}: {mine[1]}"
    assert mine[0] == (ptr if view.size else 0), f"{described}: pointer {mine[0]}"
    got = launch.array_type(mine[1].kind)
    assert got == want, f"{described}: typed {got}, numba-cuda types {want}"
    params = []
    launch.flatten_array(mine, params)
    flat = [(type(p), p) for p in params]
    assert flat == numba_params(want, view), f"{described}: {flat} != {numba_params(want, view)}"


@settings(max_examples=300, deadline=None, database=None)
@given(arrays())
def check_torch_arrays(described):
    """A PyTorch tensor (a CPU one: what is described is the same on a GPU) is described
    as a Numba array of the same memory is: same facts, same pointer."""
    import torch

    _, shape, strides, dtype = described
    elements = tuple(s // dtype.itemsize for s in strides)
    extent = 1 + sum((n - 1) * s for n, s in zip(shape, elements)) if 0 not in shape else 0
    torch_dtype = getattr(torch, str(dtype))
    t = torch.empty(max(extent, 1), dtype=torch_dtype).as_strided(shape, elements)
    ptr, f = launch.describe(t)
    assert f == launch.facts(shape, strides, dtype), f"{described}: {f}"
    assert ptr == (t.data_ptr() if t.numel() else 0), f"{described}: pointer {ptr}"


SCALARS = [0, 1, -5, 2**31, 2**62, 2**63 - 1, -(2**63), 2**63, 2**64 - 1, 1.5, -0.0, float("nan"), float("inf"),
           True, False, (1.0,), (1.0, 2.5), (0.5, 1.0, 2.0), (1, 2.0), np.int64(3), np.float32(2.0), np.float64(1.0)]


def check_scalars():
    """Arguments of one kind get one numba type, and are never taken for arrays; the
    direct launches flatten every number and tuple of the kinds the kernels take as
    numba-cuda does."""
    types_of_kind = {}
    for v in SCALARS:
        assert launch.describe(v) is None, v
        kind = launch.scalar_kind(v)
        ty = typeof(v, Purpose.argument)
        types_of_kind.setdefault(kind, set()).add(ty)
        flatten = launch.scalar_flattener(ty)
        if flatten is None:
            assert not isinstance(v, (float, bool, tuple)), f"{v!r} ({ty}): no direct flattening"
            continue
        params = []
        flatten(v, params)
        mine = [(type(p), repr(getattr(p, "value", p))) for p in params]
        theirs = [(t, repr(p)) for t, p in numba_params(ty, v)]
        assert mine == theirs, f"{v!r} ({ty}): {mine} != {theirs}"
    for kind, found in types_of_kind.items():
        assert len(found) == 1, f"{kind}: {found}"


def main():
    check_arrays()
    check_scalars()
    try:
        import torch  # noqa: F401
    except ImportError:
        torch_checked = "PyTorch not installed: its tensors' descriptions not checked"
    else:
        check_torch_arrays()
        torch_checked = "PyTorch tensors described as Numba's arrays of the same memory"
    print(f"ok: direct launches type and flatten arguments as numba-cuda does; {torch_checked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
