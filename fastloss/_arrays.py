"""Arrays in, arrays out (contract section 2): what kind of array a call was given, host
views of the CPU ones, results handed back as the caller's kind, and the hook through
which other array libraries (Dask) take a call.

Nothing here imports a framework until a call brings one of its arrays.
"""

import importlib
import importlib.metadata

import numpy as np

from ._result import LossResult

_HOST = (np.ndarray, np.generic, int, float, complex, str, bytes, list, tuple, dict, type(None))

# DLPack device types that are GPU memory a kernel can read: kDLCUDA, kDLCUDAManaged.
_DLPACK_CUDA = (2, 13)


def is_device_array(obj):
    """Whether ``obj`` is a CUDA device array (without importing anything; host arrays
    and numbers are answered at once, since every call on the CPU asks)."""
    if isinstance(obj, _HOST):
        return False
    if hasattr(type(obj), "__cuda_array_interface__"):
        try:
            return obj.__cuda_array_interface__ is not None
        except AttributeError:  # a CPU tensor: the class has the property, the tensor refuses
            return False
        except Exception:  # the interface exists but refuses: a CUDA tensor that requires grad
            return True
    if hasattr(obj, "__cuda_array_interface__"):  # set on the instance
        return True
    if type(obj).__name__ == "FakeCUDAArray":  # a device array of Numba's CUDA simulator
        return True
    dlpack_device = getattr(obj, "__dlpack_device__", None)
    if dlpack_device is not None and not hasattr(obj, "__array_interface__"):
        try:
            return dlpack_device()[0] in _DLPACK_CUDA
        except Exception:
            return False
    return False


def _is_torch(obj):
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def _is_jax(obj):
    return type(obj).__module__.startswith(("jax", "jaxlib")) and hasattr(obj, "__dlpack__")


# --- array libraries that take over a call --------------------------------------------

#: Array libraries that take over a call given their arrays: the top-level module of an
#: array type (``dask``) -> ``"module:function"``, a function ``evaluate(spec, arrays,
#: common, options, backend)`` that computes the call. fastloss's own adapters are
#: declared here; another package declares its array type with an entry point of the
#: group ``fastloss.array_handlers`` (name: the module, value: the function).
HANDLERS = {"dask": "fastloss.dask:evaluate"}
HANDLER_GROUP = "fastloss.array_handlers"
_handlers = None


def _handler_table():
    global _handlers
    if _handlers is None:
        table = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=HANDLER_GROUP)}
        _handlers = {**table, **HANDLERS}
    return _handlers


def _load(target):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def handler_for(arrays):
    """The ``evaluate`` of the registered handler of the first array whose library has one,
    or None (NumPy arrays and numbers are answered without a look-up)."""
    for a in arrays:
        if isinstance(a, _HOST):
            continue
        target = _handler_table().get(type(a).__module__.partition(".")[0])
        if target is not None:
            return _load(target)
    return None


# --- host views -----------------------------------------------------------------------


def host_array(obj, name):
    """A NumPy view of ``obj`` (never a copy where NumPy can avoid one)."""
    if isinstance(obj, np.ndarray):
        return obj
    if _is_torch(obj):
        obj = obj.detach()  # a tensor that requires grad is read, never copied
        if str(obj.dtype) == "torch.bfloat16" and obj.device.type == "cpu":
            return _bfloat16_view(obj)
    elif hasattr(obj, "__dlpack__") and not hasattr(obj, "__array_interface__"):
        try:  # JAX CPU arrays and other DLPack producers: a view of their buffer
            return np.from_dlpack(obj)
        except Exception:  # noqa: BLE001 - a producer NumPy cannot view: fall back to __array__
            pass
    try:
        return np.asarray(obj)
    except Exception as exc:
        raise TypeError(f"{name} must be an array, got {type(obj).__name__}: {exc}") from None


def _bfloat16_view(tensor):
    """A PyTorch bfloat16 CPU tensor as a NumPy array of ml_dtypes' bfloat16, without a
    copy (NumPy's DLPack import has no bfloat16): the bits seen as int16, then retyped.
    It is computed in float32 and its results come back as bfloat16 tensors."""
    import ml_dtypes
    import torch

    return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)


# --- results back as the caller's kind -------------------------------------------------


def result_converter(first):
    """How results go back to the caller's kind: PyTorch CPU tensors in give tensors out
    (``torch.from_numpy``, no copy), JAX arrays give JAX arrays (``jnp.asarray``: JAX
    owns its buffers, so a copy); None for NumPy and everything else."""
    if _is_torch(first):
        import torch

        def to_torch(a):
            if a is None or not isinstance(a, np.ndarray):
                return a
            a = a if a.flags.writeable else a.copy()
            if a.dtype.kind == "V" and a.dtype.name == "bfloat16":  # ml_dtypes': the same bits as torch's
                return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
            return torch.from_numpy(a)

        return to_torch
    if _is_jax(first):
        import jax.numpy as jnp

        def to_jax(a):
            return a if a is None or not isinstance(a, np.ndarray) else jnp.asarray(a)

        return to_jax
    return None


def fast_views(arrays):
    """For the compiled fast path: NumPy views of PyTorch CPU tensors (read in place) or
    of JAX CPU arrays (through DLPack), and a function that hands a :class:`LossResult`
    back as the caller's kind; ``(arrays, None)`` for anything else, or where a view
    would need a copy (a dtype NumPy lacks, such as bfloat16)."""
    first = arrays[0]
    if _is_torch(first):
        views = _torch_views(arrays)
        return (arrays, None) if views is None else (views, _torch_result)
    if not _is_jax(first):
        return arrays, None
    try:
        views = tuple(np.from_dlpack(a) if _is_jax(a) else None for a in arrays)
    except (TypeError, RuntimeError, BufferError, ValueError):  # a device array, or a dtype NumPy lacks
        return arrays, None
    if any(v is None for v in views):
        return arrays, None
    convert = result_converter(first)

    def back(result):
        grad = tuple(map(convert, result.grad)) if isinstance(result.grad, tuple) else convert(result.grad)
        return LossResult(convert(result.loss), grad, convert(result.hess))

    return views, back


def _torch_views(tensors):
    """NumPy views of PyTorch CPU tensors, or None where one is not a tensor NumPy can view
    as it is (on a GPU, bfloat16, a conjugate or negative bit). ``numpy()`` makes every
    one of those checks itself; a tensor that requires grad is read through ``detach()``."""
    try:
        return tuple([t.detach().numpy() if t.requires_grad else t.numpy() for t in tensors])
    except (AttributeError, TypeError, RuntimeError):
        return None


def _torch_from_numpy():
    global _from_numpy
    if _from_numpy is None:
        from torch import from_numpy as _from_numpy
    return _from_numpy


_from_numpy = None


def _torch_result(result):
    """A fast-path :class:`LossResult` (fresh float32/float64 NumPy arrays) as tensors
    that share its memory."""
    from_numpy = _torch_from_numpy()
    grad = result.grad
    if isinstance(grad, tuple):
        grad = tuple(g if g is None else from_numpy(g) for g in grad)
    elif grad is not None:
        grad = from_numpy(grad)
    return LossResult(None if result.loss is None else from_numpy(result.loss), grad,
                      None if result.hess is None else from_numpy(result.hess))


def adopt_out(back, out, grads):
    """``out`` given as tensors: NumPy views of them for the kernels, and a converter that
    hands back the caller's own tensor where the result is one of those views."""
    given = out if isinstance(out, (tuple, list)) and grads > 1 else (out,)
    views = tuple(host_array(o, "out") if _is_torch(o) else o for o in given)
    originals = {id(v): o for v, o in zip(views, given)}

    def convert(a):
        original = originals.get(id(a))
        return back(a) if original is None else original

    return convert, (views if grads > 1 and isinstance(out, (tuple, list)) else views[0])
