"""The CUDA backend: every loss on NVIDIA GPUs through ``numba.cuda`` (the ``numba-cuda``
package, ``pip install "fastloss[cuda]"``).

All GPU code lives in this package, so that a move to another CUDA front end touches only
it:

- :mod:`.jit`: the loss math of :mod:`fastloss.losses` compiled with
  ``cuda.jit(device=True)`` from the same Python functions as the CPU kernels;
- :mod:`.drivers`: the kernels (loop drivers per loss family, the label check), with
  :mod:`.rowmath`, the per-loss formulas of the shared row kernel, and
  :mod:`.reductions`, the deterministic sums over a warp, a block and the grid;
- :mod:`.arrays`: device arrays in and out (``__cuda_array_interface__``, CUDA DLPack),
  allocation with the caller's framework, and the caller's stream;
- :mod:`.launch`: kernel launches, through numba-cuda's dispatch the first time and
  straight to ``cuda.core`` after;
- :mod:`.workspace`: the scratch device arrays a call needs besides its results, kept
  per host thread, device and stream between calls;
- :mod:`.call`: the call path for device arrays (validation, dispatch, results);
- :mod:`.simulator`: what Numba's CUDA simulator lacks (warp shuffles), made up for there
  alone, so that the tests run every kernel without a GPU.

Importing :mod:`fastloss` never imports ``numba.cuda``: :func:`is_device_array`
(:mod:`fastloss._arrays`) decides from attributes alone, and the rest loads on the first
device call.
"""

from .._arrays import is_device_array

__all__ = ["available", "evaluate", "is_device_array"]

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
