"""asv benchmarks: every loss's value and gradient, by size, dtype and backend; peak memory
of large calls; achieved bandwidth of the memory-bound losses; import and first call.

Kernels are compiled (and inputs made) in ``setup``, never in the timed function.
"""

import numpy as np

import fastloss as fl

LOSSES = sorted(fl.losses())
ROW_WIDTH = 10
LABELLED = {"sparse_softmax_cross_entropy", "softmax_focal_loss"}
PROBABILITIES = {"binary_cross_entropy", "categorical_cross_entropy", "kl_divergence"}


def make_inputs(name, size, dtype, seed=0):
    """Inputs of ``size`` elements for ``name`` (rows of 10 classes for class-axis losses)."""
    rng = np.random.default_rng(seed)
    info = fl.losses()[name]
    shape = (size // ROW_WIDTH, ROW_WIDTH) if info.family == "rowwise" else (size,)
    if name in PROBABILITIES:
        first = rng.uniform(0.05, 0.95, shape).astype(dtype)
    elif name in ("poisson", "mean_squared_logarithmic_error"):
        first = rng.uniform(0.1, 3.0, shape).astype(dtype)
    else:
        first = rng.normal(size=shape).astype(dtype)
    arrays = [first]
    for i in range(1, len(info.inputs)):
        if i == 1 and name in LABELLED:
            arrays.append(rng.integers(0, ROW_WIDTH, shape[:-1]))
        elif i == 1 and i >= len(info.differentiable):  # a target
            if info.family == "rowwise":
                y = rng.uniform(0.0, 1.0, shape)
                arrays.append((y / y.sum(-1, keepdims=True)).astype(dtype))
            else:
                arrays.append(rng.uniform(0.0, 1.0, shape).astype(dtype))
        else:
            arrays.append(rng.normal(size=shape).astype(dtype))
    return arrays


class TimeLosses:
    """Value and gradient of every loss (a new gradient array per call, as by default)."""

    params = (LOSSES, [1_000, 1_000_000], ["float32", "float64"], list(fl.backends()))
    param_names = ["loss", "size", "dtype", "backend"]

    def setup(self, name, size, dtype, backend):
        self.arrays = make_inputs(name, size, dtype)
        fl.compute(name, *self.arrays, backend=backend)  # compile (Numba) and warm up

    def time_value_and_grad(self, name, size, dtype, backend):
        fl.compute(name, *self.arrays, backend=backend)


class TimeWithOut:
    """The same with a preallocated gradient (``out=``), for the headline losses."""

    params = (["mean_squared_error", "huber", "sigmoid_binary_cross_entropy", "sparse_softmax_cross_entropy"],
              [1_000_000], ["float32", "float64"], list(fl.backends()))
    param_names = ["loss", "size", "dtype", "backend"]

    def setup(self, name, size, dtype, backend):
        self.arrays = make_inputs(name, size, dtype)
        self.out = np.empty_like(self.arrays[0])
        fl.compute(name, *self.arrays, backend=backend, out=self.out)

    def time_value_and_grad_out(self, name, size, dtype, backend):
        fl.compute(name, *self.arrays, backend=backend, out=self.out)


class PeakMemLarge:
    """Peak memory of a large call (setup's arrays included, as asv measures it)."""

    params = (["mean_squared_error", "sparse_softmax_cross_entropy"], list(fl.backends()))
    param_names = ["loss", "backend"]

    def setup(self, name, backend):
        self.arrays = make_inputs(name, 10_000_000, "float32")

    def peakmem_value_and_grad(self, name, backend):
        fl.compute(name, *self.arrays, backend=backend)


class TrackBandwidth:
    """Achieved bandwidth of the memory-bound losses with ``out=``: bytes read and written
    per second (two inputs read, one gradient written)."""

    params = (["mean_squared_error", "mean_absolute_error", "huber"], list(fl.backends()))
    param_names = ["loss", "backend"]
    unit = "GB/s"

    def setup(self, name, backend):
        self.arrays = make_inputs(name, 10_000_000, "float32")
        self.out = np.empty_like(self.arrays[0])
        fl.compute(name, *self.arrays, backend=backend, out=self.out)

    def track_gbps(self, name, backend):
        import time

        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            fl.compute(name, *self.arrays, backend=backend, out=self.out)
            best = min(best, time.perf_counter() - t0)
        moved = 3 * self.arrays[0].nbytes
        return moved / best / 1e9


class TimeSmallCall:
    """Issue 3's case end to end: sparse softmax cross-entropy on float32 (256, 10) logits
    and int64 labels, the call as users write it (the compiled fast path under auto)."""

    def setup(self):
        rng = np.random.default_rng(0)
        self.z = rng.normal(size=(256, 10)).astype(np.float32)
        self.y = rng.integers(0, 10, 256)
        fl.sparse_softmax_cross_entropy(self.z, self.y)

    def time_sparse_ce_256x10(self):
        fl.sparse_softmax_cross_entropy(self.z, self.y)


def timeraw_import():
    """``import fastloss`` in a fresh interpreter."""
    return "import fastloss"


def timeraw_first_small_call():
    """A first small call in a fresh interpreter (NumPy imported in setup)."""
    return (
        "import fastloss as fl\nfl.sparse_softmax_cross_entropy(z, y)",
        "import numpy as np\nz = np.zeros((256, 10), np.float32)\ny = np.arange(256) % 10",
    )
