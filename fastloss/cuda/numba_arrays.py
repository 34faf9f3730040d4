"""The array class of Numba device arrays, which every framework's array class extends.

A :class:`Caller` stands for the framework a call's inputs came from and does for the
call path everything that depends on it: shapes and dtypes, layout changes, allocation,
option arrays to float64, copies to and from the host, and the stream. This base class
is the one for Numba device arrays (the simulator's too); :class:`InterfaceCaller` for
any other ``__cuda_array_interface__`` object, whose results come back as Numba device
arrays. PyTorch's and CuPy's are in :mod:`.torch_arrays` and :mod:`.cupy_arrays`;
:func:`.arrays.adopt` chooses among them.

A kernel's first launch sees Numba views of a framework's arrays, made without a copy
and without synchronising (:func:`device_view`); later launches take their pointers
directly (:mod:`.launch`). Every kernel runs on the caller's stream, which orders it
after the work that produced the inputs.
"""

import math
import threading
from types import SimpleNamespace

import numpy as np
from numba import cuda

#: bfloat16 has no NumPy dtype: this stands for it in the dtype checks shared with the CPU
#: path (it computes in float32, like float16). Only PyTorch arrays have it here.
BFLOAT16 = SimpleNamespace(kind="f", name="bfloat16", itemsize=2)


class Meta(SimpleNamespace):
    """Shape and dtype of a device array, for the checks shared with the CPU path
    (``shape``, ``dtype``, ``ndim``, ``size``)."""


class Caller:
    """The framework of a call's inputs: shapes and dtypes, layout changes, allocation,
    option arrays, host copies and the stream. This class: Numba device arrays."""

    kind = "numba"

    def __init__(self, device=None):
        self.device = device

    # -- inputs ---------------------------------------------------------------------
    def native(self, obj):
        """``obj`` as this framework's array (a Numba device array here)."""
        return obj

    def dtype(self, a):
        """The NumPy dtype that kernels see ``a``'s elements as."""
        return np.dtype(a.dtype)

    def meta(self, a):
        """``a``'s :class:`Meta`: its shape, and its dtype as the shared checks see it
        (:data:`BFLOAT16` for bfloat16)."""
        return Meta(shape=tuple(a.shape), dtype=self.dtype(a), ndim=len(a.shape), size=math.prod(a.shape))

    def is_c_contiguous(self, a):
        return a.is_c_contiguous()

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

    def broadcast(self, a, shape, name, what):
        """``a`` broadcast to ``shape`` (``what`` names that shape in the error, with
        the option's ``name``), without a copy. Numba device arrays are not broadcast:
        they must have the shape."""
        if tuple(a.shape) != tuple(shape):
            raise ValueError(f"{name} as a Numba device array must have {what} {tuple(shape)}, got {tuple(a.shape)}")
        return a

    def float64_copy(self, a, name):
        """``a`` as a C-contiguous float64 array, copied where needed (an option's array:
        ``name`` for the error). Numba device arrays must be float64 already."""
        if np.dtype(a.dtype) != np.float64:
            raise TypeError(f"{name} as a Numba device array must be float64, got {a.dtype}")
        return a

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
        return cuda.gpus[self.device if self.device is not None else 0] if not simulated() else _nothing()


class InterfaceCaller(Caller):
    """Any other ``__cuda_array_interface__`` object: results as Numba device arrays, on
    the stream its interface names (if any)."""

    def __init__(self, device, stream_ptr):
        super().__init__(device)
        self._stream_ptr = stream_ptr

    def native(self, obj):
        if simulated() or is_numba_array(obj):
            return obj
        return cuda.from_cuda_array_interface(obj.__cuda_array_interface__, owner=obj, sync=False)

    def stream(self):
        return external_stream(self._stream_ptr)


def is_numba_array(o):
    from numba.cuda.cudadrv.devicearray import DeviceNDArray

    return isinstance(o, DeviceNDArray)


def device_view(ptr, shape, strides, dtype, owner, device):
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


def external_stream(ptr):
    """The stream to launch on for the CUDA stream handle ``ptr``: 0 (the default stream,
    the cheapest launch) or a Numba stream object for any other."""
    if not ptr or simulated():
        return 0
    s = _streams.get(ptr)
    if s is None:
        s = _streams[ptr] = cuda.external_stream(ptr)
    return s


def simulated():
    """Whether Numba's CUDA simulator runs the kernels."""
    from numba.cuda import config

    return bool(config.ENABLE_CUDASIM)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
