"""Device arrays in and out, in the caller's framework, on the caller's stream:
:func:`adopt` finds the framework of a call's inputs and gives its array class.

The array classes (:class:`Caller` and its subclasses) do for the call path everything
that depends on the framework, so that the call path has no framework-specific code:

- :mod:`.numba_arrays`: :class:`Caller` (Numba device arrays, the simulator's too, and
  the base of the others) and :class:`InterfaceCaller` (any other
  ``__cuda_array_interface__`` object, whose results come back as Numba device arrays);
- :mod:`.torch_arrays`: PyTorch CUDA tensors, and arrays that offer only a CUDA
  ``__dlpack__`` (JAX), which are read through PyTorch and go back through DLPack to the
  caller's library;
- :mod:`.cupy_arrays`: CuPy arrays.

Outputs and workspaces are allocated by the caller's framework (its caching allocator,
on its current stream), and every kernel runs on the caller's stream, which orders it
after the work that produced the inputs.
"""

from .._arrays import is_device_array
from .cupy_arrays import CupyCaller
from .numba_arrays import BFLOAT16, Caller, InterfaceCaller, Meta, is_numba_array, simulated
from .torch_arrays import DLPackCaller, TorchCaller

__all__ = ["BFLOAT16", "Caller", "CupyCaller", "DLPackCaller", "InterfaceCaller", "Meta", "TorchCaller", "adopt"]


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
        if not simulated() and not is_numba_array(first):
            stream = first.__cuda_array_interface__.get("stream")
            stream = {None: None, 1: 0, 2: 2}.get(stream, stream)
        caller = InterfaceCaller(None, stream)
    return caller, [None if o is None else caller.native(o) for o in objs]


def _library(o):
    """The top-level package of ``o``'s type ("jax" for jaxlib's arrays)."""
    top = type(o).__module__.split(".")[0]
    return "jax" if top == "jaxlib" else top


def _is_dlpack_only(o):
    return hasattr(o, "__dlpack__") and not hasattr(o, "__cuda_array_interface__") and not simulated()


def _adopt_dlpack(present, module):
    """Inputs with only a CUDA ``__dlpack__`` (JAX): read through PyTorch, zero-copy."""
    try:
        import torch
    except ImportError:
        raise TypeError(f"device arrays with only DLPack ({module}) are read through PyTorch: install it") from None
    imported = [(torch.from_dlpack(o), n) for o, n in present]
    caller = DLPackCaller(_common_device(imported, lambda t: t.device.index), module)
    return caller, [caller.native(t) for t, _ in imported]


def _common_device(present, device_of):
    devices = {device_of(o) for o, _ in present}
    if len(devices) > 1:
        raise ValueError(f"the arrays are on different GPUs ({sorted(devices)}); pass them on one device")
    return devices.pop()
