"""How work is cut up, shared by the CPU backends so that they sum the same chunks.

Inputs are processed in chunks of ``CHUNK_ELEMENTS`` elements (whole rows for row-wise
losses, at least one); each chunk's loss is summed in float64 and the partial sums are
added in chunk order, so a result does not depend on the number of threads.
"""

#: Elements per chunk (a row-wise chunk holds whole rows: at least one).
CHUNK_ELEMENTS = 1 << 14
#: Inputs with at least this many elements run their chunks on all cores. Below it,
#: waking threads costs more than it saves.
PARALLEL_MIN_SIZE = 1 << 16


def chunk_rows(x):
    """Samples per chunk for the kernel input ``x`` (1-D: elements, 2-D: rows)."""
    if x.ndim == 2 and x.shape[1]:
        return max(1, CHUNK_ELEMENTS // x.shape[1])
    return CHUNK_ELEMENTS
