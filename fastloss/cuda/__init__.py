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
