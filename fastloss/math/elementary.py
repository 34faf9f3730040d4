"""exp (and its softmax form exp_nonpositive), expm1, log, log1p and a power of a
nonnegative base in float64, written so that a compiler vectorises the loops that call them.

A C library's ``exp`` is an opaque scalar call: a loop that calls it runs one element at a
time. These are the same functions as straight-line arithmetic: range reduction, a
polynomial and a rescaling by a power of two built from integer bits. There is no table
and no data-dependent branch (special inputs are handled by selects at the end), so LLVM
(Numba) and GCC (Cython) turn a loop over them into SIMD code. Each is accurate to about
one ulp over its whole domain; ``tests/test_elementary.py`` measures the error against
mpmath on dense grids and checks that the compiled loops really are vectorised.

The CUDA backend keeps the device's own ``exp``/``expm1``/``log``/``log1p``/``pow``, and
``expf``/``logf`` for the float32 ones (``@portable(cuda=...)``): the GPU has no libm call
to get rid of.

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

import numpy as np

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

# expm1: Q(r) = (expm1(r) - r) / r^2 on |r| <= ln2 / 2, our Chebyshev fit of degree 10
# (mpmath.chebyfit at 40 digits, tests/test_elementary.py recomputes it): 1.4e-18 from Q,
# so expm1(r) = r + r^2 Q(r) is off by 5e-19 |r| at most.
EQ0 = 0.5
EQ1 = 0.1666666666666667
EQ2 = 0.04166666666666667
EQ3 = 0.008333333333326141
EQ4 = 0.0013888888888883752
EQ5 = 0.00019841269874800493
EQ6 = 2.4801587325533363e-05
EQ7 = 2.7557255425746435e-06
EQ8 = 2.7557273661348637e-07
EQ9 = 2.5105206373957107e-08
EQ10 = 2.0914679376584005e-09

# log_parts: log(1 + f) = 2 atanh(s) = 2 s + s^3 P(s^2), s = f / (2 + f), |s| <= 0.1716;
# P(z) = 2 (atanh(sqrt z) / sqrt z - 1) / z by our Chebyshev fit of degree 7 on
# [0, 0.02944] (mpmath.chebyfit; recomputed by the tests): 2.1e-18 from P, 3e-20 relative
# to log(1 + f).
LP0 = 0.6666666666666666
LP1 = 0.4000000000000088
LP2 = 0.28571428570803614
LP3 = 0.22222222391713917
LP4 = 0.18181795640132906
LP5 = 0.15386239702814666
LP6 = 0.1326877313865664
LP7 = 0.13086626147842664


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


@native
def single(x):
    """``x`` rounded to float32 (once)."""
    return np.float32(x)


@native
def fma_single(a, b, c):
    """a * b + c in float32 with one rounding (exact through fractions here, rounded to
    the nearest float32, ties to even; ``fmaf`` in the compiled backends)."""
    values = (np.float32(a), np.float32(b), np.float32(c))
    if not all(math.isfinite(v) for v in values):
        return values[0] * values[1] + values[2]
    exact = Fraction(float(values[0])) * Fraction(float(values[1])) + Fraction(float(values[2]))
    near = np.float32(float(exact))
    candidates = [np.nextafter(near, np.float32(-math.inf)), near, np.nextafter(near, np.float32(math.inf))]
    best = min(abs(Fraction(float(v)) - exact) for v in candidates if math.isfinite(v))
    ties = [v for v in candidates if math.isfinite(v) and abs(Fraction(float(v)) - exact) == best]
    return min(ties, key=lambda v: int(np.array(v).view(np.int32)) & 1)


@native
def as_int32(x):
    """The bits of the float32 ``x`` as an integer."""
    return struct.unpack("<i", struct.pack("<f", x))[0]


@native
def as_float32(i):
    """The float32 whose bits are the low 32 bits of the integer ``i``."""
    return np.float32(struct.unpack("<f", struct.pack("<I", i & 0xFFFFFFFF))[0])


@native
def is_single(z):
    """Whether the array ``z`` holds float32: a constant where compiled, so that a
    ``... if is_single(z) else ...`` keeps one branch."""
    return z.dtype == np.float32


# exp in float32 (exp_nonpositive_single): Cody-Waite with ln2 split for float32 (k LN2_HI_F
# is exact for |k| < 2^15); ROUND_F = 1.5 * 2^23 rounds x log2(e) to an integer k, found in
# the low bits. Every constant of a ``*_single`` function is a float32 (single(...)), so
# that every backend, Python included, computes in float32.
LOG2E_F = single(1.4426950408889634)
LN2_HI_F = single(0.693359375)
LN2_LO_F = single(-2.12194440e-4)
ROUND_F = single(12582912.0)
ROUND_BITS_F = 0x4B400000
EXP_FLUSH_F = single(-87.33654475055311)  # log(2^-126): e^x is a normal float32 from here up
ZERO_F = single(0.0)
ONE_F = single(1.0)
# 1 / k!, k = 2..7: e^r = 1 + r + r^2/2 + ... + r^7/7!, truncation below 6e-9 for |r| <= ln2 / 2.
EF2 = single(0.5)
EF3 = single(1.0 / 6.0)
EF4 = single(1.0 / 24.0)
EF5 = single(1.0 / 120.0)
EF6 = single(1.0 / 720.0)
EF7 = single(1.0 / 5040.0)


@portable.single(cuda=math.exp)
def exp_nonpositive_single(x):
    """e^x in float32 for a float32 x <= 0 (or NaN): :func:`exp_nonpositive`'s method in
    float32 arithmetic, a SIMD vector holding twice the lanes of float64. x = k ln2 + r,
    e^r by its Taylor polynomial of degree 7, 2^k from integer bits; 0 below EXP_FLUSH_F
    (results below the smallest normal float32 flush, as contract section 4 allows). The
    softmax of float32 logits takes its exponentials here, as PyTorch and XLA do: the
    argument z - max z is itself a float32, rounded once.
    """
    xc = x if x >= EXP_FLUSH_F else ZERO_F  # NaN too: any argument in range will do
    t = fma_single(xc, LOG2E_F, ROUND_F)
    kf = t - ROUND_F
    r = fma_single(-kf, LN2_LO_F, fma_single(-kf, LN2_HI_F, xc))
    p = fma_single(EF7, r, EF6)
    p = fma_single(p, r, EF5)
    p = fma_single(p, r, EF4)
    p = fma_single(p, r, EF3)
    p = fma_single(p, r, EF2)
    p = fma_single(p, r, ONE_F)
    p = fma_single(p, r, ONE_F)
    e = p * as_float32((as_int32(t) - ROUND_BITS_F + 127) << 23)
    e = e if x >= EXP_FLUSH_F else ZERO_F
    return e if x == x else x


# log in float32 (log_single): the reduction of :func:`log` on float32 bits, x = 2^k m with
# m in [sqrt(1/2), sqrt(2)), and log(m) = 2 atanh(s), s = f / (2 + f), f = m - 1, |s| <= 0.1716.
# R(z) = 2 atanh(s) / s - 2 = sum_k 2 z^k / (2k + 1), z = s^2, is the series itself,
# truncated after z^4: the rest, 2 s z^5 / 11 and beyond, is below 2^-28 of log(m).
SQRT_HALF_BITS_F = 0x3F3504F3  # the bits of sqrt(1/2) rounded to float32
MANTISSA_F = 0x007FFFFF
SMALLEST_NORMAL_F = single(2.0**-126)
TWO_25_F = single(2.0**25)
HALF_F = single(0.5)
INF_F = single(math.inf)
NEG_INF_F = single(-math.inf)
NAN_F = single(math.nan)
LT1 = single(2.0 / 3.0)
LT2 = single(2.0 / 5.0)
LT3 = single(2.0 / 7.0)
LT4 = single(2.0 / 9.0)


@portable.single(cuda=math.log)
def log_single(x):
    """Natural log of a float32 in float32 arithmetic (:func:`log`'s method, 16 SIMD
    lanes): x = 2^k m from the bits (subnormal x scaled by 2^25 first), f = m - 1 (exact),
    s = f / (2 + f), log(m) = f - (f^2/2 - s (f^2/2 + R(s^2))) with R the atanh series
    (LT1..LT4), and log x = k ln2_hi + (log(m) + k ln2_lo), ln2 split as for
    :func:`exp_nonpositive_single` (k ln2_hi is exact). log(0) = -inf, log(x < 0) = NaN,
    log(inf) = inf, log(NaN) = NaN.
    """
    tiny = x < SMALLEST_NORMAL_F
    xs = x * TWO_25_F if tiny else x
    ix = as_int32(xs) - SQRT_HALF_BITS_F
    k = (ix >> 23) - (25 if tiny else 0)
    f = as_float32((ix & MANTISSA_F) + SQRT_HALF_BITS_F) - ONE_F
    s = f / (ONE_F + ONE_F + f)
    z = s * s
    r = z * fma_single(z, fma_single(z, fma_single(z, LT4, LT3), LT2), LT1)
    hfsq = HALF_F * f * f
    dk = as_float32(k + ROUND_BITS_F) - ROUND_F  # single(k), packed with AVX2 (see log)
    y = dk * LN2_HI_F - ((hfsq - (s * (hfsq + r) + dk * LN2_LO_F)) - f)
    y = x if x == INF_F else y
    if x > ZERO_F:
        return y
    return NEG_INF_F if x == ZERO_F else NAN_F


@portable.single
def exp_difference_single(a, b):
    """e^(a - b) in float32 for float32 a <= b: the difference rounded once to float32, then
    :func:`exp_nonpositive_single`."""
    return exp_nonpositive_single(a - b)


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


@portable
def exp_reduced(x, t, r):
    """e^x from its reduction (see :func:`exp`): k = round(x / ln2) in the low bits of
    ``t`` = x log2(e) + ROUND, and r = x - k ln2 (|r| <= ln2 / 2, plus any correction).
    e^r by :func:`exp_taylor`, and 2^k applied as two factors 2^(k//2) 2^(k - k//2) so
    that results down in the subnormal range round once. A NaN ``x`` is returned as it is."""
    p = exp_taylor(r)
    k = as_int64(t) - ROUND_BITS
    k1 = k >> 1
    e = p * as_float64((k1 + 1023) << 52) * as_float64((k - k1 + 1023) << 52)
    return e if x == x else x


@portable(cuda=math.exp, inline=False)
def exp(x):
    """e^x to about 1 ulp: e^x = 2^k e^r with k = round(x / ln2), r = x - k ln2
    (Cody-Waite), finished by :func:`exp_reduced`. x is clamped to [-746, 710] first (exp
    overflows to inf and underflows to 0 beyond), which keeps every integer in range; a
    NaN is clamped too, for the same reason, and restored at the end.
    """
    xc = x if x >= -746.0 else -746.0
    xc = 710.0 if xc > 710.0 else xc
    t = fma(xc, LOG2E, ROUND)
    kf = t - ROUND
    return exp_reduced(x, t, fma(-kf, LN2_LO, fma(-kf, LN2_HI, xc)))


@portable(cuda=math.exp, inline=False)
def exp_nonpositive(x):
    """e^x for x <= 0 (or NaN), the argument of every softmax (z_j - max z): :func:`exp`'s
    arithmetic with one rescaling by 2^k, since here k >= -1022 (2^k is a normal number),
    and 0 for x < EXP_FLUSH, where e^x is below the smallest normal number (contract section 4
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
def exp_sum(x, dx):
    """e^(x + dx) to about 1 ulp, for a correction ``dx`` below an ulp of x or so (the
    error term of :func:`pow_nonneg`'s exponent): :func:`exp` with dx added to the reduced
    argument r, where it is not lost to rounding. |dx| must stay far below 1 (it is not
    clamped with x)."""
    xc = x if x >= -746.0 else -746.0
    xc = 710.0 if xc > 710.0 else xc
    t = fma(xc, LOG2E, ROUND)
    kf = t - ROUND
    return exp_reduced(x, t, fma(-kf, LN2_LO, fma(-kf, LN2_HI, xc)) + dx)


@portable(cuda=math.expm1, inline=False)
def expm1(x):
    """e^x - 1 to about 1 ulp, with no cancellation near 0.

    The same reduction as :func:`exp`: x = k ln2 + r, |r| <= ln2 / 2, with r's
    rounding error c kept (Fast2Sum); expm1(r) = r + r^2 Q(r), Q a polynomial. Then
    expm1(x) = 2^k (1 + expm1(r)) - 1 = (2^k - 1) + 2^k r + 2^k (r^2 Q(r) + c (1 + r)),
    summed without cancellation: 2^k - 1 and the sum of its first two terms are formed
    exactly as a rounded value plus its error (Fast2Sum, the larger term first: |2^k - 1|
    >= |2^k r| for every k), and the small terms are added to the errors before the one
    last rounding. k = 0 leaves r + r^2 Q(r). x is clamped to [-64, 710]: below, the
    result rounds to -1; above, it overflows. For k = 1024 (x above 1023.5 ln2) 2^k is
    not a float64: the sum is formed with 2^1023 and doubled at the end (the -1 it gets
    wrong is far below an ulp there). expm1(+-0) = +-0, expm1(-inf) = -1, NaN stays NaN.
    """
    xc = x if x >= -64.0 else -64.0
    xc = 710.0 if xc > 710.0 else xc
    t = fma(xc, LOG2E, ROUND)
    kf = t - ROUND
    hi = fma(-kf, LN2_HI, xc)  # exact
    lo = -kf * LN2_LO
    r = hi + lo
    c = (hi - r) + lo  # the rounding error of r
    q = fma(EQ10, r, EQ9)
    q = fma(q, r, EQ8)
    q = fma(q, r, EQ7)
    q = fma(q, r, EQ6)
    q = fma(q, r, EQ5)
    q = fma(q, r, EQ4)
    q = fma(q, r, EQ3)
    q = fma(q, r, EQ2)
    q = fma(q, r, EQ1)
    q = fma(q, r, EQ0)
    k = as_int64(t) - ROUND_BITS
    top = 1 if k > 1023 else 0
    two_k = as_float64((k - top + 1023) << 52)
    up = k >= 0
    a1 = two_k if up else -1.0
    a2 = -1.0 if up else two_k
    a = a1 + a2  # 2^k - 1 = a + a_err exactly
    a_err = a2 - (a - a1)
    b = two_k * r  # exact
    s = a + b
    s_err = b - (s - a)
    r2 = r * r
    r2_err = fma(r, r, -r2)  # r^2 = r2 + r2_err exactly
    e = s + ((s_err + a_err) + two_k * fma(r2, q, fma(r2_err, q, c * (1.0 + r))))
    e = e * (2.0 if top != 0 else 1.0)
    e = x if x == 0.0 else e
    return e if x == x else x


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
    # k as a float64, exactly (|k| < 2^51): its bits added to those of 1.5 * 2^52, less
    # that number. A plain conversion is packed only with AVX-512 (vcvtqq2pd): with AVX2
    # alone, GCC keeps every loop holding one scalar.
    dk = as_float64(k + ROUND_BITS) - ROUND
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



@portable
def log_parts(x):
    """log x as an unevaluated sum hi + lo, some 2^-58 |log m| + 2^-70 |log x| from the
    exact value (m the reduced argument below, |log m| <= ln2 / 2): the logarithm that
    :func:`pow_nonneg` multiplies by its exponent, where an error of one ulp of log x
    would become |y| ulp of e^y.

    x = 2^k m with m in [sqrt(1/2), sqrt(2)) as in :func:`log`; f = m - 1 (exact),
    s = f / (2 + f) with its error s_lo (from the exact remainder of the division, by
    fma), log m = 2 atanh(s + s_lo) = 2 s + s^3 P(s^2) + 2 s_lo (1 + s^2). k ln2 is
    k LN2_HI (exact) + k LN2_LO; the two large terms k LN2_HI + 2 s are summed exactly
    (Fast2Sum), the rest is added to the error of that sum, and the result renormalised
    (hi rounded, |lo| <= half an ulp of hi: Fast2Sum again). log_parts(0) = (-inf, 0),
    log_parts(inf) = (inf, 0), NaN (and x < 0) give (NaN, 0).
    """
    tiny = x < SMALLEST_NORMAL
    xs = x * TWO_54 if tiny else x
    ix = as_int64(xs) - SQRT_HALF_BITS
    k = (ix >> 52) - (54 if tiny else 0)
    f = as_float64((ix & MANTISSA) + SQRT_HALF_BITS) - 1.0
    d = 2.0 + f
    d_lo = f - (d - 2.0)  # exact: 2 + f = d + d_lo
    s = f / d
    s_lo = (fma(-s, d, f) - s * d_lo) / d  # f / (2 + f) - s
    z = s * s
    poly = fma(z, LP7, LP6)
    poly = fma(z, poly, LP5)
    poly = fma(z, poly, LP4)
    poly = fma(z, poly, LP3)
    poly = fma(z, poly, LP2)
    poly = fma(z, poly, LP1)
    poly = fma(z, poly, LP0)
    # k as a float64, exactly (|k| < 2^51): its bits added to those of 1.5 * 2^52, less
    # that number. A plain conversion is packed only with AVX-512 (vcvtqq2pd): with AVX2
    # alone, GCC keeps every loop holding one scalar.
    dk = as_float64(k + ROUND_BITS) - ROUND
    kh = dk * LN2_HI  # exact
    head = kh + 2.0 * s  # |kh| >= ln2 > |2 s|, or kh = 0
    head_err = (kh - head) + 2.0 * s
    tail = head_err + (dk * LN2_LO + fma(z * s, poly, 2.0 * fma(s_lo, z, s_lo)))
    total = head + tail
    lo = (head - total) + tail  # |head| > |tail|: hi + lo = head + tail exactly
    hi = total if x > 0.0 else (-math.inf if x == 0.0 else math.nan)
    hi = x if x == math.inf else hi
    lo = lo if x > 0.0 else 0.0
    lo = 0.0 if x == math.inf else lo
    return hi, lo


@portable
def device_pow_nonneg(u, g):
    """:func:`pow_nonneg` on the GPU: the device's ``pow``, with pow_nonneg's NaN for a
    negative base (``pow`` gives whole powers of one: a focal loss's target outside [0, 1]
    made a number on the GPU and NaN on the CPU)."""
    return math.nan if u < 0.0 and g != 0.0 else math.pow(u, g)


@portable(cuda=device_pow_nonneg)
def pow_nonneg(u, g):
    """u^g for u >= 0 (+-0 included) and any g: e^(g log u), to about 1 ulp for |g| <= 10
    (measured: 1.04 ulp over the focal and triplet losses' ranges); beyond, the error of
    log u (2^-58 of log m, see :func:`log_parts`) grows with |g| (8 ulp at |g| = 1000).

    log u comes as hi + lo (:func:`log_parts`), the product g (hi + lo) as yh + yl (the
    rounding error of g hi by fma, plus g lo), and e^(yh + yl) from :func:`exp_sum`, so
    that no rounding of g log u (one ulp of a number up to 745 in size) reaches the
    result. The exact cases are selected at the end, as C's ``pow`` has them: u^0 = 1
    for every u (0^0 = 1, as in PyTorch and C, and NaN^0 = 1); 1^g = 1 for every g;
    0^g = 0 for g > 0 and inf for g < 0 (of either zero: the sign of an odd power of -0
    is not kept); inf^g = inf for g > 0, 0 for g < 0; u < 1 (> 1) to the power +inf is
    0 (inf); any other NaN gives NaN. u < 0 gives NaN (u^0 = 1 aside).
    """
    hi, lo = log_parts(u)
    yh = g * hi
    yl = fma(g, hi, -yh) + g * lo
    yl = yl if abs(yh) < 746.0 else 0.0  # beyond, e^yh is 0 or inf (or NaN) alone
    e = exp_sum(yh, yl)
    e = 1.0 if u == 1.0 else e
    return 1.0 if g == 0.0 else e
