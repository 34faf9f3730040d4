"""fastloss's direct kernel launches type and flatten their arguments as numba-cuda does
(tests/launch_check.py, in a process of its own: the simulator, which the other CUDA
tests use, has no device arrays of numba-cuda's real kind). Under the simulator every
launch is numba-cuda's; on a GPU the real-GPU tests run the direct ones."""

import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed (pip install 'fastloss[cuda]')")
pytest.importorskip("hypothesis")

SCRIPT = pathlib.Path(__file__).with_name("launch_check.py")


def test_direct_launches_type_and_flatten_arguments_as_numba_cuda_does():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.startswith("ok"), done.stdout


def test_the_launch_preparation_benchmark_runs():
    """benchmarks/scripts/launch_prep.py (host time of a direct launch's arguments) runs,
    in a process of its own without the simulator; it needs PyTorch."""
    pytest.importorskip("torch")
    script = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "scripts" / "launch_prep.py"
    done = subprocess.run([sys.executable, str(script), "--calls", "20"], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NUMBA_ENABLE_CUDASIM": "0"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "µs of host time" in done.stdout, done.stdout
