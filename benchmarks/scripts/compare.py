"""fastloss against its peers and against the memory bus, in one run: value + gradient.

    python benchmarks/scripts/compare.py [--quick] [--dtype float32 float64]

For issue 4's cases, in float32 and float64: sparse softmax cross-entropy on (4096, 1000)
and (8192, 32000) logits, sigmoid BCE, MSE, MAE and Huber on 10^7 elements. Each row
times fastloss (auto, and with ``out=`` preallocated), NumPy, PyTorch forward + backward
and JAX ``jit(value_and_grad)`` where installed; medians of repeated calls after warm-up.
The ratios are peer time / fastloss time (default call, then ``out=``): above 1, fastloss
is faster. GB/s counts the bytes a fused pass must move (inputs read once, gradient
written once) with ``out=``; it is compared with the machine's STREAM triad (a = b + s c
over 5 10^7 float64 on every core, compiled with Numba; 3 arrays moved), timed in the same
row, call for call alternately with the ``out=`` calls, both as STREAM reports them (the
best of the repeats): on a machine whose memory bandwidth drifts from minute to minute,
this compares the two under the same conditions. The triad and a NumPy copy are also
measured once at the start.
"""

import argparse
import platform
import time

import _timing
import numpy as np

import fastloss as fl


def timed(fn, repeats):
    """Median of ``repeats`` calls, each implementation starting with the cores to itself."""
    return _timing.timed(fn, repeats, pause=0.5)


def numpy_impl(name):
    if name == "sparse_softmax_cross_entropy":
        def f(z, y):
            m = z.max(axis=1, keepdims=True)
            e = np.exp(z - m)
            s = e.sum(axis=1, keepdims=True)
            rows = np.arange(len(z))
            loss = (np.log(s[:, 0]) + m[:, 0] - z[rows, y]).mean()
            g = e / s
            g[rows, y] -= 1
            return loss, g / len(z)
    elif name == "sigmoid_binary_cross_entropy":
        def f(z, y):
            loss = (np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))).mean()
            return loss, (0.5 * (1 + np.tanh(0.5 * z)) - y) / z.size
    elif name == "mean_squared_error":
        def f(x, y):
            r = x - y
            return (r * r).mean(), (2.0 / x.size) * r
    elif name == "mean_absolute_error":
        def f(x, y):
            r = x - y
            return np.abs(r).mean(), np.sign(r) / x.size
    else:  # huber, delta 1
        def f(x, y):
            r = x - y
            a = np.abs(r)
            loss = np.where(a <= 1, 0.5 * r * r, a - 0.5).mean()
            return loss, np.clip(r, -1, 1) / x.size
    return f


def torch_impl(name, arrays):
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(arrays[0]).requires_grad_(True)
    y = torch.from_numpy(arrays[1])
    loss_fn = {
        "sparse_softmax_cross_entropy": F.cross_entropy,
        "sigmoid_binary_cross_entropy": F.binary_cross_entropy_with_logits,
        "mean_squared_error": F.mse_loss,
        "mean_absolute_error": F.l1_loss,
        "huber": F.huber_loss,
    }[name]

    def step():
        x.grad = None
        loss_fn(x, y).backward()

    return step


def jax_impl(name, arrays):
    import jax
    import jax.numpy as jnp

    def loss(x, y):
        if name == "sparse_softmax_cross_entropy":
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(x), y[:, None], axis=1))
        if name == "sigmoid_binary_cross_entropy":
            return jnp.mean(jnp.maximum(x, 0) - x * y + jnp.log1p(jnp.exp(-jnp.abs(x))))
        r = x - y
        if name == "mean_squared_error":
            return jnp.mean(r * r)
        if name == "mean_absolute_error":
            return jnp.mean(jnp.abs(r))
        a = jnp.abs(r)
        return jnp.mean(jnp.where(a <= 1, 0.5 * r * r, a - 0.5))

    f = jax.jit(jax.value_and_grad(loss))
    xs, ys = jnp.asarray(arrays[0]), jnp.asarray(arrays[1])
    return lambda: jax.block_until_ready(f(xs, ys))


def copy_bandwidth(n, repeats):
    """GB/s of NumPy copying n float32 (bytes read plus bytes written)."""
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    return 2 * src.nbytes / timed(lambda: np.copyto(dst, src), repeats) / 1e9


def stream_triad(n):
    """(a call of the STREAM triad a = b + s c over n float64 on every core, bytes it moves)."""
    import numba

    @numba.njit(parallel=True, nogil=True)
    def triad(a, b, c, s):
        for i in numba.prange(a.shape[0]):
            a[i] = b[i] + s * c[i]

    a, b, c = np.zeros(n), np.ones(n), np.full(n, 2.0)
    triad(a, b, c, 3.0)  # compile
    return (lambda: triad(a, b, c, 3.0)), 3 * a.nbytes


def best_alternately(fns, repeats):
    """The best seconds per call of each of ``fns``, called in turn ``repeats`` times after a
    warm-up round (STREAM reports the best of its repeats)."""
    time.sleep(0.5)
    best = [float("inf")] * len(fns)
    for r in range(repeats + 1):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            if r:
                best[k] = min(best[k], time.perf_counter() - t0)
    return best


def cases(quick, dtype):
    rng = np.random.default_rng(0)
    big = (512, 32000) if quick else (8192, 32000)
    n = 10**6 if quick else 10**7
    out = []
    for shape in [(4096, 1000), big]:
        z = rng.normal(size=shape).astype(dtype)
        labels = rng.integers(0, shape[1], shape[0])
        out.append(("sparse_softmax_cross_entropy", f"sparse CE {shape[0]}x{shape[1]}", (z, labels)))
    x = rng.normal(size=n).astype(dtype)
    y = rng.normal(size=n).astype(dtype)
    out.append(("sigmoid_binary_cross_entropy", f"sigmoid BCE {n:.0e}", (x, (y > 0).astype(dtype))))
    out.append(("mean_squared_error", f"MSE {n:.0e}", (x, y)))
    out.append(("mean_absolute_error", f"MAE {n:.0e}", (x, y)))
    out.append(("huber", f"Huber {n:.0e}", (x, y)))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer repeats")
    parser.add_argument("--dtype", nargs="+", default=["float32", "float64"])
    args = parser.parse_args()
    repeats = 3 if args.quick else 7
    size = 10**8 // (10 if args.quick else 1)
    copy_gbs = copy_bandwidth(size, repeats)
    triad, triad_bytes = stream_triad(size // 2)
    triad_gbs = triad_bytes / best_alternately([triad], repeats)[0] / 1e9
    peers = {"numpy": True}
    for mod in ("torch", "jax"):
        try:
            __import__(mod)
            peers[mod] = True
        except ImportError:
            peers[mod] = False
    if peers["jax"]:
        import jax

        jax.config.update("jax_enable_x64", True)  # float64 stays float64
    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {platform.processor() or 'cpu'}; "
          f"median of {repeats}; at the start: STREAM triad {triad_gbs:.1f} GB/s, NumPy copy {copy_gbs:.1f} GB/s")
    names = ["fastloss", "out=", "GB/s out=", "triad GB/s", "% triad", "NumPy", "PyTorch", "JAX", "JAX/fl",
             "torch/fl"]
    for dtype in args.dtype:
        print(f"\n{dtype}")
        print(f"{'case':22s} " + " ".join(f"{n:>10s}" for n in names))
        for name, label, arrays in cases(args.quick, np.dtype(dtype)):
            cells = row(name, arrays, repeats, peers, (triad, triad_bytes))
            print(f"{label:22s} " + " ".join(f"{c:>10s}" for c in cells))


def row(name, arrays, repeats, peers, triad):
    """The cells of one case: times, bandwidth (against the triad, timed alongside) and
    ratios."""
    fn = getattr(fl, name)
    t_auto = timed(lambda: fn(*arrays), repeats)
    out = np.empty_like(arrays[0])
    t_out = timed(lambda: fn(*arrays, out=out), repeats)
    best_out, best_triad = best_alternately([lambda: fn(*arrays, out=out), triad[0]], repeats)
    moved = arrays[0].nbytes * 2 + arrays[1].nbytes  # read x and y, write the gradient
    gbs, triad_gbs = moved / best_out / 1e9, triad[1] / best_triad / 1e9
    cells = [f"{t_auto * 1e3:8.1f}ms", f"{t_out * 1e3:8.1f}ms", f"{gbs:9.1f}", f"{triad_gbs:9.1f}",
             f"{100 * gbs / triad_gbs:8.0f}%"]
    np_fn = numpy_impl(name)
    cells.append(f"{timed(lambda: np_fn(*arrays), repeats) * 1e3:8.1f}ms")
    peer_times = {}
    for peer, make in (("torch", torch_impl), ("jax", jax_impl)):
        if peers[peer]:
            peer_times[peer] = timed(make(name, arrays), repeats)
            cells.append(f"{peer_times[peer] * 1e3:8.1f}ms")
        else:
            cells.append("-")
    for peer in ("jax", "torch"):
        t = peer_times.get(peer)
        cells.append("-" if t is None else f"{t / t_auto:.1f}/{t / t_out:.1f}")
    return cells


if __name__ == "__main__":
    main()
