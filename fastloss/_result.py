"""The object every loss call returns."""


class LossResult:
    """The loss and its derivatives, from one fused pass.

    ``loss``: the reduced loss (a 0-d array for ``"mean"``/``"sum"``, an array for
    ``"none"``), or None with ``grad="only"``. ``grad``: d(loss)/d(pred), shaped like the
    prediction (a tuple, in argument order, for losses with several differentiable inputs),
    or None with ``grad=False``. ``hess``: the hessian diagonal with ``hessian=True``,
    else None. Unpacks as ``loss, grad = result``.
    """

    __slots__ = ("loss", "grad", "hess")

    def __init__(self, loss, grad, hess=None):
        self.loss = loss
        self.grad = grad
        self.hess = hess

    def __iter__(self):
        yield self.loss
        yield self.grad

    def __len__(self):
        return 2

    def __repr__(self):
        parts = [f"loss={self.loss!r}"]
        if self.grad is not None:
            shape = (
                tuple(g.shape for g in self.grad) if isinstance(self.grad, tuple) else self.grad.shape
            )
            parts.append(f"grad shape={shape}")
        if self.hess is not None:
            parts.append(f"hess shape={self.hess.shape}")
        return f"LossResult({', '.join(parts)})"
