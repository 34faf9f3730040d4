"""The CUDA backend: every loss on NVIDIA GPUs through ``numba.cuda`` (the ``numba-cuda``
package, ``pip install "fastloss[cuda]"``).

All GPU code lives in this package, so that a move to another CUDA front end touches only
it:

- :mod:`.jit`: the loss math of :mod:`fastloss.losses` compiled with
  ``cuda.jit(device=True)`` from the same Python functions as the CPU kernels, and kernels
  compiled with their register caps;
- the kernels, by family: :mod:`.elementwise` (element-wise losses, and RMSE's finish),
  :mod:`.rows` (what every class-axis kernel is built from: the kernel around a row body,
  the online log-sum-exp, the gradient pass), :mod:`.rows_cross_entropy`,
  :mod:`.rows_stats` (with :mod:`.rowmath`, the per-loss formulas of its shared body),
  :mod:`.rows_hinge`, :mod:`.rows_triplet`; :mod:`.checks` (the label check and hinge's
  0/1 rule, decided on the device before a loss kernel); :mod:`.loads` (element loads and
  stores, bfloat16 bits); :mod:`.reductions` (the deterministic sums over a warp, a block
  and the grid);
- :mod:`.call`: the call path for device arrays (validation, dispatch, results), with
  :mod:`.kernel_choice` (which kernel runs, the launch settings, the kernel cache),
  :mod:`.enqueue` (each kernel queued with its grid and scratch arrays),
  :mod:`.staging` (option arrays to the device) and :mod:`.outputs` (``out=`` and the
  delivery of gradients);
- :mod:`.arrays`: device arrays in and out, through one array class per framework
  (:mod:`.numba_arrays`, :mod:`.torch_arrays`, :mod:`.cupy_arrays`): allocation with the
  caller's framework, layouts, the caller's stream;
- :mod:`.launch`: kernel launches, through numba-cuda's dispatch the first time and
  straight to ``cuda.core`` after;
- :mod:`.workspace`: the scratch device arrays a call needs besides its results, kept
  per host thread, device and stream between calls;
- :mod:`.simulator`: what Numba's CUDA simulator lacks (warp shuffles), made up for there
  alone, so that the tests run every kernel without a GPU.

Importing :mod:`fastloss` never imports ``numba.cuda``: :func:`is_device_array` decides
from attributes alone, and the rest loads on the first device call.
"""

import numpy as np

__all__ = ["available", "evaluate", "is_device_array"]

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


def available():
    """Whether ``numba.cuda`` imports and sees a GPU (or runs its simulator)."""
    try:
        from numba import cuda
    except Exception:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:
        return False


def evaluate(spec, arrays, common, options):
    """Run ``spec`` on device arrays: see :func:`fastloss.cuda.call.evaluate`."""
    from .call import evaluate as device_evaluate

    return device_evaluate(spec, arrays, common, options)
