"""Translate the portable math into Cython: the types of a function's parts, and its code.

:func:`parse` reads the portable modules as text (nothing is imported) into
:class:`Function` (:mod:`functions`), :class:`Native` and :class:`Constant` objects, a
name imported from another of the modules resolving to its definition there; :func:`cython`
writes one function as a ``cdef inline ... noexcept nogil`` function. Every function is
checked first, so that whatever is written computes what Python and Numba compute: its
syntax against an allow-list (:mod:`syntax`), then its types (:mod:`functions`). An
error is a :class:`TranslationError` whose message starts ``fastloss/<module>.py:<line>:``.

Types are declared, never guessed from names or arity:

* the decorator gives a function's kind. ``@portable.element``, ``@portable.row`` and
  ``@portable.rows`` are a loss's math, whose parameters' types the conventions of
  :mod:`fastloss.losses` fix (``functions.SIGNATURES``): an element's are doubles, a
  row's arrays are of the input's dtype (the fused type ``floating``) but for the
  class weights ``c`` (``double*``), as are a tile's but for ``c``, ``gs`` and ``loss``,
  a row's ``gs`` is a double and the options ``p`` are a ``const double*``; the one
  declaration such a function may carry is an integer ``y``: ``label: Index`` (row) or
  ``labels: Indices`` (rows). Each gets a block kernel, a chunked driver and an entry
  point (:mod:`templates`); ``f_rows`` serves the narrow rows of the row function ``f``.
  ``@portable`` is a helper and ``@portable.single`` a helper that computes in float32:
  its float parameters, locals and results are C ``float``, and it may name no float
  literal and no float64 constant (its constants are ``single(...)``, C ``float``
  macros), so that C, Numba and Python all round every operation to float32;
* a helper's parameter is a C double (a float in ``@portable.single``) unless annotated
  with a marker of :mod:`fastloss.math.declare` (``MARKERS``): ``Array`` (the input's
  dtype: ``floating*`` and a length; ``z.shape[0]`` becomes ``z_n``), ``Indices``
  (``Py_ssize_t*``), ``Lanes`` and ``Scratch`` (a caller's local ``lanes()`` or
  ``scratch()`` array, ``double*``), ``Index`` (``Py_ssize_t``), ``Params`` (the options,
  ``const double*``, read once up front). A parameter that is indexed or has ``.shape``
  but is declared no array, an index or a ``range`` bound that is not integer arithmetic,
  and an argument of another type than the callee declares are build errors;
* a local's type is that of the values assigned to it: a ``long long`` for integer
  arithmetic (integer literals and constants, ``Index`` parameters, bit casts, shifts),
  ``Py_ssize_t`` for a loop index or a length, a ``bint`` for a comparison, a ``float``
  for float32 arithmetic, ``double[N]`` for ``lanes(v)`` (filled with v; ``lanes(None)``
  is not) and ``scratch()``, else a double; locals unpacked from a tuple take the types of
  its elements;
* a function returns what its ``return`` statements give, element by element by the
  same rules (a C tuple for a tuple; ``return f(...)`` returns f's), or ``void``;
* Python's semantics where C's differ: ``a % b`` and ``a // b`` of integers become
  ``fastloss_mod`` and ``fastloss_floordiv`` (the sign of the divisor, floor division;
  C's ``%`` and ``/`` truncate), ``/`` of two integers ``fastloss_truediv`` (a double),
  and they are build errors on floats, as ``**`` of two integers is (it becomes C's
  ``pow``, a double);
* ``@native`` functions (the bit casts of :mod:`fastloss.math.elementary`) become the C
  functions of ``NATIVES``; ``is_single(z)`` is Cython's compile-time ``floating is
  float``; ``@portable(target=f)`` overrides concern other targets (a portable function
  named there, such as ``device_pow_nonneg``, is not translated); ``math.f`` becomes
  libc's ``f``, ``math.inf`` ``INFINITY``, ``abs`` ``fabs`` and ``x ** y`` ``pow``;
* a module constant is a C macro of its exact value (``single(v)``: v rounded to float32).

Functions of a ``fastloss/math`` module that takes no ``Array`` go to the primitives' ``.pxd``,
the others to the ``.pyx``.
"""

import ast
import copy
import math
import pathlib
import struct

from . import functions, syntax

TranslationError = syntax.TranslationError
Function = functions.Function
LIBC = syntax.LIBC

LOCAL_ARRAYS = ("lanes", "scratch")  # natives that make a local array
NATIVES = {  # name -> (C return type, C definition)
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
#: Python's integer division in C (C's ``/`` and ``%`` truncate toward 0).
ARITHMETIC = {
    "fastloss_floordiv": ("long long", "long long fastloss_floordiv(long long a, long long b) "
                                       "{ long long q = a / b; return q - ((a % b != 0) & ((a < 0) != (b < 0))); }"),
    "fastloss_mod": ("long long", "long long fastloss_mod(long long a, long long b) "
                                  "{ long long r = a % b; return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r; }"),
    "fastloss_truediv": ("double", "double fastloss_truediv(double a, double b) { return a / b; }"),
}
_C_NONFINITE = {"inf": "INFINITY", "-inf": "(-INFINITY)", "nan": "NAN"}  # repr -> C




class Source:
    """One module of portable math: ``rel`` is its path in the package (``math/x.py``)."""

    def __init__(self, rel, tree):
        self.rel = rel
        self.path = f"fastloss/{rel}"
        self.module = pathlib.PurePosixPath(rel).stem
        # Scalar helpers, written to the .pxd: a math module whose functions take no
        # array of the input dtype (the fused type ``floating`` belongs to the .pyx).
        self.scalar = rel.startswith("math/") and not any(
            isinstance(node, ast.arg) and isinstance(node.annotation, ast.Name) and node.annotation.id == "Array"
            for node in ast.walk(tree))


class Constant:
    """A module constant: a number, or ``single(number)`` (a float32)."""

    role = "constant"

    def __init__(self, source, stmt):
        self.cname = f"{source.module}__{stmt.targets[0].id}"
        self.scalar = source.scalar
        value = stmt.value
        self.single = isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "single"
        try:  # constants only: nothing else is in scope
            number = eval(compile(ast.Expression(value.args[0] if self.single else value), source.path, "eval"),
                          {"__builtins__": {}, "math": math})
        except Exception as e:
            raise TranslationError(source.path, stmt, f"the module constant {stmt.targets[0].id} is not a number "
                                   f"the build can evaluate ({e})") from None
        if type(number) not in (int, float):
            raise TranslationError(source.path, stmt, f"the module constant {stmt.targets[0].id} is not a number")
        self.integer = type(number) is int and not self.single
        self.number = struct.unpack("<f", struct.pack("<f", number))[0] if self.single else number

    def cython(self):
        """A C macro of the exact value (repr round-trips a double)."""
        if self.single:
            text = repr(self.number) if math.isfinite(self.number) else _C_NONFINITE[repr(self.number)]
            macro, c_type = f"((float){text})", "float"
        elif self.integer:
            macro, c_type = f"{self.number}LL", "long long"
        else:
            macro, c_type = repr(float(self.number)), "double"
        return f'cdef extern from *:\n    """\n    #define {self.cname} {macro}\n    """\n    {c_type} {self.cname}\n'


class Native:
    """A ``@native`` function: a C function of ``NATIVES``."""

    role = "native"

    def __init__(self, source, stmt, lanes):
        if stmt.name not in NATIVES:
            raise TranslationError(source.path, stmt, f"the native {stmt.name} has no C implementation "
                                   "(fastloss/cpu_cython/translate.py, NATIVES)")
        self.module = source.module
        self.name = stmt.name
        self.cname = f"{source.module}__{stmt.name}"
        self.arity = len(stmt.args.args)
        self.local_array = stmt.name in LOCAL_ARRAYS
        self.c_type, definition = NATIVES[stmt.name]
        self.c_definition = definition and "static inline " + definition.format(c=self.cname, lanes=lanes)

    def declaration(self):
        head = self.c_definition.split("{")[0].replace("static inline ", "").strip()
        return f"{head} noexcept nogil"


class Translator(ast.NodeTransformer):
    """Rewrites a portable function's statements (a copy) into Cython."""

    def __init__(self, fn):
        self.fn = fn
        self.types = fn.local_types()

    def visit_Assign(self, node):
        kind = self.fn._local_array(node.value)
        if kind:  # acc = lanes(v): fill the local array
            if not node.value.args:  # scratch(): no fill
                return ast.Pass()
            value = node.value.args[0]
            if isinstance(value, ast.Constant) and value.value is None:  # lanes(None): no fill
                return ast.Pass()
            fill = ast.Assign([ast.Subscript(node.targets[0], ast.Name("_lane"))], self.visit(value))
            loop = ast.For(ast.Name("_lane"), ast.Call(ast.Name("range"), [ast.Constant(self.fn.lengths[kind])], []),
                           [fill], [])
            return ast.fix_missing_locations(ast.copy_location(loop, node))
        self.generic_visit(node)
        return node

    def visit_Attribute(self, node):
        if isinstance(node.value, ast.Name) and node.value.id == "math":
            return ast.Name({"inf": "INFINITY", "nan": "NAN"}.get(node.attr, node.attr))
        self.generic_visit(node)
        return node

    def visit_Subscript(self, node):
        if self.fn._is_shape(node):  # x.shape[0] -> x_n
            return ast.Name(f"{node.value.value.id}_n")
        if isinstance(node.value, ast.Name) and self.fn.types.get(node.value.id) == "params" \
                and isinstance(node.slice, ast.Constant):  # read once, up front
            return ast.Name(f"{node.value.id}_{node.slice.value}")
        self.generic_visit(node)
        return node

    def visit_Name(self, node):
        target = self.fn._target(node.id)
        if isinstance(target, (Constant, Native)):
            return ast.Name(target.cname)
        return node

    def visit_BinOp(self, node):
        integers = self.fn._is_integer(node.left, self.types) and self.fn._is_integer(node.right, self.types)
        self.generic_visit(node)
        if isinstance(node.op, ast.Pow):
            return ast.Call(ast.Name("pow"), [node.left, node.right], [])
        if isinstance(node.op, (ast.Mod, ast.FloorDiv)):  # integers (Function.check): Python's semantics
            helper = "fastloss_mod" if isinstance(node.op, ast.Mod) else "fastloss_floordiv"
            return ast.Call(ast.Name(helper), [node.left, node.right], [])
        if isinstance(node.op, ast.Div) and integers:
            return ast.Call(ast.Name("fastloss_truediv"), [node.left, node.right], [])
        return node

    def visit_Call(self, node):
        func = node.func
        target = self.fn.resolve.get(func.id) if isinstance(func, ast.Name) else None
        if isinstance(target, Native) and target.name == "is_single":  # a compile-time constant
            return ast.Compare(ast.Name("floating"), [ast.Is()], [ast.Name("float")])
        if isinstance(func, ast.Name) and func.id == "abs" and target is None:
            self.generic_visit(node)
            return ast.Call(ast.Name("fabs"), node.args, [])
        if isinstance(target, Function):
            args = []
            for arg, pname in zip(node.args, target.params):
                args.append(self.visit(arg))
                if target.types[pname] in functions.POINTERS:  # an array: its length too
                    kind = self.fn.local_arrays().get(arg.id)
                    args.append(ast.Name(str(self.fn.lengths[kind]) if kind else f"{arg.id}_n"))
            return ast.Call(ast.Name(target.cname), args, [])
        self.generic_visit(node)
        return node


def cython(fn):
    """The Cython of one checked function (:meth:`Function.check`)."""
    lines = [f"# {fn.module}.{fn.name} (see its docstring there)",
             f"cdef inline {fn.c_return()} {fn.cname}({fn.c_params()}) noexcept nogil:"]
    by_type = {}
    for name, t in sorted(fn.local_types().items()):
        by_type.setdefault(t, []).append(name)
    arrays = {t: by_type.pop(t) for t in list(by_type) if t.startswith("double[")}
    if arrays:  # local arrays, and the index that fills lane arrays
        by_type.setdefault("Py_ssize_t", []).append("_lane")
    for t, names in sorted(by_type.items()):
        lines.append(f"    cdef {t} {', '.join(names)}")
    lines += [f"    cdef double {name}{t[6:]}" for t, names in sorted(arrays.items()) for name in names]
    options = sorted({(n.value.id, n.slice.value) for n in ast.walk(fn.node)
                      if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name)
                      and fn.types.get(n.value.id) == "params" and isinstance(n.slice, ast.Constant)})
    # Options are read once, up front: a load that only one side of a condition makes
    # would keep GCC from vectorising the loop the function is inlined into.
    lines += [f"    cdef double {name}_{i} = {name}[{i}]" for name, i in options]
    body = fn.node.body[1:] if syntax.docstring(fn.node) else fn.node.body
    translator = Translator(fn)
    for stmt in body:
        code = ast.unparse(translator.visit(copy.deepcopy(stmt)))
        lines += ["    " + line for line in code.splitlines()]
    return "\n".join(lines)


def _decorator(source, stmt):
    """"native", a kind of KINDS, or None: how a top-level function is marked."""
    for d in stmt.decorator_list:
        name = d.func if isinstance(d, ast.Call) else d
        if isinstance(name, ast.Name) and name.id in ("portable", "native"):
            return "helper" if name.id == "portable" else "native"
        if isinstance(name, ast.Attribute) and isinstance(name.value, ast.Name) and name.value.id == "portable":
            if name.attr not in functions.KINDS or name.attr == "helper":
                raise TranslationError(source.path, d, f"@portable.{name.attr} is no kind of portable function "
                                       f"({', '.join(k for k in functions.KINDS if k != 'helper')})")
            return name.attr
    return None


def _overrides(stmt):
    """The names of the portable functions a ``@portable(target=f)`` decorator puts in its
    function's place on another target (f is not translated: C has the function itself)."""
    return {k.value.id for d in stmt.decorator_list if isinstance(d, ast.Call)
            for k in d.keywords if isinstance(k.value, ast.Name)}


class Program:
    """What :func:`parse` reads: the portable functions to translate (in dependency
    order), the natives and the module constants."""

    def __init__(self, functions, natives, constants):
        self.functions = functions
        self.natives = natives
        self.constants = constants


def parse(sources, lanes, scratch):
    """The :class:`Program` of ``sources``, (path in the package, text) pairs in dependency
    order (``("math/elementary.py", ...)``), every function checked; ``lanes`` and
    ``scratch`` are the lengths of the local arrays (LANES and NARROW_TILE)."""
    lengths = {"lanes": lanes, "scratch": scratch}
    found, natives, constants, tables, elsewhere = [], [], [], {}, set()
    for rel, text in sources:
        tree = ast.parse(text, filename=f"fastloss/{rel}")
        source = Source(rel, tree)
        if source.module in tables:
            raise TranslationError(source.path, None, f"a second module named {source.module}")
        table = tables[source.module] = {}
        for stmt in tree.body:
            if isinstance(stmt, ast.ImportFrom) and stmt.module:
                for alias in stmt.names:  # resolved below, where the module is one of ``sources``
                    table[alias.asname or alias.name] = (stmt.module.rsplit(".", 1)[-1], alias.name)
            elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) \
                    and not isinstance(stmt.value, (ast.List, ast.Tuple, ast.Dict, ast.Set, ast.JoinedStr)) \
                    and not (isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)):
                table[stmt.targets[0].id] = Constant(source, stmt)
                constants.append(table[stmt.targets[0].id])
            elif isinstance(stmt, ast.FunctionDef) and _decorator(source, stmt) == "native":
                natives.append(Native(source, stmt, lanes))
                table[stmt.name] = natives[-1]
            elif isinstance(stmt, ast.FunctionDef) and _decorator(source, stmt):
                found.append(Function(source, stmt, _decorator(source, stmt), table, lengths))
                table[stmt.name] = found[-1]
                elsewhere |= _overrides(stmt)
    for table in tables.values():
        for local, target in list(table.items()):
            for _ in range(len(tables)):  # through re-exports
                if isinstance(target, tuple):
                    target = tables.get(target[0], {}).get(target[1])
            if isinstance(target, (Function, Native, Constant)):
                table[local] = target
            else:
                del table[local]  # not portable math (``portable``, ``np``, ...): unknown where used
    translated = [f for f in found if f.name not in elsewhere]
    for fn in translated:
        syntax.check(fn)
    for fn in translated:
        fn.check()
    rows = {f.cname: f for f in translated if f.kind == "row"}
    for fn in translated:
        if fn.kind == "rows":
            row = rows.get(fn.cname.removesuffix("_rows"))
            if row is None or not fn.name.endswith("_rows"):
                raise fn.error(fn.node, f"{fn.name}: a rows function is named f_rows, f a row function of its module")
            if (row.types[row.params[1]] == "index") != (fn.types[fn.params[1]] == "index*"):
                raise fn.error(fn.node, f"{fn.name} and {row.name} disagree on whether y is integer labels")
    return Program(translated, natives, constants)
