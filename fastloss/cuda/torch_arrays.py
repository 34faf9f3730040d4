"""The array classes of PyTorch CUDA tensors, and of arrays that come by DLPack (JAX),
which are read as PyTorch tensors.

Outputs and workspaces are allocated by PyTorch (its caching allocator, on its current
stream), and kernels run on PyTorch's current stream. bfloat16 tensors reach the kernels
as their bits (int16) or as float32 copies (:meth:`TorchCaller.kernel_layout`).
"""

import numpy as np
from numba import cuda

from .numba_arrays import BFLOAT16, Caller, device_view, external_stream


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

    def meta(self, a):
        m = super().meta(a)
        if a.dtype == self.torch.bfloat16:
            m.dtype = BFLOAT16
        return m

    def is_c_contiguous(self, a):
        return a.is_contiguous()

    def kernel_layout(self, a, axis, rows, shape2d, keep_bf16=False):
        if a.dtype == self.torch.bfloat16:
            a = a.view(self.torch.int16) if keep_bf16 else a.float()
        if rows:
            a = a.movedim(axis, -1)
        return a.contiguous().view(shape2d)

    def broadcast(self, a, shape, name, what):
        try:
            return a.broadcast_to(shape)
        except RuntimeError:
            raise ValueError(f"{name} of shape {tuple(a.shape)} does not broadcast to {what} {tuple(shape)}") from None

    def float64_copy(self, a, name):
        return a.to(self.torch.float64).contiguous()

    def view(self, a):
        size = a.element_size()
        strides = tuple(s * size for s in a.stride())
        return device_view(a.data_ptr(), tuple(a.shape), strides, _numpy_dtype(a.dtype), a, self.device)

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
        return device_view(zero.data_ptr(), (1,), (4,), np.uint32, zero, self.device)

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
            self._stream = external_stream(ptr)
        return self._stream

    def context(self):
        return cuda.gpus[self.device]


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


def _numpy_dtype(torch_dtype):
    return np.dtype(str(torch_dtype).removeprefix("torch."))


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
