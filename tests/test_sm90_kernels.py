"""Every CUDA kernel compiles for compute capability 9.0, fits an SM at the block size it
is launched with, and keeps its registers out of memory (tests/compile_kernels.py, in a
process of its own: the simulator that the other CUDA tests use checks no types and has
no registers). NVVM and the linker keep a core busy for about two minutes: the compilation
runs in the background (conftest.py), whose jobs run one after another in the order the
tests are collected. This module is named to be collected late, after the CUDA simulator
tests, so that the main loop reaches it when its job is done rather than wait for it."""

import pathlib
import sys

import pytest

pytest.importorskip("numba_cuda", reason="numba-cuda is not installed (pip install 'fastloss[cuda]')")

SCRIPT = pathlib.Path(__file__).with_name("compile_kernels.py")


def _compile_every_kernel(run):
    return run([sys.executable, str(SCRIPT)], timeout=600)


@pytest.mark.background(job=_compile_every_kernel)
def test_every_kernel_compiles_for_sm90_and_fits_an_sm(background):
    done = background()
    lines = done.stdout.splitlines()
    assert done.returncode == 0, "\n".join(line for line in lines if not line.startswith("ok")) + done.stderr[-3000:]
    compiled = [line for line in lines if line.startswith("ok")]
    assert len(compiled) > 90, done.stdout  # every loss in three dtypes, and the helpers
    assert all(" registers" in line and " blocks of " in line for line in compiled), done.stdout
