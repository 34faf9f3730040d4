"""fastloss: every loss and its gradient in one fused pass.

    >>> import numpy as np, fastloss as fl
    >>> loss, grad = fl.huber(np.array([0.0, 3.0]), np.array([0.5, 0.0]), delta=1.0)

Each loss function takes the arrays (predictions first) and keyword options; see
``help(fastloss.<name>)`` for its formula and options, :func:`losses` for the list, and
the contract (docs/contract.md) for what every call guarantees.
"""

import inspect

import numpy as np

from . import _api, cpu_cython, cuda
from ._api import evaluate
from ._arrays import fast_views
from ._registry import SPECS, export, lookup
from ._result import LossResult
from ._threads import get_num_threads, num_threads, set_num_threads

__version__ = "0.1.0"

_COMMON_DOC = """
Common keyword arguments:
    reduction: "mean" (default), "sum" or "none". ``grad`` is the gradient of what ``loss``
        is; for "none", of ``loss.sum()``.
    sample_weight: per-sample weights broadcastable to the unreduced loss; "mean" is
        sum(w * l) / number of losses.
    grad: True (default), False (loss only) or "only" (gradient only).
    out: preallocated gradient array (a tuple of them for several inputs); may be the
        prediction itself, to overwrite it in place.
    hessian: also return the hessian diagonal as ``res.hess`` (where the loss has one).
    backend: "auto" (default: CUDA for device arrays, else the Cython extension, else Numba),
        "numba", "cython" or "cuda".
"""


def _signature(spec):
    P = inspect.Parameter
    params = [P(name, P.POSITIONAL_OR_KEYWORD) for name in spec.inputs]
    for o in spec.options:
        params.append(P(o.name, P.KEYWORD_ONLY, default=o.default))
    if spec.family == "rowwise":
        params.append(P("axis", P.KEYWORD_ONLY, default=-1))
    for name, default in (
        ("reduction", "mean"), ("sample_weight", None), ("grad", True), ("out", None),
        ("hessian", False), ("backend", "auto"),
    ):
        params.append(P(name, P.KEYWORD_ONLY, default=default))
    return inspect.Signature(params)


def _docstring(spec):
    lines = [
        f"{spec.name}({', '.join(spec.inputs)}, ...): ``{spec.formula}``.",  # literal: |r| is not reST
        "",
        f"Convention: {spec.convention}.",
        "Per element; reduced over every element." if spec.family == "elementwise"
        else "Per row of the class/feature axis (``axis``, default last); reduced over rows.",
    ]
    if spec.grads > 1:
        lines.append(f"``grad`` is a tuple: the gradients with respect to {', '.join(spec.inputs[: spec.grads])}.")
    if spec.options:
        lines += ["", "Options:"]
        lines += [f"    {o.name}={o.default!r}: {o.doc}." for o in spec.options]
    if spec.hessian:
        lines += ["", "Supports hessian=True (the hessian diagonal)."]
    if spec.aliases:
        lines += ["", f"Aliases: {', '.join(spec.aliases)}."]
    lines.append(_COMMON_DOC)
    lines.append("Returns a LossResult (unpacks as ``loss, grad``; ``.hess`` with hessian=True).")
    return "\n".join(lines)


def _make_loss(spec):
    fast = cpu_cython.fast_spec(spec, LossResult)
    fast_params = cpu_cython.fast_params

    def fast_result(fast_call, arrays, options):
        if not options:  # the commonest call of all, with no Python-level work
            return fast_call(fast, arrays, "mean", fast.params)
        params = fast_params(spec, options, fast.params)
        if params is not None and isinstance(reduction := options.get("reduction", "mean"), str):
            return fast_call(fast, arrays, reduction, params, options.get("grad", True),
                             options.get("sample_weight"), options.get("hessian", False),
                             options.get("ignore_index"), options.get("out"))
        return None

    def loss_function(*arrays, **options):
        fast_call = _api.FAST_CALL
        if fast is not None and fast_call is not None:
            if arrays and type(arrays[0]) is not np.ndarray:  # PyTorch CPU tensors, JAX CPU arrays: NumPy views
                views, back = fast_views(arrays)
                result = fast_result(fast_call, views, options) if back is not None else None
                if result is not None:
                    return back(result)
            else:
                result = fast_result(fast_call, arrays, options)
                if result is not None:
                    return result
        return evaluate(spec, arrays, options)

    loss_function.__name__ = loss_function.__qualname__ = spec.name
    loss_function.__module__ = __name__
    loss_function.__doc__ = _docstring(spec)
    loss_function.__signature__ = _signature(spec)
    return loss_function


_LOSSES = export(globals(), _make_loss)


class LossInfo(dict):
    """What :func:`losses` says of one loss (a dict with attribute access)."""

    __getattr__ = dict.__getitem__


def backends():
    """The backends of this installation: "numba", "cython" where the extension is built,
    and "cuda" where numba-cuda is installed and sees a GPU (or runs its simulator)."""
    cpu = ("numba", "cython") if cpu_cython.AVAILABLE else ("numba",)
    return (*cpu, "cuda") if cuda.available() else cpu


def losses():
    """Every loss by name: its inputs, options (with defaults), backends, whether it has a
    hessian, its family, aliases and formula."""
    available = backends()
    return {
        s.name: LossInfo(
            name=s.name,
            inputs=s.inputs,
            differentiable=s.inputs[: s.grads],
            options={o.name: o.default for o in s.options},
            backends=available,
            hessian=s.hessian,
            family=s.family,
            aliases=s.aliases,
            formula=s.formula,
            convention=s.convention,
        )
        for s in SPECS
    }


def compute(name, *arrays, **options):
    """Call the loss called ``name`` (or an alias): ``compute("huber", pred, target, delta=2.0)``."""
    return globals()[lookup(name).name](*arrays, **options)


__all__ = ["LossResult", "backends", "compute", "get_num_threads", "losses", "num_threads", "set_num_threads",
           *_LOSSES]
