"""Device arrays in and out, in the caller's framework, on the caller's stream.

A :class:`Caller` stands for the framework the inputs came from: PyTorch, CuPy, or Numba
device arrays (the simulator's too, and any other ``__cuda_array_interface__`` object,
whose results come back as Numba device arrays). Inputs that offer only a CUDA
``__dlpack__`` (JAX) are imported through PyTorch or CuPy, and results go back through
DLPack to the caller's library. Outputs and workspaces are allocated by the caller's
framework (its caching allocator, on its current stream). A kernel's first launch sees
Numba views of them, made without a copy and without synchronising (:meth:`Caller.view`);
later launches take their pointers directly (:mod:`.launch`). Every kernel runs on the
caller's stream, which orders it after the work that produced the inputs.
"""

import threading

import numpy as np
from numba import cuda

from .._arrays import is_device_array


class Caller:
    """The framework of a call's inputs: layout changes, allocation and the stream."""

    kind = "numba"

    def __init__(self, device=None):
        self.device = device

    # -- inputs ---------------------------------------------------------------------
    def native(self, obj):
        """``obj`` as this framework's array (a Numba device array here)."""
        return obj

    def dtype(self, a):
        return np.dtype(a.dtype)

    def kernel_layout(self, a, axis, rows, shape2d, keep_bf16=False):
        """``a`` C-contiguous with the class axis last, reshaped to the kernels' 1-D or
        2-D shape; copied only where needed. (bfloat16, which only PyTorch has here, is
        given as a float32 copy, or with ``keep_bf16`` as its bits in int16.)"""
        if rows and axis != len(a.shape) - 1 or not a.is_c_contiguous():
            raise ValueError(
                "Numba device arrays must be C-contiguous with the class axis last; "
                "pass CuPy or PyTorch arrays for other layouts"
            )
        return a.reshape(shape2d)

    def view(self, a):
        """The Numba device array a kernel is given for ``a``."""
        return a

    def pointer(self, a):
        """(first byte, one past the last byte) of ``a``'s memory, for overlap checks."""
        desc = getattr(a, "__cuda_array_interface__", None)
        if desc is None:  # the simulator's arrays wrap NumPy arrays
            host = a._ary
            start = host.__array_interface__["data"][0]
            return start, start + host.nbytes
        return desc["data"][0], desc["data"][0] + a.nbytes

    # -- outputs --------------------------------------------------------------------
    def empty(self, shape, dtype):
        return cuda.device_array(shape, dtype=dtype, stream=self.stream())

    def zeros(self, shape, dtype):
        a = self.empty(shape, dtype)
        if a.size:
            a.copy_to_device(np.zeros(shape, dtype=dtype), stream=self.stream())
        return a

    def full(self, shape, dtype, value):
        a = self.empty(shape, dtype)
        a.copy_to_device(np.full(shape, value, dtype=dtype), stream=self.stream())
        return a

    def counter(self):
        """A uint32 zero, allocated and cleared on the stream (a kernel's ticket counter)."""
        return self.zeros((1,), np.uint32)

    def deliver(self, buf, shape, axis, rows, dtype):
        """A kernel output in the caller's shape, axis order and dtype (Numba arrays come
        in with the class axis last: :meth:`kernel_layout` refuses any other)."""
        return buf.reshape(shape)

    def scalar(self, buf, dtype):
        """The 0-d loss from a one-element buffer."""
        return buf.reshape(())

    def copy_into(self, target, src):
        target.copy_to_device(src, stream=self.stream())

    def from_host(self, host):
        return cuda.to_device(np.ascontiguousarray(host), stream=self.stream())

    def to_host(self, a):
        return a.copy_to_host(stream=self.stream())

    def to_host_later(self, a):
        """Queue the copy of the small device array ``a`` to the host on the stream, and
        return the function that waits for that copy (not for the work queued after it)
        and gives its NumPy array. The copy lands in page-locked memory of the calling
        thread's, so that queueing it does not wait; a call waits before it returns, so
        a thread has one copy in flight at a time."""
        d = self.view(a)
        stream = self.stream() or cuda.default_stream()  # a Stream object: asynchronous
        host = _page_locked(self.device, d.shape, d.dtype)
        d.copy_to_host(host, stream=stream)
        done = cuda.event()
        done.record(stream)

        def wait():
            done.synchronize()
            return host.copy()

        return wait

    # -- the stream -----------------------------------------------------------------
    def stream(self):
        return 0

    def context(self):
        """A context manager that makes the inputs' device current."""
        return cuda.gpus[self.device if self.device is not None else 0] if not _simulated() else _nothing()


class TorchCaller(Caller):
    """PyTorch CUDA tensors; bfloat16 runs through a float32 copy."""

    kind = "torch"

    def __init__(self, device):
        import torch

        super().__init__(device)
        self.torch = torch
        self._stream = None

    def native(self, obj):
        return obj.detach()

    def dtype(self, a):
        if a.dtype == self.torch.bfloat16:
            return np.dtype(np.float32)  # computed in float32, returned as bfloat16
        return np.dtype(str(a.dtype).removeprefix("torch."))

    def kernel_layout(self, a, axis, rows, shape2d, keep_bf16=False):
        if a.dtype == self.torch.bfloat16:
            a = a.view(self.torch.int16) if keep_bf16 else a.float()
        if rows:
            a = a.movedim(axis, -1)
        return a.contiguous().view(shape2d)

    def view(self, a):
        size = a.element_size()
        strides = tuple(s * size for s in a.stride())
        return _view(a.data_ptr(), tuple(a.shape), strides, _numpy_dtype(a.dtype), a, self.device)

    def pointer(self, a):
        start = a.data_ptr()
        return start, start + a.numel() * a.element_size()

    def empty(self, shape, dtype):
        return self.torch.empty(shape, dtype=_torch_dtype(self.torch, dtype), device=self.device)

    def zeros(self, shape, dtype):
        return self.torch.zeros(shape, dtype=_torch_dtype(self.torch, dtype), device=self.device)

    def full(self, shape, dtype, value):
        return self.torch.full(shape, value, dtype=_torch_dtype(self.torch, dtype), device=self.device)

    def counter(self):
        """An int32 zero cleared on the stream, given to kernels as uint32 (a Numba view:
        PyTorch has uint32 only from 2.3)."""
        zero = self.zeros((1,), np.int32)
        return _view(zero.data_ptr(), (1,), (4,), np.uint32, zero, self.device)

    def deliver(self, buf, shape, axis, rows, dtype):
        if buf.dtype == self.torch.int16 and dtype == self.torch.bfloat16:  # bfloat16 bits
            buf = buf.view(dtype)
        if rows and axis != len(shape) - 1:
            moved = (*shape[:axis], *shape[axis + 1:], shape[axis])
            buf = buf.view(moved).movedim(-1, axis).contiguous()
        else:
            buf = buf.view(shape)
        return buf if buf.dtype == dtype else buf.to(dtype)

    def scalar(self, buf, dtype):
        v = buf.view(())
        return v if v.dtype == dtype else v.to(dtype)

    def copy_into(self, target, src):
        target.copy_(src)

    def from_host(self, host):
        return self.torch.as_tensor(np.ascontiguousarray(host), device=self.device)

    def to_host(self, a):
        return a.cpu().numpy()

    def stream(self):
        if self._stream is None:
            ptr = self.torch.cuda.current_stream(self.device).cuda_stream
            self._stream = _external_stream(ptr)
        return self._stream

    def context(self):
        return cuda.gpus[self.device]


class CupyCaller(Caller):
    """CuPy arrays."""

    kind = "cupy"

    def __init__(self, device):
        import cupy

        super().__init__(device)
        self.cupy = cupy
        self._stream = None

    def kernel_layout(self, a, axis, rows, shape2d, keep_bf16=False):
        if rows:
            a = self.cupy.moveaxis(a, axis, -1)
        return self.cupy.ascontiguousarray(a).reshape(shape2d)

    def view(self, a):
        return _view(a.data.ptr, a.shape, a.strides, a.dtype, a, self.device)

    def pointer(self, a):
        return a.data.ptr, a.data.ptr + a.nbytes

    def empty(self, shape, dtype):
        with self.cupy.cuda.Device(self.device):
            return self.cupy.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        with self.cupy.cuda.Device(self.device):
            return self.cupy.zeros(shape, dtype=dtype)

    def full(self, shape, dtype, value):
        with self.cupy.cuda.Device(self.device):
            return self.cupy.full(shape, value, dtype=dtype)

    def deliver(self, buf, shape, axis, rows, dtype):
        if rows and axis != len(shape) - 1:
            moved = (*shape[:axis], *shape[axis + 1:], shape[axis])
            buf = self.cupy.ascontiguousarray(self.cupy.moveaxis(buf.reshape(moved), -1, axis))
        else:
            buf = buf.reshape(shape)
        return buf.astype(dtype, copy=False)

    def scalar(self, buf, dtype):
        return buf.reshape(()).astype(dtype, copy=False)

    def copy_into(self, target, src):
        target[...] = src

    def from_host(self, host):
        with self.cupy.cuda.Device(self.device):
            return self.cupy.asarray(np.ascontiguousarray(host))

    def to_host(self, a):
        return self.cupy.asnumpy(a)

    def stream(self):
        if self._stream is None:
            self._stream = _external_stream(self.cupy.cuda.get_current_stream().ptr)
        return self._stream

    def context(self):
        return cuda.gpus[self.device]


class InterfaceCaller(Caller):
    """Any other ``__cuda_array_interface__`` object: results as Numba device arrays, on
    the stream its interface names (if any)."""

    def __init__(self, device, stream_ptr):
        super().__init__(device)
        self._stream_ptr = stream_ptr

    def native(self, obj):
        if _simulated() or _is_numba_array(obj):
            return obj
        return cuda.from_cuda_array_interface(obj.__cuda_array_interface__, owner=obj, sync=False)

    def stream(self):
        return _external_stream(self._stream_ptr)


def adopt(objs, names):
    """The :class:`Caller` for device arrays ``objs`` (an error if they mix frameworks,
    devices, or host and device memory) and the arrays in its framework."""
    present = [(o, n) for o, n in zip(objs, names) if o is not None]
    for o, n in present:
        if not is_device_array(o):
            raise ValueError(
                f"{n} is in host memory but {present[0][1]} is on a GPU; pass every array on the same device"
            )
    first = present[0][0]
    module = _library(first)
    kinds = {_library(o) for o, _ in present}
    if len(kinds) > 1 and module != "numba":
        raise ValueError(f"the arrays come from different libraries ({', '.join(sorted(kinds))}); pass one kind")
    if module == "jax":  # JAX arrays also have the interface, but want JAX arrays back
        return _adopt_dlpack(present, module)
    if module == "torch":
        caller = TorchCaller(_common_device(present, lambda o: o.device.index))
    elif module == "cupy":
        caller = CupyCaller(_common_device(present, lambda o: o.device.id))
    elif _is_dlpack_only(first):
        return _adopt_dlpack(present, module)
    else:
        stream = None
        if not _simulated() and not _is_numba_array(first):
            stream = first.__cuda_array_interface__.get("stream")
            stream = {None: None, 1: 0, 2: 2}.get(stream, stream)
        caller = InterfaceCaller(None, stream)
    return caller, [None if o is None else caller.native(o) for o in objs]


def _library(o):
    """The top-level package of ``o``'s type ("jax" for jaxlib's arrays)."""
    top = type(o).__module__.split(".")[0]
    return "jax" if top == "jaxlib" else top


def _is_numba_array(o):
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    return isinstance(o, DeviceNDArray)


def _is_dlpack_only(o):
    return hasattr(o, "__dlpack__") and not hasattr(o, "__cuda_array_interface__") and not _simulated()


def _adopt_dlpack(present, module):
    """Inputs with only a CUDA ``__dlpack__`` (JAX): read through PyTorch, zero-copy."""
    try:
        import torch
    except ImportError:
        raise TypeError(f"device arrays with only DLPack ({module}) are read through PyTorch: install it") from None
    imported = [(torch.from_dlpack(o), n) for o, n in present]
    caller = DLPackCaller(_common_device(imported, lambda t: t.device.index), module)
    return caller, [caller.native(t) for t, _ in imported]


class DLPackCaller(TorchCaller):
    """Arrays that came by DLPack: computed as PyTorch tensors, returned by DLPack to the
    caller's library (``jax.numpy.from_dlpack`` for JAX)."""

    def __init__(self, device, module):
        super().__init__(device)
        self.module = module

    def deliver(self, buf, shape, axis, rows, dtype):
        return self._back(super().deliver(buf, shape, axis, rows, dtype))

    def scalar(self, buf, dtype):
        return self._back(super().scalar(buf, dtype))

    def _back(self, t):
        if self.module == "jax":
            import jax.numpy as jnp

            return jnp.from_dlpack(t)
        return t


def _common_device(present, device_of):
    devices = {device_of(o) for o, _ in present}
    if len(devices) > 1:
        raise ValueError(f"the arrays are on different GPUs ({sorted(devices)}); pass them on one device")
    return devices.pop()


def _view(ptr, shape, strides, dtype, owner, device):
    """A Numba device array over ``owner``'s memory, made directly: no interface dict, no
    stream object, no pointer query (four times faster than from_cuda_array_interface,
    which matters at a dozen arrays a call)."""
    from numba.cuda.cudadrv import driver
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    itemsize = np.dtype(dtype).itemsize
    extent = 0 if 0 in shape else itemsize + sum((n - 1) * abs(s) for n, s in zip(shape, strides))
    data = driver.MemoryPointer(_context(device), driver.binding.CUdeviceptr(ptr), size=extent, owner=owner)
    return DeviceNDArray(shape, strides, dtype, gpu_data=data)


_contexts = {}


def _context(device):
    """Numba's context for ``device`` (its primary context, which PyTorch and CuPy use
    too), looked up once; called with that device current."""
    ctx = _contexts.get(device)
    if ctx is None:
        ctx = _contexts[device] = cuda.current_context()
    return ctx


def _numpy_dtype(torch_dtype):
    return np.dtype(str(torch_dtype).removeprefix("torch."))


_page_locked_buffers = threading.local()


def _page_locked(device, shape, dtype):
    """This thread's page-locked host array of ``shape`` and ``dtype`` for ``device``
    (allocated once: allocating and freeing page-locked memory is slow, and freeing it
    waits for the device)."""
    buffers = _page_locked_buffers.__dict__.setdefault("by_key", {})
    key = (device, tuple(shape), np.dtype(dtype))
    host = buffers.get(key)
    if host is None:
        host = buffers[key] = cuda.pinned_array(shape, dtype=dtype)
    return host


_streams = {}


def _external_stream(ptr):
    """The stream to launch on for the CUDA stream handle ``ptr``: 0 (the default stream,
    the cheapest launch) or a Numba stream object for any other."""
    if not ptr or _simulated():
        return 0
    s = _streams.get(ptr)
    if s is None:
        s = _streams[ptr] = cuda.external_stream(ptr)
    return s


def _simulated():
    from numba.cuda import config

    return bool(config.ENABLE_CUDASIM)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_TORCH_DTYPES = {}


def _torch_dtype(torch, dtype):
    """PyTorch's dtype for the NumPy ``dtype`` (or anything ``np.dtype`` takes) of a kernel
    array (looked up: building the table costs more than the allocation it is for)."""
    found = _TORCH_DTYPES.get(dtype)
    if found is None:
        name = np.dtype(dtype).name
        if name not in ("float16", "float32", "float64", "int64", "int16", "int32"):
            raise KeyError(f"no kernel array of dtype {name}")
        found = _TORCH_DTYPES[dtype] = getattr(torch, name)
    return found
