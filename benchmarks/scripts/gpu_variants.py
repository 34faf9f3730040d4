"""The CUDA backend's launch layouts compared on one GPU, in one run: what to set
``fastloss.cuda.kernel_choice``'s block sizes and grid caps to.

    python benchmarks/scripts/gpu_variants.py [--quick] [--only element|narrow|wide]

A device machine is lent rarely and briefly, so the layouts that were chosen without
one are measured side by side here rather than one per visit. Each case (a loss on a
shape) runs under each variant of the module settings of
:mod:`fastloss.cuda.kernel_choice` (``THREADS`` and ``MAX_BLOCKS`` for element-wise
kernels; ``WARP_ROW_WIDTH``, ``ROW_THREADS`` and ``MAX_ROW_BLOCKS`` for row kernels) and
of ``fastloss.cuda.rows.LOADS_IN_FLIGHT`` (the row passes' loads per thread before the
first is used), ``fastloss.cuda.rows_cross_entropy.FLOAT32_CE_GRADIENT`` (float32
logits' sparse cross-entropy gradient in float32) and ``fastloss.cuda.jit.RESIDENT_THREADS``
(the threads per SM that the kernels' registers are capped for: ``python tests/compile_kernels.py --resident N`` says
what each kernel spills for it), and reports:

- **kernels µs**: the GPU time of the call's kernels (and copies) per call, from the
  PyTorch profiler's CUDA activity (CUPTI), host overhead excluded: what the layout
  changes;
- **call µs**: the median of CUDA events around one call, as a user pays it;
- **% copy**: the bytes a fused pass must move (inputs read once, gradients written
  once) over the kernel time, against a device-to-device copy timed in the same run;
- **vs first**: the largest difference of the loss and gradient from the first
  variant's (the shipped settings), relative to their largest magnitude: a layout only
  regroups sums, so anything above ~1e-5 (float32) is a bug, and is marked ``!``.
"""

import argparse
import sys

import torch
from gpu_compare import DEV, copy_bandwidth, inputs, kernel_ms, report, timed, versions

import fastloss as fl
from fastloss.cuda import jit, kernel_choice, rows_cross_entropy
from fastloss.cuda import rows as row_kernels

#: The settings a variant may change, and the module each lives in.
SETTINGS = {"THREADS": kernel_choice, "MAX_BLOCKS": kernel_choice, "WARP_ROW_WIDTH": kernel_choice,
            "ROW_LANE_ELEMENTS": kernel_choice, "ROW_THREADS": kernel_choice, "MAX_ROW_BLOCKS": kernel_choice,
            "LOADS_IN_FLIGHT": row_kernels, "FLOAT32_CE_GRADIENT": rows_cross_entropy,
            "RESIDENT_THREADS": jit}

#: The variants of each family, the shipped settings first (an empty dict).
VARIANTS = {  # in the order they run: the cross-entropy at vocabulary sizes first
    # The grid cap bounds the rows in flight (one per block): 264 rows of 128 KB are 34 MB of L2.
    # Blocks of 512 at 68-110 registers a thread: one an SM; RESIDENT_THREADS 1024 caps them
    # at 64, two an SM (264 rows in flight), as ROW_THREADS 512 was chosen for. Blocks of 256
    # fit three (sparse CE, 80 registers) or four (softmax CE, 64) an SM.
    "wide": [{}, {"FLOAT32_CE_GRADIENT": True}, {"RESIDENT_THREADS": 1024},
             {"RESIDENT_THREADS": 1024, "LOADS_IN_FLIGHT": 8},
             {"LOADS_IN_FLIGHT": 8}, {"LOADS_IN_FLIGHT": 16}, {"ROW_THREADS": 256},
             {"ROW_THREADS": 1024}, {"MAX_ROW_BLOCKS": 264}, {"ROW_THREADS": 1024, "MAX_ROW_BLOCKS": 132},
             {"ROW_THREADS": 256, "LOADS_IN_FLIGHT": 16}],
    "element": [{}, {"MAX_BLOCKS": 2112}, {"MAX_BLOCKS": 4224}, {"THREADS": 512, "MAX_BLOCKS": 1056},
                {"THREADS": 128, "MAX_BLOCKS": 4224}],
    # WARP_ROW_WIDTH 0: rows of 256 take a block of 64 threads each (the layout of 155ce93).
    # ROW_LANE_ELEMENTS: rows of 10 in segments of 16 lanes (shipped), a warp (0) or 4 and 2
    # lanes; rows of 64 in 16 and 8 lanes.
    "narrow": [{}, {"RESIDENT_THREADS": 1024}, {"LOADS_IN_FLIGHT": 8}, {"ROW_LANE_ELEMENTS": 0},
               {"ROW_LANE_ELEMENTS": 4}, {"ROW_LANE_ELEMENTS": 8}, {"MAX_ROW_BLOCKS": 2112}, {"MAX_ROW_BLOCKS": 8448},
               {"THREADS": 128},
               {"WARP_ROW_WIDTH": 0}],
}


def cases(family, quick):
    """(label, loss, arrays) for each case of ``family``, made one at a time."""
    elements = 1 << (24 if quick else 28)
    if family == "element":
        for name in ("mean_squared_error", "sigmoid_binary_cross_entropy", "huber"):
            yield f"{name} {elements}", name, inputs(name, elements)
    elif family == "narrow":
        for name in ("sparse_softmax_cross_entropy", "softmax_cross_entropy", "kl_divergence",
                     "triplet_margin_loss", "vae_kl_divergence"):
            arrays = inputs(name, elements >> 2)
            yield f"{name} {'x'.join(map(str, arrays[0].shape))}", name, arrays
        g = torch.Generator(device=DEV).manual_seed(0)
        n = (elements >> 2) // 10  # ten classes
        z = torch.randn(n, 10, device=DEV, generator=g)
        yield f"sparse_softmax_cross_entropy {n}x10", "sparse_softmax_cross_entropy", [
            z, torch.randint(0, 10, (n,), device=DEV, generator=g)]
    else:
        for n, c in [(8192, 32000)]:  # gpu_compare.py has (8192, 128256)
            for dtype in (torch.float32, torch.bfloat16):
                g = torch.Generator(device=DEV).manual_seed(0)
                z = torch.randn(n, c, device=DEV, dtype=dtype, generator=g)
                y = torch.randint(0, c, (n,), device=DEV, generator=g)
                label = f"sparse CE ({n}, {c}) {str(dtype).removeprefix('torch.')}"
                yield label, "sparse_softmax_cross_entropy", [z, y]


def moved_bytes(name, arrays):
    spec = fl.losses()[name]
    read = sum(a.numel() * a.element_size() for a in arrays)
    return read + sum(arrays[k].numel() * arrays[k].element_size() for k in range(len(spec.differentiable)))


def flat(res):
    """The loss and gradients of a result, as one float64 vector on the device."""
    parts = [res.loss, *(res.grad if isinstance(res.grad, tuple) else (res.grad,))]
    return torch.cat([p.detach().double().reshape(-1) for p in parts])


def apply(settings):
    """Set the launch settings (:data:`SETTINGS`); return the previous ones."""
    before = {k: getattr(module, k) for k, module in SETTINGS.items()}
    for k, v in settings.items():
        setattr(SETTINGS[k], k, v)
    return before


def measure(family, label, name, arrays, bandwidth):
    rows = []
    reference = None
    in_place = family == "wide"
    scratch = arrays[0].clone() if in_place else None
    for variant in VARIANTS[family]:
        before = apply(variant)
        try:
            got = flat(fl.compute(name, *arrays))  # compiles this layout's kernel
            if in_place:
                def step():
                    return fl.compute(name, scratch, *arrays[1:], out=scratch)
            else:
                def step():
                    return fl.compute(name, *arrays)
            gpu = 1000 * kernel_ms(step)
            user = 1000 * timed(step, reps=10)
        finally:
            apply(before)
        if reference is None:
            reference, diff = got, 0.0
        else:
            scale = max(float(reference.abs().max()), 1e-300)
            diff = float((got - reference).abs().max()) / scale
        gbs = moved_bytes(name, arrays) / gpu / 1e3
        mark = " !" if diff > 1e-5 else ""
        rows.append((label, ", ".join(f"{k}={v}" for k, v in variant.items()) or "shipped", f"{gpu:.0f}",
                     f"{user:.0f}", f"{100 * gbs / bandwidth:.0f}%", f"{diff:.1e}{mark}"))
    torch.cuda.empty_cache()
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2^24 elements per element-wise or narrow case")
    parser.add_argument("--only", choices=tuple(VARIANTS), help="one family of cases")
    args = parser.parse_args(argv)
    bandwidth = copy_bandwidth()
    print(f"{torch.cuda.get_device_name()}: device-to-device copy {bandwidth:.0f} GB/s (read + write)")
    print(versions())
    print("shipped: " + ", ".join(f"{k}={getattr(m, k)}" for k, m in SETTINGS.items()) + "\n", flush=True)
    for family in VARIANTS:
        if args.only not in (None, family):
            continue
        rows = []
        for case in cases(family, args.quick):
            rows += measure(family, *case, bandwidth)
        report(rows, ("case", "variant", "kernels µs", "call µs", "% copy", "vs first"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
