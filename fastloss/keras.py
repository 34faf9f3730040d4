"""Keras 3 ``Loss`` classes from fastloss losses: ``fastloss.keras.<LossName>``.

    >>> import fastloss.keras as flk
    >>> model.compile(loss=flk.BinaryCrossEntropy(), optimizer="sgd")

One class per loss that compares predictions with targets (``SparseSoftmaxCrossEntropy``
for ``sparse_softmax_cross_entropy``, and so on), taking that loss's options as keyword
arguments. ``call(y_true, y_pred)`` returns the per-sample losses of fastloss's fused pass
(``reduction="none"``) through the differentiable adapter of the Keras backend in use
(:mod:`fastloss.torch` for ``torch``, :mod:`fastloss.jax` for ``jax``); Keras then applies
its reduction and sample weights, and its backward pass uses the fused gradient. Targets
are cast to the predictions' dtype (to integers for label losses) and given the
predictions' rank when they lack a trailing axis of size 1, as Keras's own losses do.

Install with ``pip install "fastloss[keras]"`` (and PyTorch or JAX for the backend).
"""

try:
    import keras
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError('fastloss.keras needs Keras 3: pip install "fastloss[keras]"') from exc

from ._registry import SPECS

__all__ = []


def _adapter(spec_name):
    backend = keras.backend.backend()
    if backend == "torch":
        from . import torch as adapter
    elif backend == "jax":
        from . import jax as adapter
    else:
        raise RuntimeError(f"fastloss.keras runs on the torch and jax Keras backends, not {backend!r}")
    return getattr(adapter, spec_name)


def _class_name(name):
    return "".join(part.capitalize() for part in name.split("_"))


def _make(spec):
    labels = spec.target == "labels"

    class FastlossLoss(keras.losses.Loss):
        def __init__(self, name=spec.name, reduction="sum_over_batch_size", dtype=None, **options):
            super().__init__(name=name, reduction=reduction, dtype=dtype)
            unknown = set(options) - set(spec.option_names) - {"axis"}
            if unknown:
                raise TypeError(f"{type(self).__name__} got unknown options {sorted(unknown)}")
            self.options = options

        def call(self, y_true, y_pred):
            ops = keras.ops
            y_true = ops.cast(y_true, "int32" if labels else y_pred.dtype)
            if not labels and len(y_true.shape) == len(y_pred.shape) - 1 and y_pred.shape[-1] == 1:
                y_true = ops.expand_dims(y_true, -1)
            if labels and len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
                y_true = ops.squeeze(y_true, -1)
            return _adapter(spec.name)(y_pred, y_true, reduction="none", **self.options)

        def get_config(self):
            return {**super().get_config(), **self.options}

    cls = FastlossLoss
    cls.__name__ = cls.__qualname__ = _class_name(spec.name)
    cls.__module__ = __name__
    cls.__doc__ = f"Keras loss computed by fastloss.{spec.name}: {spec.formula} ({spec.convention})."
    return cls


for _spec in SPECS:
    if _spec.target != "none" and _spec.finish is None:  # a target to compare with, per sample
        globals()[_class_name(_spec.name)] = _make(_spec)
        __all__.append(_class_name(_spec.name))
del _spec
