"""The declarations of the portable math: what a parameter is where it is not a float.

Every backend compiles the same functions (:mod:`.portable`), and the Cython one writes
C, which needs every parameter's type. A loss function's parameters are fixed by its
kind (``@portable.element``, ``@portable.row``, ``@portable.rows``: the conventions of
:mod:`fastloss.losses`); a helper's are floats (float64, or float32 in a
``@portable.single`` function) unless annotated with one of the markers below::

    @portable(inline=False)
    def block_max(z: Array, lo: Index, hi: Index):
        ...

The markers are plain classes that nothing instantiates: Python runs the functions as
they are, Numba and ``numba.cuda`` ignore annotations, and the Cython translator
(``fastloss/cpu_cython/translate.py``) reads them from the source text. A parameter it
would have to guess (one that is indexed, or used as an index, but not declared) is a
build error there.
"""

__all__ = ["Array", "Index", "Indices", "Lanes", "Params", "Scratch"]


class Array:
    """A 1-D array of the input's dtype (float32 or float64): a row, or a tile of rows side
    by side; ``z.shape[0]`` is its length, and ``is_single(z)`` whether it holds float32."""


class Index:
    """An integer: an index, a count or a length (a C ``Py_ssize_t``)."""


class Indices:
    """A 1-D array of integer class labels (a ``rows`` function's ``y``)."""


class Lanes:
    """A caller's local lane array (:func:`fastloss.math.reductions.lanes`): LANES float64."""


class Scratch:
    """A caller's scratch buffer (:func:`fastloss.math.reductions.scratch`): NARROW_TILE
    float64."""


class Params:
    """The loss's float options, ``p[i]`` (a helper that reads them takes ``p``)."""
