"""Every fastloss loss as a differentiable JAX function: ``fastloss.jax.<name>``.

    >>> import jax, jax.numpy as jnp, fastloss.jax as flj
    >>> loss = jax.jit(lambda z, y: flj.sparse_softmax_cross_entropy(z, y, label_smoothing=0.1))
    >>> jax.grad(lambda z: flj.sparse_softmax_cross_entropy(z, labels))(logits)

Each function is a ``jax.custom_vjp``: the forward pass runs fastloss's fused kernel on
the host through ``jax.pure_callback`` (so it works under ``jax.jit``, ``jax.grad`` and
``jax.vmap``, one call per mapped element) and keeps the gradient as the residual; the
backward pass multiplies it by the incoming cotangent (per sample for
``reduction="none"``). Same names, arrays and options as ``fastloss.<name>``, except
``out``, ``grad`` and ``hessian``. Gradients flow to the differentiable inputs (targets
and labels are data: their cotangents are zero). Options are static: a new set of options
traces a new function, and a traced option is refused with a clear error; ``sample_weight``
is an operand and may be traced. Shape, dtype and option errors are raised while tracing,
with fastloss's own messages (labels out of range, which only the data shows, are found
when the kernel runs).

Install with ``pip install "fastloss[jax]"``.
"""

import functools

try:
    import jax
    import jax.numpy as jnp
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError('fastloss.jax needs JAX: pip install "fastloss[jax]"') from exc

import numpy as np

import fastloss as _fl

from . import _plan
from ._registry import export

_REFUSED = ("out", "grad", "hessian")


def _host(name, options, n_grads, n_inputs):
    """The host callback: fastloss on NumPy arrays, returning (loss, *gradients); an
    operand after the loss's own inputs is the sample weight."""

    def compute(*arrays):
        weight = {"sample_weight": np.asarray(arrays[n_inputs])} if len(arrays) > n_inputs else {}
        res = _fl.compute(name, *(np.asarray(a) for a in arrays[:n_inputs]), **options, **weight)
        grads = res.grad if isinstance(res.grad, tuple) else (res.grad,)
        return (np.asarray(res.loss), *grads[:n_grads])

    return compute


@functools.lru_cache(maxsize=256)
def _function(name, frozen):
    """The custom_vjp function of loss ``name`` with the (hashable) options ``frozen``."""
    spec = _fl.lookup(name)
    options = {k: _thaw(v) for k, v in frozen}
    n_grads = spec.grads
    host = _host(spec.name, options, n_grads, len(spec.inputs))
    rows = spec.family == "rowwise"

    def shapes(arrays):
        x = arrays[0]
        axis = options.get("axis", -1) % x.ndim if rows else None
        if options.get("reduction", "mean") == "none":
            loss_shape = tuple(s for k, s in enumerate(x.shape) if k != axis)
        else:
            loss_shape = ()
        out = [jax.ShapeDtypeStruct(loss_shape, x.dtype)]
        out += [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in arrays[:n_grads]]
        return tuple(out), axis

    def run(*arrays):
        result_shapes, axis = shapes(arrays)
        return jax.pure_callback(host, result_shapes, *arrays, vmap_method="sequential"), axis

    @jax.custom_vjp
    def loss(*arrays):
        return run(*arrays)[0][0]

    def forward(*arrays):
        (value, *grads), _ = run(*arrays)
        return value, (tuple(grads), tuple(arrays))

    def backward(residual, cotangent):
        grads, arrays = residual
        _, axis = shapes(arrays)
        if axis is not None and options.get("reduction", "mean") == "none":
            cotangent = jnp.expand_dims(cotangent, axis)
        out = [g * cotangent for g in grads]
        for a in arrays[n_grads:]:  # data and weights: zero cotangents (float0 for integer labels)
            if jnp.issubdtype(a.dtype, jnp.inexact):
                out.append(jnp.zeros_like(a))
            else:
                out.append(np.zeros(a.shape, dtype=jax.dtypes.float0))
        return tuple(out)

    loss.defvjp(forward, backward)
    return loss


def _check(spec, arrays, options):
    """The checks of contract section 3 that need no data: the arrays' dtypes and shapes, and
    the options (static: a traced option has no value to check or to hand the kernel)."""
    for name, value in options.items():
        if isinstance(value, jax.core.Tracer) and name != "sample_weight":  # the weights are an operand
            raise TypeError(
                f"fastloss.jax.{spec.name}: option {name} is traced, but options are static; pass a Python "
                "value (under jit, close over it or mark it static)"
            )
    unknown = set(options) - set(spec.option_names) - {"axis", "reduction", "sample_weight", "backend"}
    if unknown:
        raise TypeError(f"{spec.name}() got an unexpected keyword argument {sorted(unknown)[0]!r}")
    for o in spec.options:
        if o.name in options:
            o.check(options[o.name])
    _plan.check_flags(spec, options.get("reduction", "mean"), True, False, options.get("backend", "auto"))
    _plan.layout(spec, arrays, options.get("axis", -1))


def _weight_operand(spec, options, x, weight):
    """``sample_weight`` broadcast to the unreduced loss's shape (the callback's operands
    need static shapes)."""
    shape = x.shape
    if spec.family == "rowwise" and x.ndim:
        axis = options.get("axis", -1)
        if isinstance(axis, int) and -x.ndim <= axis < x.ndim:
            shape = tuple(s for k, s in enumerate(x.shape) if k != axis % x.ndim)
    weight = jnp.asarray(weight)
    try:
        return jnp.broadcast_to(weight, shape)
    except (ValueError, TypeError):
        raise ValueError(
            f"sample_weight of shape {weight.shape} does not broadcast to the unreduced loss's shape {shape}"
        ) from None


def _freeze(value):
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    return value


def _thaw(value):
    if isinstance(value, tuple) and len(value) == 4 and value[0] == "array":
        return np.frombuffer(value[3], dtype=np.dtype(value[1])).reshape(value[2])
    return value


def _make(spec):
    def loss_function(*arrays, **options):
        for name in _REFUSED:
            if name in options:
                raise TypeError(f"fastloss.jax.{spec.name} computes the gradient through jax.grad: no {name}=")
        if len(arrays) < len(spec.inputs):
            arrays = (*arrays, *(options.pop(n) for n in spec.inputs[len(arrays):] if n in options))
        arrays = [jnp.asarray(a) for a in arrays]
        # fastloss's own errors while tracing, not a host callback's failure at run time.
        _check(spec, arrays, options)
        weight = options.pop("sample_weight", None)
        if weight is not None:  # an operand, so that it may be traced (Keras's weights under jit)
            arrays.append(_weight_operand(spec, options, arrays[0], weight))
        frozen = tuple(sorted((k, _freeze(np.asarray(v) if isinstance(v, (list, tuple)) else v))
                              for k, v in options.items()))
        return _function(spec.name, frozen)(*arrays)

    base = getattr(_fl, spec.name)
    loss_function.__name__ = loss_function.__qualname__ = spec.name
    loss_function.__module__ = __name__
    loss_function.__doc__ = f"Differentiable {spec.name} for JAX (custom_vjp over the fused pass).\n\n" + (
        base.__doc__ or "")
    return loss_function


_LOSSES = export(globals(), _make)

__all__ = [*_LOSSES]
