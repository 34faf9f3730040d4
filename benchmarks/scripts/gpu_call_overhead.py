"""Where the host time of a small CUDA call goes: the diagnosis for launch overhead.

    python benchmarks/scripts/gpu_call_overhead.py [--calls N] [--numba]

On the H100 (2026-11-23) a small call took 0.4-0.7 ms against PyTorch's 0.12-0.15 ms
(gpu_compare.py), and no GPU was at hand since to say where the time goes. This script
says it in one run: for each of gpu_compare's small cases, the host time of one call (from
the call to its return, the GPU idle at its start: no wait for kernels is counted, except
the read-backs that the call itself makes), then a profile of the same calls, per
function, in µs per call; the host time again with every launch through numba-cuda's
dispatch (``fastloss.cuda.launch.DIRECT = False``), against the direct launches that
fastloss makes once a kernel is compiled; and, for scale, what an empty numba-cuda
launch costs with one and with seventeen array arguments (a loss kernel's count) and
what PyTorch's allocations cost.

Inputs are PyTorch CUDA tensors, or with ``--numba`` (and wherever PyTorch has no GPU)
Numba device arrays; under ``NUMBA_ENABLE_CUDASIM=1`` it runs on the simulator, where
the figures mean nothing but every line of the script is exercised (``--tiny --calls 2``:
tests/test_cuda.py does that).
"""

import argparse
import cProfile
import pstats
import sys
import time

import numpy as np
from numba import cuda
from numba.cuda import config as cuda_config

import fastloss as fl
from fastloss.cuda import launch

CASES = (  # gpu_compare.small's: (loss, shape of the predictions, tiny shape, labels?)
    ("mean_squared_error", (1000,), (16,), False),
    ("sparse_softmax_cross_entropy", (256, 256), (2, 8), True),
    ("sigmoid_binary_cross_entropy", (1 << 16,), (16,), False),
)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def device_inputs(shape, labels, torch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, shape[-1], shape[:-1]) if labels else rng.uniform(0, 1, shape).astype(np.float32)
    if torch is not None:
        return torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
    return cuda.to_device(x), cuda.to_device(y)


def synchronize(torch):
    if torch is not None:
        torch.cuda.synchronize()
    else:
        cuda.synchronize()


def host_us(fn, calls, torch):
    """Median µs from calling ``fn`` to its return, the GPU idle at each start."""
    times = []
    for _ in range(calls):
        synchronize(torch)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    synchronize(torch)
    return 1e6 * float(np.median(times))


def profile(fn, calls, torch, top):
    """The ``top`` functions by own time over ``calls`` calls, in µs per call."""
    profiler = cProfile.Profile()
    for _ in range(calls):
        synchronize(torch)
        profiler.enable()
        fn()
        profiler.disable()
    synchronize(torch)
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]  # (file, line, name): (cc, nc, tt, ct, ...)
    print(f"    {'own µs':>8} {'with callees µs':>16} {'calls':>6}  function")
    for (path, line, name), (_, ncalls, own, cumulative, _) in rows:
        where = f"{path.rsplit('site-packages/', 1)[-1]}:{line}"
        print(f"    {1e6 * own / calls:8.1f} {1e6 * cumulative / calls:16.1f} {ncalls / calls:6.1f}  {name} ({where})")


@cuda.jit
def _empty_1(a):
    pass


@cuda.jit
def _empty_17(a, b, c, d, e, f, g, h, i, j, k, m, n, o, p, q, r):
    pass


def launch_baselines(calls, torch):
    a = cuda.device_array(256, dtype=np.float32)
    _empty_1[1, 32](a)
    _empty_17[1, 32](*([a] * 17))
    print(f"  empty numba-cuda launch, 1 array:    {host_us(lambda: _empty_1[1, 32](a), calls, torch):8.1f} µs")
    many = [a] * 17
    print(f"  empty numba-cuda launch, 17 arrays:  {host_us(lambda: _empty_17[1, 32](*many), calls, torch):8.1f} µs")
    if torch is not None:
        print(f"  torch.empty(1, device='cuda'):       "
              f"{host_us(lambda: torch.empty(1, device='cuda'), calls, torch):8.1f} µs")
        print(f"  torch.zeros(1, device='cuda'):       "
              f"{host_us(lambda: torch.zeros(1, device='cuda'), calls, torch):8.1f} µs")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per measurement (default 200)")
    parser.add_argument("--top", type=int, default=25, help="functions listed per profile (default 25)")
    parser.add_argument("--numba", action="store_true", help="Numba device arrays even where PyTorch has a GPU")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (for the simulator)")
    args = parser.parse_args(argv)
    torch = None if args.numba else _torch()
    print(f"inputs: {'PyTorch CUDA tensors' if torch is not None else 'Numba device arrays'}; "
          f"{'the simulator' if cuda_config.ENABLE_CUDASIM else cuda.get_current_device().name}")
    launch_baselines(args.calls, torch)
    shipped = launch.DIRECT
    for name, shape, tiny, labels in CASES:
        shape = tiny if args.tiny else shape
        x, y = device_inputs(shape, labels, torch)

        def call(name=name, x=x, y=y):
            return fl.compute(name, x, y, backend="cuda")

        call()  # compile (and make the direct launches' plans)
        direct = host_us(call, args.calls, torch)
        launch.DIRECT = False
        try:
            through_numba = host_us(call, args.calls, torch)
        finally:
            launch.DIRECT = shipped
        print(f"\n{name} {'x'.join(map(str, shape))}: {direct:.1f} µs of host time per call "
              f"({'direct launches' if shipped else 'numba-cuda launches'}; {through_numba:.1f} µs with every launch "
              "through numba-cuda)")
        profile(call, args.calls, torch, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
