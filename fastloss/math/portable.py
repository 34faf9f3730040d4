"""One Python source, compiled for every backend.

A loss's math is written once as plain Python functions that call each other.
``@portable`` marks such a function. ``compile_for(fn, target)`` rebuilds it with
every portable function it references replaced by that function's compiled form for
the same target, then compiles it with the target's compiler (``numba.njit`` on the
CPU, ``numba.cuda.jit(device=True)`` on the GPU). The plain function still runs as
Python, which keeps the math readable and testable on its own.

Two escape hatches keep that single source honest where targets really differ:

* ``@portable(cuda=math.exp)`` names what a target uses *instead* of the function (the GPU
  has its own fast ``exp``; the CPU backends compile our branch-free polynomial); the
  target ``python`` is the function run as plain Python, where NumPy's scalar types
  need it (``wide``);
* a :class:`Native` is a primitive that cannot be written in Python's arithmetic (a bit
  cast), given as a plain Python reference plus one implementation per target.

A function declares its kind by the decorator's form, for the translators that need types
(C's): ``@portable`` is a helper that computes in float64, ``@portable.single`` one that
computes in float32 (its float parameters, locals and results are float32), and
``@portable.element``, ``@portable.row`` and ``@portable.rows`` are a loss's math, whose
parameters are fixed by the conventions of :mod:`fastloss.losses`. A helper's parameters
that are not floats are annotated (:mod:`.declare`). Each form takes the same arguments
as ``@portable``.
"""

import types

__all__ = ["portable", "native", "compile_for"]


class Portable:
    """A plain Python function whose portable callees are resolved per target."""

    def __init__(self, fn, overrides=None, inline=True, kind="helper"):
        self.py_func = fn
        self.overrides = dict(overrides or {})
        self.inline = inline
        self.kind = kind
        self.__name__ = fn.__name__
        self.__qualname__ = fn.__qualname__
        self.__module__ = fn.__module__
        self.__doc__ = fn.__doc__
        self._compiled = {}

    def __call__(self, *args):
        return self.overrides.get("python", self.py_func)(*args)

    def __repr__(self):
        return f"<portable {self.__module__}.{self.__qualname__}>"


def portable(fn=None, *, inline=True, **overrides):
    """Mark ``fn`` as math that every backend compiles from this one source.

    ``@portable(target=replacement)`` makes ``target`` use ``replacement`` (a function its
    compiler already knows, such as ``math.exp``, or another portable function) wherever
    ``fn`` is called. ``inline=False`` asks the compilers to call ``fn`` rather than paste
    it into each caller: for a whole vectorised loop over a row, which would otherwise be
    compiled (slowly) again inside every loss that uses it.
    """
    if fn is None:
        return lambda f: Portable(f, overrides, inline)
    return Portable(fn)


#: kind -> the number of parameters its convention fixes (None: any).
KINDS = {"helper": None, "single": None, "element": 4, "row": 10, "rows": 8}


def _kind(kind):
    def declare(fn=None, *, inline=True, **overrides):
        def make(f):
            arity = KINDS[kind]
            if arity is not None and f.__code__.co_argcount != arity:
                raise TypeError(f"{f.__qualname__}: a {kind} function takes {arity} parameters "
                                "(fastloss.losses documents them)")
            return Portable(f, overrides, inline, kind)

        return make if fn is None else make(fn)

    declare.__name__ = declare.__qualname__ = f"portable.{kind}"
    declare.__doc__ = f"``@portable`` for a function of kind {kind!r} (see the module's docstring)."
    return declare


portable.single = _kind("single")
portable.element = _kind("element")
portable.row = _kind("row")
portable.rows = _kind("rows")


class Native:
    """A primitive with a plain Python reference and one implementation per target.

    ``impls`` maps a target name to a zero-argument factory that returns the target's
    callable (built lazily, so that importing the math imports no compiler).
    """

    def __init__(self, fn, impls):
        self.py_func = fn
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self._impls = impls
        self._built = {}

    def __call__(self, *args):
        return self.py_func(*args)

    def register(self, target, factory):
        self._impls[target] = factory

    def for_target(self, target):
        impl = self._built.get(target)
        if impl is None:
            factory = self._impls.get(target)
            if factory is None:
                raise NotImplementedError(f"native {self.__name__} has no {target} implementation")
            impl = self._built[target] = factory()
        return impl


def native(fn):
    """Declare ``fn`` (its plain Python reference) as a :class:`Native`; targets add their
    implementations with ``fn.register(target, factory)``."""
    return Native(fn, {})


def compile_for(fn, target, compiler):
    """Compile portable ``fn`` (and, recursively, its portable callees) for ``target``.

    ``target`` is a name ("numba", "cuda") under which results are memoised;
    ``compiler`` turns a plain Python function into a compiled one.
    """
    if not isinstance(fn, Portable):
        raise TypeError(f"{fn!r} is not a @portable function")
    if target in fn.overrides:
        override = fn.overrides[target]
        return compile_for(override, target, compiler) if isinstance(override, Portable) else override
    compiled = fn._compiled.get(target)
    if compiled is None:
        clone = rebind(fn.py_func, target, compiler)
        clone.portable_inline = fn.inline
        compiled = compiler(clone)
        fn._compiled[target] = compiled
    return compiled


def rebind(py_func, target, compiler):
    """A copy of ``py_func`` whose portable globals are compiled for ``target``."""
    namespace = dict(py_func.__globals__)
    for name in py_func.__code__.co_names:
        value = namespace.get(name)
        if isinstance(value, Portable):
            namespace[name] = compile_for(value, target, compiler)
        elif isinstance(value, Native):
            namespace[name] = value.for_target(target)
    clone = types.FunctionType(
        py_func.__code__, namespace, py_func.__name__, py_func.__defaults__, py_func.__closure__
    )
    clone.__qualname__ = py_func.__qualname__
    clone.__module__ = py_func.__module__
    clone.__doc__ = py_func.__doc__
    return clone
