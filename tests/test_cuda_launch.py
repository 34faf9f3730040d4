"""fastloss's direct kernel launches type and flatten their arguments as numba-cuda does
(tests/launch_check.py, in a process of its own: the simulator, which the other CUDA
tests use, has no device arrays of numba-cuda's real kind). Under the simulator every
launch is numba-cuda's; on a GPU the real-GPU tests run the direct ones."""

import pathlib

import pytest
from conftest import ROOT, python_job

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed (pip install 'fastloss[cuda]')")
pytest.importorskip("hypothesis")

SCRIPT = pathlib.Path(__file__).with_name("launch_check.py")


@pytest.mark.background(job=python_job(str(SCRIPT)))
def test_direct_launches_type_and_flatten_arguments_as_numba_cuda_does(background):
    done = background()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.startswith("ok"), done.stdout


@pytest.mark.background(job=python_job(str(ROOT / "benchmarks" / "scripts" / "launch_prep.py"), "--calls", "20",
                                        NUMBA_ENABLE_CUDASIM="0"))
def test_the_launch_preparation_benchmark_runs(background):
    """benchmarks/scripts/launch_prep.py (host time of a direct launch's arguments) runs,
    in a process of its own without the simulator; it needs PyTorch."""
    pytest.importorskip("torch")
    done = background()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "µs of host time" in done.stdout, done.stdout
