"""Kernel launches: through numba-cuda the first time, then straight to ``cuda.core``.

numba-cuda launches a kernel by typing every argument, wrapping every array in a view
object and flattening it into the kernel's parameters: microseconds an array (numba-cuda
issue #477), and a row kernel takes 18 arrays. :func:`launch` goes through numba-cuda the
first time a kernel sees arguments of given types, which compiles it, and keeps a *plan*:
the compiled kernel and its argument types. Later launches with arguments of the same
kinds type arrays from (dtype, ndim, layout) alone (:func:`array_type`), flatten each
from its pointer, shape and strides as numba-cuda's ``_Kernel._prepare_args`` does
(:func:`flatten_array`; numbers and tuples go through that function itself), and hand
the parameters to ``cuda.core.launch`` with the launch configuration numba-cuda gives
it. ``tests/launch_check.py`` checks the typing and the flattening against numba-cuda's
own, without a GPU.

The simulator has no compiled kernels: there every launch is numba-cuda's, once the
threads of any earlier launch that raised have stopped
(:func:`.simulator.join_aborted_threads`).
"""

import numpy as np
from numba.cuda import config as cuda_config

SIMULATED = bool(cuda_config.ENABLE_CUDASIM)
#: Launch directly once a kernel's plan exists; False: every launch through numba-cuda
#: (``benchmarks/scripts/gpu_call_overhead.py`` compares the two).
DIRECT = not SIMULATED

_plans = {}


def launch(kernel, blocks, threads, caller, *args):
    """Queue ``kernel[blocks, threads]`` on ``caller``'s stream with ``args``: device
    arrays (the caller's framework's, or Numba's) and numbers or tuples of them."""
    stream = caller.stream()
    direct = DIRECT
    if direct:
        arrays = [describe(a) for a in args]
        key = (kernel, caller.device, tuple(array_kind(d) if d else scalar_kind(a) for d, a in zip(arrays, args)))
        plan = _plans.get(key)
        if plan is not None:
            plan.run(blocks, threads, stream, arrays, args)
            return
    views = [caller.view(a) if _is_framework_array(a) else a for a in args]
    if SIMULATED:
        from .simulator import join_aborted_threads

        join_aborted_threads()
    kernel[blocks, threads, stream](*views)
    if direct:
        plan = _Plan.of(kernel, key[2], views)
        if plan is not None:
            _plans[key] = plan


_NOT_ARRAYS = (int, float, tuple, np.generic)


def describe(a):
    """(pointer, shape, strides in bytes, dtype) of device array ``a``, or None for a
    number or a tuple."""
    if isinstance(a, _NOT_ARRAYS):
        return None
    return _describer(type(a))(a)


def _describer(cls):
    d = _DESCRIBERS.get(cls)
    if d is None:
        top = cls.__module__.split(".")[0]
        d = _DESCRIBERS[cls] = {"torch": _torch_array, "cupy": _cupy_array}.get(top, _numba_array)
    return d


_DESCRIBERS = {}
_TORCH_DTYPES = {}


def _torch_array(t):
    dtype = _TORCH_DTYPES.get(t.dtype)
    if dtype is None:
        dtype = _TORCH_DTYPES[t.dtype] = np.dtype(str(t.dtype).removeprefix("torch."))
    size = dtype.itemsize
    return t.data_ptr(), tuple(t.shape), tuple(s * size for s in t.stride()), dtype


def _cupy_array(a):
    return a.data.ptr, a.shape, a.strides, a.dtype


def _numba_array(a):
    return a.device_ctypes_pointer.value, a.shape, a.strides, a.dtype


def _is_framework_array(a):
    """Whether ``a`` is a PyTorch or CuPy array (kernels take Numba views of those)."""
    return not isinstance(a, _NOT_ARRAYS) and _describer(type(a)) is not _numba_array


def layout(shape, strides, itemsize):
    """The layout letter Numba types a device array of ``shape`` and ``strides`` (bytes)
    with: "C" or "F" where contiguous that way (C first; every empty array is both),
    "A" otherwise and for broadcast arrays (a stride 0)."""
    if not shape or 0 in shape:
        return "C"
    if 0 in strides:
        return "A"
    expected = itemsize
    c = True
    for n, s in zip(reversed(shape), reversed(strides)):
        if n != 1:
            c = c and s == expected
            expected *= n
    if c:
        return "C"
    expected = itemsize
    for n, s in zip(shape, strides):
        if n != 1:
            if s != expected:
                return "A"
            expected *= n
    return "F"


def array_kind(described):
    """What Numba's type of a described array depends on: (dtype, ndim, layout)."""
    _, shape, strides, dtype = described
    return dtype, len(shape), layout(shape, strides, dtype.itemsize)


def scalar_kind(v):
    """What Numba's type of an argument that is not an array depends on: its Python type
    (an int's, whether it fits int64; a tuple's, its items')."""
    if isinstance(v, tuple):
        return (tuple, *(scalar_kind(e) for e in v))
    if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
        return (int, "wide")
    return type(v)


def array_type(kind):
    """Numba's type of an array of ``kind`` (:func:`array_kind`)."""
    from numba.core import types
    from numba.np.numpy_support import from_dtype

    dtype, ndim, letter = kind
    return types.Array(from_dtype(dtype), ndim, letter)


def flatten_array(described, params):
    """Append a described array's kernel parameters to ``params``, as numba-cuda's
    ``_Kernel._prepare_args`` does: meminfo and parent (null), size, itemsize, data
    pointer (null for an empty array, as numba-cuda's device arrays have it), then the
    shape and the strides in bytes."""
    ptr, shape, strides, dtype = described
    size = 1
    for n in shape:
        size *= n
    params += (0, 0, size, dtype.itemsize, ptr if size else 0, *shape, *strides)


class _Plan:
    """A compiled kernel and its argument types, launched without numba-cuda's dispatch."""

    def __init__(self, overload, argtypes, kernel):
        self.overload = overload
        self.argtypes = argtypes
        self.kernel = kernel  # cuda.core's, for the current device
        self._configs = {}

    @classmethod
    def of(cls, kernel, kinds, views):
        """The plan for launches whose arguments are of ``kinds``, after a launch of
        ``kernel`` with ``views`` through numba-cuda; None if numba-cuda's types for
        ``views`` are not the ones ``kinds`` give (then every such launch is
        numba-cuda's)."""
        argtypes = tuple(kernel.typeof_pyval(v) for v in views)
        mine = tuple(array_type(k) if _is_array_kind(k) else kernel.typeof_pyval(v) for k, v in zip(kinds, views))
        overload = kernel.overloads.get(argtypes)
        if overload is None or mine != argtypes:
            return None
        return cls(overload, argtypes, overload._codelibrary.get_cufunc().kernel)

    def run(self, blocks, threads, stream, arrays, args):
        from cuda.core import launch as core_launch

        params = []
        retr = []
        for ty, d, a in zip(self.argtypes, arrays, args):
            if d is not None:
                flatten_array(d, params)
            else:
                self.overload._prepare_args(ty, a, stream, retr, params)
        core_launch(_core_stream(stream), self._config(blocks, threads), self.kernel, *params)

    def _config(self, blocks, threads):
        """cuda.core's launch configuration, as numba-cuda builds it."""
        c = self._configs.get((blocks, threads))
        if c is None:
            from cuda.core import LaunchConfig
            from numba.cuda._compat import CUDA_CORE_GE_1_0

            cooperative = {"is_cooperative" if CUDA_CORE_GE_1_0 else "cooperative_launch": False}
            c = self._configs[(blocks, threads)] = LaunchConfig(
                grid=(blocks, 1, 1), block=(threads, 1, 1), shmem_size=0, **cooperative
            )
        return c


def _is_array_kind(kind):
    return isinstance(kind, tuple) and len(kind) == 3 and isinstance(kind[0], np.dtype)


_core_streams = {}


def _core_stream(stream):
    """cuda.core's stream for a Numba stream (or 0, the default stream), as numba-cuda
    converts it."""
    s = _core_streams.get(stream)
    if s is None:
        from numba.cuda.cudadrv.driver import _to_core_stream

        s = _core_streams[stream] = _to_core_stream(stream)
    return s

