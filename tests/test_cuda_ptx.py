"""Every CUDA kernel compiles to PTX for compute capability 9.0 (tests/ptx_compile.py, in a
process of its own: the simulator that the other CUDA tests use checks no types). NVVM keeps
a core busy for about a minute: the compilation runs in the background (conftest.py)."""

import pathlib
import sys

import pytest

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed (pip install 'fastloss[cuda]')")

SCRIPT = pathlib.Path(__file__).with_name("ptx_compile.py")


def _compile_every_kernel(run):
    return run([sys.executable, str(SCRIPT)], timeout=600)


@pytest.mark.background(job=_compile_every_kernel)
def test_every_kernel_compiles_to_ptx(background):
    done = background()
    lines = done.stdout.splitlines()
    assert done.returncode == 0, "\n".join(line for line in lines if not line.startswith("ok")) + done.stderr[-3000:]
    compiled = [line for line in lines if line.startswith("ok")]
    assert len(compiled) > 90, done.stdout  # every loss in three dtypes, and the helpers
