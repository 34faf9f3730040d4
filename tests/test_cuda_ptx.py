"""Every CUDA kernel compiles to PTX for compute capability 9.0 (tests/ptx_compile.py, in a
process of its own: the simulator that the other CUDA tests use checks no types)."""

import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed (pip install 'fastloss[cuda]')")

SCRIPT = pathlib.Path(__file__).with_name("ptx_compile.py")


def test_every_kernel_compiles_to_ptx():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=600)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, "\n".join(line for line in lines if not line.startswith("ok")) + done.stderr[-3000:]
    compiled = [line for line in lines if line.startswith("ok")]
    assert len(compiled) > 90, done.stdout  # every loss in three dtypes, and the helpers
