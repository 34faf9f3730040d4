"""Compile every CUDA kernel of fastloss for compute capability 9.0 (an H100), offline, and
check what each needs of an SM.

Run as a script (``python tests/compile_kernels.py``) by test_sm90_kernels.py, in a process
of its own without the simulator: the simulator runs kernels as Python and checks no
types, so this catches the typing errors it cannot see. No GPU or driver is needed: NVVM
from the ``cuda`` extra compiles each kernel as numba-cuda does before a launch (to LTO-IR),
nvJitLink (also from the extra) links it into sm_90 machine code as numba-cuda does, with
the kernel's register cap, and its report gives the registers, the stack and the spills of
each kernel; the current-device query that numba-cuda makes for device functions is
answered with compute capability 9.0.

A kernel fails if it does not compile, if a block of the size it is launched with needs
more registers than an SM has (it would not launch: 65536 registers, allocated 256 a
warp), or if it uses the stack: an array in local
memory (the row kernels' unrolled loads must live in registers) or registers spilled to
memory. Prints one line per kernel (registers a thread, blocks and threads an SM has room
for at its block size) and exits non-zero if any failed. With ``--resident N`` the kernels
are compiled as ``fastloss.cuda.jit.RESIDENT_THREADS = N`` would have them, and spills are
reported rather than failed (for choosing that setting).
"""

import argparse
import os
import pathlib
import re
import sys
import types

os.environ["NUMBA_ENABLE_CUDASIM"] = "0"
# The checkout this script is in, not whichever copy of fastloss is installed (a script's
# sys.path starts with its own folder, tests/, so an editable install of another worktree
# would win).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numba.cuda.dispatcher as cuda_dispatcher  # noqa: E402
from numba import cuda  # noqa: E402
from numba.types import UniTuple, boolean, float16, float32, float64, int16, int64, uint32  # noqa: E402

from fastloss._registry import SPECS  # noqa: E402
from fastloss.cuda import checks, elementwise, jit, kernel_choice, rows, rows_cross_entropy  # noqa: E402
from fastloss.losses import float32_form  # noqa: E402

CC = (9, 0)
cuda_dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=CC)
#: What an sm_90 SM has: registers (allocated to a warp 256 at a time), threads, blocks.
SM_REGISTERS, SM_THREADS, SM_BLOCKS, REGISTER_UNIT = 65536, 2048, 32, 256


class Meta(types.SimpleNamespace):
    pass


def n_params(spec):
    options = {o.name: o.default for o in spec.options}
    metas = [Meta(shape=(2, 3), dtype=None, ndim=2, size=6)] * len(spec.inputs)
    params = spec.params(options, (metas[0], True) if spec.data_params else metas)
    return max(1, len(params))


def loss_signature(spec, dt, sparse, aux):
    params = UniTuple(float64, n_params(spec))
    finish = (float64[::1], uint32[::1], float64, float64[::1], dt[::1])  # partials, counter, factor, total, value
    if spec.family == "elementwise":
        a = dt[::1]
        rule = float64[::1]  # hinge's rule, decided on the device
        return (a, a, float64[::1] if aux else a, float64[::1], params, float64, a, a, a, a, rule, *finish)
    a2 = dt[:, ::1]
    y = int64[::1] if sparse else a2
    gate = float64[::1]  # the label check's verdict
    return (a2, y, a2, float64[::1], float64[::1], params, float64, dt[::1], a2, a2, a2, a2, gate, *finish)


def cases():
    """(label, kernel, signature, the block size it is launched with) of every kernel."""
    for spec in SPECS:
        for dt in (float32, float64, float16):
            label = f"{spec.name} {dt}"
            if spec.family == "elementwise":
                yield (label, kernel_choice.loss_kernel(spec.math), loss_signature(spec, dt, False, False),
                       kernel_choice.THREADS)
                if dt is float32 and spec.finish is None and not spec.data_params:
                    # bfloat16 as int16 bits, losses in float32 (the float32 form, where there is one)
                    sig = list(loss_signature(spec, int16, False, False))
                    sig[6] = float32[::1]
                    sig[-1] = float32[::1]
                    yield (f"{spec.name} bfloat16",
                           kernel_choice.loss_kernel(float32_form(spec.math) or spec.math, True), tuple(sig),
                           kernel_choice.THREADS)
                single = float32_form(spec.math)
                if single is not None and dt is not float64:
                    yield (f"{label} float32 form", kernel_choice.loss_kernel(single),
                           loss_signature(spec, dt, False, False), kernel_choice.THREADS)
                if spec.option_math:
                    yield (f"{label} {spec.option_math[0]}", kernel_choice.loss_kernel(spec.option_math[1]),
                           loss_signature(spec, dt, False, False), kernel_choice.THREADS)
                if spec.aux is not None:
                    sig = loss_signature(spec, dt, False, True)
                    yield label + " aux", kernel_choice.loss_kernel(spec.math), sig, kernel_choice.THREADS
                if spec.data_params:
                    yield (label + " rule on the device", kernel_choice.loss_kernel(spec.math, False, True),
                           loss_signature(spec, dt, False, False), kernel_choice.THREADS)
                continue
            row_fns = [(spec.math, spec.target == "labels", "")]
            if spec.target == "float_or_labels" and spec.sparse_math is not None:
                row_fns.append((spec.sparse_math, True, " labels"))
            for math_fn, sparse, suffix in row_fns:
                if math_fn not in kernel_choice.ROW_KERNELS:
                    continue
                # warp rows, segments of 8 lanes (rows of up to 8 elements) and block rows
                layouts = ((256, 32), (256, 8), (512, 512)) if dt is float32 else ((256, 32),)
                for layout in layouts:
                    yield (f"{label}{suffix} rows {layout}", kernel_choice.row_kernel(math_fn, layout, dt.name),
                           loss_signature(spec, dt, sparse, False), layout[0])
                if dt is float32:  # bfloat16 inputs as int16 bits; losses in float32
                    sig = list(loss_signature(spec, int16, sparse, False))
                    sig[7] = float32[::1]
                    sig[-1] = float32[::1]
                    for layout in layouts:
                        yield (f"{spec.name}{suffix} bfloat16 rows {layout}",
                               kernel_choice.row_kernel(math_fn, layout, "int16"), tuple(sig), layout[0])
    # Another number of loads in flight (benchmarks/scripts/gpu_variants.py compares them):
    # the unrolled loads must still compile, and stay in registers.
    ce = next(spec for spec in SPECS if spec.name == "sparse_softmax_cross_entropy")
    shipped, rows.LOADS_IN_FLIGHT = rows.LOADS_IN_FLIGHT, 8
    try:
        kernels = [(dt, kernel_choice.row_kernel(ce.math, (512, 512), dt.name)) for dt in (float32, int16)]
    finally:
        rows.LOADS_IN_FLIGHT = shipped
    for dt, k in kernels:
        sig = list(loss_signature(ce, dt, True, False))
        sig[7] = sig[-1] = float32[::1]
        yield f"{ce.name} {'bfloat16' if dt is int16 else dt} rows (512, 512), 8 loads in flight", k, tuple(sig), 512
    # The float32 gradient of float32 logits' cross-entropy (rows_cross_entropy.FLOAT32_CE_GRADIENT).
    shipped, rows_cross_entropy.FLOAT32_CE_GRADIENT = rows_cross_entropy.FLOAT32_CE_GRADIENT, True
    try:
        kernels = [(layout, kernel_choice.row_kernel(ce.math, layout, "float32")) for layout in ((256, 32), (512, 512))]
    finally:
        rows_cross_entropy.FLOAT32_CE_GRADIENT = shipped
    for layout, k in kernels:
        yield (f"{ce.name} float32 rows {layout}, float32 gradient", k, loss_signature(ce, float32, True, False),
               layout[0])
    rmse = next(spec for spec in SPECS if spec.finish is not None)
    for dt in (float32, float64):
        yield (f"finish {dt}", elementwise.finish_kernel(rmse.finish, kernel_choice.THREADS),
               (float64[::1], float64, dt[::1], dt[::1]), kernel_choice.THREADS)
    yield "label_check", checks.label_check_kernel(kernel_choice.THREADS), (
        int64[::1], int64, boolean, int64, float64[::1], int64, int64[:, ::1], float64[::1], uint32[::1], float64[::1]
    ), kernel_choice.THREADS
    yield "zero_one_rule", checks.zero_one_rule_kernel(kernel_choice.THREADS), (
        float32[::1], float64[::1], uint32[::1], float64[::1], float64[::1]), kernel_choice.THREADS


def resources(kernel, sig):
    """(registers a thread, stack bytes, spill bytes stored and loaded, register cap) of
    ``kernel`` for ``sig``, compiled and linked for sm_90 as numba-cuda does it."""
    from cuda.bindings import nvjitlink

    cap = kernel.targetoptions.get("max_registers")
    ltoir, _ = cuda.compile(kernel.py_func, sig, cc=CC, output="ltoir", device=False, abi="numba")
    options = [f"-arch=sm_{CC[0]}{CC[1]}", "-lto", "-verbose", *([f"-maxrregcount={cap}"] if cap else [])]
    linker = nvjitlink.create(len(options), options)
    try:
        nvjitlink.add_data(linker, nvjitlink.InputType.LTOIR, bytes(ltoir), len(ltoir), "kernel")
        nvjitlink.complete(linker)
        log = bytearray(nvjitlink.get_info_log_size(linker))
        nvjitlink.get_info_log(linker, log)
    finally:
        nvjitlink.destroy(linker)
    log = log.decode()
    registers = int(re.search(r"[Uu]sed (\d+) registers", log).group(1))
    stack = int(re.search(r"(\d+) bytes stack frame", log).group(1))
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    return registers, stack, int(spills.group(1)) + int(spills.group(2)), cap


def blocks_per_sm(registers, threads):
    """How many blocks of ``threads`` fit an SM by registers, threads and blocks."""
    warps = -(-threads // 32)
    per_warp = -(-registers * 32 // REGISTER_UNIT) * REGISTER_UNIT
    by_registers = (SM_REGISTERS // per_warp) // warps if per_warp else SM_BLOCKS
    return min(by_registers, SM_THREADS // threads, SM_BLOCKS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resident", type=int, help="compile as RESIDENT_THREADS = N would (spills not failed)")
    args = parser.parse_args()
    jit.RESIDENT_THREADS = args.resident
    failed = 0
    for label, kernel, sig, threads in cases():
        try:
            registers, stack, spilled, cap = resources(kernel, sig)
            blocks = blocks_per_sm(registers, threads)
            assert blocks >= 1, f"{registers} registers a thread: a block of {threads} threads does not fit an SM"
            if args.resident is None:
                assert stack == 0, f"{stack} bytes of stack ({spilled} bytes of spills)"
            print(f"ok {label}: {registers} registers{f' (cap {cap})' if cap else ''}, {blocks} blocks of {threads} "
                  f"an SM ({blocks * threads} threads), stack {stack}, spills {spilled}")
        except Exception as exc:  # noqa: BLE001 - report every failure, then fail
            failed += 1
            print("FAILED", label, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
    print(f"{failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
