"""How fastloss compiles for the GPU: the shared ``@portable`` math as CUDA device
functions, and kernels with the flags that keep IEEE semantics.

``fastmath`` stays off: in numba-cuda it turns ``exp``/``log`` into approximate
intrinsics, flushes subnormals and makes division and square roots approximate, which
SPEC section 4's accuracy does not allow. NVVM still contracts ``a * b + c`` into fused
multiply-adds, as every CUDA compiler does by default, so results may differ from the
CPU's in the last bit.
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


def compile_kernel(py_func, name):
    """Compile a kernel closure under ``name`` (shown by profilers), lazily per signature."""
    py_func.__name__ = py_func.__qualname__ = name
    return cuda.jit(py_func)


def compile_device(py_func, name):
    """Compile a driver's helper closure as a device function."""
    py_func.__name__ = py_func.__qualname__ = name
    return cuda.jit(device=True)(py_func)
