"""Every fastloss loss as a differentiable PyTorch function: ``fastloss.torch.<name>``.

    >>> import torch, fastloss.torch as flt
    >>> logits = torch.randn(8, 5, requires_grad=True)
    >>> flt.sparse_softmax_cross_entropy(logits, torch.randint(0, 5, (8,))).backward()

The forward pass computes the loss and its gradient in fastloss's fused pass (on the CPU,
or on the GPU for CUDA tensors) and saves the gradient; the backward pass multiplies it by
the incoming gradient (broadcast over the class axis for ``reduction="none"``), with no
recomputation. The functions are generated from the registry: same names, arrays and
options as ``fastloss.<name>``, except the arguments that would break autograd (``out``,
``grad``, ``hessian``). Gradients flow to the differentiable inputs of each loss (its
predictions; for triplet, GAN discriminator, VAE and JSD every input); targets and labels
are data and get none, as in Keras and optax.

Install with ``pip install "fastloss[torch]"``.
"""

import inspect

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError('fastloss.torch needs PyTorch: pip install "fastloss[torch]"') from exc

import fastloss as _fl

from ._registry import SPECS, export

_REFUSED = ("out", "grad", "hessian")


class FusedLoss(torch.autograd.Function):
    """Forward: fastloss's loss and saved gradient. Backward: saved gradient times the
    incoming one; under ``create_graph`` that product is itself differentiable
    (:class:`ScaledGradient`)."""

    @staticmethod
    def forward(ctx, name, options, *tensors):
        result = _fl.compute(name, *tensors, **options)
        grads = result.grad if isinstance(result.grad, tuple) else (result.grad,)
        ctx.save_for_backward(*grads, *tensors)
        ctx.name, ctx.options, ctx.n_grads = name, options, len(grads)
        ctx.broadcast = _broadcast_axis(name, options, tensors[0])
        return result.loss

    @staticmethod
    def backward(ctx, grad_output):
        saved = ctx.saved_tensors
        grads, inputs = saved[: ctx.n_grads], saved[ctx.n_grads:]
        if torch.is_grad_enabled():  # create_graph=True: the gradient will be differentiated
            scaled = ScaledGradient.apply(ctx.name, ctx.options, ctx.broadcast, len(grads),
                                          grad_output, *grads, *inputs)
        else:
            scaled = _scale(grads, grad_output, ctx.broadcast)
        wanted = ctx.needs_input_grad[2:]
        out = [g if need else None for g, need in zip(scaled, wanted)]
        out += [None] * (len(wanted) - len(out))
        return (None, None, *out)


class ScaledGradient(torch.autograd.Function):
    """The first backward's result, ``saved gradient x incoming gradient``, as a function
    of the incoming gradient and the loss's inputs, so that it can be differentiated again.

    Its derivative with respect to the incoming gradient is the saved gradient; with
    respect to the predictions it is the hessian of the loss applied to the incoming
    vector, which :func:`_hessian_vector_product` computes exactly for the losses in
    :data:`SECOND_ORDER` and refuses, with an error naming the loss, for the others.
    """

    @staticmethod
    def forward(ctx, name, options, broadcast, n_grads, grad_output, *rest):
        grads, inputs = rest[:n_grads], rest[n_grads:]
        ctx.save_for_backward(grad_output, *grads, *inputs)
        ctx.name, ctx.options, ctx.broadcast, ctx.n_grads = name, options, broadcast, n_grads
        return _scale(grads, grad_output, broadcast)

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
        mass = mass * torch.as_tensor(weight, device=x.device).to(compute).expand_as(mass)
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
    weights = torch.as_tensor(weights, device=labels.device).to(compute)
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


def _broadcast_axis(name, options, pred):
    """The axis to unsqueeze the incoming gradient on for ``reduction="none"`` of a
    class-axis loss (the class axis); None where shapes already match or it is a scalar."""
    spec = _fl.lookup(name)
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
        return FusedLoss.apply(spec.name, options, *tensors)

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
