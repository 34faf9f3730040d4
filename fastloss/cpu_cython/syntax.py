"""The subset of Python that the Cython translator accepts: an explicit allow-list.

:func:`check` walks a portable function's statements and expressions and raises
:class:`TranslationError` (``path:line: <construct> is not supported by the Cython
translator``) at the first construct that is not listed here. What it accepts is what
:mod:`translate` knows how to write in Cython with Python's semantics:

* statements: ``x = e``, ``a, b = f(...)`` (a function's tuple, or a tuple ``e1, e2``),
  ``z[i] = e``, ``x op= e`` and ``z[i] op= e`` for ``+ - * /``, ``return`` (a value or a
  tuple of values), ``if``/``elif``/``else``, ``for i in range(...)`` (one to three
  arguments, a step a nonzero integer literal), ``while`` (no ``else``), ``break``,
  ``continue``, ``pass``, a call of a function as a statement, and the docstring;
* expressions: numbers (``int``, ``float``, ``True``/``False``), names (parameters,
  locals, module constants), ``+ - * / // % ** << >> & |``, unary ``- + not``, ``and``/``or``,
  comparisons (``== != < <= > >=``, chains too), ``a if c else b``, ``z[i]`` of an array
  or of the options, ``z.shape[0]``, ``f(...)[k]`` of a tuple, ``math.inf``, ``math.nan``;
* calls, positional arguments only, of a portable function (not the function itself), a
  native, ``abs`` or ``math.sqrt``; ``lanes(v)`` and ``scratch()`` only as ``x = ...``.

Types are checked afterwards, in :mod:`functions` (an array index must be integer
arithmetic, ``%`` and ``//`` take integers, ``x op= e`` keeps an integer an integer, ...).
"""

import ast

OPERATORS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.LShift, ast.RShift,
             ast.BitAnd, ast.BitOr)
AUGMENTED = (ast.Add, ast.Sub, ast.Mult, ast.Div)
UNARY = (ast.USub, ast.UAdd, ast.Not)
COMPARISONS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
SYMBOLS = {ast.Mod: "%", ast.FloorDiv: "//", ast.Pow: "**", ast.BitXor: "^", ast.MatMult: "@", ast.Invert: "~",
           ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.LShift: "<<",
           ast.RShift: ">>", ast.BitAnd: "&", ast.BitOr: "|"}  # for the messages
CALLABLE_BUILTINS = {"abs": 1}
LIBC = {"sqrt"}  # what ``math.f`` may call: every other function is our own (math/elementary.py)
#: How an unsupported node is named in the error (else its class name).
NAMES = {
    ast.Try: "`try`", ast.With: "`with`", ast.Raise: "`raise`", ast.Assert: "`assert`",
    ast.Global: "`global`", ast.Nonlocal: "`nonlocal`", ast.Delete: "`del`", ast.Import: "`import`",
    ast.ImportFrom: "`import`", ast.FunctionDef: "a nested function", ast.ClassDef: "a class",
    ast.Lambda: "a lambda", ast.ListComp: "a list comprehension", ast.SetComp: "a set comprehension",
    ast.DictComp: "a dict comprehension", ast.GeneratorExp: "a generator expression", ast.List: "a list",
    ast.Dict: "a dict", ast.Set: "a set", ast.JoinedStr: "an f-string", ast.Starred: "a starred expression",
    ast.NamedExpr: "`:=`", ast.Slice: "a slice", ast.Yield: "`yield`", ast.YieldFrom: "`yield from`",
    ast.AnnAssign: "an annotated assignment", ast.Tuple: "a tuple here", ast.Await: "`await`",
    ast.AsyncFor: "`async for`", ast.AsyncWith: "`async with`", ast.AsyncFunctionDef: "an async function",
    ast.Match: "`match`",
}


class TranslationError(Exception):
    """A construct or a declaration that the Cython translator does not accept; the message
    starts ``path:line:``."""

    def __init__(self, path, node, message):
        self.path = path
        self.line = getattr(node, "lineno", 0)
        super().__init__(f"{path}:{self.line}: {message}")


def snippet(node):
    """The first line of ``node``'s source, shortened, to name it in a message."""
    text = ast.unparse(node).splitlines()[0] if not isinstance(node, ast.Slice) else ast.unparse(node)
    return text if len(text) <= 40 else text[:37] + "..."


def check(fn):
    """Raise :class:`TranslationError` at the first construct of ``fn`` (a
    :class:`translate.Function`) outside the allow-list."""
    _Checker(fn).function()


class _Checker:
    def __init__(self, fn):
        self.fn = fn
        self.params = set(fn.params)
        self.locals = {n.id for n in ast.walk(fn.node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}

    def unsupported(self, node, what=None):
        if what is None:
            name = NAMES.get(type(node), f"`{type(node).__name__}`")
            what = f"{name} (`{snippet(node)}`)" if isinstance(node, (ast.expr, ast.stmt)) else name
        return TranslationError(self.fn.source.path, node, f"{what} is not supported by the Cython translator")

    def function(self):
        node = self.fn.node
        a = node.args
        for extra, what in ((a.posonlyargs, "a positional-only parameter"), (a.kwonlyargs, "a keyword-only parameter"),
                            (a.defaults, "a default value"), (a.vararg and [a.vararg], "`*args`"),
                            (a.kwarg and [a.kwarg], "`**kwargs`")):
            if extra:
                raise self.unsupported(extra[0], what)
        if node.returns is not None:
            raise self.unsupported(node.returns, "a return annotation (the decorator declares a function's kind)")
        for n in ast.walk(node):
            local = n.id if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store) else None
            name = n.arg if isinstance(n, ast.arg) else local
            if name is not None and _role(self.fn.resolve.get(name)) is not None:
                raise TranslationError(self.fn.source.path, n, f"the {'local' if local else 'parameter'} `{name}` "
                                       f"shadows the module's {_role(self.fn.resolve.get(name))} `{name}`")
        self.block(node.body[1:] if docstring(node) else node.body)

    def block(self, statements):
        for s in statements:
            method = getattr(self, f"stmt_{type(s).__name__}", None)
            if method is None:
                raise self.unsupported(s)
            method(s)

    def stmt_Assign(self, s):
        if len(s.targets) != 1:
            raise self.unsupported(s, "a chained assignment")
        target = s.targets[0]
        if isinstance(target, ast.Tuple):
            if not all(isinstance(e, ast.Name) for e in target.elts):
                raise self.unsupported(target, "unpacking into anything but names")
            if isinstance(s.value, ast.Tuple):
                if len(s.value.elts) != len(target.elts):
                    raise self.unsupported(s, "unpacking a tuple of another length")
                for e in s.value.elts:
                    self.expr(e)
                return
            if not isinstance(s.value, ast.Call):
                raise self.unsupported(s.value, "unpacking anything but a function's tuple")
        elif isinstance(target, ast.Subscript):
            self.expr(target)
        elif not isinstance(target, ast.Name):
            raise self.unsupported(target)
        self.expr(s.value, local_array=isinstance(target, ast.Name))

    def stmt_AugAssign(self, s):
        if not isinstance(s.op, AUGMENTED):
            raise self.unsupported(s, f"`{SYMBOLS.get(type(s.op), type(s.op).__name__)}=` (write x = x op y)")
        if not isinstance(s.target, (ast.Name, ast.Subscript)):
            raise self.unsupported(s.target)
        self.expr(s.target)
        self.expr(s.value)

    def stmt_Return(self, s):
        if isinstance(s.value, ast.Tuple):
            for e in s.value.elts:
                self.expr(e)
        elif s.value is not None:
            self.expr(s.value)

    def stmt_If(self, s):
        self.expr(s.test)
        self.block(s.body)
        self.block(s.orelse)

    def stmt_For(self, s):
        if s.orelse:
            raise self.unsupported(s, "`for ... else`")
        if not isinstance(s.target, ast.Name):
            raise self.unsupported(s.target, "a loop target that is not a name")
        it = s.iter
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
                and 1 <= len(it.args) <= 3 and not it.keywords):
            raise self.unsupported(it, f"a loop over `{snippet(it)}` (only `for i in range(...)`)")
        if len(it.args) == 3 and _integer_literal(it.args[2]) in (None, 0):
            raise self.unsupported(it.args[2], "a `range` step that is not a nonzero integer literal")
        for arg in it.args:
            self.expr(arg)
        self.block(s.body)

    def stmt_While(self, s):
        if s.orelse:
            raise self.unsupported(s, "`while ... else`")
        self.expr(s.test)
        self.block(s.body)

    def stmt_Break(self, s):
        pass

    stmt_Continue = stmt_Pass = stmt_Break

    def stmt_Expr(self, s):
        if not isinstance(s.value, ast.Call):
            raise self.unsupported(s.value, "a string" if _is_string(s.value) else None)
        self.expr(s.value)

    def expr(self, e, local_array=False):
        if isinstance(e, ast.Call):
            return self.call(e, local_array)
        method = getattr(self, f"expr_{type(e).__name__}", None)
        if method is None:
            raise self.unsupported(e)
        method(e)

    def expr_BinOp(self, e):
        if not isinstance(e.op, OPERATORS):
            raise self.unsupported(e, f"the operator `{SYMBOLS.get(type(e.op), type(e.op).__name__)}`")
        self.expr(e.left)
        self.expr(e.right)

    def expr_UnaryOp(self, e):
        if not isinstance(e.op, UNARY):
            raise self.unsupported(e, f"the operator `{SYMBOLS.get(type(e.op), type(e.op).__name__)}`")
        self.expr(e.operand)

    def expr_BoolOp(self, e):
        for v in e.values:
            self.expr(v)

    def expr_Compare(self, e):
        for op in e.ops:
            if not isinstance(op, COMPARISONS):
                raise self.unsupported(e, f"the comparison `{SYMBOLS.get(type(op), type(op).__name__)}`")
        self.expr(e.left)
        for c in e.comparators:
            self.expr(c)

    def expr_IfExp(self, e):
        self.expr(e.test)
        self.expr(e.body)
        self.expr(e.orelse)

    def expr_Constant(self, e):
        if _is_string(e):
            raise self.unsupported(e, f"a string (`{snippet(e)}`)")
        if type(e.value) not in (int, float, bool):
            raise self.unsupported(e, f"the constant `{snippet(e)}`")

    def expr_Name(self, e):
        if e.id in self.params or e.id in self.locals:
            return
        target = self.fn.resolve.get(e.id)
        if target is None:
            raise self.unsupported(e, f"the name `{e.id}` (no parameter, local or module constant)")
        if _role(target) != "constant":
            raise self.unsupported(e, f"`{e.id}` as a value (a function is only called)")

    def expr_Attribute(self, e):
        if not (isinstance(e.value, ast.Name) and e.value.id == "math" and e.attr in ("inf", "nan")):
            raise self.unsupported(e, f"the attribute `{snippet(e)}`")

    def expr_Subscript(self, e):
        value, index = e.value, e.slice
        if isinstance(index, ast.Slice):
            raise self.unsupported(index, f"a slice (`{snippet(e)}`)")
        if isinstance(value, ast.Attribute) and value.attr == "shape" and isinstance(value.value, ast.Name):
            if _integer_literal(index) != 0:
                raise self.unsupported(e, f"`{snippet(e)}` (arrays are 1-D: only `.shape[0]`)")
            return self.expr_Name(value.value)
        if isinstance(value, ast.Call):
            if _integer_literal(index) is None or _integer_literal(index) < 0:
                raise self.unsupported(e, f"`{snippet(e)}` (a tuple's element by a nonnegative literal)")
            return self.call(value)
        if not isinstance(value, ast.Name):
            raise self.unsupported(e, f"indexing `{snippet(value)}`")
        if (_integer_literal(index) or 0) < 0:
            raise self.unsupported(e, f"a negative index (`{snippet(e)}`)")
        self.expr_Name(value)
        self.expr(index)

    def call(self, e, local_array=False):
        if e.keywords or any(isinstance(a, ast.Starred) for a in e.args):
            raise self.unsupported(e, f"a call with keyword or starred arguments (`{snippet(e)}`)")
        func = e.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "math" \
                and func.attr in LIBC:
            arity = 1
        elif not isinstance(func, ast.Name):
            raise self.unsupported(e, f"a call of `{snippet(func)}`")
        elif func.id in CALLABLE_BUILTINS and func.id not in self.fn.resolve:
            arity = CALLABLE_BUILTINS[func.id]
        else:
            target = self.fn.resolve.get(func.id)
            if target is self.fn:
                raise self.unsupported(e, f"recursion (`{func.id}` calls itself)")
            if _role(target) == "native":
                if target.local_array and not local_array:
                    raise self.unsupported(e, f"`{snippet(e)}` outside `x = {func.id}(...)`")
                if target.name == "lanes" and len(e.args) == 1 and _is_none(e.args[0]):
                    return  # lanes(None): uninitialised
                if target.name == "is_single" and not (len(e.args) == 1 and isinstance(e.args[0], ast.Name)):
                    raise self.unsupported(e, "`is_single` of anything but an array's name")
            elif _role(target) != "function":
                raise self.unsupported(e, f"a call of `{func.id}` (no portable function, native or `abs`)")
            arity = target.arity
        if len(e.args) != arity:
            raise self.unsupported(e, f"a call of `{snippet(func)}` with {len(e.args)} arguments (it takes {arity})")
        for a in e.args:
            self.expr(a)


def docstring(node):
    """Whether the function ``node`` begins with a docstring."""
    return bool(node.body) and isinstance(node.body[0], ast.Expr) and _is_string(node.body[0].value)


def _integer_literal(node):
    """The value of an integer literal (``-3`` too), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _integer_literal(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    return None


def _role(target):
    """"function", "native" or "constant": what a name of a module's table is (or None)."""
    return getattr(target, "role", None)


def _is_string(node):
    return isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes))


def _is_none(node):
    return isinstance(node, ast.Constant) and node.value is None
