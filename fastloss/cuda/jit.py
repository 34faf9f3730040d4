"""How fastloss compiles for the GPU: the shared ``@portable`` math as CUDA device
functions, and kernels with the flags that keep IEEE semantics.

``fastmath`` stays off: in numba-cuda it turns ``exp``/``log`` into approximate
intrinsics, flushes subnormals and makes division and square roots approximate, which
the accuracy of contract section 4 does not allow. NVVM still contracts ``a * b + c``
into fused multiply-adds, as every CUDA compiler does by default, so results may differ
from the CPU's in the last bit.
"""

from numba import cuda, float32, int32
from numba.cuda import config as cuda_config
from numba.cuda import libdevice

from ..math.elementary import as_float32, as_int32, single
from ..math.portable import compile_for


@cuda.jit(device=True)
def _single(x):
    return float32(x)


@cuda.jit(device=True)
def _as_int32(x):
    return libdevice.float_as_int(float32(x))


@cuda.jit(device=True)
def _as_float32(i):
    return libdevice.int_as_float(int32(i))


def _simulated(reference):
    """A native's Python reference as the simulator runs it: the simulator's libdevice
    bit casts return nothing, and its integers are NumPy's fixed-width scalars."""
    return lambda *args: reference(*(int(a) if hasattr(a, "dtype") and a.dtype.kind in "iu" else a for a in args))


single.register("cuda", lambda: _single)
for _native, _device in ((as_int32, _as_int32), (as_float32, _as_float32)):
    _native.register("cuda", lambda n=_native, d=_device: _simulated(n.py_func) if cuda_config.ENABLE_CUDASIM else d)


def compile_math(fn):
    """Compile a ``@portable`` math function (and its callees) as a CUDA device function."""
    return compile_for(fn, "cuda", _device_function)


def _device_function(py_func):
    return cuda.jit(device=True)(py_func)


#: Threads per SM that a kernel's registers must leave room for, or None. A kernel
#: launched with blocks of more than 256 threads is compiled with a register cap
#: (:func:`max_registers`): at most what a thread of one such block may have, so that the
#: block fits an SM's 65536 registers. Without it the compiler may take up to 255 a
#: thread, and the kernel then fails to launch (uncapped, the sparse cross-entropy kernel
#: for wide rows can take 163 registers a thread, more than a block of 512 allows).
#: Blocks of 256 or fewer always fit, and get no cap: a cap of 255 makes the compiler take
#: more registers than it otherwise would (62 for MSE, against 44). RESIDENT_THREADS caps
#: every kernel lower, for that many threads an SM (1024: 64 registers a thread), at the
#: price of spills where a kernel needs more. ``tests/compile_kernels.py`` reports every
#: kernel's registers, spills and blocks per SM; ``benchmarks/scripts/gpu_variants.py``
#: compares settings on a GPU.
RESIDENT_THREADS = None


def max_registers(threads):
    """The register cap of a kernel launched with blocks of ``threads``: 65536 shared by
    the block (or by RESIDENT_THREADS threads, if more), in the multiples of 8 that
    registers are allocated in; None where that is 255 or more (no cap needed)."""
    cap = 65536 // max(threads, RESIDENT_THREADS or 0) // 8 * 8
    return cap if cap < 255 else None


def compile_kernel(py_func, name, threads):
    """Compile a kernel closure under ``name`` (shown by profilers), lazily per signature,
    for blocks of ``threads`` (:func:`max_registers`; the simulator has no registers)."""
    py_func.__name__ = py_func.__qualname__ = name
    if cuda_config.ENABLE_CUDASIM:
        return cuda.jit(py_func)
    return cuda.jit(max_registers=max_registers(threads))(py_func)


def compile_device(py_func, name):
    """Compile a driver's helper closure as a device function."""
    py_func.__name__ = py_func.__qualname__ = name
    return cuda.jit(device=True)(py_func)
