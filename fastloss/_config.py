"""How work is cut up and where it runs, shared by the CPU backends (so that they sum the
same chunks) and read at every call (so that a change here takes effect at once).

Inputs are processed in chunks of ``CHUNK_ELEMENTS`` elements (whole rows for row-wise
losses, at least one); each chunk's loss is summed in float64 and the partial sums are
added in chunk order, so a result does not depend on the number of threads.
"""

import sys

#: Inside a chunk, element-wise kernels work in tiles of ``TILE`` elements: one loop
#: evaluates the loss math into tile buffers (no reduction, no condition: it vectorises),
#: then the outputs are written and the losses summed from them, in the SIMD lanes of
#: :mod:`fastloss.math.reductions` (one fixed order for every backend, call and layout).
TILE = 256

#: Row-wise losses with a ``<loss>_rows`` variant (see :mod:`fastloss.losses`) run rows of
#: at most this many classes through it, in tiles of :func:`narrow_rows` rows side by side.
#: At this width and above, a row alone fills the SIMD lanes of
#: :mod:`fastloss.math.reductions`.
NARROW_MAX_WIDTH = 63
#: Elements of a narrow tile: the size of the scratch buffers of
#: :func:`fastloss.math.reductions.scratch`.
NARROW_TILE = 1024

#: Elements per chunk (a row-wise chunk holds whole rows: at least one).
CHUNK_ELEMENTS = 1 << 14
#: Inputs with at least this many elements run their chunks on all cores. Below it,
#: waking threads costs more than it saves.
PARALLEL_MIN_SIZE = 1 << 16

#: backend="auto" runs inputs of fewer elements on the Cython backend (when it is built),
#: larger ones on Numba. benchmarks/scripts/crossover.py found no size where Numba was
#: consistently faster on this project's 2-core machine (2^8 to 2^24 elements, four
#: losses); over every loss at 4e6 elements Numba led on 9 of 52 cases, by at most 1.39x,
#: and Cython on the rest, by up to 2.5x (the README has both). Both backends run the same
#: chunks, tiles and lanes with the same math, and Cython calls cost less. So auto uses
#: Cython throughout; Numba serves where the extension is not built, or when asked for.
CYTHON_MAX_SIZE = sys.maxsize

#: Output buffers of at least this many bytes are recycled between calls (see
#: :mod:`fastloss._buffers`): a dropped gradient is handed out again, already mapped.
RECYCLE_MIN_BYTES = 1 << 22
#: The recycling pool holds at most this many bytes of buffers no array uses; 0 turns
#: recycling off.
RECYCLE_HELD_BYTES = 1 << 29


def chunk_rows(x):
    """Samples per chunk for the kernel input ``x`` (1-D: elements, 2-D: rows)."""
    if x.ndim == 2 and x.shape[1]:
        return max(1, CHUNK_ELEMENTS // x.shape[1])
    return CHUNK_ELEMENTS


def narrow_rows(width):
    """Rows per narrow tile: as many as NARROW_TILE holds, a multiple of 8 where that
    leaves any (loops over a tile's rows then fill whole SIMD vectors)."""
    rows = NARROW_TILE // width
    return rows - rows % 8 if rows >= 8 else rows
