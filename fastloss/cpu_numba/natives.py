"""The Numba implementations of the natives of :mod:`fastloss.math`: the bit casts, the
fused multiply-adds and the float32 rounding of :mod:`~fastloss.math.elementary` (an LLVM
``bitcast``, ``llvm.fma`` and ``fptrunc``, which vectorise; ``is_single`` is a constant
of the array type) and the lane and scratch arrays of
:mod:`~fastloss.math.reductions` (on the stack: a heap array per row would cost more than a
narrow row's math)."""

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .. import _config as config
from ..math import reductions
from ..math.elementary import as_float32, as_float64, as_int32, as_int64, fma, fma_single, is_single, single


def _bitcast(accepts, source, result, ir_type):
    """An intrinsic reinterpreting the bits of an argument of a type in ``accepts``, cast
    first to ``source`` (whose width is ``ir_type``'s), as a ``result``."""

    @intrinsic
    def bitcast(typingctx, x):
        if not isinstance(x, accepts):
            return None

        def codegen(context, builder, sig, args):
            value = context.cast(builder, args[0], sig.args[0], source)
            return builder.bitcast(value, ir_type)

        return result(x), codegen

    return bitcast


def _fused(precision):
    """An intrinsic a * b + c with one rounding (``llvm.fma``) in ``precision``."""

    @intrinsic
    def fused(typingctx, a, b, c):
        if not all(isinstance(t, (types.Float, types.Integer)) for t in (a, b, c)):
            return None

        def codegen(context, builder, sig, args):
            a, b, c = (context.cast(builder, v, t, precision) for v, t in zip(args, sig.args))
            return builder.fma(a, b, c)

        return precision(a, b, c), codegen

    return fused


_as_int64 = _bitcast(types.Float, types.float64, types.int64, ir.IntType(64))
_as_float64 = _bitcast(types.Integer, types.int64, types.float64, ir.DoubleType())
_as_int32 = _bitcast(types.Float, types.float32, types.int32, ir.IntType(32))
_as_float32 = _bitcast(types.Integer, types.int32, types.float32, ir.FloatType())  # the low 32 bits
_fma = _fused(types.float64)
_fma_single = _fused(types.float32)


@intrinsic
def _single(typingctx, x):
    if not isinstance(x, (types.Float, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        return context.cast(builder, args[0], sig.args[0], types.float32)

    return types.float32(x), codegen


@intrinsic
def _is_single(typingctx, z):
    if not isinstance(z, types.Array):
        return None

    def codegen(context, builder, sig, args):
        return context.get_constant(types.boolean, sig.args[0].dtype == types.float32)

    return types.boolean(z), codegen


fma.register("numba", lambda: _fma)
as_int64.register("numba", lambda: _as_int64)
as_float64.register("numba", lambda: _as_float64)
single.register("numba", lambda: _single)
fma_single.register("numba", lambda: _fma_single)
as_int32.register("numba", lambda: _as_int32)
as_float32.register("numba", lambda: _as_float32)
is_single.register("numba", lambda: _is_single)


def _stack_array(size):
    """An intrinsic: a pointer to ``size`` float64 on the stack of the function it is
    inlined into."""

    @intrinsic
    def stack(typingctx):
        def codegen(context, builder, sig, args):
            return cgutils.alloca_once(builder, ir.DoubleType(), size=size)

        return types.CPointer(types.float64)(), codegen

    return stack


_stack_lanes = _stack_array(reductions.LANES)
_stack_tile = _stack_array(config.NARROW_TILE)


@numba.njit(inline="always", nogil=True)
def _lanes(value):
    acc = numba.carray(_stack_lanes(), reductions.LANES)
    if value is not None:
        for lane in range(reductions.LANES):
            acc[lane] = value
    return acc


@numba.njit(inline="always", nogil=True)
def _scratch():
    return numba.carray(_stack_tile(), config.NARROW_TILE)


def _compiled(fn):
    return lambda: numba.njit(inline="always", nogil=True, error_model="numpy")(fn.py_func)


reductions.lanes.register("numba", lambda: _lanes)
reductions.scratch.register("numba", lambda: _scratch)
for _fn in (reductions.lane_total, reductions.lane_max):
    _fn.register("numba", _compiled(_fn))
