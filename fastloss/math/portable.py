"""One Python source, compiled for every backend.

A loss's math is written once as plain Python functions that call each other.
``@portable`` marks such a function. ``compile_for(fn, target)`` rebuilds it with
every portable function it references replaced by that function's compiled form for
the same target, then compiles it with the target's compiler (``numba.njit`` on the
CPU, ``numba.cuda.jit(device=True)`` on the GPU). The plain function still runs as
Python, which keeps the math readable and testable on its own.
"""

import types

__all__ = ["portable", "compile_for"]


class Portable:
    """A plain Python function whose portable callees are resolved per target."""

    def __init__(self, fn):
        self.py_func = fn
        self.__name__ = fn.__name__
        self.__qualname__ = fn.__qualname__
        self.__module__ = fn.__module__
        self.__doc__ = fn.__doc__
        self._compiled = {}

    def __call__(self, *args):
        return self.py_func(*args)

    def __repr__(self):
        return f"<portable {self.__module__}.{self.__qualname__}>"


def portable(fn):
    """Mark ``fn`` as math that every backend compiles from this one source."""
    return Portable(fn)


def compile_for(fn, target, compiler):
    """Compile portable ``fn`` (and, recursively, its portable callees) for ``target``.

    ``target`` is a name ("numba", "cuda") under which results are memoised;
    ``compiler`` turns a plain Python function into a compiled one.
    """
    if not isinstance(fn, Portable):
        raise TypeError(f"{fn!r} is not a @portable function")
    compiled = fn._compiled.get(target)
    if compiled is None:
        compiled = compiler(rebind(fn.py_func, target, compiler))
        fn._compiled[target] = compiled
    return compiled


def rebind(py_func, target, compiler):
    """A copy of ``py_func`` whose portable globals are compiled for ``target``."""
    namespace = dict(py_func.__globals__)
    for name in py_func.__code__.co_names:
        value = namespace.get(name)
        if isinstance(value, Portable):
            namespace[name] = compile_for(value, target, compiler)
    clone = types.FunctionType(
        py_func.__code__, namespace, py_func.__name__, py_func.__defaults__, py_func.__closure__
    )
    clone.__qualname__ = py_func.__qualname__
    clone.__module__ = py_func.__module__
    clone.__doc__ = py_func.__doc__
    return clone
