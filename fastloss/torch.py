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

from ._registry import export

_REFUSED = ("out", "grad", "hessian")


class FusedLoss(torch.autograd.Function):
    """Forward: fastloss's loss and saved gradient. Backward: saved gradient times the
    incoming one."""

    @staticmethod
    def forward(ctx, name, options, *tensors):
        result = _fl.compute(name, *tensors, **options)
        grads = result.grad if isinstance(result.grad, tuple) else (result.grad,)
        ctx.save_for_backward(*grads)
        ctx.broadcast = _broadcast_axis(name, options, tensors[0])
        return result.loss

    @staticmethod
    def backward(ctx, grad_output):
        grads = ctx.saved_tensors
        if ctx.broadcast is not None:  # reduction="none": one incoming value per sample
            grad_output = grad_output.unsqueeze(ctx.broadcast)
        wanted = ctx.needs_input_grad[2:]
        out = [g * grad_output if need else None for g, need in zip(grads, wanted)]
        out += [None] * (len(wanted) - len(out))
        return (None, None, *out)


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

__all__ = ["FusedLoss", *_LOSSES]
