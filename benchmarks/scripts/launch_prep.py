"""Host time a direct CUDA launch spends on its arguments, measured without a GPU.

    python benchmarks/scripts/launch_prep.py [--calls N]

A row kernel takes 15 arrays and 3 numbers (a parameter tuple, the scale, the mean's
factor). Once its plan exists, each launch describes the arrays, builds the plan's key
and flattens every argument into kernel parameters (``fastloss/cuda/launch.py``) before
``cuda.core`` launches it. This times that preparation, everything a direct launch does
on the host but the driver call, with PyTorch CPU tensors standing for CUDA ones (what
is read of a tensor, its pointer, shape, strides and dtype, is read the same way on
either device), and for the Numba arrays a call also passes (zero-length placeholders,
the workspace's counter). Needs PyTorch and numba-cuda; prints the median µs per
launch.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "0")

import numpy as np  # noqa: E402


def row_kernel_arguments(torch):
    """A sparse cross-entropy launch's arguments, as
    ``fastloss.cuda.enqueue.loss_kernel_launch`` passes them: logits, labels, gradient and
    workspaces, zero-length placeholders, numbers."""
    logits, grad = torch.empty((256, 256)), torch.empty((256, 256))
    labels = torch.zeros(256, dtype=torch.int64)
    nothing = torch.empty(0, dtype=torch.float64)
    nothing2d = torch.empty((256, 0))
    partials, total, value, gate = (torch.empty(n, dtype=torch.float64) for n in (32, 1, 1, 3))
    counter = torch.zeros(1, dtype=torch.int32)
    return (logits, labels, logits, nothing, nothing, (0.0,), 1.0, nothing, grad, nothing2d, nothing2d, nothing2d,
            gate, partials, counter, 1.0 / 256, total, value)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="launches timed (default 20000)")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: nothing measured")
        return 0
    from numba.cuda.typing.typeof import Purpose, typeof

    from fastloss.cuda import launch

    arguments = row_kernel_arguments(torch)
    flatteners = [launch.flatten_array if launch.describe(a) is not None
                  else launch.scalar_flattener(typeof(a, Purpose.argument)) for a in arguments]

    def prepare():  # as launch() and _Plan.run() do, but the driver call
        described, kinds = launch.describe_arguments(arguments)
        hash((prepare, 0, kinds))
        return launch.flatten_arguments(flatteners, described, arguments)

    assert len(prepare()) == 15 * 5 + sum(2 * len(a.shape) for a in arguments if hasattr(a, "shape")) + 3
    times = []
    for _ in range(args.calls):
        start = time.perf_counter()
        prepare()
        times.append(time.perf_counter() - start)
    print(f"direct launch, 15 arrays and 3 numbers: {1e6 * float(np.median(times)):.1f} µs of host time "
          f"to describe, key and flatten the arguments (median of {args.calls})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
