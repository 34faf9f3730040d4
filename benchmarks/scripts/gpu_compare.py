"""fastloss's CUDA backend against PyTorch CUDA (forward + backward) and Liger-Kernel, and
against the device's memory bandwidth, measured in one run.

    python benchmarks/scripts/gpu_compare.py [--quick]

Every loss on ~2^28 float32 elements (rows of 256 for class-axis losses, 64 features for
triplet and VAE); cross-entropy (8192, 32000) and (8192, 128256) in float32 and bfloat16;
and small inputs, where launch overhead shows. Times are medians over CUDA events around
one call each (Python overhead included, as a user pays it), and for fastloss also per call
over ten calls back to back (the kernels' throughput), and the GPU time of the call's
kernels alone (CUPTI, through PyTorch's profiler: host overhead and launch gaps left
out), for PyTorch's forward and backward too. "GB/s" counts the bytes a
fused pass must move (inputs read once, gradients written once); "% copy" compares it with
a device-to-device copy (bytes read + written) timed in the same run.
"""

import argparse
import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

import fastloss as fl

DEV = "cuda"


def timed(fn, reps=20, warmup=3, back_to_back=1):
    """Median milliseconds per ``fn()`` between CUDA events, after ``warmup`` calls; with
    ``back_to_back`` > 1, that many calls between two events (so the host's work for one
    call overlaps the GPU's for the previous: the kernels' throughput)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(back_to_back):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / back_to_back)
    return float(np.median(times))


def kernel_ms(fn, calls=10):
    """GPU milliseconds per call of ``fn()``'s kernels, memsets and copies, host overhead
    and launch gaps left out (CUPTI, through PyTorch's profiler)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    return sum(e.self_device_time_total for e in prof.key_averages()) / calls / 1000


def copy_bandwidth(nbytes=1 << 30):
    a = torch.empty(nbytes // 4, device=DEV)
    b = torch.empty_like(a)
    ms = timed(lambda: b.copy_(a))
    return 2 * nbytes / ms / 1e6


def _softmax_focal(z, y, alpha=0.25, gamma=2.0):
    logp = F.log_softmax(z, -1)
    return (-(alpha * y * (1 - logp.exp()) ** gamma * logp).sum(-1)).mean()


def _jsd(zp, zq, beta=0.5):
    lp, lq = F.log_softmax(zp, -1), F.log_softmax(zq, -1)
    lm = torch.logaddexp(lp + math.log(beta), lq + math.log(1 - beta))
    return (beta * (lp.exp() * (lp - lm)).sum(-1) + (1 - beta) * (lq.exp() * (lq - lm)).sum(-1)).mean()


def _sigmoid_focal(z, y, alpha=0.25, gamma=2.0):
    p = torch.sigmoid(z)
    ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    return ((alpha * y + (1 - alpha) * (1 - y)) * (1 - p_t) ** gamma * ce).mean()


EPS = 1e-7
#: PyTorch formulations of every loss (mean reduction), as a PyTorch user would write them.
TORCH = {
    "mean_squared_error": lambda x, y: F.mse_loss(x, y),
    "mean_absolute_error": lambda x, y: F.l1_loss(x, y),
    "root_mean_squared_error": lambda x, y: F.mse_loss(x, y).sqrt(),
    "mean_squared_logarithmic_error": lambda x, y: (
        (torch.log1p(x.clamp(min=EPS)) - torch.log1p(y.clamp(min=EPS))) ** 2).mean(),
    "mean_absolute_percentage_error": lambda x, y: (100 * (x - y).abs() / y.abs().clamp(min=EPS)).mean(),
    "huber": lambda x, y: F.huber_loss(x, y),
    "pseudo_huber": lambda x, y: (torch.sqrt(1 + (x - y) ** 2) - 1).mean(),
    "log_cosh": lambda x, y: ((x - y) + F.softplus(-2 * (x - y)) - math.log(2)).mean(),
    "poisson": lambda x, y: F.poisson_nll_loss(x, y, log_input=False, eps=EPS),
    "binary_cross_entropy": lambda p, y: F.binary_cross_entropy(p.clamp(EPS, 1 - EPS), y),
    "sigmoid_binary_cross_entropy": lambda z, y: F.binary_cross_entropy_with_logits(z, y),
    "hinge": lambda x, y: (1 - (2 * y - 1) * x).clamp(min=0).mean(),
    "squared_hinge": lambda x, y: ((1 - (2 * y - 1) * x).clamp(min=0) ** 2).mean(),
    "sigmoid_focal_loss": _sigmoid_focal,
    "categorical_hinge": lambda x, y: (
        1 + ((1 - y) * x).amax(-1) - (y * x).sum(-1)).clamp(min=0).mean(),
    "categorical_cross_entropy": lambda p, y: (
        -(y * torch.log((p / p.sum(-1, keepdim=True)).clamp(EPS, 1 - EPS))).sum(-1)).mean(),
    "softmax_cross_entropy": lambda z, y: F.cross_entropy(z, y),
    "sparse_softmax_cross_entropy": lambda z, y: F.cross_entropy(z, y),
    "kl_divergence": lambda p, q: (q.clamp(EPS, 1) * torch.log(q.clamp(EPS, 1) / p.clamp(EPS, 1))).sum(-1).mean(),
    "softmax_kl_divergence": lambda z, q: F.kl_div(F.log_softmax(z, -1), q, reduction="batchmean"),
    "js_divergence": _jsd,
    "softmax_focal_loss": _softmax_focal,
    "gan_discriminator_loss": lambda r, f: (F.softplus(-r) + F.softplus(f)).mean(),
    "gan_generator_loss": lambda f: F.softplus(-f).mean(),
    "triplet_margin_loss": lambda a, p, n: F.triplet_margin_loss(a, p, n),
    "vae_kl_divergence": lambda mu, lv: (-0.5 * (1 + lv - mu**2 - lv.exp()).sum(-1)).mean(),
}

ROW = {"categorical_hinge", "categorical_cross_entropy", "softmax_cross_entropy", "sparse_softmax_cross_entropy",
       "kl_divergence", "softmax_kl_divergence", "js_divergence", "softmax_focal_loss"}
FEATURES = {"triplet_margin_loss", "vae_kl_divergence"}
POSITIVE = {"mean_squared_logarithmic_error", "poisson"}
PROBS = {"binary_cross_entropy", "categorical_cross_entropy", "kl_divergence"}


def inputs(name, elements, dtype=torch.float32):
    """Device inputs for ``name`` with about ``elements`` elements per array."""
    g = torch.Generator(device=DEV).manual_seed(0)
    width = 256 if name in ROW else 64 if name in FEATURES else None
    shape = (elements // width, width) if width else (elements,)
    spec = fl.losses()[name]

    def normal():
        return torch.randn(shape, device=DEV, generator=g, dtype=dtype)

    x = normal()
    if name in POSITIVE or name in PROBS:
        x = torch.rand(shape, device=DEV, generator=g, dtype=dtype)
    if name in ("categorical_cross_entropy", "kl_divergence"):
        x = x / x.sum(-1, keepdim=True)
    arrays = [x]
    if len(spec.inputs) > 1:
        if name == "sparse_softmax_cross_entropy":
            arrays.append(torch.randint(0, width, shape[:-1], device=DEV, generator=g))
        elif name in ("softmax_cross_entropy", "categorical_cross_entropy", "kl_divergence", "softmax_kl_divergence",
                      "categorical_hinge", "softmax_focal_loss"):
            arrays.append(torch.softmax(normal(), -1))
        elif name in ("binary_cross_entropy", "sigmoid_binary_cross_entropy", "hinge", "squared_hinge",
                      "sigmoid_focal_loss"):
            arrays.append((normal() > 0).to(dtype))
        elif name in POSITIVE:
            arrays.append(torch.rand(shape, device=DEV, generator=g, dtype=dtype) * 3)
        else:
            arrays.append(normal())
    while len(arrays) < len(spec.inputs):
        arrays.append(normal())
    return arrays


def moved_bytes(name, arrays):
    spec = fl.losses()[name]
    read = sum(a.numel() * a.element_size() for a in arrays)
    written = sum(arrays[k].numel() * arrays[k].element_size() for k in range(len(spec.differentiable)))
    return read + written


def torch_step(name, arrays):
    n_grads = len(fl.losses()[name].differentiable)
    leaves = [a.detach().clone().requires_grad_(k < n_grads) for k, a in enumerate(arrays)]
    if name == "sparse_softmax_cross_entropy":
        leaves[1] = arrays[1]

    def step():
        for leaf in leaves[:n_grads]:
            leaf.grad = None
        TORCH[name](*leaves).backward()

    return step


def report(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    print(flush=True)


def every_loss(elements, bandwidth):
    rows = []
    for name in sorted(TORCH):
        arrays = inputs(name, elements)
        ours = timed(lambda: fl.compute(name, *arrays), reps=10)  # noqa: B023
        piped = timed(lambda: fl.compute(name, *arrays), reps=3, back_to_back=10)  # noqa: B023
        ours_gpu = kernel_ms(lambda: fl.compute(name, *arrays))  # noqa: B023
        step = torch_step(name, arrays)
        theirs = timed(step, reps=10)
        theirs_gpu = kernel_ms(step)
        gbs = moved_bytes(name, arrays) / piped / 1e6
        rows.append((name, f"{ours:.2f}", f"{piped:.2f}", f"{ours_gpu:.2f}", f"{theirs:.2f}", f"{theirs_gpu:.2f}",
                     f"{theirs / ours:.2f}", f"{gbs:.0f}", f"{100 * gbs / bandwidth:.0f}%"))
        torch.cuda.empty_cache()
    report(rows, ("loss", "fastloss ms", "back to back ms", "kernels ms", "PyTorch ms", "PyTorch kernels ms",
                  "speed-up", "GB/s (b2b)", "% copy"))


def cross_entropy(shapes, bandwidth):
    try:
        from liger_kernel.transformers import LigerCrossEntropyLoss

        liger = LigerCrossEntropyLoss()
    except Exception as exc:  # noqa: BLE001
        print(f"(Liger-Kernel not available: {exc})")
        liger = None
    rows = []
    for n, c in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            g = torch.Generator(device=DEV).manual_seed(0)
            z = torch.randn(n, c, device=DEV, dtype=dtype, generator=g)
            y = torch.randint(0, c, (n,), device=DEV, generator=g)
            moved = 2 * z.numel() * z.element_size() + y.numel() * 8
            logits = z.clone()
            ours_inplace = timed(lambda: fl.sparse_softmax_cross_entropy(logits, y, out=logits))  # noqa: B023
            ours_gpu = kernel_ms(lambda: fl.sparse_softmax_cross_entropy(logits, y, out=logits))  # noqa: B023
            ours = timed(lambda: fl.sparse_softmax_cross_entropy(z, y))  # noqa: B023
            leaf = z.detach().clone().requires_grad_(True)

            def pt():
                leaf.grad = None  # noqa: B023
                F.cross_entropy(leaf, y).backward()  # noqa: B023

            theirs = timed(pt)
            torch.cuda.empty_cache()
            lig = "-"
            if liger is not None:
                leaf = z.detach().clone().requires_grad_(True)

                def lk():
                    leaf.grad = None  # noqa: B023
                    liger(leaf, y).backward()  # noqa: B023

                lig = f"{timed(lk):.2f}"
                torch.cuda.empty_cache()
            gbs = moved / ours_inplace / 1e6
            rows.append((f"({n}, {c})", str(dtype).removeprefix("torch."), f"{ours_inplace:.2f}", f"{ours_gpu:.2f}",
                         f"{ours:.2f}", f"{theirs:.2f}", lig, f"{gbs:.0f}", f"{100 * gbs / bandwidth:.0f}%"))
            torch.cuda.empty_cache()
    report(rows, ("shape", "dtype", "fastloss out=logits ms", "its kernels ms", "fastloss ms", "PyTorch ms",
                  "Liger ms", "GB/s (in place)", "% copy"))


def small(bandwidth):
    rows = []
    for name, arrays in (
        ("mean_squared_error", inputs("mean_squared_error", 1000)),
        ("sparse_softmax_cross_entropy", inputs("sparse_softmax_cross_entropy", 256 * 256)),
        ("sigmoid_binary_cross_entropy", inputs("sigmoid_binary_cross_entropy", 1 << 16)),
    ):
        ours = timed(lambda: fl.compute(name, *arrays), reps=100)  # noqa: B023
        theirs = timed(torch_step(name, arrays), reps=100)
        rows.append((name, "x".join(map(str, arrays[0].shape)), f"{1000 * ours:.0f}", f"{1000 * theirs:.0f}"))
    report(rows, ("loss", "shape", "fastloss µs", "PyTorch µs"))


def versions():
    """The commit measured and the versions that matter, for the record."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    found = []
    for name in ("numba", "numba-cuda", "numpy", "torch", "liger-kernel"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} -")
    return f"commit {commit}; " + ", ".join(found)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs (2^24 elements; no 128256 vocabulary)")
    parser.add_argument("--only", choices=("losses", "ce", "small"), help="run one part")
    args = parser.parse_args(argv)
    bandwidth = copy_bandwidth()
    print(f"{torch.cuda.get_device_name()}: device-to-device copy {bandwidth:.0f} GB/s (read + write)")
    print(versions() + "\n")
    if args.only in (None, "small"):
        small(bandwidth)
    if args.only in (None, "losses"):
        every_loss(1 << (24 if args.quick else 28), bandwidth)
    if args.only in (None, "ce"):
        shapes = [(8192, 32000)] if args.quick else [(8192, 32000), (8192, 128256)]
        cross_entropy(shapes, bandwidth)


if __name__ == "__main__":
    sys.exit(main())
