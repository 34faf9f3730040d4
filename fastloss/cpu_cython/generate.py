"""Generate the Cython backend from the one source of the loss math.

``setup.py`` runs this before Cython: it reads ``fastloss/math/{elementary,primitives}.py`` and
``fastloss/losses/*.py`` as text (nothing is imported, so the build needs neither Numba
nor fastloss) and writes two build products beside this file, not committed:
``_primitives.pxd``, the stable scalar primitives as ``cdef inline ... noexcept nogil``
functions, and ``_kernels.pyx``, which cimports them and holds each loss's math, its
block kernel and chunked (OpenMP ``prange``) driver from the family templates below, and
a ``def`` entry point that the Python layer calls.

The portable math is a small subset of Python, and the translation is mechanical:

* ``@native`` functions (the bit casts of :mod:`fastloss.math.elementary`) become the C
  functions of ``NATIVES``; ``@portable(cuda=...)`` overrides concern other targets only
  (a portable function named there, such as ``device_pow_nonneg``, is not translated);
* a local is a C ``long long`` where its value is integer arithmetic (bit casts, shifts,
  integer constants), else a double (or a ``bint`` for a comparison);
* a parameter that is indexed or has ``.shape`` is an array, passed as a pointer and a
  length (``z.shape[0]`` becomes ``z_n``); a parameter used in an index or a ``range`` is
  an integer; a helper's parameter named ``*_lanes`` or ``*_scratch`` is a caller's
  local lane array or scratch buffer (``double*``, passed with its length);
  ``p`` is the options (``const double*``); every other value is a C double;
* the array parameters of a loss's math follow the conventions of
  :mod:`fastloss.losses`: arrays of the input dtype (the fused type ``floating``), except
  the per-class array ``c`` of a row function, which is ``double``;
* tuple returns (or returns of a call to a tuple-returning function of the same module
  defined above) become C tuples, a function without ``return`` a ``void`` one, and one
  that returns integer arithmetic a ``long long`` one;
* a function named ``*_single`` computes in float32: its scalar parameters, its return
  value and its float locals are C ``float``; it may name no float literal and no float64
  constant (its constants are module constants ``single(...)``, C ``float`` macros), so
  that C, Numba and Python all round every operation to float32; ``is_single(z)`` is
  Cython's compile-time ``floating is float``;
  ``math.f`` becomes libc's ``f``; ``x ** y`` ``pow``.

Usage: ``python fastloss/cpu_cython/generate.py`` (setup.py calls :func:`write`).
"""

import ast
import importlib.util
import math
import pathlib
import struct

PACKAGE = pathlib.Path(__file__).resolve().parent.parent
# fastloss/_sources.py, loaded by its path (the build imports no fastloss): the math
# modules, in order, and their hash.
_SOURCES = importlib.util.spec_from_file_location("_fastloss_sources", PACKAGE / "_sources.py")
_sources = importlib.util.module_from_spec(_SOURCES)
_SOURCES.loader.exec_module(_sources)
MODULES = _sources.MODULES
source_hash = _sources.source_hash
ROW_PARAMS = 10  # x, y, v, c, gx, gy, gv, h, gs, p
ROWS_SUFFIX = "_rows"  # f_rows: the row function f over a tile of narrow rows side by side
#: (x, y, c, gx, h, gs, p, loss); y is integer labels where it is named ``labels``.
ROWS_TYPES = ("floating*", "floating*", "double*", "floating*", "floating*", "double*", "params", "double*")
ELEMENT_PARAMS = 4  # x, y, c, p
LIBC = {"sqrt"}  # what math.f may name: every other function is our own (math/elementary.py)
SCALAR_MODULES = ("elementary", "reductions", "primitives")  # helpers only; they go to the .pxd
NATIVES = {  # name -> (C return type, C definition); ``lanes`` is a local array, see Function
    "as_int64": ("long long", "long long {c}(double x) {{ long long i; memcpy(&i, &x, 8); return i; }}"),
    "as_float64": ("double", "double {c}(long long i) {{ double x; memcpy(&x, &i, 8); return x; }}"),
    "fma": ("double", "double {c}(double a, double b, double c) {{ return fma(a, b, c); }}"),
    "single": ("float", "float {c}(double x) {{ return (float)x; }}"),
    "fma_single": ("float", "float {c}(float a, float b, float c) {{ return fmaf(a, b, c); }}"),
    "as_int32": ("long long", "long long {c}(float x) {{ int i; memcpy(&i, &x, 4); return i; }}"),
    "as_float32": ("float", "float {c}(long long i) {{ unsigned int u = (unsigned int)i; float x; "
                            "memcpy(&x, &u, 4); return x; }}"),
    "is_single": ("bint", None),  # ``floating is float``: see Translator.visit_Call
    "lanes": ("double[]", None),
    "scratch": ("double[]", None),
    "lane_total": ("double", "double {c}(double* acc) {{ for (long w = {lanes} / 2; w > 0; w /= 2) "
                             "for (long l = 0; l < w; l++) acc[l] += acc[l + w]; return acc[0]; }}"),
    "lane_max": ("double", "double {c}(double* acc) {{ for (long w = {lanes} / 2; w > 0; w /= 2) "
                           "for (long l = 0; l < w; l++) acc[l] = acc[l + w] > acc[l] ? acc[l + w] : acc[l]; "
                           "return acc[0]; }}"),
}


class Function:
    """One portable function: its source, where it lives and the C types of its parts."""

    def __init__(self, module, node, resolve):
        self.module = module
        self.node = node
        self.name = node.name
        self.cname = f"{module}__{node.name}"
        self.resolve = resolve  # local name -> Function (filled in after parsing)
        self.params = [a.arg for a in node.args.args]
        self.single = node.name.endswith(SINGLE_SUFFIX)
        self.kind = self._kind()
        self.types = self._param_types()
        self.returns = self._return_arity()
        self._locals = None
        self._integer_return = None

    def _kind(self):
        if self.module not in SCALAR_MODULES and self.name.endswith(ROWS_SUFFIX):
            return "rows"
        if self.module not in SCALAR_MODULES and len(self.params) == ROW_PARAMS:
            return "row"
        if self.module not in SCALAR_MODULES and len(self.params) == ELEMENT_PARAMS and self.params[-1] == "p":
            return "element"
        return "helper"

    def _usage(self):
        arrays, indices = set(), set()
        for n in ast.walk(self.node):
            if isinstance(n, ast.Attribute) and n.attr == "shape" and isinstance(n.value, ast.Name):
                arrays.add(n.value.id)
            if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name):
                arrays.add(n.value.id)
                indices.update(_names(n.slice))
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "range":
                for arg in n.args:
                    indices.update(_names(arg))
            callee = self.resolve.get(n.func.id) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) else None
            if getattr(callee, "name", callee[1] if isinstance(callee, tuple) else None) == "is_single":
                arrays.update(_names(n.args[0]))  # (imports are resolved after parsing)
            if isinstance(callee, Function):  # what a callee takes as an array is one
                for arg, pname in zip(n.args, callee.params):
                    if isinstance(arg, ast.Name) and callee.types[pname] in ARRAY_TYPES:
                        arrays.add(arg.id)
        return arrays, indices

    def _param_types(self):
        """param -> "floating*", "double*", "index*", "index", "params" or "double"."""
        if self.kind == "rows":  # (x, y or labels, c, gx, h, gs, p, loss)
            assert len(self.params) == len(ROWS_TYPES), f"{self.cname}: not (x, y, c, gx, h, gs, p, loss)"
            types = dict(zip(self.params, ROWS_TYPES))
            if self.params[1] == "labels":
                types["labels"] = "index*"
            return types
        arrays, indices = self._usage()
        types = {}
        for i, name in enumerate(self.params):
            if name == "p":
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
            elif name.endswith(LANE_PARAM_SUFFIX) or name.endswith(SCRATCH_PARAM_SUFFIX):
                types[name] = "double*"
            elif name in indices:
                types[name] = "index"
            elif name in arrays:
                types[name] = "floating*"
            else:
                types[name] = "float" if self.single else "double"
        return types

    def _return_arity(self):
        """How many values the function returns (0: it returns nothing; it fills arrays)."""
        arity = {self._arity_of(r.value) for r in ast.walk(self.node) if isinstance(r, ast.Return)}
        if not arity:
            return 0
        assert len(arity) == 1, f"{self.cname}: returns of different arities"
        return arity.pop()

    def _arity_of(self, value):
        """How many values ``return value`` returns: a tuple's length, or that of a call to
        a function of this module defined above (``return helper(...)``)."""
        if value is None:
            return 0
        if isinstance(value, ast.Tuple):
            return len(value.elts)
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            callee = self.resolve.get(value.func.id)
            if isinstance(callee, Function):
                return callee.returns
        return 1

    def integer_return(self):
        """Whether the function returns integer arithmetic (a C ``long long``); memoised,
        like :meth:`local_types`, before :meth:`cython` rewrites the tree."""
        if self._integer_return is None:
            types = self.local_types()
            self._integer_return = self.returns == 1 and all(
                self._is_integer(r.value, types) for r in ast.walk(self.node) if isinstance(r, ast.Return))
        return self._integer_return

    def c_return(self):
        if self.returns == 0:
            return "void"
        if self.integer_return():
            return "long long"
        t = "float" if self.single else "double"
        return t if self.returns == 1 else "(" + ", ".join([t] * self.returns) + ")"

    def c_params(self):
        out = []
        for name in self.params:
            t = self.types[name]
            if t in ARRAY_TYPES:
                out += [f"{ARRAY_TYPES[t]} {name}", f"Py_ssize_t {name}_n"]
            elif t == "index":
                out.append(f"Py_ssize_t {name}")
            elif t == "params":
                out.append(f"const double* {name}")
            else:
                out.append(f"{t} {name}")
        return ", ".join(out)

    def _is_integer(self, node, types):
        """Whether ``node`` is integer arithmetic (so that its local is a ``long long``)."""
        if isinstance(node, ast.Constant):
            return type(node.value) is int
        if isinstance(node, ast.Name):
            target = self.resolve.get(node.id)
            return types.get(node.id) in INTEGER_TYPES or self.types.get(node.id) == "index" or (
                isinstance(target, Native) and target.c_type == "long long") or (
                isinstance(target, Function) and target is not self and target.integer_return()) or (
                isinstance(target, str) and target in INTEGER_CONSTANTS)
        if isinstance(node, ast.Call):
            return self._is_integer(node.func, types)
        if isinstance(node, ast.Subscript):  # an array's length, or an entry of an index array
            return (isinstance(node.value, ast.Attribute) and node.value.attr == "shape") or (
                isinstance(node.value, ast.Name) and self.types.get(node.value.id) == "index*")
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, (ast.LShift, ast.RShift, ast.BitAnd, ast.BitOr)):
                return True
            return not isinstance(node.op, ast.Div) and \
                self._is_integer(node.left, types) and self._is_integer(node.right, types)
        if isinstance(node, ast.IfExp):
            return self._is_integer(node.body, types) and self._is_integer(node.orelse, types)
        return False

    def _is_float(self, node, types):
        """Whether ``node`` is float32 arithmetic (so that its local is a C ``float``)."""
        if isinstance(node, ast.Name):
            target = self.resolve.get(node.id)
            return "float" in (types.get(node.id), self.types.get(node.id)) or (
                isinstance(target, str) and target in FLOAT_CONSTANTS)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            target = self.resolve.get(node.func.id)
            return (isinstance(target, Native) and target.c_type == "float") or (
                isinstance(target, Function) and target.single)
        if isinstance(node, ast.BinOp):
            return not isinstance(node.op, ast.Pow) and \
                self._is_float(node.left, types) and self._is_float(node.right, types)
        if isinstance(node, ast.UnaryOp):
            return isinstance(node.op, ast.USub) and self._is_float(node.operand, types)
        if isinstance(node, ast.IfExp):
            return self._is_float(node.body, types) and self._is_float(node.orelse, types)
        return False

    def _check_single(self):
        """A float32 function names no float literal and no float64 constant."""
        for n in ast.walk(self.node):
            if isinstance(n, ast.Constant) and type(n.value) is float:
                raise AssertionError(f"{self.cname}: float literal {n.value!r} in a float32 function")
            if isinstance(n, ast.Name) and isinstance(self.resolve.get(n.id), str):
                cname = self.resolve[n.id]
                assert cname in FLOAT_CONSTANTS or cname in INTEGER_CONSTANTS, \
                    f"{self.cname}: float64 constant {n.id} in a float32 function"

    def _local_array(self, node):
        """The native that ``node`` calls to make a local array (``lanes`` or ``scratch``),
        or None."""
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            target = self.resolve.get(node.func.id)
            if isinstance(target, Native) and target.name in LOCAL_ARRAYS:
                return target.name
        return None

    def local_types(self):
        """local name -> its C type (memoised)."""
        if self._locals is None:
            self._locals = self._local_types()
        return self._locals

    def _local_types(self):
        types = {}
        for _ in range(4):  # integer-ness flows through assignments: iterate to a fixed point
            before = dict(types)
            types = self._local_types_once(before)
            if types == before:
                break
        return types

    def _local_types_once(self, known):
        types = {}

        def note(name, t):
            if name in self.params:
                return
            if self.single and t == "double":  # no float64 value exists in a float32 function
                t = "float"
            old = types.get(name)
            if old in INTEGER_TYPES and t in INTEGER_TYPES:
                types[name] = "Py_ssize_t" if "Py_ssize_t" in (old, t) else t
            else:
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
                    elif self._is_integer(n.value, known):
                        note(target.id, "long long")
                    elif self._is_float(n.value, known):
                        note(target.id, "float")
                    elif self._local_array(n.value):
                        note(target.id, f"double[{LOCAL_ARRAYS[self._local_array(n.value)]()}]")
                    else:
                        note(target.id, "double")
        return types

    def cython(self):
        if self.single:
            self._check_single()
        lines = [f"cdef inline {self.c_return()} {self.cname}({self.c_params()}) noexcept nogil:"]
        lines.insert(0, f"# {self.module}.{self.name} (see its docstring there)")
        by_type = {}
        for name, t in sorted(self.local_types().items()):
            by_type.setdefault(t, []).append(name)
        arrays = {t: by_type.pop(t) for t in list(by_type) if t.startswith("double[")}
        if arrays:  # local arrays, and the index that fills lane arrays
            by_type.setdefault("Py_ssize_t", []).append("_lane")
        for t, names in sorted(by_type.items()):
            lines.append(f"    cdef {t} {', '.join(names)}")
        lines += [f"    cdef double {name}{t[6:]}" for t, names in sorted(arrays.items()) for name in names]
        options = sorted({n.slice.value for n in ast.walk(self.node)
                          if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name)
                          and self.types.get(n.value.id) == "params" and isinstance(n.slice, ast.Constant)})
        # Options are read once, up front: a load that only one side of a condition makes
        # would keep GCC from vectorising the loop the function is inlined into.
        lines += [f"    cdef double p_{i} = p[{i}]" for i in options]
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

    def visit_Assign(self, node):
        if self.fn._local_array(node.value):  # acc = lanes(v): fill the local array
            if not node.value.args:  # scratch(): no fill
                return ast.Pass()
            value = node.value.args[0]
            if isinstance(value, ast.Constant) and value.value is None:  # lanes(None): no fill
                return ast.Pass()
            fill = ast.Assign([ast.Subscript(node.targets[0], ast.Name("_lane"))], self.visit(node.value.args[0]))
            loop = ast.For(ast.Name("_lane"), ast.Call(ast.Name("range"), [ast.Constant(lane_count())], []),
                           [fill], [])
            return ast.fix_missing_locations(ast.copy_location(loop, node))
        self.generic_visit(node)
        return node

    def visit_Attribute(self, node):
        self.generic_visit(node)
        if isinstance(node.value, ast.Name) and node.value.id == "math":
            if node.attr == "inf":
                return ast.Name("INFINITY")
            if node.attr == "nan":
                return ast.Name("NAN")
            assert node.attr in LIBC, f"{self.fn.cname}: math.{node.attr} is not mapped"
            return ast.Name(node.attr)
        return node

    def visit_Subscript(self, node):
        # x.shape[0] -> x_n
        if isinstance(node.value, ast.Attribute) and node.value.attr == "shape":
            return ast.Name(f"{node.value.value.id}_n")
        if isinstance(node.value, ast.Name) and self.fn.types.get(node.value.id) == "params" \
                and isinstance(node.slice, ast.Constant):
            return ast.Name(f"p_{node.slice.value}")
        self.generic_visit(node)
        return node

    def visit_Name(self, node):
        target = self.fn.resolve.get(node.id)
        if isinstance(target, str):  # a module constant
            return ast.Name(target)
        if isinstance(target, Native):
            return ast.Name(target.cname)
        return node

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Pow):
            return ast.Call(ast.Name("pow"), [node.left, node.right], [])
        return node

    def visit_Call(self, node):
        func = node.func
        target = self.fn.resolve.get(func.id) if isinstance(func, ast.Name) else None
        if isinstance(target, Native) and target.name == "is_single":  # a compile-time constant
            return ast.Compare(ast.Name("floating"), [ast.Is()], [ast.Name("float")])
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
                if callee.types[pname] in ARRAY_TYPES:
                    assert isinstance(arg, ast.Name), f"{self.fn.cname}: array argument must be a name"
                    local = self.fn.local_types().get(arg.id, "")
                    length = local[7:-1] if local.startswith("double[") else f"{arg.id}_n"
                    args.append(ast.Name(length))
            return ast.Call(ast.Name(callee.cname), args, [])
        self.generic_visit(node)
        return node


class Native:
    """A ``@native`` function: a C function of ``NATIVES``."""

    def __init__(self, module, name):
        self.module = module
        self.name = name
        self.cname = f"{module}__{name}"
        self.c_type, definition = NATIVES[name]
        self.c_definition = definition and "static inline " + definition.format(c=self.cname, lanes=lane_count())

    def declaration(self):
        head = self.c_definition.split("{")[0].replace("static inline ", "").strip()
        return f"{head} noexcept nogil"


def _names(node):
    """The names an expression reads."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


INTEGER_TYPES = ("long long", "Py_ssize_t")
LANE_PARAM_SUFFIX = "_lanes"  # a helper parameter that receives a caller's local lane array
SCRATCH_PARAM_SUFFIX = "_scratch"  # one that receives a caller's scratch buffer
ARRAY_TYPES = {"floating*": "floating*", "double*": "double*", "index*": "Py_ssize_t*"}  # parameter -> C
INTEGER_CONSTANTS = set()  # the C names of integer module constants, filled by parse()
FLOAT_CONSTANTS = set()  # the C names of float32 module constants (single(...)), filled by parse()
SINGLE_SUFFIX = "_single"  # a function computing in float32


def _decorator(stmt):
    """"portable", "native" or None: how a top-level function is marked."""
    for d in stmt.decorator_list:
        name = d.func if isinstance(d, ast.Call) else d
        if isinstance(name, ast.Name) and name.id in ("portable", "native"):
            return name.id
    return None


def _overrides(stmt):
    """The names of the portable functions a ``@portable(target=f)`` decorator puts in its
    function's place on another target (f is not translated: C has the function itself)."""
    return {k.value.id for d in stmt.decorator_list if isinstance(d, ast.Call)
            for k in d.keywords if isinstance(k.value, ast.Name)}


def parse():
    """Every portable function, in dependency order, the natives and the module constants."""
    functions, natives, constants = [], [], []
    tables = {}
    elsewhere = set()  # portable functions that only stand in for others on another target
    for rel in MODULES:
        module = pathlib.Path(rel).stem
        tree = ast.parse((PACKAGE / rel).read_text())
        table = tables.setdefault(module, {})
        for stmt in tree.body:
            if isinstance(stmt, ast.ImportFrom) and stmt.module and \
                    stmt.module.rsplit(".", 1)[-1] in {pathlib.Path(m).stem for m in MODULES}:
                source = stmt.module.rsplit(".", 1)[-1]
                for alias in stmt.names:
                    table[alias.asname or alias.name] = (source, alias.name)
            elif isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
                cname = f"{module}__{stmt.targets[0].id}"
                constants.append((cname, stmt.value))
                table[stmt.targets[0].id] = cname
                if isinstance(stmt.value, ast.Constant) and type(stmt.value.value) is int:
                    INTEGER_CONSTANTS.add(cname)
                if _is_single_constant(stmt.value):
                    FLOAT_CONSTANTS.add(cname)
            elif isinstance(stmt, ast.FunctionDef) and _decorator(stmt) == "native":
                fn = Native(module, stmt.name)
                natives.append(fn)
                table[stmt.name] = fn
            elif isinstance(stmt, ast.FunctionDef) and _decorator(stmt) == "portable":
                fn = Function(module, stmt, table)
                functions.append(fn)
                table[stmt.name] = fn
                elsewhere |= _overrides(stmt)
    functions = [f for f in functions if f.name not in elsewhere]
    by_key = {(f.module, f.name): f for f in functions + natives}
    by_key.update({tuple(cname.split("__", 1)): cname for cname, _ in constants})
    for table in tables.values():
        for local, target in list(table.items()):
            if isinstance(target, tuple):
                table[local] = by_key[target]
    return functions, natives, constants


PRIMITIVES_HEADER = '''\
# cython: language_level=3, cdivision=True
# Generated by fastloss/cpu_cython/generate.py from fastloss/math/primitives.py: the stable
# scalar primitives every loss is written with. Do not edit: edit the portable source.

from libc.math cimport INFINITY, NAN, fabs, pow, {libc}
'''

HEADER = '''\
# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=True, cpow=True, infer_types=False
# Generated by fastloss/cpu_cython/generate.py from fastloss/losses/*.py. Do not edit: edit
# the portable math and rebuild.

from cython.parallel cimport prange
from libc.math cimport INFINITY, NAN, fabs, pow, {libc}
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
    # Kernels release the GIL from this many elements on. A smaller call holds it: it
    # takes a few microseconds, and handing the GIL to another Python thread mid-call
    # (a boosting library's threads calling an objective) makes it wait for that thread.
    RELEASE_GIL_SIZE = 16384


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


cdef enum:
    TILE = {tile}
    LANES = {lanes}
    NARROW_MAX_WIDTH = {narrow}
    NARROW_TILE = {narrow_tile}


cdef inline void _lanes_zero(double* lanes) noexcept nogil:
    cdef Py_ssize_t l
    for l in range(LANES):
        lanes[l] = 0.0


cdef inline void _lane_sum(double* v, Py_ssize_t k, double* lanes) noexcept nogil:
    """v[j] into lane j mod LANES for every whole group of LANES (the same sum as
    fastloss.cpu_numba.drivers.lane_sum)."""
    cdef Py_ssize_t g, l
    cdef Py_ssize_t whole = k - k % LANES
    for g in range(whole // LANES):
        for l in range(LANES):
            lanes[l] += v[g * LANES + l]


def elementary_map(str name, double[::1] x, double[::1] out, double[::1] g=None):
    """out = f(x) for f the exp, exp_nonpositive, exp_nonpositive_single or log_single (of
    x rounded to float32), expm1, log or log1p of fastloss.math.elementary, or
    out = pow_nonneg(x, g), as compiled here (the tests' window onto the C translation)."""
    cdef Py_ssize_t i
    cdef Py_ssize_t n = x.shape[0]
    cdef int which  # the name, as an index: a str is not compared without the GIL
    names = ("exp", "exp_nonpositive", "exp_nonpositive_single", "log_single", "expm1", "log", "log1p",
             "pow_nonneg")
    if name not in names:
        raise ValueError(f"no elementary function {name!r}")
    if name == "pow_nonneg" and (g is None or g.shape[0] != n):
        raise ValueError("pow_nonneg needs exponents g shaped like x")
    which = names.index(name)
    with nogil:
        if which == 0:
            for i in range(n):
                out[i] = elementary__exp(x[i])
        elif which == 1:
            for i in range(n):
                out[i] = elementary__exp_nonpositive(x[i])
        elif which == 2:
            for i in range(n):
                out[i] = elementary__exp_nonpositive_single(<float> x[i])
        elif which == 3:
            for i in range(n):
                out[i] = elementary__log_single(<float> x[i])
        elif which == 4:
            for i in range(n):
                out[i] = elementary__expm1(x[i])
        elif which == 5:
            for i in range(n):
                out[i] = elementary__log(x[i])
        elif which == 6:
            for i in range(n):
                out[i] = elementary__log1p(x[i])
        else:
            for i in range(n):
                out[i] = elementary__pow_nonneg(x[i], g[i])


cdef inline void _store(floating* out, double* v, Py_ssize_t k, double scale) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(k):
        out[j] = <floating> (scale * v[j])
'''

ELEMENT_TEMPLATE = '''
cdef double _block__{cname}(floating* x, floating* y, double* c, bint has_c, Py_ssize_t n,
                           double* w, bint has_w, const double* p, double scale,
                           floating* loss_out, bint keep_loss, floating* gx, bint want_gx,
                           floating* gy, bint want_gy, floating* h, bint want_h) noexcept nogil:
    # Tile by tile: the math into float64 buffers (a loop GCC vectorises), then weights,
    # the lane sum and the outputs; the same order as the Numba block kernel.
    cdef double bl[TILE]
    cdef double bx[TILE]
    cdef double by[TILE]
    cdef double bh[TILE]
    cdef double lanes[LANES]
    cdef double total
    cdef double wj
    cdef Py_ssize_t t, lo, j
    cdef Py_ssize_t k = 0
    _lanes_zero(lanes)
    for t in range((n + TILE - 1) // TILE):
        lo = t * TILE
        k = min(<Py_ssize_t> TILE, n - lo)
        if has_c:
            for j in range(k):
                bl[j], bx[j], by[j], bh[j] = {cname}(<double> x[lo + j], <double> y[lo + j], c[lo + j], p)
        else:
            for j in range(k):
                bl[j], bx[j], by[j], bh[j] = {cname}(<double> x[lo + j], <double> y[lo + j], 0.0, p)
        if has_w:
            for j in range(k):
                wj = w[lo + j]
                bl[j] *= wj
                bx[j] *= wj
                by[j] *= wj
                bh[j] *= wj
        _lane_sum(bl, k, lanes)
        if keep_loss:
            _store(loss_out + lo, bl, k, 1.0)
        if want_gx:
            _store(gx + lo, bx, k, scale)
        if want_gy:
            _store(gy + lo, by, k, scale)
        if want_h:
            _store(h + lo, bh, k, scale)
    total = reductions__lane_total(lanes)
    for j in range(k - k % LANES, k):  # the last tile's rest, in order
        total += bl[j]
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
        if n >= RELEASE_GIL_SIZE:
            with nogil:
                {call_float}
        else:
            {call_float}
    elif n >= RELEASE_GIL_SIZE:
        with nogil:
            {call_double}
    else:
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
    cdef double loss, wi{narrow_dispatch}
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
        if rows * width >= RELEASE_GIL_SIZE:
            with nogil:
                {call_float}
        else:
            {call_float}
    elif rows * width >= RELEASE_GIL_SIZE:
        with nogil:
            {call_double}
    else:
        {call_double}
    return total
'''


NARROW_DISPATCH = """
    if width <= NARROW_MAX_WIDTH:
        return _narrow__{cname}(x, y, rows, width, c, c_n, w, has_w, p, scale, loss_out, keep_loss,
                                gx, gx_w, h, h_w)"""

NARROW_TEMPLATE = '''
cdef double _narrow__{cname}(floating* x, {ytype} y, Py_ssize_t rows, Py_ssize_t width,
                            double* c, Py_ssize_t c_n, double* w, bint has_w, const double* p,
                            double scale, floating* loss_out, bint keep_loss,
                            floating* gx, Py_ssize_t gx_w, floating* h, Py_ssize_t h_w) noexcept nogil:
    """The block of {name} for narrow rows: tiles of fastloss._config.narrow_rows(width)
    rows, each run by {name}{suffix} (the same numbers as a row at a time)."""
    cdef double gs[NARROW_TILE]
    cdef double tile_loss[NARROW_TILE]
    cdef Py_ssize_t per = NARROW_TILE // width
    cdef Py_ssize_t t, lo, k, i
    cdef double total = 0.0
    cdef double loss
    if per >= 8:
        per -= per % 8
    for t in range((rows + per - 1) // per):
        lo = t * per
        k = min(per, rows - lo)
        for i in range(k):
            gs[i] = scale * (w[lo + i] if has_w else 1.0)
        {cname}{suffix}(x + lo * width, k * width, y + lo * {ystride}, k * {ystride}, c, c_n,
                        gx + lo * gx_w, k * gx_w, h + lo * h_w, k * h_w, gs, k, p, tile_loss, k)
        for i in range(k):
            loss = tile_loss[i]
            if has_w:
                loss = loss * w[lo + i]
            total += loss
            if keep_loss:
                loss_out[lo + i] = <floating> loss
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


def driver(fn, narrow=None):
    """The block kernel, chunked driver and entry point of one loss's math (a row
    function's ``narrow`` variant, if it has one, serves narrow rows)."""
    name = f"{fn.module}.{fn.name}"
    if fn.kind == "element":
        calls = {f"call_{t}": ELEMENT_CALL.format(cname=fn.cname, T=t) for t in ("float", "double")}
        return ELEMENT_TEMPLATE.format(cname=fn.cname, name=name, **calls)
    sparse = fn.types[fn.params[1]] == "index"
    calls = {
        f"call_{t}": ROW_CALL.format(cname=fn.cname, T=t, ycast="_idx(y)" if sparse else f"<{t}*> cnp.PyArray_DATA(y)")
        for t in ("float", "double")
    }
    shapes = dict(
        cname=fn.cname, name=name,
        ytype="Py_ssize_t*" if sparse else "floating*",
        yrow="y[i]" if sparse else "y + i * width, width",
        ystride="1" if sparse else "width",
    )
    code = ROW_TEMPLATE.format(narrow_dispatch=narrow and NARROW_DISPATCH.format(**shapes) or "", **shapes, **calls)
    if narrow:
        code = NARROW_TEMPLATE.format(suffix=ROWS_SUFFIX, **shapes) + code
    return code


_C_NONFINITE = {"inf": "INFINITY", "-inf": "(-INFINITY)", "nan": "NAN"}  # repr -> C


def _is_single_constant(value):
    """Whether a module constant's value is ``single(<constant expression>)``."""
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "single"


def _constant(cname, value):
    """A module constant as a C macro of its value (exact: repr round-trips a double; a
    float32 constant ``single(v)`` is v rounded to float32, written as a double)."""
    if _is_single_constant(value):
        number = eval(compile(ast.Expression(value.args[0]), cname, "eval"), {"math": math})
        number = struct.unpack("<f", struct.pack("<f", number))[0]  # rounded to float32
        text = repr(number) if math.isfinite(number) else _C_NONFINITE[repr(number)]
        return f'cdef extern from *:\n    """\n    #define {cname} ((float){text})\n    """\n    float {cname}\n'
    number = eval(compile(ast.Expression(value), cname, "eval"), {"math": math})  # constants only
    if type(number) is int:
        return f'cdef extern from *:\n    """\n    #define {cname} {number}LL\n    """\n    long long {cname}\n'
    return f'cdef extern from *:\n    """\n    #define {cname} {float(number)!r}\n    """\n    double {cname}\n'


def _constant_of(rel, name):
    """The literal value of the module constant ``name`` of ``fastloss/<rel>``, read as text
    (the build imports nothing)."""
    for stmt in ast.parse((PACKAGE / rel).read_text()).body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id == name:
            return ast.literal_eval(stmt.value)
    raise LookupError(f"{rel} has no constant {name}")


def lane_count():
    """LANES of :mod:`fastloss.math.reductions`."""
    return _constant_of("math/reductions.py", "LANES")


def tile_size():
    """TILE of :mod:`fastloss._config`."""
    return _constant_of("_config.py", "TILE")


def narrow_tile():
    """NARROW_TILE of :mod:`fastloss._config`."""
    return _constant_of("_config.py", "NARROW_TILE")


LOCAL_ARRAYS = {"lanes": lane_count, "scratch": narrow_tile}  # native -> its length


def _natives(natives):
    """The natives, as C inline functions that Cython declares."""
    natives = [n for n in natives if n.c_definition]
    lines = ['cdef extern from *:', '    """', '    #include <math.h>', '    #include <string.h>']
    lines += [f"    {n.c_definition}" for n in natives]
    lines += ['    """']
    lines += [f"    {n.declaration()}" for n in natives]
    return "\n".join(lines) + "\n"


def generate():
    """(the primitives' .pxd, the kernels' .pyx) as text."""
    functions, natives, constants = parse()
    scalar = tuple(f"{m}__" for m in SCALAR_MODULES)
    libc = ", ".join(sorted(LIBC))
    primitives = [PRIMITIVES_HEADER.replace("{libc}", libc), _natives(natives)]
    primitives += [_constant(cname, value) for cname, value in constants if cname.startswith(scalar)]
    header = HEADER.replace("{source_hash}", source_hash()).replace("{libc}", libc)
    header = header.replace("{tile}", str(tile_size())).replace("{lanes}", str(lane_count()))
    header = header.replace("{narrow}", str(_constant_of("_config.py", "NARROW_MAX_WIDTH")))
    header = header.replace("{narrow_tile}", str(narrow_tile()))
    kernels = [header]
    kernels += [_constant(cname, value) for cname, value in constants if not cname.startswith(scalar)]
    for fn in functions:
        (primitives if fn.module in SCALAR_MODULES else kernels).append("\n" + fn.cython() + "\n")
    narrow = {fn.cname[:-len(ROWS_SUFFIX)]: fn for fn in functions if fn.kind == "rows"}
    for fn in functions:
        if fn.kind in ("element", "row"):
            kernels.append(driver(fn, narrow.get(fn.cname)))
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
