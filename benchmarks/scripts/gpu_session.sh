#!/usr/bin/env bash
# Everything the CUDA backend owes a real GPU, in one device call that fits a 15-minute
# lease (at most 9.5 minutes of commands: each step has its own time limit, the most
# wanted first, and a failed step does not stop the next):
#
#   1. the CUDA tests for real (NUMBA_ENABLE_CUDASIM=0): tests/test_cuda.py and
#      tests/test_cuda_frameworks.py;
#   2. gpu_compare.py: every loss against PyTorch, cross-entropy against PyTorch and
#      Liger-Kernel, small calls, the copy bandwidth;
#   3. gpu_variants.py: the launch layouts side by side;
#   4. gpu_call_overhead.py: where a small call's host time goes.
#
# Here first: `bash benchmarks/scripts/gpu_wheels.sh` (fills .whl/). Then, with the device
# tool: run(command="bash benchmarks/scripts/gpu_session.sh", carry=[".whl"], timeout_s=600).
# Each step's whole output lands in $OUT (one file per step); the summary printed last
# is what the reply's output tail shows.
set -u
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
  date -u
  git rev-parse --short HEAD 2>/dev/null || true
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
} >"$OUT/device.txt" 2>&1

results=()
step() {  # step NAME SECONDS COMMAND...: its output into $OUT/NAME.txt
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.txt" 2>&1
  local rc=$?
  results+=("$name: exit $rc in $((SECONDS - start)) s")
  echo "${results[-1]}"
}
# A test that hangs (a warp shuffle waiting on lanes that never come) fails alone.
per_test=()
python3 -c "import pytest_timeout" 2>/dev/null && per_test=(--timeout 100)
# Twelve workers where pytest-xdist is there (gpu_wheels.sh brings it), else one.
python3 -c "import xdist" 2>/dev/null && per_test+=(-n 12)
step tests 150 env NUMBA_ENABLE_CUDASIM=0 python3 -m pytest -q -p no:cacheprovider "${per_test[@]}" \
  tests/test_cuda.py tests/test_cuda_frameworks.py
step compare 150 python3 benchmarks/scripts/gpu_compare.py
step variants 240 python3 benchmarks/scripts/gpu_variants.py
step overhead 50 python3 benchmarks/scripts/gpu_call_overhead.py --calls 100 --top 15

echo
cat "$OUT/device.txt"
printf '%s\n' "${results[@]}"
tail -n 3 "$OUT/tests.txt"
echo
grep -A 40 "^loss  *| fastloss ms" "$OUT/compare.txt" | head -n 30
grep -A 8 "^shape" "$OUT/compare.txt"
grep -E "host time per call|empty numba-cuda" "$OUT/overhead.txt"
