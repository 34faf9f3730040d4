"""Every fastloss loss as a differentiable PyTorch function: ``fastloss.torch.<name>``.

    >>> import torch, fastloss.torch as flt
    >>> logits = torch.randn(8, 5, requires_grad=True)
    >>> flt.sparse_softmax_cross_entropy(logits, torch.randint(0, 5, (8,))).backward()

The forward pass is fastloss's fused pass (on the CPU, or on the GPU for CUDA tensors),
run as the PyTorch custom operator ``fastloss::fused_loss`` (:mod:`fastloss._torch_op`),
and saves the gradient; the backward pass multiplies it by the incoming gradient
(broadcast over the class axis for ``reduction="none"``; the saved gradient itself when
that is ``loss.backward()``'s 1), with no recomputation. So ``torch.compile(fullgraph=True)``
traces a model that calls one without a graph break, ``torch.func.grad`` and
``torch.func.vmap`` take them, and under ``torch.no_grad()``, with ``grad=False``, or when
no differentiable input requires grad, no gradient is computed. Second derivatives are
exact for the losses in :data:`SECOND_ORDER` and refused with a ``RuntimeError`` for the
others.

The functions are generated from the registry: same names, arrays and options as
``fastloss.<name>``, except ``out`` and ``hessian`` (autograd owns the gradient). Gradients
flow to the differentiable inputs of each loss (its predictions; for triplet, GAN
discriminator, VAE and JSD every input); targets and labels are data and get none, as in
Keras and optax.

Install with ``pip install "fastloss[torch]"``.
"""

import inspect

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError('fastloss.torch needs PyTorch: pip install "fastloss[torch]"') from exc

import numpy as np

import fastloss as _fl

from ._registry import SPECS, export
from ._torch_op import call, decode_options, split_options

#: Arguments the adapter does not take: autograd owns the gradient's buffer and the
#: derivatives (``grad=False`` is taken: the loss alone, with no gradient).
_REFUSED = ("out", "hessian")


class FusedLoss(torch.autograd.Function):
    """Forward: the operator ``fastloss::fused_loss`` (the loss and its gradient in one
    pass). Backward: the saved gradient times the incoming one; under ``create_graph``
    that product is itself differentiable (:class:`ScaledGradient`). Written with a
    separate ``setup_context`` and a generated vmap rule, so that ``torch.func`` takes it."""

    generate_vmap_rule = True

    @staticmethod
    def forward(name, options, broadcast, x, y, v, sample_weight, aux):
        return call(name, options, x, y, v, sample_weight, aux, True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        name, options, broadcast, x, y, v, sample_weight, aux = inputs
        ctx.name, ctx.text, ctx.broadcast = name, options, broadcast
        ctx.n_grads = n = _fl.lookup(name).grads
        ctx.n_inputs = sum(t is not None for t in (x, y, v))
        ctx.weighted, ctx.aux = sample_weight is not None, aux
        ctx.save_for_backward(*output[1: 1 + n], *(t for t in (x, y, v, sample_weight) if t is not None))
        ctx.mark_non_differentiable(*output[1:])

    @staticmethod
    def backward(ctx, grad_output, *_):
        saved = ctx.saved_tensors
        grads, inputs = saved[: ctx.n_grads], saved[ctx.n_grads: ctx.n_grads + ctx.n_inputs]
        if torch.is_grad_enabled():  # create_graph=True: the gradient will be differentiated
            options = decode_options(ctx.text, ctx.aux)
            if ctx.weighted:
                options["sample_weight"] = saved[-1]
            scaled = ScaledGradient.apply(ctx.name, options, ctx.broadcast, len(grads),
                                          grad_output, *grads, *inputs)
        elif _is_one(grad_output):  # loss.backward(): the saved gradient is the answer
            scaled = grads
        else:
            scaled = _scale(grads, grad_output, ctx.broadcast)
        wanted = ctx.needs_input_grad[3:6]
        out = [g if need else None for g, need in zip(scaled, wanted)]
        return (None, None, None, *out, *([None] * (3 - len(out))), None, None)


class EagerFusedLoss(torch.autograd.Function):
    """:class:`FusedLoss` in the older form (forward takes ``ctx``) for eager calls outside
    torch.func transforms: ``apply`` binds a newer-form Function's arguments to its
    signature through ``inspect`` at every call, some 50 us of a small call's time."""

    @staticmethod
    def forward(ctx, *args):
        output = FusedLoss.forward(*args)
        FusedLoss.setup_context(ctx, args, output)
        return output

    backward = FusedLoss.backward


def _is_one(t):
    """Whether ``t`` is a plain CPU scalar equal to 1 (``loss.backward()``'s seed); never
    looked at where reading it would cost a device sync or break a trace."""
    return (t.dim() == 0 and t.device.type == "cpu" and not torch.compiler.is_compiling()
            and not torch._C._functorch.is_functorch_wrapped_tensor(t) and t.item() == 1.0)


class ScaledGradient(torch.autograd.Function):
    """The first backward's result, ``saved gradient x incoming gradient``, as a function
    of the incoming gradient and the loss's inputs, so that it can be differentiated again.

    Its derivative with respect to the incoming gradient is the saved gradient; with
    respect to the predictions it is the hessian of the loss applied to the incoming
    vector, which :func:`_hessian_vector_product` computes exactly for the losses in
    :data:`SECOND_ORDER` and refuses, with an error naming the loss, for the others.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(name, options, broadcast, n_grads, grad_output, *rest):
        return _scale(rest[:n_grads], grad_output, broadcast)

    @staticmethod
    def setup_context(ctx, inputs, output):
        name, options, broadcast, n_grads, grad_output, *rest = inputs
        ctx.save_for_backward(grad_output, *rest)
        ctx.name, ctx.options, ctx.broadcast, ctx.n_grads = name, options, broadcast, n_grads

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *vectors):
        grad_output, *rest = ctx.saved_tensors
        n = ctx.n_grads
        grads, inputs = rest[:n], rest[n:]
        d_output = None
        if ctx.needs_input_grad[4]:
            d_output = sum(_reduce_like((v * g).to(grad_output.dtype), grad_output, ctx.broadcast)
                           for v, g in zip(vectors, grads) if v is not None)
        d_inputs = [None] * len(inputs)
        if any(ctx.needs_input_grad[5 + n:]):
            if ctx.name not in SECOND_ORDER:
                raise RuntimeError(
                    f"fastloss.torch: the second derivative of {ctx.name} is not available (it is for "
                    f"{', '.join(sorted(SECOND_ORDER))}); differentiate this loss once only"
                )
            if ctx.needs_input_grad[5 + n] and vectors[0] is not None:
                # The losses with a second derivative have one differentiable input, the
                # first; targets are data, as in the first derivative.
                d_inputs[0] = _hessian_vector_product(ctx.name, ctx.options, inputs, vectors[0], grad_output,
                                                      ctx.broadcast)
        return (None, None, None, None, d_output, *([None] * ctx.n_grads), *d_inputs)


def _scale(grads, grad_output, broadcast):
    """Each saved gradient times the incoming gradient (one value per sample for
    ``reduction="none"``, broadcast over the class axis of a class-axis loss)."""
    if broadcast is not None:
        grad_output = grad_output.unsqueeze(broadcast)
    return tuple(g * grad_output for g in grads)


def _reduce_like(product, grad_output, broadcast):
    """``product`` summed to the shape of the incoming gradient ``grad_output``."""
    if grad_output.dim() == 0:
        return product.sum()
    return product.sum(broadcast) if broadcast is not None else product


def _hessian_vector_product(name, options, inputs, vector, grad_output, broadcast):
    """d/d(pred) of ``sum(vector * saved gradient * grad_output)``: the loss's hessian
    applied to ``vector``, times the incoming gradient."""
    x = inputs[0]
    if broadcast is not None:
        grad_output = grad_output.unsqueeze(broadcast)
    if name not in _ROW_MASS:  # element-wise: the hessian is the diagonal of the fused pass
        hess = _fl.compute(name, *inputs, **options, hessian=True, grad=False).hess
        return (hess * vector * grad_output).to(x.dtype)
    # A softmax loss's row is a sum of -log softmax(z)_j terms of total weight ``mass``;
    # each has the hessian diag(p) - p p^T, so the row's is mass (diag(p) - p p^T).
    axis = options.get("axis", -1) % x.dim()
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    p = torch.softmax(x.detach().to(compute), dim=axis)
    pv = p * vector.to(compute)
    mass = _ROW_MASS[name](options, inputs, axis, compute)
    weight = options.get("sample_weight")
    if weight is not None:
        mass = mass * torch.as_tensor(weight, dtype=compute, device=x.device).expand_as(mass)
    reduction = options.get("reduction", "mean")
    if reduction == "mean":
        divisor = _mean_divisor(name, options, inputs, mass.numel())
        mass = mass / divisor if divisor != 0 else mass * 0.0
    return ((pv - p * pv.sum(axis, keepdim=True)) * mass.unsqueeze(axis) * grad_output).to(x.dtype)


def _softmax_ce_mass(options, inputs, axis, compute):
    """sum_j y'_j with the smoothed target y' = y (1 - ls) + ls / C."""
    ls = options.get("label_smoothing", 0.0)
    return inputs[1].to(compute).sum(axis) * (1.0 - ls) + ls


def _sparse_ce_mass(options, inputs, axis, compute):
    """(1 - ls) w[label] + ls mean(w), 0 for ignored rows (PyTorch's weighted smoothing)."""
    labels = inputs[1]
    ls = options.get("label_smoothing", 0.0)
    ignore = options.get("ignore_index")
    counted = labels != ignore if ignore is not None else torch.ones_like(labels, dtype=torch.bool)
    weights = options.get("class_weight")
    if weights is None:
        return torch.where(counted, 1.0, 0.0).to(compute)
    weights = torch.as_tensor(weights, dtype=compute, device=labels.device)
    mass = weights[torch.where(counted, labels, 0)] * (1.0 - ls) + ls * weights.mean()
    return mass * counted


def _softmax_kl_mass(options, inputs, axis, compute):
    """sum_j q_j (of exp(q) with log_target)."""
    q = inputs[1].to(compute)
    return (q.exp() if options.get("log_target", False) else q).sum(axis)


def _mean_divisor(name, options, inputs, count):
    """The divisor of "mean": the registry's rule where the loss has one, else ``count``."""
    spec = _fl.lookup(name)
    if spec.denominator is None:
        return count
    checked = {o.name: o.check(options.get(o.name, o.default)) for o in spec.options}
    return spec.denominator(checked, [None, inputs[1].detach().cpu().numpy()])


_ROW_MASS = {
    "softmax_cross_entropy": _softmax_ce_mass,
    "sparse_softmax_cross_entropy": _sparse_ce_mass,
    "softmax_kl_divergence": _softmax_kl_mass,
}

#: The losses whose second derivative fastloss.torch computes exactly: the element-wise
#: losses with a hessian diagonal, and the softmax losses above.
SECOND_ORDER = (*(s.name for s in SPECS if s.family == "elementwise" and s.hessian), *_ROW_MASS)


def _broadcast_axis(spec, options, pred):
    """The axis to unsqueeze the incoming gradient on for ``reduction="none"`` of a
    class-axis loss (the class axis); None where shapes already match or it is a scalar."""
    if options.get("reduction", "mean") != "none" or spec.family != "rowwise":
        return None
    return options.get("axis", -1) % pred.dim()


def _make(spec):
    def loss_function(*tensors, **options):
        for name in _REFUSED:
            if name in options:
                raise TypeError(f"fastloss.torch.{spec.name} computes the gradient through autograd: no {name}=")
        if len(tensors) < len(spec.inputs):
            tensors = (*tensors, *(options.pop(n) for n in spec.inputs[len(tensors):] if n in options))
        want = options.pop("grad", True)
        weight = options.pop("sample_weight", None)
        if weight is not None and not isinstance(weight, torch.Tensor):  # in float64, as fastloss reads it
            weight = torch.as_tensor(np.asarray(weight, dtype=np.float64), device=tensors[0].device)
        x, y, v = (*tensors, None, None)[:3]
        text, aux = split_options(options, x.device)
        if want and torch.is_grad_enabled() and any(t.requires_grad for t in tensors[: spec.grads]):
            broadcast = _broadcast_axis(spec, options, x)
            eager = not (torch.compiler.is_compiling() or torch._C._are_functorch_transforms_active())
            return (EagerFusedLoss if eager else FusedLoss).apply(spec.name, text, broadcast, x, y, v, weight, aux)[0]
        # No gradient wanted: none computed, and the loss is a constant to autograd.
        return call(spec.name, text, *(t if t is None else t.detach() for t in (x, y, v)), weight, aux, False)[0]

    base = getattr(_fl, spec.name)
    loss_function.__name__ = loss_function.__qualname__ = spec.name
    loss_function.__module__ = __name__
    loss_function.__doc__ = (
        f"Differentiable {spec.name}: returns the loss tensor; backward uses the fused gradient.\n\n"
        + (base.__doc__ or "")
    )
    params = [p for p in inspect.signature(base).parameters.values() if p.name not in _REFUSED]
    loss_function.__signature__ = inspect.Signature(params)
    return loss_function


_LOSSES = export(globals(), _make)

__all__ = ["SECOND_ORDER", "FusedLoss", "ScaledGradient", *_LOSSES]
