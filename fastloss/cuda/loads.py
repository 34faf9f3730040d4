"""How the CUDA kernels read and write array elements: as float64, as float32, or as
bfloat16 bit patterns.

Every kernel reads its float inputs and writes its outputs through the device functions
here, chosen once when the kernel is built (:func:`element_access`, :func:`row_loads`),
so that one kernel body serves float64, float32, float16 and bfloat16 arrays. bfloat16 has
no NumPy dtype: its arrays reach the kernels as int16 arrays of its bits, which these
functions convert in registers (a bfloat16 is the top half of a float32).
"""

import numpy as np
from numba import cuda, int16, int32, uint64

from ..math.elementary import as_float32, as_int32
from .jit import compile_device


@cuda.jit(device=True)
def plain_load(v):
    """An array element as float64."""
    return np.float64(v)


@cuda.jit(device=True)
def float32_load(v):
    """A float32 or float16 array element as float32 (exact)."""
    return np.float32(v)


@cuda.jit(device=True)
def plain_store(v):
    """A float64 for an array store (the store converts it to the array's dtype)."""
    return v


# Bit casts: libdevice's on a GPU, the portable natives' Python references in the simulator.
_as_float32 = as_float32.for_target("cuda")
_as_int32 = as_int32.for_target("cuda")


@cuda.jit(device=True)
def bf16_load(bits):
    """A bfloat16 bit pattern (an int16 array element) as float32 (its top half: exact)."""
    return _as_float32(int32(bits) << 16)


@cuda.jit(device=True)
def bf16_wide_load(bits):
    """A bfloat16 bit pattern (an int16 array element) as float64."""
    return np.float64(bf16_load(bits))


@cuda.jit(device=True)
def bf16_store(v):
    """float64 to the bit pattern of the nearest bfloat16 (ties to even, through float32;
    NaN stays a quiet NaN), as an int16."""
    f = np.float32(v)
    bits = _as_int32(f)
    if f != f:
        return int16(0x7FC0)
    bits = int32(bits + 0x7FFF + ((bits >> 16) & 1))  # Numba adds in int64: back to 32 bits
    return int16(bits >> 16)


def element_access(narrow, bf16):
    """(load, wide, store) for a kernel's arrays: ``load`` an element in ``narrow``
    precision (the exponentials' inputs), ``wide`` an element as float64 (every other
    formula's), ``store`` a float64 for an element store; with ``bf16`` the arrays hold
    bfloat16 bit patterns (int16)."""
    if bf16:
        return bf16_load, bf16_wide_load, bf16_store
    return (float32_load if narrow is np.float32 else plain_load), plain_load, plain_store


def row_loads(narrow, bf16):
    """(narrow_at, wide_at), loads for :func:`.rows.row_pass`: element j of a row in
    ``narrow`` precision (a logit, for its exponential), and as float64."""
    load, wide, _ = element_access(narrow, bf16)

    def narrow_at(row, j):
        return load(row[uint64(j)])

    def wide_at(row, j):
        return wide(row[uint64(j)])

    suffix = f"{narrow.__name__}{'_bf16' if bf16 else ''}"
    return compile_device(narrow_at, f"narrow_at_{suffix}"), compile_device(wide_at, f"wide_at_{suffix}")
