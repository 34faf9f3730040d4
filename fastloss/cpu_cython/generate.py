"""Generate the Cython backend from the one source of the loss math.

``setup.py`` runs this before Cython: it reads ``fastloss/math/primitives.py`` and
``fastloss/losses/*.py`` as text (nothing is imported, so the build needs neither Numba
nor fastloss) and writes two build products beside this file, not committed:
``_primitives.pxd``, the stable scalar primitives as ``cdef inline ... noexcept nogil``
functions, and ``_kernels.pyx``, which cimports them and holds each loss's math, its
block kernel and chunked (OpenMP ``prange``) driver from the family templates below, and
a ``def`` entry point that the Python layer calls.

The portable math is a small subset of Python, and the translation is mechanical:

* a parameter that is indexed or has ``.shape`` is an array, passed as a pointer and a
  length (``z.shape[0]`` becomes ``z_n``); a parameter used as an index is an integer;
  ``p`` is the options (``const double*``); every other value is a C double;
* the array parameters of a loss's math follow the conventions of
  :mod:`fastloss.losses`: arrays of the input dtype (the fused type ``floating``), except
  the per-class array ``c`` of a row function, which is ``double``;
* tuple returns become C tuples; ``math.f`` becomes libc's ``f``; ``x ** y`` ``pow``.

Usage: ``python fastloss/cpu_cython/generate.py`` (setup.py calls :func:`write`).
"""

import ast
import hashlib
import math
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parent.parent
MODULES = (
    "math/primitives.py",
    "losses/regression.py",
    "losses/binary.py",
    "losses/generative.py",
    "losses/softmax.py",
    "losses/embedding.py",
)
ROW_PARAMS = 10  # x, y, v, c, gx, gy, gv, h, gs, p
ELEMENT_PARAMS = 4  # x, y, c, p
LIBC = {"exp", "log", "log1p", "expm1", "sqrt", "sinh", "tanh", "hypot"}


def source_hash():
    """sha256 of the portable sources the extension is generated from."""
    h = hashlib.sha256()
    for rel in MODULES:
        h.update(rel.encode())
        h.update((PACKAGE / rel).read_bytes())
    return h.hexdigest()


class Function:
    """One portable function: its source, where it lives and the C types of its parts."""

    def __init__(self, module, node, resolve):
        self.module = module
        self.node = node
        self.name = node.name
        self.cname = f"{module}__{node.name}"
        self.resolve = resolve  # local name -> Function (filled in after parsing)
        self.params = [a.arg for a in node.args.args]
        self.kind = self._kind()
        self.types = self._param_types()
        self.returns = self._return_arity()

    def _kind(self):
        if self.module != "primitives" and len(self.params) == ROW_PARAMS:
            return "row"
        if self.module != "primitives" and len(self.params) == ELEMENT_PARAMS and self.params[-1] == "p":
            return "element"
        return "helper"

    def _usage(self):
        arrays, indices = set(), set()
        for n in ast.walk(self.node):
            if isinstance(n, ast.Attribute) and n.attr == "shape" and isinstance(n.value, ast.Name):
                arrays.add(n.value.id)
            if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name):
                arrays.add(n.value.id)
                if isinstance(n.slice, ast.Name):
                    indices.add(n.slice.id)
        return arrays, indices

    def _param_types(self):
        """param -> "floating*", "double*", "index", "params" or "double"."""
        arrays, indices = self._usage()
        types = {}
        for i, name in enumerate(self.params):
            if name == "p" and self.kind != "helper":
                types[name] = "params"
            elif self.kind == "row":
                if i == 1 and name in indices:
                    types[name] = "index"
                elif i == 3:
                    types[name] = "double*"
                elif i == 8:
                    types[name] = "double"
                else:
                    types[name] = "floating*"
            elif name in indices:
                types[name] = "index"
            elif name in arrays:
                types[name] = "floating*"
            else:
                types[name] = "double"
        return types

    def _return_arity(self):
        arity = {len(r.value.elts) if isinstance(r.value, ast.Tuple) else 1
                 for r in ast.walk(self.node) if isinstance(r, ast.Return)}
        assert len(arity) == 1, f"{self.cname}: returns of different arities"
        return arity.pop()

    def c_return(self):
        return "double" if self.returns == 1 else "(" + ", ".join(["double"] * self.returns) + ")"

    def c_params(self):
        out = []
        for name in self.params:
            t = self.types[name]
            if t in ("floating*", "double*"):
                out += [f"{t} {name}", f"Py_ssize_t {name}_n"]
            elif t == "index":
                out.append(f"Py_ssize_t {name}")
            elif t == "params":
                out.append(f"const double* {name}")
            else:
                out.append(f"double {name}")
        return ", ".join(out)

    def _local_types(self):
        types = {}

        def note(name, t):
            if name in self.params:
                return
            old = types.get(name)
            types[name] = t if old in (None, t) else "double"

        for n in ast.walk(self.node):
            if isinstance(n, ast.For):
                note(n.target.id, "Py_ssize_t")
            elif isinstance(n, ast.Assign):
                for target in n.targets:
                    if isinstance(target, ast.Subscript):
                        continue
                    if isinstance(target, ast.Tuple):
                        for e in target.elts:
                            note(e.id, "double")
                    elif isinstance(n.value, (ast.Compare, ast.BoolOp)) or (
                        isinstance(n.value, ast.UnaryOp) and isinstance(n.value.op, ast.Not)
                    ):
                        note(target.id, "bint")
                    elif isinstance(n.value, ast.Subscript) and isinstance(n.value.value, ast.Attribute) \
                            and n.value.value.attr == "shape":
                        note(target.id, "Py_ssize_t")
                    else:
                        note(target.id, "double")
        return types

    def cython(self):
        lines = [f"cdef inline {self.c_return()} {self.cname}({self.c_params()}) noexcept nogil:"]
        lines.insert(0, f"# {self.module}.{self.name} (see its docstring there)")
        by_type = {}
        for name, t in sorted(self._local_types().items()):
            by_type.setdefault(t, []).append(name)
        for t, names in sorted(by_type.items()):
            lines.append(f"    cdef {t} {', '.join(names)}")
        body = [s for s in self.node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
        translator = Translator(self)
        for stmt in body:
            code = ast.unparse(translator.visit(stmt))
            lines += ["    " + line for line in code.splitlines()]
        return "\n".join(lines)


class Translator(ast.NodeTransformer):
    """Rewrites a portable function's statements into Cython."""

    def __init__(self, fn):
        self.fn = fn

    def visit_Attribute(self, node):
        self.generic_visit(node)
        if isinstance(node.value, ast.Name) and node.value.id == "math":
            if node.attr == "inf":
                return ast.Name("INFINITY")
            assert node.attr in LIBC, f"{self.fn.cname}: math.{node.attr} is not mapped"
            return ast.Name(node.attr)
        return node

    def visit_Subscript(self, node):
        # x.shape[0] -> x_n
        if isinstance(node.value, ast.Attribute) and node.value.attr == "shape":
            return ast.Name(f"{node.value.value.id}_n")
        self.generic_visit(node)
        return node

    def visit_Name(self, node):
        target = self.fn.resolve.get(node.id)
        if isinstance(target, str):  # a module constant
            return ast.Name(target)
        return node

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Pow):
            return ast.Call(ast.Name("pow"), [node.left, node.right], [])
        return node

    def visit_Call(self, node):
        func = node.func
        if isinstance(func, ast.Name) and func.id == "abs":
            self.generic_visit(node)
            return ast.Call(ast.Name("fabs"), node.args, [])
        if isinstance(func, ast.Name) and func.id in self.fn.resolve and \
                isinstance(self.fn.resolve[func.id], Function):
            callee = self.fn.resolve[func.id]
            args = []
            for arg, pname in zip(node.args, callee.params):
                arg = self.visit(arg)
                args.append(arg)
                if callee.types[pname] in ("floating*", "double*"):
                    assert isinstance(arg, ast.Name), f"{self.fn.cname}: array argument must be a name"
                    args.append(ast.Name(f"{arg.id}_n"))
            return ast.Call(ast.Name(callee.cname), args, [])
        self.generic_visit(node)
        return node


def parse():
    """Every portable function, in dependency order, and the module constants."""
    functions, constants = [], []
    tables = {}
    for rel in MODULES:
        module = pathlib.Path(rel).stem
        tree = ast.parse((PACKAGE / rel).read_text())
        table = tables.setdefault(module, {})
        for stmt in tree.body:
            if isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.module.endswith("primitives"):
                for alias in stmt.names:
                    table[alias.asname or alias.name] = ("primitives", alias.name)
            elif isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
                cname = f"{module}__{stmt.targets[0].id}"
                constants.append((cname, stmt.value))
                table[stmt.targets[0].id] = cname
            elif isinstance(stmt, ast.FunctionDef) and any(
                isinstance(d, ast.Name) and d.id == "portable" for d in stmt.decorator_list
            ):
                fn = Function(module, stmt, table)
                functions.append(fn)
                table[stmt.name] = fn
    by_key = {(f.module, f.name): f for f in functions}
    for table in tables.values():
        for local, target in list(table.items()):
            if isinstance(target, tuple):
                table[local] = by_key[target]
    return functions, constants


PRIMITIVES_HEADER = '''\
# cython: language_level=3
# Generated by fastloss/cpu_cython/generate.py from fastloss/math/primitives.py: the stable
# scalar primitives every loss is written with. Do not edit: edit the portable source.

from libc.math cimport INFINITY, exp, expm1, fabs, hypot, log, log1p, pow, sinh, sqrt, tanh
'''

HEADER = '''\
# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=True, cpow=True, infer_types=False
# Generated by fastloss/cpu_cython/generate.py from fastloss/losses/*.py. Do not edit: edit
# the portable math and rebuild.

from cython.parallel cimport prange
from libc.math cimport INFINITY, exp, expm1, fabs, hypot, log, log1p, pow, sinh, sqrt, tanh
from libc.stdlib cimport free, malloc

cimport numpy as cnp

from fastloss.cpu_cython._primitives cimport *

cnp.import_array()

ctypedef fused floating:
    float
    double

cdef extern from *:
    """
    #ifdef _OPENMP
    #define FASTLOSS_OPENMP 1
    #else
    #define FASTLOSS_OPENMP 0
    #endif
    """
    int FASTLOSS_OPENMP

#: Whether the extension was built with OpenMP (else ``prange`` runs serially).
OPENMP = bool(FASTLOSS_OPENMP)
#: The hash of the portable sources this extension was generated from.
SOURCE_HASH = "{source_hash}"

cdef enum:
    MAX_PARAMS = 8


cdef void _params(tuple params, double* out) except *:
    cdef Py_ssize_t i
    if len(params) > MAX_PARAMS:
        raise ValueError("too many options")
    for i in range(len(params)):
        out[i] = params[i]


cdef inline double* _f64(cnp.ndarray a) noexcept nogil:
    return <double*> cnp.PyArray_DATA(a)


cdef inline Py_ssize_t* _idx(cnp.ndarray a) noexcept nogil:
    return <Py_ssize_t*> cnp.PyArray_DATA(a)
'''

ELEMENT_TEMPLATE = '''
cdef double _block__{cname}(floating* x, floating* y, double* c, bint has_c, Py_ssize_t n,
                           double* w, bint has_w, const double* p, double scale,
                           floating* loss_out, bint keep_loss, floating* gx, bint want_gx,
                           floating* gy, bint want_gy, floating* h, bint want_h) noexcept nogil:
    cdef Py_ssize_t i
    cdef double total = 0.0
    cdef double loss, dx, dy, d2, wi, g
    for i in range(n):
        loss, dx, dy, d2 = {cname}(<double> x[i], <double> y[i], c[i] if has_c else 0.0, p)
        wi = w[i] if has_w else 1.0
        if has_w:
            loss = loss * wi
        total += loss
        if keep_loss:
            loss_out[i] = <floating> loss
        g = scale * wi
        if want_gx:
            gx[i] = <floating> (g * dx)
        if want_gy:
            gy[i] = <floating> (g * dy)
        if want_h:
            h[i] = <floating> (g * d2)
    return total


cdef inline double _chunk__{cname}(Py_ssize_t k, Py_ssize_t chunk, floating* x, floating* y, double* c,
                                   bint has_c, Py_ssize_t n, double* w, bint has_w, const double* p,
                                   double scale, floating* loss_out, bint keep_loss, floating* gx, bint want_gx,
                                   floating* gy, bint want_gy, floating* h, bint want_h) noexcept nogil:
    cdef Py_ssize_t lo = k * chunk
    cdef Py_ssize_t hi = min(n, lo + chunk)
    return _block__{cname}(
        x + lo, y + lo, c + (lo if has_c else 0), has_c, hi - lo, w + (lo if has_w else 0), has_w,
        p, scale, loss_out + (lo if keep_loss else 0), keep_loss, gx + (lo if want_gx else 0), want_gx,
        gy + (lo if want_gy else 0), want_gy, h + (lo if want_h else 0), want_h)


cdef double _chunked__{cname}(floating* x, floating* y, double* c, bint has_c, Py_ssize_t n,
                             double* w, bint has_w, const double* p, double scale,
                             floating* loss_out, bint keep_loss, floating* gx, bint want_gx,
                             floating* gy, bint want_gy, floating* h, bint want_h,
                             Py_ssize_t chunk, int threads) noexcept nogil:
    cdef Py_ssize_t n_chunks = (n + chunk - 1) // chunk
    cdef Py_ssize_t k
    cdef double total = 0.0
    cdef double* partial
    if n_chunks <= 1:
        return _block__{cname}(x, y, c, has_c, n, w, has_w, p, scale, loss_out, keep_loss,
                               gx, want_gx, gy, want_gy, h, want_h)
    partial = <double*> malloc(n_chunks * sizeof(double))
    if threads > 1:
        for k in prange(n_chunks, schedule="static", num_threads=threads):
            partial[k] = _chunk__{cname}(k, chunk, x, y, c, has_c, n, w, has_w, p, scale, loss_out, keep_loss,
                                         gx, want_gx, gy, want_gy, h, want_h)
    else:  # never enters OpenMP (a forked child of a process that used it must not)
        for k in range(n_chunks):
            partial[k] = _chunk__{cname}(k, chunk, x, y, c, has_c, n, w, has_w, p, scale, loss_out, keep_loss,
                                         gx, want_gx, gy, want_gy, h, want_h)
    for k in range(n_chunks):
        total += partial[k]
    free(partial)
    return total


def run__{cname}(cnp.ndarray x, cnp.ndarray y, c, cnp.ndarray w, tuple params, double scale,
            cnp.ndarray loss_out, cnp.ndarray gx, cnp.ndarray gy, cnp.ndarray h,
            Py_ssize_t chunk, int threads):
    """Element-wise kernel of {name}; returns the weighted loss sum."""
    cdef double pbuf[MAX_PARAMS]
    cdef double total
    cdef double* cp = NULL
    cdef bint has_c = c is not None
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x)
    _params(params, pbuf)
    if has_c:
        cp = _f64(c)
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT32:
        with nogil:
            {call_float}
    else:
        with nogil:
            {call_double}
    return total
'''

ROW_TEMPLATE = '''
cdef double _block__{cname}(floating* x, {ytype} y, floating* v, Py_ssize_t rows, Py_ssize_t width,
                           double* c, Py_ssize_t c_n, double* w, bint has_w, const double* p,
                           double scale, floating* loss_out, bint keep_loss,
                           floating* gx, Py_ssize_t gx_w, floating* gy, Py_ssize_t gy_w,
                           floating* gv, Py_ssize_t gv_w, floating* h, Py_ssize_t h_w) noexcept nogil:
    cdef Py_ssize_t i
    cdef double total = 0.0
    cdef double loss, wi
    for i in range(rows):
        wi = w[i] if has_w else 1.0
        loss = {cname}(x + i * width, width, {yrow}, v + i * width, width, c, c_n,
                       gx + i * gx_w, gx_w, gy + i * gy_w, gy_w, gv + i * gv_w, gv_w,
                       h + i * h_w, h_w, scale * wi, p)
        if has_w:
            loss = loss * wi
        total += loss
        if keep_loss:
            loss_out[i] = <floating> loss
    return total


cdef inline double _chunk__{cname}(Py_ssize_t k, Py_ssize_t chunk, floating* x, {ytype} y, floating* v,
                                   Py_ssize_t rows, Py_ssize_t width, double* c, Py_ssize_t c_n, double* w,
                                   bint has_w, const double* p, double scale, floating* loss_out, bint keep_loss,
                                   floating* gx, Py_ssize_t gx_w, floating* gy, Py_ssize_t gy_w,
                                   floating* gv, Py_ssize_t gv_w, floating* h, Py_ssize_t h_w) noexcept nogil:
    cdef Py_ssize_t lo = k * chunk
    cdef Py_ssize_t hi = min(rows, lo + chunk)
    return _block__{cname}(
        x + lo * width, y + lo * {ystride}, v + lo * width, hi - lo, width, c, c_n,
        w + (lo if has_w else 0), has_w, p, scale, loss_out + (lo if keep_loss else 0), keep_loss,
        gx + lo * gx_w, gx_w, gy + lo * gy_w, gy_w, gv + lo * gv_w, gv_w, h + lo * h_w, h_w)


cdef double _chunked__{cname}(floating* x, {ytype} y, floating* v, Py_ssize_t rows, Py_ssize_t width,
                             double* c, Py_ssize_t c_n, double* w, bint has_w, const double* p,
                             double scale, floating* loss_out, bint keep_loss,
                             floating* gx, Py_ssize_t gx_w, floating* gy, Py_ssize_t gy_w,
                             floating* gv, Py_ssize_t gv_w, floating* h, Py_ssize_t h_w,
                             Py_ssize_t chunk, int threads) noexcept nogil:
    cdef Py_ssize_t n_chunks = (rows + chunk - 1) // chunk
    cdef Py_ssize_t k
    cdef double total = 0.0
    cdef double* partial
    if n_chunks <= 1:
        return _block__{cname}(x, y, v, rows, width, c, c_n, w, has_w, p, scale, loss_out, keep_loss,
                               gx, gx_w, gy, gy_w, gv, gv_w, h, h_w)
    partial = <double*> malloc(n_chunks * sizeof(double))
    if threads > 1:
        for k in prange(n_chunks, schedule="static", num_threads=threads):
            partial[k] = _chunk__{cname}(k, chunk, x, y, v, rows, width, c, c_n, w, has_w, p, scale, loss_out,
                                         keep_loss, gx, gx_w, gy, gy_w, gv, gv_w, h, h_w)
    else:  # never enters OpenMP (a forked child of a process that used it must not)
        for k in range(n_chunks):
            partial[k] = _chunk__{cname}(k, chunk, x, y, v, rows, width, c, c_n, w, has_w, p, scale, loss_out,
                                         keep_loss, gx, gx_w, gy, gy_w, gv, gv_w, h, h_w)
    for k in range(n_chunks):
        total += partial[k]
    free(partial)
    return total


def run__{cname}(cnp.ndarray x, cnp.ndarray y, cnp.ndarray v, c, cnp.ndarray w, tuple params,
            double scale, cnp.ndarray loss_out, cnp.ndarray gx, cnp.ndarray gy, cnp.ndarray gv,
            cnp.ndarray h, Py_ssize_t chunk, int threads):
    """Row-wise kernel of {name}; returns the weighted loss sum."""
    cdef double pbuf[MAX_PARAMS]
    cdef double total
    cdef double* cp = NULL
    cdef Py_ssize_t c_n = 0
    cdef Py_ssize_t rows = cnp.PyArray_DIM(x, 0)
    cdef Py_ssize_t width = cnp.PyArray_DIM(x, 1)
    _params(params, pbuf)
    if c is not None:
        cp = _f64(c)
        c_n = cnp.PyArray_SIZE(c)
    if cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT32:
        with nogil:
            {call_float}
    else:
        with nogil:
            {call_double}
    return total
'''


ELEMENT_CALL = """total = _chunked__{cname}[{T}](
                <{T}*> cnp.PyArray_DATA(x), <{T}*> cnp.PyArray_DATA(y), cp, has_c, n,
                _f64(w), cnp.PyArray_SIZE(w) != 0, pbuf, scale,
                <{T}*> cnp.PyArray_DATA(loss_out), cnp.PyArray_SIZE(loss_out) != 0,
                <{T}*> cnp.PyArray_DATA(gx), cnp.PyArray_SIZE(gx) != 0,
                <{T}*> cnp.PyArray_DATA(gy), cnp.PyArray_SIZE(gy) != 0,
                <{T}*> cnp.PyArray_DATA(h), cnp.PyArray_SIZE(h) != 0, chunk, threads)"""

ROW_CALL = """total = _chunked__{cname}[{T}](
                <{T}*> cnp.PyArray_DATA(x), {ycast}, <{T}*> cnp.PyArray_DATA(v), rows, width,
                cp, c_n, _f64(w), cnp.PyArray_SIZE(w) != 0, pbuf, scale,
                <{T}*> cnp.PyArray_DATA(loss_out), cnp.PyArray_SIZE(loss_out) != 0,
                <{T}*> cnp.PyArray_DATA(gx), cnp.PyArray_DIM(gx, 1),
                <{T}*> cnp.PyArray_DATA(gy), cnp.PyArray_DIM(gy, 1),
                <{T}*> cnp.PyArray_DATA(gv), cnp.PyArray_DIM(gv, 1),
                <{T}*> cnp.PyArray_DATA(h), cnp.PyArray_DIM(h, 1), chunk, threads)"""


def driver(fn):
    """The block kernel, chunked driver and entry point of one loss's math."""
    name = f"{fn.module}.{fn.name}"
    if fn.kind == "element":
        calls = {f"call_{t}": ELEMENT_CALL.format(cname=fn.cname, T=t) for t in ("float", "double")}
        return ELEMENT_TEMPLATE.format(cname=fn.cname, name=name, **calls)
    sparse = fn.types[fn.params[1]] == "index"
    calls = {
        f"call_{t}": ROW_CALL.format(cname=fn.cname, T=t, ycast="_idx(y)" if sparse else f"<{t}*> cnp.PyArray_DATA(y)")
        for t in ("float", "double")
    }
    return ROW_TEMPLATE.format(
        cname=fn.cname, name=name,
        ytype="Py_ssize_t*" if sparse else "floating*",
        yrow="y[i]" if sparse else "y + i * width, width",
        ystride="1" if sparse else "width",
        **calls,
    )


def _constant(cname, value):
    """A module constant as a C macro of its value (exact: repr round-trips a double)."""
    number = eval(compile(ast.Expression(value), cname, "eval"), {"math": math})  # constants only
    return f'cdef extern from *:\n    """\n    #define {cname} {float(number)!r}\n    """\n    double {cname}\n'


def generate():
    """(the primitives' .pxd, the kernels' .pyx) as text."""
    functions, constants = parse()
    primitives = [PRIMITIVES_HEADER]
    primitives += [_constant(cname, value) for cname, value in constants if cname.startswith("primitives__")]
    kernels = [HEADER.replace("{source_hash}", source_hash())]
    kernels += [_constant(cname, value) for cname, value in constants if not cname.startswith("primitives__")]
    for fn in functions:
        (primitives if fn.module == "primitives" else kernels).append("\n" + fn.cython() + "\n")
    for fn in functions:
        if fn.kind in ("element", "row"):
            kernels.append(driver(fn))
    return "\n".join(primitives), "\n".join(kernels)


def write(folder=None):
    """Write the generated sources (only where they changed, so builds stay incremental);
    returns the path of the ``.pyx``."""
    folder = pathlib.Path(folder or pathlib.Path(__file__).parent)
    for name, text in zip(("_primitives.pxd", "_kernels.pyx"), generate()):
        path = folder / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return folder / "_kernels.pyx"


if __name__ == "__main__":
    print(write())
