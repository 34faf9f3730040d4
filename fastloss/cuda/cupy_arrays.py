"""The array class of CuPy arrays: results allocated by CuPy (its memory pool) on the
array's device, kernels run on CuPy's current stream."""

import numpy as np
from numba import cuda

from .numba_arrays import Caller, device_view, external_stream


class CupyCaller(Caller):
    """CuPy arrays."""

    kind = "cupy"

    def __init__(self, device):
        import cupy

        super().__init__(device)
        self.cupy = cupy
        self._stream = None

    def is_c_contiguous(self, a):
        return a.flags.c_contiguous

    def kernel_layout(self, a, axis, rows, shape2d, keep_bf16=False):
        if rows:
            a = self.cupy.moveaxis(a, axis, -1)
        return self.cupy.ascontiguousarray(a).reshape(shape2d)

    def broadcast(self, a, shape, name, what):
        try:
            return self.cupy.broadcast_to(a, shape)
        except ValueError:
            raise ValueError(f"{name} of shape {tuple(a.shape)} does not broadcast to {what} {tuple(shape)}") from None

    def float64_copy(self, a, name):
        return self.cupy.ascontiguousarray(a, dtype=np.float64)

    def view(self, a):
        return device_view(a.data.ptr, a.shape, a.strides, a.dtype, a, self.device)

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
            self._stream = external_stream(self.cupy.cuda.get_current_stream().ptr)
        return self._stream

    def context(self):
        return cuda.gpus[self.device]

