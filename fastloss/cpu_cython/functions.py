"""A portable function as the Cython translator sees it: its kind, the types its
declarations give its parameters, the types of its locals and results, and the checks
that make a build error of whatever it would otherwise have to guess.

The rules are in the docstring of :mod:`translate`, which writes the function's code.
Entries of a module's table are told apart by their ``role``: "function" (a
:class:`Function`), "native" or "constant" (:mod:`translate`).
"""

import ast

from . import syntax

TranslationError = syntax.TranslationError

KINDS = ("helper", "single", "element", "row", "rows")
#: The parameter types that a loss function's kind fixes (fastloss/losses/__init__.py).
SIGNATURES = {
    "element": ("double", "double", "double", "params"),  # x, y, c, p
    "row": ("floating*", "floating*", "floating*", "double*", "floating*", "floating*", "floating*", "floating*",
            "double", "params"),  # x, y, v, c, gx, gy, gv, h, gs, p
    "rows": ("floating*", "floating*", "double*", "floating*", "floating*", "double*", "params", "double*"),
}  # rows: x, y, c, gx, h, gs, p, loss
CONVENTIONS = {"element": "x, y, c, p", "row": "x, y, v, c, gx, gy, gv, h, gs, p",
               "rows": "x, y, c, gx, h, gs, p, loss"}
RETURNS = {"element": ("double",) * 4, "row": ("double",), "rows": ()}
LABELS = {"row": "index", "rows": "index*"}  # what a loss function's y may be declared
MARKERS = {"Array": "floating*", "Indices": "index*", "Lanes": "lanes", "Scratch": "scratch", "Index": "index",
           "Params": "params"}  # fastloss/math/declare.py
POINTERS = {"floating*": "floating*", "double*": "double*", "index*": "Py_ssize_t*", "lanes": "double*",
            "scratch": "double*"}  # an array's type -> its C pointer (passed with a length)
DESCRIPTIONS = {"floating*": "an array (Array)", "double*": "a float64 array", "index*": "an array of labels (Indices)",
                "lanes": "a lane array (Lanes)", "scratch": "a scratch buffer (Scratch)", "index": "an integer (Index)",
                "params": "the options (Params)", "double": "a float", "float": "a float32"}
INTEGER_TYPES = ("long long", "Py_ssize_t")


def _merge(old, new):
    """The C type of a local (or a returned element) given two of its values' types."""
    if old is None or old == new:
        return new
    if old in INTEGER_TYPES and new in INTEGER_TYPES:
        return "Py_ssize_t" if "Py_ssize_t" in (old, new) else new
    return "double"


def _a(kind):
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _role(target):
    return getattr(target, "role", None)


def _names(node):
    """The names an expression reads."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


class Function:
    """One portable function: its source, its kind and the C types of its parts."""

    role = "function"

    def __init__(self, source, node, kind, resolve, lengths):
        self.source = source
        self.node = node
        self.kind = kind
        self.resolve = resolve  # name -> Function, Native or Constant (imports filled in after parsing)
        self.lengths = lengths  # local array native -> its length
        self.module = source.module
        self.name = node.name
        self.cname = f"{source.module}__{node.name}"
        self.params = [a.arg for a in node.args.args]
        self.arity = len(self.params)
        self.single = kind == "single"
        if source.scalar and kind in SIGNATURES:
            raise self.error(node, f"a loss function (@portable.{kind}) belongs in fastloss/losses")
        self.types = self._param_types()
        self._locals = self._returns = self._arrays = None

    def error(self, node, message):
        return TranslationError(self.source.path, node, message)

    def _marker(self, arg):
        a = arg.annotation
        if not (isinstance(a, ast.Name) and a.id in MARKERS):
            raise self.error(arg, f"the annotation `{syntax.snippet(a)}` of {arg.arg} is not supported by the Cython "
                             f"translator (declare with {', '.join(MARKERS)}: fastloss/math/declare.py)")
        return MARKERS[a.id]

    def _param_types(self):
        """param -> one of POINTERS, "index", "params", "double" or "float"."""
        args = self.node.args.args
        if self.kind in SIGNATURES:
            fixed = SIGNATURES[self.kind]
            if len(args) != len(fixed):
                raise self.error(self.node, f"{_a(self.kind)} function takes {len(fixed)} parameters "
                                 f"({CONVENTIONS[self.kind]}), not {len(args)}")
            types = dict(zip(self.params, fixed))
            for i, arg in enumerate(args):
                if arg.annotation is not None:
                    if i != 1 or self._marker(arg) != LABELS.get(self.kind):
                        allowed = {"row": "the one it allows is y: Index", "rows": "the one it allows is y: Indices"}
                        raise self.error(arg, f"the {self.kind} convention ({CONVENTIONS[self.kind]}) fixes the type "
                                         f"of {arg.arg}: {allowed.get(self.kind, 'it allows no declaration')}")
                    types[arg.arg] = LABELS[self.kind]
            return types
        scalar = "float" if self.single else "double"
        return {arg.arg: self._marker(arg) if arg.annotation is not None else scalar for arg in args}

    # -- types of values --------------------------------------------------------------------

    def _target(self, name):
        """What a name refers to: None for a parameter or a local, else the module's entry."""
        if name in self.types or name in (self._locals or {}):
            return None
        return self.resolve.get(name)

    def _callee(self, node):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return self.resolve.get(node.func.id)
        return None

    def _element(self, node):
        """The type of ``f(...)[k]``, an element of a function's tuple (or None)."""
        if isinstance(node, ast.Subscript) and _role(self._callee(node.value)) == "function" \
                and isinstance(node.slice, ast.Constant):
            returned = self._callee(node.value).return_types()
            return returned[node.slice.value] if node.slice.value < len(returned) else None
        return None

    def _is_shape(self, node):
        return isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "shape"

    def _is_integer(self, node, types):
        """Whether ``node`` is integer arithmetic (a C ``long long`` or ``Py_ssize_t``)."""
        if isinstance(node, ast.Constant):
            return type(node.value) is int
        if isinstance(node, ast.Name):
            target = self._target(node.id)
            return types.get(node.id) in INTEGER_TYPES or self.types.get(node.id) == "index" or (
                getattr(target, "role", None) == "constant" and target.integer)
        if isinstance(node, ast.Call):
            callee = self._callee(node)
            return (_role(callee) == "native" and callee.c_type == "long long") or (
                _role(callee) == "function" and callee.return_types() in (("long long",), ("Py_ssize_t",)))
        if isinstance(node, ast.Subscript):  # an array's length, an entry of an index array, or a tuple's
            return self._is_shape(node) or self._element(node) in INTEGER_TYPES or (
                isinstance(node.value, ast.Name) and self.types.get(node.value.id) == "index*")
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, (ast.LShift, ast.RShift, ast.BitAnd, ast.BitOr)):
                return True
            return not isinstance(node.op, (ast.Div, ast.Pow)) and \
                self._is_integer(node.left, types) and self._is_integer(node.right, types)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return self._is_integer(node.operand, types)
        if isinstance(node, ast.IfExp):
            return self._is_integer(node.body, types) and self._is_integer(node.orelse, types)
        return False

    def _is_float(self, node, types):
        """Whether ``node`` is float32 arithmetic (a C ``float``)."""
        if isinstance(node, ast.Name):
            target = self._target(node.id)
            return "float" in (types.get(node.id), self.types.get(node.id)) or (
                getattr(target, "role", None) == "constant" and target.single)
        if isinstance(node, ast.Call):
            callee = self._callee(node)
            return (_role(callee) == "native" and callee.c_type == "float") or (
                _role(callee) == "function" and callee.return_types() == ("float",))
        if isinstance(node, ast.Subscript):
            return self._element(node) == "float"
        if isinstance(node, ast.BinOp):
            return not isinstance(node.op, ast.Pow) and \
                self._is_float(node.left, types) and self._is_float(node.right, types)
        if isinstance(node, ast.UnaryOp):
            return isinstance(node.op, ast.USub) and self._is_float(node.operand, types)
        if isinstance(node, ast.IfExp):
            return self._is_float(node.body, types) and self._is_float(node.orelse, types)
        return False

    def _local_array(self, node):
        """"lanes" or "scratch" where ``node`` makes a local array, else None."""
        callee = self._callee(node)
        return callee.name if _role(callee) == "native" and callee.local_array else None

    def _value_type(self, node, types):
        """The C type of a value assigned to a local or returned."""
        if isinstance(node, (ast.Compare, ast.BoolOp)) or (
                isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
            return "bint"
        if self._is_shape(node):
            return "Py_ssize_t"
        if self._is_integer(node, types):
            return "long long"
        if self._is_float(node, types):
            return "float"
        if self._local_array(node):
            return f"double[{self.lengths[self._local_array(node)]}]"
        return "double"

    def _values_types(self, node, types):
        """The types of the values of ``node`` (a tuple's elements, or one value)."""
        if isinstance(node, ast.Tuple):
            return [self._value_type(e, types) for e in node.elts]
        callee = self._callee(node)
        if _role(callee) == "function" and len(callee.return_types()) != 1:
            return list(callee.return_types())
        return [self._value_type(node, types)]

    def _narrow(self, t):
        return "float" if self.single and t == "double" else t  # no float64 value in a float32 function

    def local_types(self):
        """local name -> its C type (memoised)."""
        if self._locals is None:
            types = {}
            for _ in range(4):  # integer-ness flows through assignments: iterate to a fixed point
                before = dict(types)
                types = self._local_types_once(before)
                if types == before:
                    break
            self._locals = types
        return self._locals

    def _local_types_once(self, known):
        types = {}

        def note(name, t):
            if name not in self.params:
                types[name] = self._narrow(_merge(types.get(name), self._narrow(t)))

        for n in ast.walk(self.node):
            if isinstance(n, ast.For):
                note(n.target.id, "Py_ssize_t")
            elif isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Tuple):
                for e, t in zip(n.targets[0].elts, self._values_types(n.value, known)):
                    note(e.id, t)
            elif isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name):
                note(n.targets[0].id, self._value_type(n.value, known))
        return types

    def local_arrays(self):
        """local name -> "lanes" or "scratch", for the locals that are arrays."""
        return {n.targets[0].id: self._local_array(n.value) for n in ast.walk(self.node)
                if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name) and self._local_array(n.value)}

    def return_types(self):
        """The C types of what the function returns: one per element of a tuple, () for none."""
        if self._returns is None:
            if self.kind in RETURNS:
                self._returns = RETURNS[self.kind]
                return self._returns
            types, merged = self.local_types(), None
            for r in ast.walk(self.node):
                if isinstance(r, ast.Return):
                    values = self._values_types(r.value, types) if r.value is not None else []
                    if merged is not None and len(values) != len(merged):
                        raise self.error(r, f"{self.name} returns {len(values)} values here and {len(merged)} "
                                         "elsewhere")
                    merged = values if merged is None else [_merge(a, b) for a, b in zip(merged, values)]
            self._returns = tuple(self._narrow(t) for t in merged or ())
        return self._returns

    def c_return(self):
        returned = self.return_types()
        if not returned:
            return "void"
        return returned[0] if len(returned) == 1 else "(" + ", ".join(returned) + ")"

    def c_params(self):
        out = []
        for name in self.params:
            t = self.types[name]
            if t in POINTERS:
                out += [f"{POINTERS[t]} {name}", f"Py_ssize_t {name}_n"]
            elif t == "index":
                out.append(f"Py_ssize_t {name}")
            elif t == "params":
                out.append(f"const double* {name}")
            else:
                out.append(f"{t} {name}")
        return ", ".join(out)

    # -- checks ---------------------------------------------------------------------------

    def what(self, name):
        """A name's type for the checks: a parameter's, "lanes"/"scratch" for a local array,
        else a local's C type (None for no parameter or local)."""
        if self._arrays is None:
            self._arrays = self.local_arrays()
        return self.types.get(name) or self._arrays.get(name) or self.local_types().get(name)

    def check(self):
        """Raise :class:`TranslationError` where the function's types are outside what the
        translator writes with Python's semantics (after :func:`syntax.check`)."""
        self.local_types()
        if self.single:
            self._check_single()
        _check_types(self)

    def _check_single(self):
        """A float32 function names no float literal and no float64 constant."""
        for n in ast.walk(self.node):
            if isinstance(n, ast.Constant) and type(n.value) is float:
                raise self.error(n, f"the float literal {n.value!r} in a float32 function (@portable.single): name a "
                                 "module constant single(...)")
            if isinstance(n, ast.Name) and _role(self._target(n.id)) == "constant":
                constant = self._target(n.id)
                if not (constant.single or constant.integer):
                    raise self.error(n, f"the float64 constant {n.id} in a float32 function (@portable.single)")


def _check_types(fn):
    from_check = _TypeCheck(fn)
    for n in ast.walk(fn.node):
        from_check.node(n)


class _TypeCheck:
    """The type checks of one function (see :meth:`Function.check`)."""

    def __init__(self, fn):
        self.fn = fn
        self.types = fn.local_types()

    def integer(self, node, what):
        """Raise unless ``node`` is integer arithmetic; ``what`` names it ({} the snippet)."""
        if not self.fn._is_integer(node, self.types):
            undeclared = sorted(n for n in _names(node) if self.fn.types.get(n) in ("double", "float"))
            hint = f": declare {', '.join(f'{n}: Index' for n in undeclared)}" if undeclared else ""
            what = what.format(f"`{syntax.snippet(node)}`")
            raise self.fn.error(node, f"{what} is not integer arithmetic{hint}")

    def node(self, n):
        fn = self.fn
        if isinstance(n, ast.Return) and fn.kind in RETURNS:
            got = len(fn._values_types(n.value, self.types)) if n.value is not None else 0
            if got != len(RETURNS[fn.kind]):
                raise fn.error(n, f"{_a(fn.kind)} function returns {len(RETURNS[fn.kind]) or 'nothing'} "
                               f"(fastloss/losses/__init__.py), not {got}")
        elif isinstance(n, ast.For):
            for bound in n.iter.args:
                self.integer(bound, "the range bound {}")
        elif isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Mod, ast.FloorDiv)):
            if not (fn._is_integer(n.left, self.types) and fn._is_integer(n.right, self.types)):
                op = "%" if isinstance(n.op, ast.Mod) else "//"
                raise fn.error(n, f"`{op}` of floats (`{syntax.snippet(n)}`) is not supported by the Cython "
                               "translator (it takes integers)")
        elif isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow):
            if fn._is_integer(n.left, self.types) and fn._is_integer(n.right, self.types):
                raise fn.error(n, f"`**` of integers (`{syntax.snippet(n)}`) is not supported by the Cython "
                               "translator (C's pow is a float's)")
        elif isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Tuple) and isinstance(n.value, ast.Call):
            got = len(fn._values_types(n.value, self.types))
            if got != len(n.targets[0].elts):
                raise fn.error(n, f"{len(n.targets[0].elts)} names unpacked from `{syntax.snippet(n.value)}`, which "
                               f"returns {got} value{'s' * (got != 1)}")
        elif isinstance(n, (ast.Assign, ast.AugAssign)):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            for t in targets:
                if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and fn.what(t.value.id) == "params":
                    raise fn.error(n, "assigning an option is not supported by the Cython translator")
                if isinstance(t, ast.Name) and (fn.types.get(t.id) in POINTERS or fn.types.get(t.id) == "params"):
                    raise fn.error(n, f"assigning the parameter {t.id} ({DESCRIPTIONS[fn.types[t.id]]}) is not "
                                   "supported by the Cython translator")
            if isinstance(n, ast.AugAssign) and fn._is_integer(n.target, self.types) and (
                    isinstance(n.op, ast.Div) or not fn._is_integer(n.value, self.types)):
                raise fn.error(n, f"`{syntax.snippet(n)}` makes the integer {syntax.snippet(n.target)} a float in "
                               "Python, which is not supported by the Cython translator (C keeps it an integer)")
        elif isinstance(n, ast.Subscript):
            self.subscript(n)
        elif isinstance(n, ast.Call):
            self.call(n)

    def subscript(self, n):
        fn = self.fn
        if fn._is_shape(n):
            name = n.value.value.id
            if fn.types.get(name) not in POINTERS:
                raise fn.error(n, self.not_array(name, f"`{name}.shape` is read"))
            return
        if isinstance(n.value, ast.Call):
            returned = fn._callee(n.value).return_types()
            if len(returned) < 2 or n.slice.value >= len(returned):
                raise fn.error(n, f"`{syntax.snippet(n)}` indexes no tuple of that length")
            return
        name = n.value.id
        t = fn.what(name)
        if t not in POINTERS and t != "params":
            raise fn.error(n, self.not_array(name, f"`{name}` is indexed"))
        self.integer(n.slice, f"the index {{}} of {name}")

    def not_array(self, name, what):
        t = self.fn.types.get(name)
        if t in ("double", "float"):
            return f"{what} but the parameter is not declared an array: declare it ({name}: Array, Indices, " \
                   "Lanes or Scratch)"
        if t is not None:
            return f"{what} but the parameter is declared {DESCRIPTIONS[t]}"
        return f"{what} but it is no parameter (local arrays have no .shape: pass them on as Lanes or Scratch)" \
            if self.fn.local_arrays().get(name) else f"{what} but it is no array"

    def call(self, n):
        fn = self.fn
        callee = fn._callee(n)
        if _role(callee) == "native" and callee.name in ("lane_total", "lane_max"):
            if fn.what(n.args[0].id if isinstance(n.args[0], ast.Name) else None) != "lanes":
                raise fn.error(n, f"{callee.name} takes a lane array (a local lanes() or a Lanes parameter)")
        elif _role(callee) == "native" and callee.name == "is_single":
            if fn.types.get(n.args[0].id) != "floating*":
                raise fn.error(n, self.not_array(n.args[0].id, f"is_single({n.args[0].id}) asks"))
        elif _role(callee) == "function":
            for arg, pname in zip(n.args, callee.params):
                expected = callee.types[pname]
                actual = fn.what(arg.id) if isinstance(arg, ast.Name) else None
                if expected == "index":
                    self.integer(arg, f"{callee.name} takes an integer as {pname}, and {{}}")
                    continue
                if expected in POINTERS or expected == "params":
                    ok = actual == expected
                else:
                    ok = actual not in POINTERS and actual != "params" and not (isinstance(arg, ast.Name) and
                                                                                fn.local_arrays().get(arg.id))
                if not ok:
                    hint = (f" (declare {arg.id}: " + next(k for k, v in MARKERS.items() if v == expected) + ")"
                            if actual in ("double", "float") and arg.id in fn.types and expected in MARKERS.values()
                            else "")
                    raise fn.error(n, f"{callee.name} takes {DESCRIPTIONS[expected]} as {pname}, and "
                                   f"`{syntax.snippet(arg)}` is {DESCRIPTIONS.get(actual, 'not one')}{hint}")
