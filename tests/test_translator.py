"""The Cython translator's contract (fastloss/cpu_cython/translate.py): the Cython it writes
for small portable functions, and the build errors, each naming the file and the line, for
what it does not accept. Nothing here builds the extension: the translator's folder is
loaded as a package of its own, without fastloss, as setup.py loads it."""

import ast
import ctypes
import importlib
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap
import types

import pytest

FOLDER = pathlib.Path(__file__).resolve().parent.parent / "fastloss" / "cpu_cython"


def _load(name):
    package = types.ModuleType("_fastloss_cython")
    package.__path__ = [str(FOLDER)]
    sys.modules.setdefault("_fastloss_cython", package)
    return importlib.import_module(f"_fastloss_cython.{name}")


translate = _load("translate")

#: A stand-in for fastloss/math/elementary.py: the natives the cases call, a float32 constant.
ELEMENTARY = ("math/elementary.py", """\
from .portable import native

ONE_F = single(1.0)
HALF = 0.5


@native
def single(x):
    pass


@native
def fma_single(a, b, c):
    pass


@native
def as_int64(x):
    pass


@native
def is_single(z):
    pass


@native
def lanes(value):
    pass


@native
def lane_total(acc):
    pass
""")
HEADER = """\
import math

from ..math.declare import Array, Index, Indices, Lanes, Params, Scratch
from ..math.elementary import HALF, ONE_F, as_int64, fma_single, is_single, lane_total, lanes, single
from ..math.portable import portable
"""
PATH = "fastloss/losses/case.py"


def parse(body):
    """The translator's Program of a module ``losses/case.py`` holding ``body``."""
    return translate.parse([ELEMENTARY, ("losses/case.py", HEADER + textwrap.dedent(body))], lanes=8, scratch=32)


def cython(body, name):
    fn = next(f for f in parse(body).functions if f.name == name)
    return translate.cython(fn)


def expect(text):
    """Expected Cython as a test writes it: dedented, and a line continued with a backslash
    joined with one space (Python's continuation leaves the next line's indentation)."""
    return re.sub(r"(?<=\S) {2,}", " ", textwrap.dedent(text).strip("\n"))


def test_an_element_function():
    assert cython('''
        @portable.element
        def squared(x, y, c, p):
            """Its docstring is left out."""
            r = x - y
            return r * r * p[1], 2.0 * r, 0.0, 2.0
        ''', "squared") == expect("""
        # case.squared (see its docstring there)
        cdef inline (double, double, double, double) case__squared(double x, double y, double c, const double* p) \
        noexcept nogil:
            cdef double r
            cdef double p_1 = p[1]
            r = x - y
            return (r * r * p_1, 2.0 * r, 0.0, 2.0)
        """)


def test_a_helper_with_an_array_and_integer_indices():
    assert cython("""
        @portable
        def window_max(z: Array, lo: Index, hi: Index):
            m = -math.inf
            for j in range(lo, hi):
                v = z[j] * 1.0
                m = v if v > m else m
            return m + z.shape[0]
        """, "window_max") == expect("""
        # case.window_max (see its docstring there)
        cdef inline double case__window_max(floating* z, Py_ssize_t z_n, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
            cdef Py_ssize_t j
            cdef double m, v
            m = -INFINITY
            for j in range(lo, hi):
                v = z[j] * 1.0
                m = v if v > m else m
            return m + z_n
        """)


def test_tuple_returns_and_unpacking_keep_the_elements_types():
    source = """
        @portable
        def split(z: Array, i: Index):
            return i + 1, z[i] > 0.0, z[i] * HALF

        @portable
        def use(z: Array, i: Index):
            k, positive, half = split(z, i)
            return z[k] if positive else half
        """
    assert cython(source, "split") == expect("""
        # case.split (see its docstring there)
        cdef inline (long long, bint, double) case__split(floating* z, Py_ssize_t z_n, Py_ssize_t i) noexcept nogil:
            return (i + 1, z[i] > 0.0, z[i] * elementary__HALF)
        """)
    assert cython(source, "use") == expect("""
        # case.use (see its docstring there)
        cdef inline double case__use(floating* z, Py_ssize_t z_n, Py_ssize_t i) noexcept nogil:
            cdef bint positive
            cdef double half
            cdef long long k
            k, positive, half = case__split(z, z_n, i)
            return z[k] if positive else half
        """)


def test_integer_division_has_python_semantics():
    assert cython("""
        @portable
        def wrap(i: Index, n: Index):
            return (i - 1) % n, i // n, i / n
        """, "wrap") == expect("""
        # case.wrap (see its docstring there)
        cdef inline (long long, long long, double) case__wrap(Py_ssize_t i, Py_ssize_t n) noexcept nogil:
            return (fastloss_mod(i - 1, n), fastloss_floordiv(i, n), fastloss_truediv(i, n))
        """)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_the_c_of_integer_division_is_pythons(tmp_path):
    """fastloss_mod and fastloss_floordiv, compiled, against Python: (i - 1) % n is n - 1
    at i = 0 (C's % gives -1), and the quotient rounds toward -inf."""
    source = tmp_path / "division.c"
    source.write_text("\n".join(definition for _, definition in translate.ARITHMETIC.values()) + "\n")
    library = tmp_path / "division.so"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", str(source), "-o", str(library)], check=True)
    c = ctypes.CDLL(str(library))
    for name in ("fastloss_mod", "fastloss_floordiv"):
        getattr(c, name).restype = ctypes.c_longlong
        getattr(c, name).argtypes = (ctypes.c_longlong, ctypes.c_longlong)
    i, n = 0, 5
    assert c.fastloss_mod(i - 1, n) == (i - 1) % n == 4
    for a in range(-9, 10):
        for b in (-4, -3, -1, 1, 2, 3, 64):
            assert (c.fastloss_mod(a, b), c.fastloss_floordiv(a, b)) == (a % b, a // b), (a, b)


def test_a_float32_function():
    assert cython("""
        @portable.single
        def recip_single(x):
            u = ONE_F + fma_single(x, x, ONE_F)
            return ONE_F / u
        """, "recip_single") == expect("""
        # case.recip_single (see its docstring there)
        cdef inline float case__recip_single(float x) noexcept nogil:
            cdef float u
            u = elementary__ONE_F + elementary__fma_single(x, x, elementary__ONE_F)
            return elementary__ONE_F / u
        """)


def test_natives_lane_arrays_and_is_single():
    assert cython("""
        @portable
        def exponent(x):
            return (as_int64(x) >> 52) & 2047

        @portable
        def total(z: Array):
            acc = lanes(0.0)
            for j in range(z.shape[0]):
                acc[j % 8] += z[j] * 1.0
            return single(lane_total(acc)) if is_single(z) else sum_lanes(acc)

        @portable
        def sum_lanes(acc_lanes: Lanes):
            return lane_total(acc_lanes)
        """, "total") == expect("""
        # case.total (see its docstring there)
        cdef inline double case__total(floating* z, Py_ssize_t z_n) noexcept nogil:
            cdef Py_ssize_t j, _lane
            cdef double acc[8]
            for _lane in range(8):
                acc[_lane] = 0.0
            for j in range(z_n):
                acc[fastloss_mod(j, 8)] += z[j] * 1.0
            return elementary__single(elementary__lane_total(acc)) if floating is float else case__sum_lanes(acc, 8)
        """)


def test_a_row_function_and_its_narrow_rows():
    program = parse("""
        @portable
        def pick(z: Array, j: Index, p: Params):
            return z[j] * p[0]

        @portable.row
        def picked(x, label: Index, v, c, gx, gy, gv, h, gs, p):
            return pick(x, label, p)

        @portable.rows
        def picked_rows(x, labels: Indices, c, gx, h, gs, p, loss):
            for r in range(loss.shape[0]):
                loss[r] = x[labels[r]]
        """)
    pick, row, rows = program.functions[-3:]
    assert (row.kind, rows.kind) == ("row", "rows")
    assert row.c_params() == ("floating* x, Py_ssize_t x_n, Py_ssize_t label, floating* v, Py_ssize_t v_n, "
                              "double* c, Py_ssize_t c_n, floating* gx, Py_ssize_t gx_n, "
                              "floating* gy, Py_ssize_t gy_n, floating* gv, Py_ssize_t gv_n, "
                              "floating* h, Py_ssize_t h_n, double gs, const double* p")
    assert "case__pick(x, x_n, label, p)" in translate.cython(row)
    assert translate.cython(rows).splitlines()[1].startswith(
        "cdef inline void case__picked_rows(floating* x, Py_ssize_t x_n, Py_ssize_t* labels, Py_ssize_t labels_n, "
        "double* c,")


def _line(body, marker="# <-"):
    """The line of ``fastloss/losses/case.py`` that holds ``marker`` in ``body``."""
    text = HEADER + textwrap.dedent(body)
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


REJECTED_SYNTAX = {
    "while-else": """
        @portable
        def f(x):
            while x > 0.0:  # <-
                x = x - 1.0
            else:
                x = 0.0
            return x
        """,
    "list comprehension": """
        @portable
        def f(x):
            y = [x for _ in range(3)]  # <-
            return x
        """,
    "try": """
        @portable
        def f(x):
            try:  # <-
                x = 1.0 / x
            except ZeroDivisionError:
                x = 0.0
            return x
        """,
    "string": """
        @portable
        def f(x):
            s = "a"  # <-
            return x
        """,
    "unknown function": """
        @portable
        def f(x):
            return foo(x)  # <-
        """,
    "lambda": """
        @portable
        def f(x):
            g = lambda t: t  # <-
            return x
        """,
    "for-else": """
        @portable
        def f(z: Array):
            for j in range(3):  # <-
                z[j] = 0.0
            else:
                z[0] = 1.0
        """,
    "loop over a list": """
        @portable
        def f(x):
            for t in (1.0, 2.0):  # <-
                x = x + t
            return x
        """,
    "keyword argument": """
        @portable
        def g(x):
            return x

        @portable
        def f(x):
            return g(x=x)  # <-
        """,
    "slice": """
        @portable
        def f(z: Array):
            return z[1:3]  # <-
        """,
    "f-string": """
        @portable
        def f(x):
            t = f"{x}"  # <-
            return x
        """,
    "modulo in place": """
        @portable
        def f(i: Index, n: Index):
            i %= n  # <-
            return i
        """,
}


@pytest.mark.parametrize("case", sorted(REJECTED_SYNTAX))
def test_unsupported_syntax_is_a_build_error_at_its_line(case):
    body = REJECTED_SYNTAX[case]
    with pytest.raises(translate.TranslationError) as error:
        parse(body)
    assert str(error.value).startswith(f"{PATH}:{_line(body)}: ")
    assert "is not supported by the Cython translator" in str(error.value)


REJECTED_TYPES = {
    "undeclared array": ("""
        @portable
        def f(z, i: Index):
            return z[i]  # <-
        """, "the parameter is not declared an array: declare it (z: Array"),
    "undeclared length": ("""
        @portable
        def f(z):
            return z.shape[0]  # <-
        """, "the parameter is not declared an array"),
    "undeclared index": ("""
        @portable
        def f(z: Array, i):
            return z[i]  # <-
        """, "is not integer arithmetic: declare i: Index"),
    "undeclared range bound": ("""
        @portable
        def f(z: Array, n):
            for j in range(n):  # <-
                z[j] = 0.0
        """, "declare n: Index"),
    "undeclared array argument": ("""
        @portable
        def g(z: Array):
            return z[0]

        @portable
        def f(z):
            return g(z)  # <-
        """, "g takes an array (Array) as z, and `z` is a float (declare z: Array)"),
    "float modulo": ("""
        @portable
        def f(x):
            return x % 2.0  # <-
        """, "`%` of floats"),
    "float floor division": ("""
        @portable
        def f(x, n: Index):
            return x // n  # <-
        """, "`//` of floats"),
    "integer power": ("""
        @portable
        def f(i: Index):
            return i ** 2  # <-
        """, "`**` of integers"),
    "integer made a float in place": ("""
        @portable
        def f(z: Array):
            k = 0
            for j in range(z.shape[0]):
                k += z[j]  # <-
            return k
        """, "`k += z[j]` makes the integer k a float in Python"),
    "assigning an array": ("""
        @portable
        def f(z: Array, x):
            z = x  # <-
            return x
        """, "assigning the parameter z (an array (Array))"),
    "float literal in float32": ("""
        @portable.single
        def f_single(x):
            return x * 2.0  # <-
        """, "the float literal 2.0 in a float32 function"),
    "float64 constant in float32": ("""
        @portable.single
        def f_single(x):
            return x * HALF  # <-
        """, "the float64 constant HALF"),
    "row arity": ("""
        @portable.row
        def f(x, y, p):  # <-
            return 0.0
        """, "a row function takes 10 parameters"),
    "element declaration": ("""
        @portable.element
        def f(x, y: Index, c, p):  # <-
            return x, y, 0.0, 0.0
        """, "the element convention (x, y, c, p) fixes the type of y"),
    "element returns": ("""
        @portable.element
        def f(x, y, c, p):
            return x, y  # <-
        """, "an element function returns 4"),
    "unknown annotation": ("""
        @portable
        def f(x: float):  # <-
            return x
        """, "the annotation `float` of x is not supported"),
    "unpacking arity": ("""
        @portable
        def g(x):
            return x, x

        @portable
        def f(x):
            a, b, c = g(x)  # <-
            return a
        """, "3 names unpacked from `g(x)`, which returns 2 values"),
    "scratch as lanes": ("""
        @portable
        def g(acc_lanes: Lanes):
            return lane_total(acc_lanes)

        @portable
        def f(buf_scratch: Scratch):
            return g(buf_scratch)  # <-
        """, "g takes a lane array (Lanes) as acc_lanes, and `buf_scratch` is a scratch buffer"),
}


@pytest.mark.parametrize("case", sorted(REJECTED_TYPES))
def test_undeclared_or_mistyped_is_a_build_error_at_its_line(case):
    body, message = REJECTED_TYPES[case]
    with pytest.raises(translate.TranslationError) as error:
        parse(body)
    assert str(error.value).startswith(f"{PATH}:{_line(body)}: ")
    assert message in str(error.value)


def test_the_markers_are_those_of_fastloss_math_declare():
    declare = ast.parse((FOLDER.parent / "math" / "declare.py").read_text())
    classes = {s.name for s in declare.body if isinstance(s, ast.ClassDef)}
    assert classes == set(translate.functions.MARKERS)


def test_the_translator_imports_neither_fastloss_nor_numba():
    code = ("import importlib, sys, types; p = types.ModuleType('_fastloss_cython'); "
            f"p.__path__ = [{str(FOLDER)!r}]; sys.modules['_fastloss_cython'] = p; "
            "importlib.import_module('_fastloss_cython.generate'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastloss', 'numba', 'numpy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"


def test_the_portable_math_translates():
    """Every loss and helper of the package passes the checks (what setup.py runs)."""
    generate = _load("generate")
    program = generate.parse()
    kinds = {f.name: f.kind for f in program.functions}
    assert kinds["squared_error"] == "element" and kinds["softmax_cross_entropy"] == "row"
    assert kinds["softmax_cross_entropy_rows"] == "rows" and kinds["log_single"] == "single"


def test_the_decorators_declare_the_kind_and_check_the_arity():
    import numpy as np

    from fastloss.losses import cross_entropy, regression
    from fastloss.math import online_softmax
    from fastloss.math.portable import portable

    assert regression.huber.kind == "element" and cross_entropy.softmax_cross_entropy.kind == "row"
    assert online_softmax.block_max.kind == "helper" and cross_entropy.softmax_cross_entropy_rows.inline is False
    assert online_softmax.block_max(np.array([1.0, 3.0, 2.0]), 0, 3) == 3.0  # still plain Python
    with pytest.raises(TypeError, match="a row function takes 10 parameters"):
        portable.row(lambda x, y: 0.0)
