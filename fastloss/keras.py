"""Keras 3 ``Loss`` classes from fastloss losses: ``fastloss.keras.<LossName>``.

    >>> import fastloss.keras as flk
    >>> model.compile(loss=flk.SparseSoftmaxCrossEntropy(ignore_index=-1), optimizer="sgd")

One class per loss that compares predictions with targets (``SparseSoftmaxCrossEntropy``
for ``sparse_softmax_cross_entropy``, and so on), taking that loss's options as keyword
arguments. Calling one (as ``fit`` does, with its ``sample_weight``) gives fastloss's own
value: the loss, its reduction and the sample weights all go to fastloss's fused pass,
through the differentiable adapter of the Keras backend in use (:mod:`fastloss.torch` for
``torch``, :mod:`fastloss.jax` for ``jax``), so "mean" divides by what fastloss divides by
(with ``ignore_index``, the counted rows; with ``class_weight``, the sum of the counted
rows' class weights; a mean over no row is NaN). Keras's reductions map to fastloss's:
``"sum_over_batch_size"`` and ``"mean"`` to ``"mean"``, ``"sum"`` to ``"sum"``, ``None``
and ``"none"`` to ``"none"``; ``"mean_with_sample_weight"`` has no fastloss counterpart
and is refused. A Keras mask on the predictions (``mask_zero=True``, ``Masking``) takes
the masked samples out of the loss and of the mean's count, as Keras's own losses do.
``call(y_true, y_pred)`` returns the per-sample losses. Targets are cast to the
predictions' dtype (to integers for label losses) and given the predictions' rank when
they lack a trailing axis of size 1, as Keras's own losses do.

Install with ``pip install "fastloss[keras]"`` (and PyTorch or JAX for the backend).
"""

import importlib.util

try:
    import keras
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    if importlib.util.find_spec("keras") is None:
        raise ImportError('fastloss.keras needs Keras 3: pip install "fastloss[keras]"') from exc
    raise ImportError(
        f"Keras is installed but could not start ({exc}); fastloss.keras runs on Keras's torch and jax "
        "backends: set KERAS_BACKEND=torch or KERAS_BACKEND=jax before keras is imported"
    ) from exc

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


#: Keras's reductions and fastloss's.
_REDUCTIONS = {"sum_over_batch_size": "mean", "mean": "mean", "sum": "sum", None: "none", "none": "none"}

#: The label that masked rows get where a loss has ``ignore_index`` and the caller set none.
_MASKED_LABEL = -(2**31)


def _make(spec):
    labels = spec.target == "labels"
    ignores = "ignore_index" in spec.option_names

    class FastlossLoss(keras.losses.Loss):
        def __init__(self, name=spec.name, reduction="sum_over_batch_size", dtype=None, **options):
            if reduction not in _REDUCTIONS:
                raise ValueError(
                    f"{type(self).__name__} takes reduction in {sorted(map(str, _REDUCTIONS))}, got {reduction!r} "
                    "(fastloss has no mean divided by the sum of the sample weights)"
                )
            super().__init__(name=name, reduction=reduction, dtype=dtype)
            unknown = set(options) - set(spec.option_names) - {"axis"}
            if unknown:
                raise TypeError(f"{type(self).__name__} got unknown options {sorted(unknown)}")
            self.options = options

        def __call__(self, y_true, y_pred, sample_weight=None):
            ops = keras.ops
            # Keras keeps a layer's output mask on the tensor as ``_keras_mask``.
            mask = getattr(y_pred, "_keras_mask", None)
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
            y_true = self._targets(y_true, y_pred)
            reduction = _REDUCTIONS[self.reduction]
            options = dict(self.options)
            count = None
            if mask is not None and ignores:  # masked rows become ignored rows
                ignore = options.setdefault("ignore_index", _MASKED_LABEL)
                y_true = ops.where(ops.cast(mask, "bool"), y_true, ops.cast(ignore, y_true.dtype))
            elif mask is not None:  # masked samples weigh 0 and leave the mean's count
                mask = ops.cast(mask, y_pred.dtype)
                sample_weight = mask if sample_weight is None else _at_rank(sample_weight, len(mask.shape)) * mask
                if reduction == "mean":
                    reduction, count = "sum", ops.sum(mask)
            if sample_weight is not None:
                rank = len(y_pred.shape) - (spec.family == "rowwise")
                sample_weight = ops.cast(_at_rank(sample_weight, rank), y_pred.dtype)
            loss = _adapter(spec.name)(y_pred, y_true, reduction=reduction, sample_weight=sample_weight, **options)
            return loss if count is None else loss / ops.cast(count, loss.dtype)

        def call(self, y_true, y_pred):
            return _adapter(spec.name)(y_pred, self._targets(y_true, y_pred), reduction="none", **self.options)

        @staticmethod
        def _targets(y_true, y_pred):
            ops = keras.ops
            y_true = ops.cast(y_true, "int32" if labels else y_pred.dtype)
            if not labels and len(y_true.shape) == len(y_pred.shape) - 1 and y_pred.shape[-1] == 1:
                y_true = ops.expand_dims(y_true, -1)
            if labels and len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == 1:
                y_true = ops.squeeze(y_true, -1)
            return y_true

        def get_config(self):  # JSON for model.save: arrays (class_weight, ...) as lists
            options = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in self.options.items()}
            return {**super().get_config(), **options}

    cls = FastlossLoss
    cls.__name__ = cls.__qualname__ = _class_name(spec.name)
    cls.__module__ = __name__
    cls.__doc__ = f"Keras loss computed by fastloss.{spec.name}: ``{spec.formula}`` ({spec.convention})."
    # Saved models name the class "fastloss>ClassName"; load_model finds it once this
    # module is imported, with no custom_objects.
    return keras.saving.register_keras_serializable(package="fastloss")(cls)


def _at_rank(weight, rank):
    """Keras's sample weights ((batch,), or with trailing axes of 1) at the unreduced loss's
    rank, so that they broadcast as Keras broadcasts them."""
    ops = keras.ops
    weight = ops.convert_to_tensor(weight)
    while len(weight.shape) > rank and weight.shape[-1] == 1:
        weight = ops.squeeze(weight, -1)
    while len(weight.shape) < rank:
        weight = ops.expand_dims(weight, -1)
    return weight


for _spec in SPECS:
    if _spec.target != "none" and _spec.finish is None:  # a target to compare with, per sample
        globals()[_class_name(_spec.name)] = _make(_spec)
        __all__.append(_class_name(_spec.name))
del _spec
