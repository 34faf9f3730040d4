"""The vectorisable exp, expm1, log, log1p and pow_nonneg of fastloss.math.elementary, and
the lane sums of fastloss.math.reductions: accuracy in ulp over dense grids against an
extended-precision reference, every special input, SIMD code really emitted (in the
functions' own loops and in the loss kernels that use them), and the one summation order.

The reference is NumPy's long double (x87 80-bit: 11 bits more than float64), checked
against mpmath on a sample; on platforms whose long double is just a double, mpmath alone
serves, on a sparser grid.
"""

import json
import math
import pathlib
import platform
import re
import sys

import mpmath
import numpy as np
import pytest
from conftest import SESSION_ENV

from fastloss.math import elementary, reductions

numba = pytest.importorskip("numba")

from fastloss.cpu_numba.jit import FASTMATH, compile_math  # noqa: E402

FUNCTIONS = ("exp", "exp_nonpositive", "expm1", "log", "log1p")
EXTENDED = np.finfo(np.longdouble).nmant >= 63
#: The largest error measured (ulp of the float64 result); the test fails above it.
#: (expm1: 0.80 measured over its grid below.)
MAX_ULP = {"exp": 1.0, "exp_nonpositive": 1.0, "expm1": 1.0, "log": 1.0, "log1p": 1.5}


def _loop(fn):
    compiled = compile_math(fn)

    @numba.njit(nogil=True, error_model="numpy", fastmath=set(FASTMATH))
    def loop(x, out):
        for i in range(x.shape[0]):
            out[i] = compiled(x[i])

    return loop


def _loop2(fn):
    compiled = compile_math(fn)

    @numba.njit(nogil=True, error_model="numpy", fastmath=set(FASTMATH))
    def loop(x, g, out):
        for i in range(x.shape[0]):
            out[i] = compiled(x[i], g[i])

    return loop


LOOPS = {}


def numba_map(name, x, g=None):
    if name not in LOOPS:
        LOOPS[name] = (_loop if g is None else _loop2)(getattr(elementary, name))
    out = np.empty_like(x)
    LOOPS[name](x, out) if g is None else LOOPS[name](x, g, out)
    return out


def cython_map(name, x, g=None):
    kernels = pytest.importorskip("fastloss.cpu_cython._kernels")
    out = np.empty_like(x)
    kernels.elementary_map(name, x, out, g)
    return out


MAPS = {"numba": numba_map, "cython": cython_map}


def grid(name, rng):
    """Dense inputs over the whole domain, and heavier near the hard spots."""
    if name == "exp":
        parts = [np.linspace(-745.2, 709.8, 400_001), rng.uniform(-1, 1, 100_000),
                 np.ldexp(rng.uniform(-1, 1, 50_000), rng.integers(-60, 0, 50_000))]
    elif name == "exp_nonpositive":  # its domain, past the flush point, and either side of it
        parts = [np.linspace(-745.2, 0.0, 400_001), -rng.uniform(0, 1, 100_000),
                 -np.ldexp(rng.uniform(0, 1, 50_000), rng.integers(-60, 0, 50_000)),
                 elementary.EXP_FLUSH + rng.uniform(-1e-9, 1e-9, 20_000)]
    elif name == "expm1":  # near 0 (subnormals included), both sides of +-ln2/2, -1 and overflow
        half_ln2 = math.log(2.0) / 2
        parts = [np.linspace(-60, 709.78, 400_001), rng.uniform(-1, 1, 100_000),
                 np.ldexp(rng.uniform(-1, 1, 50_000), rng.integers(-1074, 0, 50_000)),
                 rng.uniform(half_ln2 - 1e-3, half_ln2 + 1e-3, 20_000),
                 rng.uniform(-half_ln2 - 1e-3, -half_ln2 + 1e-3, 20_000),
                 rng.uniform(-800, -30, 20_000), rng.uniform(700, 709.78, 20_000)]
    elif name == "log":
        parts = [np.exp(np.linspace(-744, 709, 400_001)), rng.uniform(0.5, 2.0, 100_000),
                 1.0 + np.ldexp(rng.uniform(-1, 1, 50_000), rng.integers(-52, -1, 50_000)),
                 np.ldexp(rng.uniform(1, 2, 20_000), rng.integers(-1074, -1022, 20_000))]
    else:
        parts = [np.expm1(np.linspace(-36, 709, 400_001)), rng.uniform(-1, 1, 100_000),
                 np.ldexp(rng.uniform(-1, 1, 50_000), rng.integers(-1074, -1, 50_000)),
                 -1.0 + np.ldexp(rng.uniform(0, 1, 20_000), rng.integers(-52, -1, 20_000))]
    x = np.concatenate(parts)
    return x[np.isfinite(x)]


def extended_reference(name, x):
    with np.errstate(divide="ignore", over="ignore"):
        if name == "exp_nonpositive":  # e^x, flushed to 0 below the smallest normal number
            return np.where(x >= elementary.EXP_FLUSH, np.exp(x.astype(np.longdouble)), 0)
        return getattr(np, name)(x.astype(np.longdouble))


def ulp_errors(got, ref):
    """|got - ref| in ulp of the float64 nearest to ``ref`` (ref in long double)."""
    with np.errstate(over="ignore"):
        ref64 = ref.astype(np.float64)
    finite = np.isfinite(ref64) & (ref64 != 0)
    spacing = np.spacing(np.abs(ref64[finite])).astype(np.longdouble)
    return np.abs(got[finite].astype(np.longdouble) - ref[finite]) / spacing


@pytest.mark.slow
@pytest.mark.skipif(not EXTENDED, reason="long double is no wider than double here")
@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_accuracy_over_a_dense_grid(name, backend, rng):
    x = grid(name, rng)
    got = MAPS[backend](name, x)
    with np.errstate(all="ignore"):
        ref = extended_reference(name, x)
    err = ulp_errors(got, ref)
    assert np.all(got[ref == 0] == 0), f"{name} on {backend}: not 0 where the result flushes"
    worst = float(err.max())
    assert worst <= MAX_ULP[name], f"{name} on {backend}: {worst:.3f} ulp at x={x[np.argmax(err)]!r}"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_extended_reference_agrees_with_mpmath(name, rng):
    """The long-double reference itself, checked against mpmath on a sample (and the
    compiled function directly against mpmath, where long double is not extended)."""
    x = rng.choice(grid(name, rng), 300, replace=False)
    x[:3] = (-1.0, 0.0, 1e-300) if name == "log1p" else x[:3]
    f = {"exp": mpmath.exp, "exp_nonpositive": mpmath.exp, "expm1": mpmath.expm1, "log": mpmath.log,
         "log1p": mpmath.log1p}[name]
    with np.errstate(divide="ignore"):
        got = numba_map(name, x)
    with mpmath.workdps(40):
        exact = [f(mpmath.mpf(float(v))) for v in x]
        for g, e, v in zip(got, exact, x):
            if e == 0 or not mpmath.isfinite(e) or (name == "exp_nonpositive" and v < elementary.EXP_FLUSH):
                continue
            assert abs(mpmath.mpf(float(g)) - e) <= MAX_ULP[name] * np.spacing(abs(float(e))), (name, v)
    if EXTENDED:
        ref = extended_reference(name, x)
        with mpmath.workdps(40):
            for r, e, v in zip(ref, exact, x):
                if name == "exp_nonpositive" and v < elementary.EXP_FLUSH:
                    continue  # the reference flushes, as the function does
                if e != 0 and mpmath.isfinite(e):  # extended precision: 2^-60 relative
                    assert abs(mpmath.mpf(np.format_float_scientific(r, unique=True)) - e) <= abs(e) * 2.0**-60, name


SPECIAL = {
    "exp": [(0.0, 1.0), (-0.0, 1.0), (math.inf, math.inf), (-math.inf, 0.0), (math.nan, math.nan),
            (709.782712893384, 1.7976931348622732e308), (709.7827128933841, math.inf), (710.0, math.inf),
            (800.0, math.inf), (1e300, math.inf), (-745.1332191019411, 5e-324), (-745.2, 0.0), (-746.0, 0.0),
            (-1e300, 0.0), (1e-300, 1.0), (-708.4, math.exp(-708.4)), (-740.0, math.exp(-740.0))],
    "exp_nonpositive": [
        (0.0, 1.0), (-0.0, 1.0), (-math.inf, 0.0), (math.nan, math.nan), (-1e-300, 1.0), (-5e-324, 1.0),
        (-708.3964185322641, math.exp(-708.3964185322641)), (-708.3964185322642, 0.0), (-708.4, 0.0),
        (-745.2, 0.0), (-746.0, 0.0), (-1e300, 0.0), (-700.0, math.exp(-700.0)), (-1.0, math.exp(-1.0))],
    "expm1": [(0.0, 0.0), (-0.0, -0.0), (math.inf, math.inf), (-math.inf, -1.0), (math.nan, math.nan),
              (709.782712893384, 1.7976931348622732e308), (709.7827128933841, math.inf), (710.0, math.inf),
              (800.0, math.inf), (1e300, math.inf), (-1e300, -1.0), (-745.2, -1.0), (-64.0, -1.0), (-38.0, -1.0),
              (-37.0, math.expm1(-37.0)), (5e-324, 5e-324), (-5e-324, -5e-324), (1e-300, 1e-300),
              (-1e-300, -1e-300), (1e-17, 1e-17), (-1e-17, -1e-17), (1e-10, math.expm1(1e-10)),
              (-1e-10, math.expm1(-1e-10)), (math.log(2.0) / 2, math.expm1(math.log(2.0) / 2)),
              (-math.log(2.0) / 2, math.expm1(-math.log(2.0) / 2)), (1.0, 1.718281828459045),
              (700.0, math.expm1(700.0)), (-20.0, math.expm1(-20.0))],
    "log": [(1.0, 0.0), (0.0, -math.inf), (-0.0, -math.inf), (-1.0, math.nan), (-math.inf, math.nan),
            (math.inf, math.inf), (math.nan, math.nan), (5e-324, math.log(5e-324)),
            (2.2250738585072014e-308, math.log(2.2250738585072014e-308)),
            (1.7976931348623157e308, math.log(1.7976931348623157e308)),
            (1e-310, math.log(1e-310))],
    "log1p": [(0.0, 0.0), (-0.0, -0.0), (-1.0, -math.inf), (-1.5, math.nan), (-math.inf, math.nan),
              (math.inf, math.inf), (math.nan, math.nan), (5e-324, 5e-324), (-5e-324, -5e-324), (1e-300, 1e-300),
              (1e-17, 1e-17), (-1e-17, -1e-17), (1.7976931348623157e308, math.log(1.7976931348623157e308)),
              (-0.9999999999999999, math.log1p(-0.9999999999999999))],
}


@pytest.mark.parametrize("backend", ["numba", "cython", "python"])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_special_inputs(name, backend):
    x = np.array([v for v, _ in SPECIAL[name]])
    expected = np.array([e for _, e in SPECIAL[name]])
    if backend == "python":
        got = np.array([getattr(elementary, name)(float(v)) for v in x])
    else:
        got = MAPS[backend](name, x)
    for v, g, e in zip(x, got, expected):
        if math.isnan(e):
            assert math.isnan(g), (name, v, g)
        elif e == 0 or math.isinf(e):
            assert g == e and math.copysign(1, g) == math.copysign(1, e), (name, v, g)
        else:
            assert abs(g - e) <= np.spacing(abs(e)), (name, v, g, e)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_python_reference_is_the_same_math(name, rng):
    """The plain-Python function (through struct bit casts) agrees with the compiled one to
    the rounding of a fused multiply-add."""
    x = rng.choice(grid(name, rng), 2000, replace=False)
    got = np.array([getattr(elementary, name)(float(v)) for v in x])
    np.testing.assert_allclose(got, numba_map(name, x), rtol=4e-16, atol=0)


# --- pow_nonneg: u^g = e^(g log u) for u >= 0 ---------------------------------------------


def pow_grid(case, rng):
    """(u, g) over the ranges the losses use, and beyond.

    focal: (1 - p_t)^gamma and (1 - p)^gamma, u in [0, 1] (down to subnormals, and up to
    1 - 2^-53), gamma in [0, 5]; triplet: |t|^p (t in [0, 1] after the norm's scaling, and
    raw up to 1e30), s^(1/p) (s in [1, 1e6]) and (|t| / d)^(p - 1), p in [1, 10];
    large: |g| up to 1000, where the error of log u grows by |g| (see MAX_ULP_POW).
    """
    n = 200_000

    def log_uniform(lo, hi, k):
        return np.exp(rng.uniform(math.log(lo), math.log(hi), k))

    if case == "focal":
        u = np.concatenate([rng.uniform(0, 1, n), log_uniform(1e-300, 1, n),
                            1 - np.ldexp(rng.uniform(0.5, 1, n), rng.integers(-53, -1, n)),
                            np.ldexp(rng.uniform(0.5, 1, n // 4), rng.integers(-1074, -1022, n // 4))])
        g = np.concatenate([rng.uniform(0, 5, 3 * n), rng.uniform(0.5, 1, n // 4)])
        fixed = rng.choice([0.0, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0], n)
        return np.concatenate([u, log_uniform(1e-300, 1, n)]), np.concatenate([g, fixed])
    if case == "triplet":
        u = np.concatenate([rng.uniform(0, 1, n), log_uniform(1e-30, 1e30, n), log_uniform(1, 1e6, n),
                            log_uniform(1e-30, 1, n)])
        g = np.concatenate([rng.uniform(1, 10, 2 * n), 1 / rng.uniform(1, 10, n), rng.uniform(0, 9, n)])
        return u, g
    u = rng.uniform(0.5, 2, n)
    return u, rng.uniform(-1000, 1000, n)


#: The largest error allowed (ulp of the float64 result, over normal results). Measured:
#: 1.04 (focal) and 1.004 (triplet), exp's own ulp; with |g| up to 1000, 8.2 ulp: the
#: error of log u (2^-58.2 relative, from its s^3 P(s^2) term, see log_parts) grows by |g|.
MAX_ULP_POW = {"focal": 1.1, "triplet": 1.1, "large": 10.0}


def pow_reference(u, g):
    with np.errstate(all="ignore"):
        return np.power(u.astype(np.longdouble), g.astype(np.longdouble))


@pytest.mark.slow
@pytest.mark.skipif(not EXTENDED, reason="long double is no wider than double here")
@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("case", list(MAX_ULP_POW))
def test_pow_accuracy_over_dense_grids(case, backend, rng):
    u, g = pow_grid(case, rng)
    got = MAPS[backend]("pow_nonneg", u, g)
    ref = pow_reference(u, g)
    with np.errstate(over="ignore"):
        normal = np.abs(ref.astype(np.float64)) >= np.finfo(np.float64).tiny  # subnormal results lose bits
    err = ulp_errors(got[normal], ref[normal])
    worst = float(err.max())
    at = np.argmax(err)
    where = f"u={u[normal][at]!r}, g={g[normal][at]!r}"
    assert worst <= MAX_ULP_POW[case], f"{case} on {backend}: {worst:.3f} ulp at {where}"


def test_pow_against_mpmath(rng):
    """pow_nonneg (and the long-double reference) against mpmath on a sample of each grid."""
    for case in MAX_ULP_POW:
        u, g = pow_grid(case, rng)
        pick = rng.choice(u.size, 200, replace=False)
        u, g = u[pick], g[pick]
        got = numba_map("pow_nonneg", u, g)
        ref = pow_reference(u, g)
        with mpmath.workdps(60):
            for gu, rl, uu, gg in zip(got, ref, u, g):
                exact = mpmath.power(mpmath.mpf(float(uu)), mpmath.mpf(float(gg)))
                if exact == 0 or abs(exact) < np.finfo(np.float64).tiny or abs(exact) > np.finfo(np.float64).max:
                    continue
                assert abs(mpmath.mpf(float(gu)) - exact) <= MAX_ULP_POW[case] * np.spacing(abs(float(exact))), (uu, gg)
                if EXTENDED:
                    assert abs(mpmath.mpf(np.format_float_scientific(rl, unique=True)) - exact) <= abs(exact) * 2.0**-58


POW_SPECIAL = [  # (u, g, u^g): C's pow for u >= 0, 0^0 = 1 as in PyTorch
    (0.0, 0.0, 1.0), (-0.0, 0.0, 1.0), (0.0, 2.0, 0.0), (0.0, 0.5, 0.0), (-0.0, 3.0, 0.0), (0.0, -1.0, math.inf),
    (0.0, -0.5, math.inf), (1.0, math.nan, 1.0), (1.0, math.inf, 1.0), (1.0, -math.inf, 1.0), (1.0, 1e300, 1.0),
    (math.nan, 0.0, 1.0), (math.nan, 2.0, math.nan), (0.5, math.nan, math.nan), (0.0, math.nan, math.nan),
    (math.inf, 2.0, math.inf), (math.inf, -2.0, 0.0), (math.inf, 0.0, 1.0), (0.5, math.inf, 0.0),
    (0.5, -math.inf, math.inf), (2.0, math.inf, math.inf), (2.0, -math.inf, 0.0), (0.0, math.inf, 0.0),
    (2.0, 1024.0, math.inf), (2.0, 1023.0, 2.0**1023), (2.0, -1022.0, 2.0**-1022), (2.0, -1075.5, 0.0),
    (1e300, 2.0, math.inf), (1e-300, 2.0, 0.0), (1e-300, 1.0, 1e-300), (5e-324, 1.0, 5e-324),
    (1e-320, 0.5, math.sqrt(1e-320)), (0.5, 1.0, 0.5), (3.0, 2.0, 9.0), (10.0, 10.0, 1e10), (9.0, 0.5, 3.0),
    (0.7, 2.0, 0.7 * 0.7), (1e30, 10.0, 1e300), (1.0000000000000002, 1e16, 9.21143870499353),
    (-1.0, 2.0, math.nan), (-2.0, 0.0, 1.0),
]


@pytest.mark.parametrize("backend", ["numba", "cython", "python"])
def test_pow_special_inputs(backend):
    u = np.array([v for v, _, _ in POW_SPECIAL])
    g = np.array([v for _, v, _ in POW_SPECIAL])
    if backend == "python":
        got = np.array([elementary.pow_nonneg(float(a), float(b)) for a, b in zip(u, g)])
    else:
        got = MAPS[backend]("pow_nonneg", u, g)
    for (a, b, e), r in zip(POW_SPECIAL, got):
        if math.isnan(e):
            assert math.isnan(r), (a, b, r)
        elif e == 0 or math.isinf(e):
            assert r == e, (a, b, r)
        else:
            assert abs(r - e) <= np.spacing(abs(e)), (a, b, r, e)


def test_pow_python_reference_is_the_same_math(rng):
    u, g = pow_grid("focal", rng)
    pick = rng.choice(u.size, 1000, replace=False)
    u, g = u[pick], g[pick]
    got = np.array([elementary.pow_nonneg(float(a), float(b)) for a, b in zip(u, g)])
    np.testing.assert_allclose(got, numba_map("pow_nonneg", u, g), rtol=4e-16, atol=0)


def test_polynomial_coefficients_are_ours():
    """expm1's Q and log_parts's P are our own Chebyshev fits (mpmath.chebyfit at 40
    digits): recomputed here, they match the constants in elementary.py."""
    with mpmath.workdps(40):
        half = mpmath.log(2) / 2 * (1 + mpmath.mpf(2) ** -40)
        q = mpmath.chebyfit(lambda r: (mpmath.expm1(r) - r) / r**2 if r else mpmath.mpf(1) / 2, [-half, half], 11)
        smax = (mpmath.sqrt(2) - 1) / (mpmath.sqrt(2) + 1) * (1 + mpmath.mpf(2) ** -40)

        def atanh_tail(z):
            if z == 0:
                return mpmath.mpf(2) / 3
            s = mpmath.sqrt(z)
            return 2 * (mpmath.atanh(s) / s - 1) / z

        p = mpmath.chebyfit(atanh_tail, [0, smax**2], 8)
    ours_q = [getattr(elementary, f"EQ{i}") for i in range(10, -1, -1)]
    ours_p = [getattr(elementary, f"LP{i}") for i in range(7, -1, -1)]
    np.testing.assert_allclose([float(c) for c in q], ours_q, rtol=1e-12)
    np.testing.assert_allclose([float(c) for c in p], ours_p, rtol=1e-12)


PACKED_DOUBLE = re.compile(r"\bv?(fn?m(add|sub)\d+|mul|add|sub|div)pd\b")
PACKED_SINGLE = re.compile(r"\bv?(fn?m(add|sub)\d+|mul|add|sub|div)ps\b")


#: A call of a libm function, or of one of ours left out of line (which keeps the loop
#: scalar too). Numba reaches external symbols through a register (``movabsq $exp, %rax``
#: then ``callq *%rax``), so the symbol is looked for where it is loaded as well.
SCALAR_CALL = re.compile(r"(?:call\w*\s+|movabsq\s+\$)(\w*8fastloss4math10elementary\w*|"
                         r"(?:exp|exp2|expm1|log|log1p|log2|pow|sinh|cosh|tanh|hypot)\b)")


def assert_simd(asm, what, packed=20):
    """``asm`` holds packed floating-point arithmetic (float64, or float32 where a float32
    kernel computes in float32) and calls no scalar exp/log/pow."""
    count = len(PACKED_DOUBLE.findall(asm)) + len(PACKED_SINGLE.findall(asm))
    assert count > packed, f"{what}: {count} packed floating-point instructions"
    calls = sorted(set(SCALAR_CALL.findall(asm)))
    assert not calls, f"{what}: scalar calls {calls}"


@pytest.mark.slow
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 mnemonics")
@pytest.mark.parametrize("name", FUNCTIONS + ("pow_nonneg",))
def test_numba_loops_vectorise(name):
    if name == "pow_nonneg":
        numba_map(name, np.ones(8), np.ones(8))
    else:
        numba_map(name, np.ones(8))
    loop = LOOPS[name]
    assert_simd(loop.inspect_asm(loop.signatures[0]), name, packed=10)


def _fresh(math_fn, family, narrow=False):
    """The Numba block kernel of a loss (of its narrow-row form with ``narrow``), compiled
    afresh: a kernel loaded from Numba's cache has no assembly to show."""
    from fastloss import cpu_numba

    cached = cpu_numba.kernel(math_fn, family, "block", narrow)
    return numba.njit(nogil=True, error_model="numpy", fastmath=set(FASTMATH))(cached.py_func)


def _element_block_asm(math_fn, params):
    block = _fresh(math_fn, "elementwise")
    x = np.zeros(4, np.float32)
    e = np.empty(0, np.float32)
    block(x, x, x, np.empty(0), params, 1.0, e, x.copy(), e, e)
    return block.inspect_asm(block.signatures[0])


def _row_block_asm(math_fn, params, labels=False, grads=1, narrow=False):
    block = _fresh(math_fn, "rowwise", narrow)
    z = np.zeros((2, 3), np.float32)
    none = np.empty((2, 0), np.float32)
    y = np.zeros(2, np.intp) if labels else z
    g = [z.copy() if k < grads else none for k in range(3)]
    block(z, y, z, np.empty(0), np.empty(0), params, 1.0, np.empty(0, np.float32), *g, none)
    return block.inspect_asm(block.signatures[0])


def _loss_kernels():
    from fastloss.losses import binary, cross_entropy, divergences, embedding, focal, generative, regression

    return {
        "sigmoid_binary_cross_entropy": lambda: _element_block_asm(binary.sigmoid_binary_cross_entropy,
                                                                   (0.0, 1.0, 0.0)),
        "sigmoid_binary_cross_entropy float32 form": lambda: _element_block_asm(
            binary.sigmoid_binary_cross_entropy_float32, (0.0, 1.0, 0.0)),
        "log_cosh": lambda: _element_block_asm(regression.log_cosh, ()),
        "sigmoid_focal_loss": lambda: _element_block_asm(focal.sigmoid_focal_loss, (0.25, 2.0, 1.0)),
        "sparse_softmax_cross_entropy": lambda: _row_block_asm(cross_entropy.sparse_softmax_cross_entropy,
                                                               (0.0, 0.0, 0.0), labels=True),
        "sparse_softmax_cross_entropy narrow rows": lambda: _row_block_asm(
            cross_entropy.sparse_softmax_cross_entropy, (0.0, 0.0, 0.0), labels=True, narrow=True),
        "softmax_cross_entropy narrow rows": lambda: _row_block_asm(
            cross_entropy.softmax_cross_entropy, (0.0,), narrow=True),
        "softmax_kl_divergence narrow rows": lambda: _row_block_asm(
            divergences.softmax_kl_divergence, (0.0,), narrow=True),
        "softmax_focal_loss": lambda: _row_block_asm(focal.softmax_focal_loss, (0.25, 2.0)),
        "vae_kl_divergence": lambda: _row_block_asm(generative.vae_kl_divergence, (), grads=2),
        "triplet_margin_loss": lambda: _row_block_asm(embedding.triplet_margin_loss, (1.0, 3.0, 1e-6, 0.0), grads=3),
    }


ROOT = pathlib.Path(__file__).resolve().parent.parent
LOSS_KERNELS_ASM = """
import json, sys
sys.path.insert(0, "tests")
import test_elementary
print(json.dumps({name: asm() for name, asm in test_elementary._loss_kernels().items()}))
"""


def _compile_loss_kernels(run):
    """The assembly of every kernel of :func:`_loss_kernels`, compiled in a process of its
    own (some 25 s of Numba, on the idle core: conftest.py)."""
    done = run([sys.executable, "-c", LOSS_KERNELS_ASM], cwd=ROOT, timeout=600,
               env={**SESSION_ENV, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 mnemonics")
@pytest.mark.parametrize("name", list(_loss_kernels()))
@pytest.mark.background(job=_compile_loss_kernels)
def test_loss_kernels_vectorise(name, background):
    """The Numba block kernels are SIMD code without scalar libm calls: the element-wise
    blocks of sigmoid BCE (both forms), log-cosh (exp/expm1/log1p) and the sigmoid focal
    loss (pow_nonneg), the row kernels of sparse softmax CE (a row at a time, and narrow
    rows side by side), the narrow rows of dense softmax CE and softmax KL, the softmax
    focal loss, the VAE's KL term (expm1, summed in lanes) and the triplet loss (its
    distances and gradient rows in lanes; compiled with p = 3, the kernel holds every
    norm's loops)."""
    assert_simd(background()[name], name)


def lane_order_sum(values):
    """The documented order: value j into lane j mod LANES for every whole group, the fixed
    pairwise tree, then the rest in order (all in float64)."""
    n = len(values)
    whole = n - n % reductions.LANES
    acc = np.zeros(reductions.LANES)
    for g in range(whole // reductions.LANES):
        acc += values[g * reductions.LANES:(g + 1) * reductions.LANES]
    total = reductions.lane_total(acc)
    for v in values[whole:]:
        total += v
    return total


@pytest.mark.parametrize("n", [1, 63, 64, 65, 255, 256, 257, 1000, 4096 + 7])
def test_element_sums_follow_the_lane_order(n, cpu_backend, rng):
    """A block's loss sum is exactly the lane order's (one chunk; tiles of TILE elements
    feed the same lanes). MSE's per-element loss r*r is recomputed exactly here."""
    import fastloss as fl

    x = rng.standard_normal(n)
    y = rng.standard_normal(n)
    r = x - y
    res = fl.mse(x, y, reduction="sum", grad=False)
    assert float(res.loss) == lane_order_sum(r * r)


@pytest.mark.parametrize("width", [1, 10, 63, 64, 130])
def test_row_sums_follow_the_lane_order(width, rng):
    """A block's sum of exponentials is exactly the lane order's sum of the compiled exps,
    from wherever the block starts in its row; the stored exps are those terms."""
    from fastloss.math import online_softmax

    z = rng.standard_normal(width + 3)
    block_sum_exp = compile_math(online_softmax.block_sum_exp)

    @numba.njit
    def run(z, e):
        return block_sum_exp(z, 3, z.shape[0], 0.5, e, 1.0)

    e = np.zeros(width + 3)
    terms = numba_map("exp", z[3:] - 0.5)
    assert run(z, e) == lane_order_sum(terms)
    np.testing.assert_array_equal(e[3:], terms)
    assert not e[:3].any()


@pytest.mark.parametrize("n", [0, 1, 10, 63, 64, 65, 128, 200])
def test_group_sums_follow_the_lane_order(n, rng):
    """Terms passed group by group to lane_add (the rows of JS, KL, categorical CE and
    the softmax focal loss) sum to exactly the lane order's sum."""
    lane_add = compile_math(reductions.lane_add)
    lane_finish = compile_math(reductions.lane_finish)
    lanes = reductions.LANES

    @numba.njit
    def run(values):
        acc = np.empty(lanes)  # uninitialised, as lanes(None): lane_add fills it
        terms = np.empty(lanes)
        n = values.shape[0]
        for group in range((n + lanes - 1) // lanes):
            g = group * lanes
            count = min(lanes, n - g)
            for lane in range(count):
                terms[lane] = values[g + lane]
            lane_add(acc, terms, count, g)
        return lane_finish(acc, terms, n)

    values = rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, n)
    assert run(values) == lane_order_sum(values)


def _disassembly(symbol_part):
    """{symbol: its instructions} for the functions of the Cython extension whose name
    contains ``symbol_part`` (objdump's view of the built .so)."""
    import shutil
    import subprocess

    kernels = pytest.importorskip("fastloss.cpu_cython._kernels")
    if shutil.which("objdump") is None:
        pytest.skip("no objdump")
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", kernels.__file__],
                          capture_output=True, text=True, check=True).stdout
    functions, current = {}, None
    for line in text.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if head:
            current = head.group(1) if symbol_part in head.group(1) else None
            if current:
                functions[current] = []
        elif current and line.strip():
            functions[current].append(line)
    return functions


CYTHON_SIMD = ["_block__binary__sigmoid_binary_cross_entropy", "_kernels_divergences__softmax_kl_divergence",
               "_block__regression__log_cosh", "_block__focal__sigmoid_focal_loss",
               "_kernels_focal__softmax_focal_loss", "_kernels_divergences__js_divergence",
               "generative__vae_kl_row", "embedding__distance", "embedding__triplet_grads"]
#: Any call of a libm function from the extension's code (through the PLT).
PLT_LIBM = re.compile(r"call\w*\s+\S+\s+<(exp|exp2|expm1|log|log1p|log2|pow|sinh|cosh|tanh|hypot)(@plt)?>")


@pytest.mark.slow
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 mnemonics")
@pytest.mark.parametrize("symbol", CYTHON_SIMD)
def test_cython_kernels_vectorise(symbol):
    """GCC turned the loss math into SIMD code in the built extension: packed float64
    arithmetic in the element-wise blocks of sigmoid BCE, log-cosh and the sigmoid focal
    loss, the rows of softmax KL (its online log-sum-exp and its lane sums), the softmax
    focal loss and the Jensen-Shannon divergence, the VAE's KL row and the triplet loss's
    distance and gradient rows, and none of them calls libm. (Which functions GCC keeps
    out of line can change with the code; a name found nowhere fails here.)"""
    functions = _disassembly(symbol)
    assert functions, f"no function {symbol} in the extension"
    for name, lines in functions.items():
        packed = sum(bool(PACKED_DOUBLE.search(line)) for line in lines)
        assert packed > 20, f"{name}: {packed} packed float64 instructions"
        calls = sorted({m.group(1) for line in lines for m in [PLT_LIBM.search(line)] if m})
        assert not calls, f"{name}: calls {calls}"


#: The element-wise blocks whose math takes an exp or a log: in each, the polynomials must
#: be packed. The extension is built with -ffp-contract=off, so its fused multiply-adds are
#: only the math's explicit ones (every polynomial's Horner steps): a block whose math loop
#: stayed scalar has no packed FMA at all, whatever its weight, store and lane-sum loops
#: hold. (Counting all packed against scalar arithmetic misleads both ways: BCE on
#: probabilities, scalar, had 139 packed against 176 scalar instructions; Poisson,
#: vectorised, 159 against 214, its scalar remainder loop holding a whole log.)
CYTHON_TRANSCENDENTAL_BLOCKS = [
    "_block__binary__binary_cross_entropy", "_block__binary__sigmoid_binary_cross_entropy",
    "_block__focal__sigmoid_focal_loss", "_block__generative__gan_discriminator",
    "_block__generative__gan_generator", "_block__regression__log_cosh", "_block__regression__poisson",
    "_block__regression__poisson_log_rate", "_block__regression__squared_log_error"]
PACKED_DOUBLE_FMA = re.compile(r"\bvfn?m(add|sub)\d+pd\b")
#: Fewest packed FMAs in a vectorised block: one log or exp polynomial, in two vectors.
MIN_PACKED_FMA = 12


@pytest.mark.slow
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 mnemonics")
@pytest.mark.parametrize("symbol", CYTHON_TRANSCENDENTAL_BLOCKS)
def test_cython_transcendental_blocks_are_vectorised(symbol):
    """GCC vectorised the math loop of each element-wise block that takes an exp or a log
    (float and double fusions alike): its polynomials appear as packed float64 FMAs."""
    functions = {k: v for k, v in _disassembly(symbol).items()
                 if "chunk" not in k and re.search(re.escape(symbol) + r"(\.|$)", k)}
    assert len(functions) == 2, f"{symbol}: expected the float and double fusions, got {sorted(functions)}"
    for name, lines in functions.items():
        packed = sum(bool(PACKED_DOUBLE_FMA.search(line)) for line in lines)
        assert packed >= MIN_PACKED_FMA, f"{name}: {packed} packed float64 FMAs"


@pytest.mark.slow
def test_cython_extension_calls_no_libm_math():
    """No function of the extension calls a libm exp, log, pow or hyperbolic function: all
    of them are the portable math's own (sqrt is an instruction)."""
    functions = _disassembly("")
    calls = sorted({m.group(1) for lines in functions.values() for line in lines
                    for m in [PLT_LIBM.search(line)] if m})
    assert not calls, f"the extension calls {calls}"


# float32: exp_nonpositive_single, the exponential of the softmax of float32 logits.

PACKED_SINGLE_FMA = re.compile(r"\bvfn?m(add|sub)\d+ps\b")
#: Largest error measured over the grid below: 0.90 ulp of the float32 result.
MAX_ULP_SINGLE = 1.0


def _single_grid():
    """float32 inputs from -0 down past the flush point: every 61st float32 of [-88, 0]
    (a grid dense in ulps at every scale), the flush point's neighbours and the specials."""
    top = np.array(-0.0, np.float32).view(np.uint32)
    bottom = np.array(-88.0, np.float32).view(np.uint32)
    x = np.arange(top, bottom, 61, dtype=np.uint32).view(np.float32)
    flush = elementary.EXP_FLUSH_F
    edges = [np.nextafter(flush, np.float32(-1.0)), flush, np.nextafter(flush, np.float32(0.0))]
    return np.concatenate([x, np.array(edges, np.float32), np.float32([0.0, -0.0, -np.inf, np.nan, -1e-45])])


def _single_map(backend, x):
    if backend == "numba":
        return numba_map("exp_nonpositive_single", x)
    return cython_map("exp_nonpositive_single", x.astype(np.float64)).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_single_exp_accuracy(backend):
    """Within MAX_ULP_SINGLE ulp of e^x (float64's exp is the reference: its error is far
    below a float32 ulp) wherever e^x is a normal float32, exactly 0 below the flush point,
    and the special inputs."""
    x = _single_grid()
    got = _single_map(backend, x)
    assert got.dtype == np.float32
    finite = np.isfinite(x)
    ref = np.exp(x[finite].astype(np.float64))
    g = got[finite].astype(np.float64)
    normal = x[finite] >= elementary.EXP_FLUSH_F
    ulp = np.abs(g[normal] - ref[normal]) / np.spacing(ref[normal].astype(np.float32)).astype(np.float64)
    assert ulp.max() <= MAX_ULP_SINGLE, f"{backend}: {ulp.max():.3f} ulp at x = {x[finite][normal][ulp.argmax()]!r}"
    assert np.all(g[~normal] == 0.0)
    assert np.all(ref[~normal] < 2.0**-126)  # the flush point is where e^x leaves the normals
    assert np.all(got[x == 0.0] == 1.0)
    assert got[np.isneginf(x)] == 0.0 and np.isnan(got[np.isnan(x)]).all()


@pytest.mark.slow  # a dense grid
def test_single_exp_backends_and_python_agree():
    """The two compiled translations give the same bits over the whole grid, and the
    plain Python source (float32 NumPy scalars, fma_single through fractions) the same
    bits on a sample: every backend rounds every operation to float32 alike."""
    x = _single_grid()
    numba_got = _single_map("numba", x)
    np.testing.assert_array_equal(_single_map("cython", x), numba_got)
    sample = np.concatenate([x[:: len(x) // 1500], x[-8:]])
    expected = numba_map("exp_nonpositive_single", sample)
    python = np.array([elementary.exp_nonpositive_single(v) for v in sample], dtype=np.float32)
    np.testing.assert_array_equal(python, expected)


def test_fma_single_rounds_once():
    """fma_single's Python reference rounds the exact a * b + c to the nearest float32
    (ties to even), not through float64: here a * b + c = 1 + 2^-23 + 2^-24 - 2^-60, whose
    nearest float64 is a float32 tie that rounds up to 1 + 2^-22, while the exact value
    lies below the tie and rounds down to 1 + 2^-23."""
    a = np.float32(2.0**-24 * (1 + 2.0**-18))
    b = np.float32(1 - 2.0**-18)
    c = np.float32(1 + 2.0**-23)
    assert np.float32(float(a) * float(b) + float(c)) == np.float32(1 + 2.0**-22)  # through float64
    assert elementary.fma_single(a, b, c) == np.float32(1 + 2.0**-23)
    assert elementary.fma_single(np.float32(3.0), np.float32(0.5), np.float32(0.25)) == np.float32(1.75)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 mnemonics")
@pytest.mark.background(job=_compile_loss_kernels)
def test_float32_softmax_kernels_use_float32_simd(background):
    """The float32 kernels of sparse softmax cross-entropy (a row at a time, and narrow
    rows side by side) and of dense softmax cross-entropy's narrow rows evaluate their
    exponentials in packed float32 fused multiply-adds, as does the Cython extension's
    float32 online log-sum-exp (inlined into the rows of softmax KL)."""
    for name in ("sparse_softmax_cross_entropy", "sparse_softmax_cross_entropy narrow rows",
                 "softmax_cross_entropy narrow rows"):
        count = len(PACKED_SINGLE_FMA.findall(background()[name]))
        assert count >= 7, f"{name}: {count} packed float32 fused multiply-adds"
    functions = _disassembly("fuse_0__pyx_f_8fastloss_10cpu_cython_8_kernels_divergences__softmax_kl_divergence")
    assert functions, "no float32 softmax_kl_divergence row in the extension"
    for fname, lines in functions.items():
        count = sum(bool(PACKED_SINGLE_FMA.search(line)) for line in lines)
        assert count >= 7, f"{fname}: {count} packed float32 fused multiply-adds"


# float32: log_single, the logarithm of logistic_single (softplus and sigmoid of float32
# logits, the float32 form of sigmoid BCE).

#: The test's bound in ulp of the float32 result (0.80 measured over the grid below).
MAX_ULP_SINGLE_LOG = 1.0


def _single_log_grid():
    """Every 127th positive float32 from the smallest subnormal to the largest finite (a
    grid dense in ulps at every scale), every 5th float32 of [1, 2] (where logistic_single
    takes its logs), and the specials."""
    every = np.arange(1, 0x7F800000, 127, dtype=np.uint32).view(np.float32)
    unit = np.arange(0x3F800000, 0x40000001, 5, dtype=np.uint32).view(np.float32)
    specials = np.float32([0.0, -0.0, -1.0, -1e-45, np.inf, -np.inf, np.nan, 1.0, 2.0, 1e-45,
                           np.finfo(np.float32).max, np.finfo(np.float32).tiny])
    return np.concatenate([every, unit, specials])


def _single_log_map(backend, x):
    if backend == "numba":
        return numba_map("log_single", x)
    return cython_map("log_single", x.astype(np.float64)).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numba", "cython"])
def test_single_log_accuracy(backend):
    """Within MAX_ULP_SINGLE_LOG ulp of log x (float64's log is the reference) for every
    positive float32, subnormals included; log 1 = 0 exactly, and the special inputs."""
    x = _single_log_grid()
    got = _single_log_map(backend, x)
    assert got.dtype == np.float32
    positive = np.isfinite(x) & (x > 0)
    ref = np.log(x[positive].astype(np.float64))
    g = got[positive].astype(np.float64)
    nonzero = ref != 0.0
    ulp = np.abs(g[nonzero] - ref[nonzero]) / np.spacing(ref[nonzero].astype(np.float32)).astype(np.float64)
    worst = x[positive][nonzero][ulp.argmax()]
    assert ulp.max() <= MAX_ULP_SINGLE_LOG, f"{backend}: {ulp.max():.3f} ulp at x = {worst!r}"
    assert np.all(g[~nonzero] == 0.0)
    with np.errstate(invalid="ignore"):
        assert np.all(got[x == 0.0] == -np.inf)
        assert np.isnan(got[(x < 0) | np.isnan(x)]).all()
    assert got[x == np.inf] == np.inf


@pytest.mark.slow  # a dense grid
def test_single_log_backends_and_python_agree():
    """Numba and Cython give the same bits over the whole grid, and the plain Python source
    the same bits on a sample (subnormals and specials included)."""
    x = _single_log_grid()
    numba_got = _single_log_map("numba", x)
    np.testing.assert_array_equal(_single_log_map("cython", x), numba_got)
    sample = np.concatenate([x[:: len(x) // 1500], x[-12:]])
    python = np.array([elementary.log_single(v) for v in sample], dtype=np.float32)
    np.testing.assert_array_equal(python, numba_map("log_single", sample))


def test_single_log_series_is_atanh():
    """log_single's R is the series of 2 atanh(s) / s - 2, not a fit: coefficients 2 / (2k + 1)
    rounded to float32, and the rest left out is below 2^-28 of log m (1/16 ulp) on |s| <= 0.1716."""
    coefficients = [getattr(elementary, f"LT{k}") for k in range(1, 5)]
    assert coefficients == [np.float32(2.0 / (2 * k + 1)) for k in range(1, 5)]
    s = (math.sqrt(2.0) - 1) / (math.sqrt(2.0) + 1)
    rest = sum(2 * s ** (2 * k + 1) / (2 * k + 1) for k in range(5, 30))
    assert rest < 2.0**-28 * 2 * math.atanh(s)


FLOAT32_FORM_BLOCKS = ["_block__binary__sigmoid_binary_cross_entropy_float32",
                       "_block__generative__gan_generator_float32", "_block__generative__gan_discriminator_float32"]


@pytest.mark.slow
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 mnemonics")
@pytest.mark.parametrize("symbol", FLOAT32_FORM_BLOCKS)
def test_cython_float32_forms_use_float32_simd(symbol):
    """The float32 blocks of the float32 forms (fusion 0: float) evaluate exp and log in
    packed float32 fused multiply-adds: 7 for the exponential's polynomial, 3 for the
    logarithm's, per vector of logits."""
    functions = {k: v for k, v in _disassembly("fuse_0__pyx_f_8fastloss_10cpu_cython_8_kernels_" + symbol).items()
                 if "chunk" not in k}
    assert functions, f"no float32 {symbol} in the extension"
    for name, lines in functions.items():
        count = sum(bool(PACKED_SINGLE_FMA.search(line)) for line in lines)
        assert count >= 10, f"{name}: {count} packed float32 fused multiply-adds"


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 mnemonics")
@pytest.mark.background(job=_compile_loss_kernels)
def test_numba_float32_form_uses_float32_simd(background):
    """The Numba block of sigmoid BCE's float32 form evaluates exp and log in packed
    float32 fused multiply-adds too."""
    count = len(PACKED_SINGLE_FMA.findall(background()["sigmoid_binary_cross_entropy float32 form"]))
    assert count >= 10, f"{count} packed float32 fused multiply-adds"
