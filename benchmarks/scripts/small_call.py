"""The end-to-end cost of a small call: sparse softmax cross-entropy, value and gradient, on
float32 logits of shape (256, 10) with int64 labels, against NumPy, PyTorch (forward and
backward) and JAX (jit of value_and_grad), each where installed, in one run.

    python benchmarks/scripts/small_call.py

Medians of many calls after warm-up (compilation excluded everywhere).
"""

import numpy as np
from _timing import timed

import fastloss as fl
from fastloss import _api


def numpy_ce(z, labels):
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    loss = (np.log(s[:, 0]) + m[:, 0] - z[np.arange(len(z)), labels]).mean()
    grad = e / s
    grad[np.arange(len(z)), labels] -= 1
    return loss, grad / len(z)


def bench(fn):
    return timed(fn, repeats=3000, warmup=50)


def general_path(fn):
    """``fn`` with the compiled fast path switched off: the Python path of every other call."""
    def call():
        fast, _api.FAST_CALL = _api.FAST_CALL, None
        try:
            return fn()
        finally:
            _api.FAST_CALL = fast

    return call


def main():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(256, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 256)
    weights = rng.uniform(0, 2, size=256).astype(np.float32)
    rows = [
        ("fastloss, backend='auto' (Cython fast path)", bench(lambda: fl.sparse_softmax_cross_entropy(z, labels))),
        ("fastloss, fast path with sample_weight",
         bench(lambda: fl.sparse_softmax_cross_entropy(z, labels, sample_weight=weights))),
        ("fastloss, Cython through the general path",
         bench(general_path(lambda: fl.sparse_softmax_cross_entropy(z, labels)))),
        ("fastloss, backend='numba'", bench(lambda: fl.sparse_softmax_cross_entropy(z, labels, backend="numba"))),
        ("NumPy (value and gradient)", bench(lambda: numpy_ce(z, labels))),
    ]
    try:
        import torch
        import torch.nn.functional as F

        tz = torch.from_numpy(z).requires_grad_(True)
        tl = torch.from_numpy(labels)

        def torch_step():
            tz.grad = None
            F.cross_entropy(tz, tl).backward()

        rows.append((f"PyTorch {torch.__version__} forward + backward", bench(torch_step)))
    except ImportError:
        rows.append(("PyTorch (not installed)", None))
    try:
        import jax
        import jax.numpy as jnp

        def jax_loss(x, y):
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(x), y[:, None], axis=1))

        step = jax.jit(jax.value_and_grad(jax_loss))
        jz, jl = jnp.asarray(z), jnp.asarray(labels)
        rows.append((f"JAX {jax.__version__} jit(value_and_grad)",
                     bench(lambda: jax.block_until_ready(step(jz, jl)))))
    except ImportError:
        rows.append(("JAX (not installed)", None))
    base = rows[0][1]
    print("sparse softmax cross-entropy, float32 (256, 10), int64 labels: value + gradient")
    for name, t in rows:
        if t is None:
            print(f"  {name:48s}        -")
        else:
            print(f"  {name:48s} {t * 1e6:8.1f} us  ({t / base:5.1f}x fastloss auto)")


if __name__ == "__main__":
    main()
