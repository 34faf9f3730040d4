"""The math of every loss, one module per family, written once for every backend.

:mod:`.regression`, :mod:`.binary` (binary cross-entropy), :mod:`.hinge`, :mod:`.focal`,
:mod:`.cross_entropy` (softmax and categorical cross-entropy), :mod:`.divergences` (KL and
Jensen-Shannon), :mod:`.embedding` (triplet) and :mod:`.generative` (GAN, VAE); the
online log-sum-exp that the softmax losses share is :mod:`fastloss.math.online_softmax`.

Each function declares its kind by its decorator's form (:mod:`fastloss.math.portable`),
which fixes its parameters' types for the backends that need them (C's); a helper's
parameters that are not floats are annotated (:mod:`fastloss.math.declare`).

Element-wise losses (:mod:`.regression`, :mod:`.binary`, the hinge and sigmoid focal
losses, the GAN losses) are ``@portable.element`` functions of one element::

    f(x, y, c, p) -> (loss, dloss/dx, dloss/dy, d2loss/dx2)

with ``x`` the prediction, ``y`` the target (or the second differentiable input),
``c`` a per-element auxiliary value (``pos_weight``; unused by most losses) and ``p``
the tuple of the loss's float options. A backend's element-wise driver applies ``f`` to
every element and handles weights, reduction and which outputs are stored; values a
caller does not ask for are dead code that the compiler removes.

An element-wise ``f`` may have a float32 form, ``f_float32`` beside it (today those of
sigmoid BCE and the GAN losses), with the same arguments and results, which the
CPU backends run on float32 inputs (a float16 input is computed in float32 too): it takes
its transcendental functions in float32 arithmetic (``*_single`` primitives, twice the
SIMD lanes of float64), as PyTorch and XLA do for float32, and must stay within the
float32 accuracy of contract section 4. :func:`float32_form` finds it.

Row-wise losses (:mod:`.cross_entropy`, :mod:`.divergences`, the categorical hinge,
the softmax focal loss, :mod:`.embedding`, the VAE term) are ``@portable.row``
functions of one row (the class or feature axis)::

    f(x, y, v, c, gx, gy, gv, h, gs, p) -> loss of the row

with ``x``, ``y``, ``v`` the rows of up to three inputs (``y`` may be an integer label,
declared ``label: Index``), ``c`` a per-class array (``class_weight``, float64), ``gx``,
``gy``, ``gv`` the gradient rows to fill and ``h`` the hessian-diagonal row (each of
length 0 when not wanted), ``gs`` the factor every gradient of this row is scaled by
(sample weight and ``1/count`` for ``"mean"``), and ``p`` the options. The function
returns the row's unweighted loss.

A row function ``f`` may have a narrow-row form, the ``@portable.rows`` function ``f_rows``
beside it (today those of sparse and dense softmax cross-entropy, categorical
cross-entropy and both KL divergences), which the CPU backends use for rows of at most
``fastloss._config.NARROW_MAX_WIDTH`` classes::

    f_rows(x, y, c, gx, h, gs, p, loss) -> None

over a tile of rows stored one after another (``x``, ``gx``, ``h`` flat; ``y`` the
integer labels, one per row, where ``f`` takes a label (declared ``labels: Indices``),
else the target rows, flat like ``x``; ``gs`` and the written ``loss`` one entry per row;
``c``, ``gs`` and ``loss`` are float64). It must give,
row by row, the numbers of ``f``; it exists because a narrow row alone is too short for
SIMD.
"""

import sys


def float32_form(math_fn):
    """The ``<name>_float32`` form of the element-wise loss function ``math_fn``, or None."""
    return getattr(sys.modules[math_fn.__module__], math_fn.__name__ + "_float32", None)
