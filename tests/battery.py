"""A fixed battery of calls whose results must stay bit-identical across a refactoring.

Every loss x option case (``reference.OPTION_CASES``) x dtype x CPU backend x reduction, with
and without sample weights and hessians, at shapes that reach the kernels' different paths
(one small block, many chunks, narrow-row tiles, wide rows split into blocks). Each result
(loss, gradients, hessian) is reduced to a sha256 of its bytes.

    python tests/battery.py save before.json     # on the old code
    python tests/battery.py check before.json    # on the new code: lists every case that differs

It is not a test of correctness (the test suite checks values against references); it proves
that a change meant to move code moved it without changing a single bit.
"""

import hashlib
import json
import sys
import zlib

import numpy as np
from reference import OPTION_CASES, ROWWISE, prepared

import fastloss as fl

ELEMENT_SHAPES = ((3, 4), (25_001, 4))
ROW_SHAPES = ((4, 5), (1_031, 5), (3, 5_000))
TRIPLET_SHAPES = ((4, 5), (1_031, 5), (3, 700))
DTYPES = (np.float32, np.float64)
CPU_BACKENDS = [b for b in fl.backends() if b != "cuda"]


def _fit(options, width):
    """The option arrays resized to a shape's class axis."""
    return {k: np.resize(v, width) if isinstance(v, np.ndarray) else v for k, v in options.items()}


def _digest(res):
    h = hashlib.sha256()
    for part in (res.loss, res.grad, getattr(res, "hess", None)):
        for a in part if isinstance(part, tuple) else (part,):
            if a is not None:
                a = np.asarray(a)
                h.update(f"{a.dtype}{a.shape}".encode())
                h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def cases():
    for name in sorted(OPTION_CASES):
        info = fl.losses()[name]
        shapes = TRIPLET_SHAPES if name == "triplet_margin_loss" else (
            ROW_SHAPES if name in ROWWISE else ELEMENT_SHAPES)
        for options in OPTION_CASES[name]:
            for shape in shapes:
                for dtype in DTYPES:
                    rng = np.random.default_rng(zlib.crc32(f"{name}{options}{shape}".encode()))
                    arrays, opts = prepared(name, _fit(options, shape[-1]), rng, dtype, shape)
                    loss_shape = shape[:-1] if name in ROWWISE else shape
                    weights = rng.uniform(-0.5, 2.0, loss_shape)
                    for reduction in ("mean", "sum", "none"):
                        if name == "root_mean_squared_error" and reduction == "none":
                            continue
                        for weighted in (False, True):
                            for hessian in (False, True) if info.hessian else (False,):
                                call = dict(opts, reduction=reduction, hessian=hessian,
                                            sample_weight=weights if weighted else None)
                                key = (f"{name} {_label(options)} {shape} {np.dtype(dtype).name} "
                                       f"{reduction} w={int(weighted)} h={int(hessian)}")
                                yield key, name, arrays, call


def _label(options):
    return ",".join(f"{k}={'array' if isinstance(v, np.ndarray) else v}" for k, v in options.items()) or "-"


def run():
    out = {}
    for key, name, arrays, call in cases():
        for backend in CPU_BACKENDS:
            out[f"{key} {backend}"] = _digest(fl.compute(name, *arrays, backend=backend, **call))
    return out


def main(argv):
    if len(argv) != 3 or argv[1] not in ("save", "check"):
        sys.exit(__doc__)
    results = run()
    if argv[1] == "save":
        with open(argv[2], "w") as f:
            json.dump(results, f, indent=0, sort_keys=True)
        print(f"{len(results)} results saved to {argv[2]}")
        return
    with open(argv[2]) as f:
        before = json.load(f)
    missing = sorted(set(before) - set(results))
    differ = sorted(k for k in before if k in results and before[k] != results[k])
    for k in differ:
        print("differs:", k)
    for k in missing:
        print("missing:", k)
    print(f"{len(results)} results; {len(differ)} differ, {len(missing)} missing, "
          f"{len(set(results) - set(before))} new")
    sys.exit(1 if differ or missing else 0)


if __name__ == "__main__":
    main(sys.argv)
