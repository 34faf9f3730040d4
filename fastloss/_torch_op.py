"""fastloss's fused pass as one PyTorch custom operator, ``fastloss::fused_loss``.

An operator registered with ``torch.library`` is opaque to ``torch.compile``: it traces the
call from its fake implementation (shapes and dtypes only) instead of breaking the graph,
and it is batched by ``torch.func.vmap`` through its vmap rule. Autograd lives one level
up, in :class:`fastloss.torch.FusedLoss`, whose forward calls this operator.

A call carries the loss's name and its scalar options as JSON text (constants to the
compiler), its arrays as up to three tensors, the sample weights and the array option
(``class_weight``, ``pos_weight``) as tensors, and whether to compute the gradient. It
returns the loss and three gradient slots: the gradients of the loss's differentiable
inputs, empty tensors in the other slots.
"""

import functools
import json

import numpy as np
import torch

import fastloss as _fl

SLOTS = 3  # the most arrays a loss takes (triplet: anchor, positive, negative)


def split_options(options, device):
    """(JSON text of the scalar options, the array option as a float64 tensor or None).

    A loss has at most one array option (``class_weight``, ``pos_weight``); it travels as
    a tensor, the text names it. NumPy scalars count as numbers. The text is a constant to
    ``torch.compile``."""
    options = {k: v.item() if isinstance(v, np.generic) else v for k, v in options.items()}
    array = next((k for k, v in options.items() if v is not None and not isinstance(v, (bool, int, float, str))), None)
    scalars = tuple(sorted((k, v) for k, v in options.items() if k != array))
    aux = None if array is None else torch.as_tensor(options[array], dtype=torch.float64, device=device)
    return _encode((*scalars, ("array_option", array))), aux


@torch.compiler.assume_constant_result
def _encode(items):
    return _json(items)


@functools.lru_cache(maxsize=1024)
def _json(items):
    return json.dumps(dict(items))


def decode_options(text, aux):
    """The options of a call: its text's scalars, and the array option ``aux`` by name."""
    options = dict(_decode(text))
    array = options.pop("array_option")
    if array is not None:
        options[array] = aux
    return options


@torch.compiler.assume_constant_result
def _decode(text):
    return _loads(text)


@functools.lru_cache(maxsize=1024)
def _loads(text):
    return json.loads(text)


def compute(
    name: str, options: str, x: torch.Tensor, y: torch.Tensor | None, v: torch.Tensor | None,
    sample_weight: torch.Tensor | None, aux: torch.Tensor | None, want_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, gradient slot 0, 1, 2) of loss ``name`` on the arrays ``x, y, v`` (None
    where the loss takes fewer), with the options ``options`` and array option ``aux``."""
    arrays = [a for a in (x, y, v) if a is not None]
    res = _fl.compute(name, *arrays, **decode_options(options, aux), sample_weight=sample_weight, grad=want_grad)
    grads = (res.grad if isinstance(res.grad, tuple) else (res.grad,)) if want_grad else ()
    loss = res.loss if isinstance(res.loss, torch.Tensor) else torch.as_tensor(res.loss, device=x.device)
    return (loss, *grads, *(x.new_empty(0) for _ in range(SLOTS - len(grads))))


#: The operator over :func:`compute`. Eager calls outside torch.func transforms may call
#: :func:`compute` itself (:func:`call`): the dispatcher's round trip costs some 40 us.
fused_loss = torch.library.custom_op("fastloss::fused_loss", compute, mutates_args=())


def call(*args):
    """:func:`compute` through the operator where a compiler or a transform must see it
    (``torch.compile``, ``torch.func``), else directly."""
    if torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active():
        return fused_loss(*args)
    return compute(*args)


def loss_shape(spec, options, x):
    """The shape of the loss a call returns: () unless ``reduction="none"``, then the
    prediction's shape (without its class axis for a class-axis loss)."""
    if options.get("reduction", "mean") != "none":
        return ()
    if spec.family == "rowwise":
        axis = options.get("axis", -1) % x.dim()
        return tuple(s for k, s in enumerate(x.shape) if k != axis)
    return tuple(x.shape)


@fused_loss.register_fake
def _(name, options, x, y, v, sample_weight, aux, want_grad):
    spec = _fl.lookup(name)
    grads = [torch.empty_like(t) for t in (x, y, v)[: spec.grads]] if want_grad else []
    return (x.new_empty(loss_shape(spec, _decode(options), x)), *grads,
            *(x.new_empty(0) for _ in range(SLOTS - len(grads))))


def _vmap(info, in_dims, name, options, x, y, v, sample_weight, aux, want_grad):
    """One call per problem of the batch, results stacked on axis 0."""
    tensors, dims = (x, y, v, sample_weight, aux), in_dims[2:7]
    moved = [t.movedim(d, 0) if t is not None and d is not None else t for t, d in zip(tensors, dims)]
    outs = [fused_loss(name, options, *(t[i] if t is not None and d is not None else t for t, d in zip(moved, dims)),
                       want_grad) for i in range(info.batch_size)]
    return tuple(torch.stack([o[k] for o in outs]) for k in range(SLOTS + 1)), (0,) * (SLOTS + 1)


fused_loss.register_vmap(_vmap)
