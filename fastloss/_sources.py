"""The sources of the loss math: the one list of its modules, and their hash.

The Cython generator translates these modules, in this order, and records
:func:`source_hash` in the extension it builds; the Cython backend uses an extension only
where that hash is the sources' own; the Numba backend keys its disk cache on it. The build
loads this file by its path (it imports neither fastloss nor Numba), so it imports only
the standard library.
"""

import hashlib
import pathlib

#: The fastloss package.
PACKAGE = pathlib.Path(__file__).resolve().parent

#: The modules of ``@portable`` math, relative to the package, each after the modules it
#: imports from: the scalar primitives (which the generator puts in ``_primitives.pxd``),
#: then the row machinery and the losses.
MODULES = (
    "math/elementary.py",
    "math/reductions.py",
    "math/primitives.py",
    "math/online_softmax.py",
    "losses/regression.py",
    "losses/binary.py",
    "losses/hinge.py",
    "losses/focal.py",
    "losses/generative.py",
    "losses/cross_entropy.py",
    "losses/divergences.py",
    "losses/embedding.py",
)

#: Other files the kernels depend on: the tile, lane and narrow-row sizes are compiled
#: into them.
SETTINGS = ("_config.py",)


def source_hash(extra=(), package=PACKAGE):
    """sha256 of the math modules and settings (and of the files ``extra``, relative to
    ``package``), each with its path."""
    h = hashlib.sha256()
    for rel in MODULES + SETTINGS + tuple(extra):
        h.update(rel.encode())
        h.update((pathlib.Path(package) / rel).read_bytes())
    return h.hexdigest()
