"""exp, log and log1p in float64, written so that a compiler vectorises the loops that call them.

A C library's ``exp`` is an opaque scalar call: a loop that calls it runs one element at a
time. These are the same functions as straight-line arithmetic: range reduction, a
polynomial and a rescaling by a power of two built from integer bits. There is no table
and no data-dependent branch (special inputs are handled by selects at the end), so LLVM
(Numba) and GCC (Cython) turn a loop over them into SIMD code. Each is accurate to about
one ulp over its whole domain; ``tests/test_elementary.py`` measures the error against
mpmath on dense grids and checks that the compiled loops really are vectorised.

The CUDA backend keeps the device's own ``exp``/``log``/``log1p`` (``@portable(cuda=...)``):
the GPU has no libm call to get rid of.

The two bit casts and the fused multiply-add below are the operations Python's
arithmetic cannot spell; each target supplies its own (an LLVM ``bitcast`` and
``llvm.fma`` for Numba, ``memcpy`` and C's ``fma`` for Cython). The compilers are told not
to fuse multiply-adds on their own (no ``contract``): where they did, the SIMD body of a
loop (branches turned into selects) and its scalar remainder fused different operations,
so one element's result depended on where it fell in the array. Fused only where written,
every element rounds the same way on every path.
"""

import math
import struct
from fractions import Fraction

from .portable import native, portable

# exp: x = k ln2 + r, |r| <= ln2 / 2; ln2 split in two (Cody and Waite) so that k * LN2_HI
# is exact for every k in range. Adding ROUND (1.5 * 2^52) rounds to an integer, whose
# value then sits in the low bits of the sum.
LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
ROUND = 6755399441055744.0
ROUND_BITS = 0x4338000000000000
EXP_FLUSH = -708.3964185322641  # log(2^-1022): e^x is a normal number from here up

# log: fdlibm's minimax coefficients for log(1 + f) = 2 atanh(s), s = f / (2 + f)
# (Sun Microsystems' fdlibm e_log.c, freely distributable).
LG1 = 6.666666666666735130e-01
LG2 = 3.999999999940941908e-01
LG3 = 2.857142874366239149e-01
LG4 = 2.222219843214978396e-01
LG5 = 1.818357216161805012e-01
LG6 = 1.531383769920937332e-01
LG7 = 1.479819860511658591e-01
SQRT_HALF_BITS = 0x3FE6A09E667F3BCD  # the bits of sqrt(1/2)
MANTISSA = 0x000FFFFFFFFFFFFF
SMALLEST_NORMAL = 2.2250738585072014e-308
TWO_54 = 18014398509481984.0


@native
def as_int64(x):
    """The bits of the float64 ``x`` as an int64."""
    return struct.unpack("<q", struct.pack("<d", x))[0]


@native
def as_float64(i):
    """The float64 whose bits are the int64 ``i``."""
    return struct.unpack("<d", struct.pack("<q", i))[0]


@native
def fma(a, b, c):
    """a * b + c with one rounding (exact through fractions here; a hardware instruction
    in the compiled backends)."""
    if not all(math.isfinite(v) for v in (a, b, c)):
        return a * b + c
    return float(Fraction(a) * Fraction(b) + Fraction(c))


@portable(cuda=math.exp, inline=False)
def exp(x):
    """e^x to about 1 ulp: e^x = 2^k e^r with k = round(x / ln2), r = x - k ln2 (Cody-Waite),
    e^r by its Taylor polynomial of degree 13 (truncation below 6e-18 relative for
    |r| <= ln2 / 2), and 2^k applied as two factors 2^(k//2) 2^(k - k//2) so that results
    down in the subnormal range round once. x is clamped to [-746, 710] first (exp
    overflows to inf and underflows to 0 beyond), which keeps every integer in range; a
    NaN is clamped too, for the same reason, and restored at the end.
    """
    xc = x if x >= -746.0 else -746.0
    xc = 710.0 if xc > 710.0 else xc
    t = fma(xc, LOG2E, ROUND)
    kf = t - ROUND
    p = exp_taylor(fma(-kf, LN2_LO, fma(-kf, LN2_HI, xc)))
    k = as_int64(t) - ROUND_BITS
    k1 = k >> 1
    e = p * as_float64((k1 + 1023) << 52) * as_float64((k - k1 + 1023) << 52)
    return e if x == x else x


@portable(cuda=math.exp, inline=False)
def exp_nonpositive(x):
    """e^x for x <= 0 (or NaN), the argument of every softmax (z_j - max z): :func:`exp`'s
    arithmetic with one rescaling by 2^k, since here k >= -1022 (2^k is a normal number),
    and 0 for x < EXP_FLUSH, where e^x is below the smallest normal number (SPEC section 4
    lets subnormal results flush to 0). Fewer operations than :func:`exp` where that
    matters most: a softmax evaluates one exponential per logit.
    """
    xc = x if x >= EXP_FLUSH else 0.0  # NaN too: any argument in range will do
    t = fma(xc, LOG2E, ROUND)
    kf = t - ROUND
    p = exp_taylor(fma(-kf, LN2_LO, fma(-kf, LN2_HI, xc)))
    e = p * as_float64((as_int64(t) - ROUND_BITS + 1023) << 52)
    e = e if x >= EXP_FLUSH else 0.0
    return e if x == x else x


@portable
def exp_taylor(r):
    """e^r for |r| <= ln2 / 2: the Taylor polynomial of degree 13 in Horner form, in fused
    multiply-adds (truncation below 6e-18 relative)."""
    p = 1.0 / 6227020800.0
    p = fma(p, r, 1.0 / 479001600.0)
    p = fma(p, r, 1.0 / 39916800.0)
    p = fma(p, r, 1.0 / 3628800.0)
    p = fma(p, r, 1.0 / 362880.0)
    p = fma(p, r, 1.0 / 40320.0)
    p = fma(p, r, 1.0 / 5040.0)
    p = fma(p, r, 1.0 / 720.0)
    p = fma(p, r, 1.0 / 120.0)
    p = fma(p, r, 1.0 / 24.0)
    p = fma(p, r, 1.0 / 6.0)
    p = fma(p, r, 0.5)
    p = fma(p, r, 1.0)
    return fma(p, r, 1.0)


@portable(cuda=math.log, inline=False)
def log(x):
    """Natural log to about 1 ulp (fdlibm's method): x = 2^k m with m in [sqrt(1/2),
    sqrt(2)), found from the bits; with f = m - 1 and s = f / (2 + f),
    log(m) = f - (f^2/2 - s (f^2/2 + R(s^2))), R a minimax polynomial, and
    log x = k ln2_hi + (log(m) + k ln2_lo). Subnormal x are scaled by 2^54 first.
    log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, log(NaN) = NaN.
    """
    tiny = x < SMALLEST_NORMAL
    xs = x * TWO_54 if tiny else x
    ix = as_int64(xs) - SQRT_HALF_BITS
    k = (ix >> 52) - (54 if tiny else 0)
    f = as_float64((ix & MANTISSA) + SQRT_HALF_BITS) - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    r = fma(z, fma(w, fma(w, fma(w, LG7, LG5), LG3), LG1), w * fma(w, fma(w, LG6, LG4), LG2))
    hfsq = 0.5 * f * f
    dk = k * 1.0  # the integer k as a float64
    y = dk * LN2_HI - ((hfsq - (s * (hfsq + r) + dk * LN2_LO)) - f)
    y = x if x == math.inf else y
    if x > 0.0:
        return y
    return -math.inf if x == 0.0 else math.nan


@portable(cuda=math.log1p, inline=False)
def log1p(x):
    """log(1 + x) to about 1 ulp: with u = 1 + x rounded, log1p(x) = log(u) + (x - (u - 1)) / u,
    the second term correcting the rounding of u to first order; where u = 1 (|x| below
    half an ulp of 1) the result is x itself, which keeps the sign of -0. log1p(-1) = -inf,
    below -1 NaN, log1p(inf) = inf.
    """
    u = 1.0 + x
    c = (x - (u - 1.0)) / u if u > 0.0 and u < math.inf else 0.0
    return log(u) + c if u != 1.0 else x
