"""The vectorisable exp, log and log1p of fastloss.math.elementary, and the lane sums of
fastloss.math.reductions: accuracy in ulp over dense grids against an extended-precision
reference, every special input, SIMD code really emitted, and the one summation order.

The reference is NumPy's long double (x87 80-bit: 11 bits more than float64), checked
against mpmath on a sample; on platforms whose long double is just a double, mpmath alone
serves, on a sparser grid.
"""

import math
import platform
import re

import mpmath
import numpy as np
import pytest

from fastloss.math import elementary, reductions

numba = pytest.importorskip("numba")

from fastloss.cpu_numba.jit import FASTMATH, compile_math  # noqa: E402

FUNCTIONS = ("exp", "exp_nonpositive", "log", "log1p")
EXTENDED = np.finfo(np.longdouble).nmant >= 63
#: The largest error measured (ulp of the float64 result); the test fails above it.
MAX_ULP = {"exp": 1.0, "exp_nonpositive": 1.0, "log": 1.0, "log1p": 1.5}


def _loop(fn):
    compiled = compile_math(fn)

    @numba.njit(nogil=True, error_model="numpy", fastmath=set(FASTMATH))
    def loop(x, out):
        for i in range(x.shape[0]):
            out[i] = compiled(x[i])

    return loop


LOOPS = {}


def numba_map(name, x):
    if name not in LOOPS:
        LOOPS[name] = _loop(getattr(elementary, name))
    out = np.empty_like(x)
    LOOPS[name](x, out)
    return out


def cython_map(name, x):
    kernels = pytest.importorskip("fastloss.cpu_cython._kernels")
    out = np.empty_like(x)
    kernels.elementary_map(name, x, out)
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
    f = {"exp": mpmath.exp, "exp_nonpositive": mpmath.exp, "log": mpmath.log, "log1p": mpmath.log1p}[name]
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


PACKED_DOUBLE = re.compile(r"\bv?(fn?m(add|sub)\d+|mul|add|sub|div)pd\b")


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 mnemonics")
@pytest.mark.parametrize("name", FUNCTIONS)
def test_numba_loops_vectorise(name):
    numba_map(name, np.ones(8))
    loop = LOOPS[name]
    asm = loop.inspect_asm(loop.signatures[0])
    assert len(PACKED_DOUBLE.findall(asm)) > 10, f"{name}: no packed float64 arithmetic in the loop"
    assert not re.search(r"call\w*\s+\S*(exp|log)", asm), f"{name}: the loop calls a scalar libm function"


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 mnemonics")
def test_loss_kernels_vectorise():
    """The Numba element-wise block of sigmoid BCE and the row kernel of sparse softmax CE
    are SIMD code (their math is exp/log1p and lane sums). Compiled afresh: a kernel loaded
    from Numba's cache has no assembly to show."""
    from fastloss import cpu_numba
    from fastloss.losses import binary, softmax

    def fresh(math_fn, family):
        cached = cpu_numba.kernel(math_fn, family, "block")
        return numba.njit(nogil=True, error_model="numpy", fastmath=set(FASTMATH))(cached.py_func)

    block = fresh(binary.sigmoid_binary_cross_entropy, "elementwise")
    x = np.zeros(4, np.float32)
    e = np.empty(0, np.float32)
    block(x, x, x, np.empty(0), (0.0, 1.0, 0.0), 1.0, e, x.copy(), e, e)
    assert len(PACKED_DOUBLE.findall(block.inspect_asm(block.signatures[0]))) > 20
    row = fresh(softmax.sparse_softmax_cross_entropy, "rowwise")
    z = np.zeros((2, 3), np.float32)
    none = np.empty((2, 0), np.float32)
    row(z, np.zeros(2, np.intp), z, np.empty(0), np.empty(0), (0.0, 0.0, 0.0), 1.0, np.empty(0, np.float32),
        z.copy(), none, none, none)
    assert len(PACKED_DOUBLE.findall(row.inspect_asm(row.signatures[0]))) > 20


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
    """sum_exp of a row is exactly the lane order's sum of the compiled exps."""
    from fastloss.losses import softmax

    z = rng.standard_normal(width)
    sum_exp = compile_math(softmax.sum_exp)

    @numba.njit
    def run(z):
        return sum_exp(z, 0.5)

    terms = numba_map("exp", z - 0.5)
    assert run(z) == lane_order_sum(terms)


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


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 mnemonics")
@pytest.mark.parametrize("symbol", ["_block__binary__sigmoid_binary_cross_entropy", "softmax__sum_exp_into"])
def test_cython_kernels_vectorise(symbol):
    """GCC turned the loss math into SIMD code in the built extension: packed float64
    arithmetic in the element-wise block of sigmoid BCE and the row sum of exponentials."""
    functions = _disassembly(symbol)
    assert functions, f"no function {symbol} in the extension"
    for name, lines in functions.items():
        packed = sum(bool(PACKED_DOUBLE.search(line)) for line in lines)
        assert packed > 20, f"{name}: {packed} packed float64 instructions"
