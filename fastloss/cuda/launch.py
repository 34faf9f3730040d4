"""Kernel launches: through numba-cuda the first time, then straight to ``cuda.core``.

numba-cuda launches a kernel by typing every argument, wrapping every array in a view
object and flattening it into the kernel's parameters: microseconds an array (numba-cuda
issue #477), and a row kernel takes 18 arrays. :func:`launch` goes through numba-cuda the
first time a kernel sees arguments of given types, which compiles it, and keeps a *plan*:
the compiled kernel, its argument types, and a flattener per argument. Later launches
with arguments of the same kinds describe each array by its pointer and its
:class:`Facts` (its type's (dtype, ndim, layout) and its parameters but the pointer),
worked out once per shape, strides and dtype and looked up after that; flatten arrays
(:func:`flatten_array`) and numbers (:func:`scalar_flattener`) as numba-cuda's
``_Kernel._prepare_args`` does; and hand the parameters to ``cuda.core.launch`` with the
launch configuration numba-cuda gives it. ``tests/launch_check.py`` checks the typing
and the flattening against numba-cuda's own, without a GPU.

The simulator has no compiled kernels: there every launch is numba-cuda's, once the
threads of any earlier launch that raised have stopped
(:func:`.simulator.join_aborted_threads`).
"""

import ctypes
import math
from typing import NamedTuple

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
        described, kinds = describe_arguments(args)
        key = (kernel, caller.device, kinds)
        plan = _plans.get(key)
        if plan is not None:
            plan.run(blocks, threads, stream, described, args)
            return
    views = [caller.view(a) if _is_framework_array(a) else a for a in args]
    if SIMULATED:
        from .simulator import join_aborted_threads

        join_aborted_threads()
    kernel[blocks, threads, stream](*views)
    if direct:
        plan = _Plan.of(kernel, kinds, views)
        if plan is not None:
            _plans[key] = plan


def describe_arguments(args):
    """(each argument's :func:`describe`, the kinds of all of them): what a launch's plan
    is looked up by."""
    described = [describe(a) for a in args]
    return described, tuple(scalar_kind(a) if d is None else d[1].kind for d, a in zip(described, args))


def flatten_arguments(flatteners, described, args):
    """The kernel parameters of ``args`` (described by :func:`describe_arguments`), each by
    its flattener (:func:`flatten_array` or its :func:`scalar_flattener`)."""
    params = []
    for flatten, d, a in zip(flatteners, described, args):
        flatten(a if d is None else d, params)
    return params


_NOT_ARRAYS = (int, float, tuple, np.generic)


class Facts(NamedTuple):
    """What a launch needs to know of a device array besides its pointer: the same for
    every array of one shape, strides and dtype, so worked out once for each
    (:func:`facts`; an array is described from a dictionary lookup after that)."""

    #: What Numba's type of the array depends on: (dtype, ndim, layout letter).
    kind: tuple
    #: Its elements.
    size: int
    #: The kernel parameters before its pointer, as numba-cuda's ``_prepare_args``
    #: appends them: meminfo and parent (null), size, itemsize.
    head: tuple
    #: The parameters after the pointer: the shape, then the strides in bytes.
    dims: tuple


def facts(shape, strides, dtype):
    """The :class:`Facts` of arrays of ``shape``, ``strides`` (bytes) and NumPy ``dtype``."""
    shape, strides = tuple(shape), tuple(strides)
    size = math.prod(shape)
    kind = (dtype, len(shape), layout(shape, strides, dtype.itemsize))
    return Facts(kind, size, (0, 0, size, dtype.itemsize), shape + strides)


#: Facts by (shape, strides, dtype) as each library gives them: NumPy dtypes and strides in
#: bytes (CuPy, Numba), PyTorch's dtypes and strides in elements (a dictionary of its own).
_facts, _torch_facts = {}, {}
#: Entries a dictionary of facts keeps before it starts again (shapes that keep changing).
FACTS_KEPT = 4096


def _remember(table, key, found):
    if len(table) >= FACTS_KEPT:
        table.clear()
    table[key] = found
    return found


def describe(a):
    """(pointer, :class:`Facts`) of device array ``a``, or None for a number or a tuple.
    The pointer of an empty array is 0, as numba-cuda passes it."""
    d = _DESCRIBERS.get(type(a))
    return (d or _describer(type(a)))(a)


def _describer(cls):
    d = _DESCRIBERS.get(cls)
    if d is None:
        top = cls.__module__.split(".")[0]
        if issubclass(cls, _NOT_ARRAYS):
            d = _not_an_array
        else:
            d = {"torch": _torch_array, "cupy": _cupy_array}.get(top, _numba_array)
        _DESCRIBERS[cls] = d
    return d


_DESCRIBERS = {}


def _not_an_array(a):
    return None


def _torch_array(t):
    key = (t.shape, t.stride(), t.dtype)
    f = _torch_facts.get(key)
    if f is None:
        dtype = np.dtype(str(t.dtype).removeprefix("torch."))
        f = _remember(_torch_facts, key, facts(key[0], [s * dtype.itemsize for s in key[1]], dtype))
    return (t.data_ptr() if f.size else 0), f


def _cupy_array(a):
    key = (a.shape, a.strides, a.dtype)
    f = _facts.get(key) or _remember(_facts, key, facts(*key))
    return (a.data.ptr if f.size else 0), f


def _numba_array(a):
    key = (a.shape, a.strides, a.dtype)
    f = _facts.get(key) or _remember(_facts, key, facts(*key))
    return (a.device_ctypes_pointer.value if f.size else 0), f


def _is_framework_array(a):
    """Whether ``a`` is a PyTorch or CuPy array (kernels take Numba views of those)."""
    return _describer(type(a)) in (_torch_array, _cupy_array)


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


def scalar_kind(v):
    """What Numba's type of an argument that is not an array depends on: its Python type
    (an int's, whether it fits int64; a tuple's, its items')."""
    if isinstance(v, tuple):
        return (tuple, *(scalar_kind(e) for e in v))
    if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
        return (int, "wide")
    return type(v)


def array_type(kind):
    """Numba's type of an array of ``kind`` (:attr:`Facts.kind`)."""
    from numba.core import types
    from numba.np.numpy_support import from_dtype

    dtype, ndim, letter = kind
    return types.Array(from_dtype(dtype), ndim, letter)


def flatten_array(described, params):
    """Append a described array's kernel parameters (:func:`describe`) to ``params``, as
    numba-cuda's ``_Kernel._prepare_args`` does: meminfo and parent (null), size,
    itemsize, data pointer (null for an empty array, as numba-cuda's device arrays have
    it), then the shape and the strides in bytes."""
    ptr, f = described
    params += f.head
    params.append(ptr)
    params += f.dims


def scalar_flattener(ty):
    """The function ``(value, params)`` that appends the kernel parameters of a number
    or a tuple of Numba type ``ty`` to ``params`` as numba-cuda's ``_prepare_args`` does
    (ctypes numbers; a boolean as it is; a tuple item by item), or None for other types
    (a kernel taking one is always launched through numba-cuda)."""
    from numba.core import types

    if isinstance(ty, types.BaseTuple):
        items = [scalar_flattener(t) for t in ty]
        if None in items:
            return None

        def flatten(value, params):
            for item, v in zip(items, value):
                item(v, params)

        return flatten
    if ty == types.boolean:
        return lambda value, params: params.append(value)
    if isinstance(ty, types.Integer) or ty in (types.float32, types.float64):
        number = getattr(ctypes, "c_double" if ty == types.float64 else "c_float" if ty == types.float32 else f"c_{ty}")
        return lambda value, params: params.append(number(value))
    return None


class _Plan:
    """A compiled kernel and its argument types, launched without numba-cuda's dispatch."""

    def __init__(self, argtypes, flatteners, kernel):
        self.argtypes = argtypes
        self.flatteners = flatteners  # per argument: flatten_array, or its scalar_flattener
        self.kernel = kernel  # cuda.core's, for the current device
        self._configs = {}

    @classmethod
    def of(cls, kernel, kinds, views):
        """The plan for launches whose arguments are of ``kinds``, after a launch of
        ``kernel`` with ``views`` through numba-cuda; None if numba-cuda's types for
        ``views`` are not the ones ``kinds`` give, or it takes an argument that
        :func:`scalar_flattener` does not know (then every such launch is
        numba-cuda's)."""
        argtypes = tuple(kernel.typeof_pyval(v) for v in views)
        mine = tuple(array_type(k) if _is_array_kind(k) else kernel.typeof_pyval(v) for k, v in zip(kinds, views))
        overload = kernel.overloads.get(argtypes)
        if overload is None or mine != argtypes or overload.extensions:
            return None
        flatteners = tuple(flatten_array if _is_array_kind(k) else scalar_flattener(t) for k, t in zip(kinds, argtypes))
        if None in flatteners:
            return None
        return cls(argtypes, flatteners, overload.library.get_cufunc().kernel)

    def run(self, blocks, threads, stream, described, args):
        from cuda.core import launch as core_launch

        params = flatten_arguments(self.flatteners, described, args)
        core_launch(_core_stream(stream), self._config(blocks, threads), self.kernel, *params)

    def _config(self, blocks, threads):
        """cuda.core's launch configuration, as numba-cuda builds it."""
        c = self._configs.get((blocks, threads))
        if c is None:
            from cuda.core import LaunchConfig, __version__
            from packaging.version import Version

            # The option is is_cooperative from cuda.core 1.0 on, cooperative_launch before.
            new = Version(__version__) >= Version("1.0.0")
            cooperative = {"is_cooperative" if new else "cooperative_launch": False}
            c = self._configs[(blocks, threads)] = LaunchConfig(
                grid=(blocks, 1, 1), block=(threads, 1, 1), shmem_size=0, **cooperative
            )
        return c


def _is_array_kind(kind):
    return isinstance(kind, tuple) and len(kind) == 3 and isinstance(kind[0], np.dtype)


_core_streams = {}


def _core_stream(stream):
    """cuda.core's stream for a Numba stream (or 0, the default stream): the same CUDA
    stream, by its handle, which a Numba stream gives through the ``__cuda_stream__``
    protocol (public API of both: ``cuda.core.Stream.from_handle`` is what numba-cuda's
    own conversion calls too). Like numba-cuda's launches, it does not own the stream:
    the caller's framework keeps it alive."""
    s = _core_streams.get(stream)
    if s is None:
        from cuda.core import Stream

        s = _core_streams[stream] = Stream.from_handle(int(stream.__cuda_stream__()[1]) if stream else 0)
    return s

