#!/usr/bin/env bash
# Run here, before a device call: the wheels the GPU image lacks, downloaded into .whl/
# (ignored by git) for the call to carry. gpu_session.sh installs whatever lies there.
#
#   - NumPy 2.4: the image's NumPy (2.5 in 2026-11) lacks np.row_stack, which numba-cuda
#     0.30 calls;
#   - Liger-Kernel: gpu_compare.py's cross-entropy peer (a pure-Python wheel on Triton,
#     which the image has);
#   - pytest-xdist and execnet: the real-GPU tests on twelve workers (the image has pytest
#     alone; without them the tests run on one).
set -euo pipefail
cd "$(dirname "$0")/../.."
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" -d .whl "numpy==2.4.6" "liger-kernel==0.8.5" "pytest-xdist" "execnet"
ls -l .whl
