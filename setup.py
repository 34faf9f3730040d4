"""Build script: the metadata is in pyproject.toml; this file builds the Cython backend.

The extension's source, ``fastloss/cpu_cython/_kernels.pyx``, is generated from the
portable loss math by ``fastloss/cpu_cython/generate.py`` (its folder loaded as a package
of its own: the build imports neither fastloss nor Numba). OpenMP is used where the
compiler has it; without it the extension still builds, serially, and says so.

Settings, as environment variables: ``FASTLOSS_ARCH`` (the target, ``native`` by default),
``FASTLOSS_NO_OPENMP`` (build serially) and ``FASTLOSS_OPT`` (the optimisation flag, ``-O3``
by default; ``-O0`` builds in seconds, for debugging and for the tests that only check
that a build works).
"""

import importlib
import os
import pathlib
import subprocess
import sys
import sysconfig
import tempfile
import types

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = pathlib.Path(__file__).resolve().parent


def _generate_kernels():
    package = types.ModuleType("_fastloss_cython")  # fastloss/cpu_cython, without fastloss
    package.__path__ = [str(HERE / "fastloss/cpu_cython")]
    sys.modules.setdefault("_fastloss_cython", package)
    return importlib.import_module("_fastloss_cython.generate").write()


def _has_openmp():
    """Whether the C compiler builds and links a program with -fopenmp."""
    if os.environ.get("FASTLOSS_NO_OPENMP"):
        return False
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    with tempfile.TemporaryDirectory() as d:
        src = pathlib.Path(d, "omp.c")
        src.write_text("#include <omp.h>\nint main(void) { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
        try:
            result = subprocess.run(cc.split() + ["-fopenmp", str(src), "-o", str(pathlib.Path(d, "omp"))],
                                    capture_output=True)
        except OSError:
            return False
        return result.returncode == 0


def _arch_flags():
    """``-march=native`` by default: the kernels' loops are written to vectorise, and the
    instruction set decides how wide (AVX-512 runs 8 float64 lanes, SSE2 only 2).
    ``FASTLOSS_ARCH`` names another target (``x86-64-v3``, say, for a wheel that other
    machines will run), or is set empty for the compiler's default. A compiler that
    refuses the flag gets none."""
    arch = os.environ.get("FASTLOSS_ARCH", "native")
    if not arch:
        return []
    flag = f"-march={arch}"
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    with tempfile.TemporaryDirectory() as d:
        src = pathlib.Path(d, "arch.c")
        src.write_text("int main(void) { return 0; }\n")
        try:
            ok = subprocess.run(cc.split() + [flag, str(src), "-o", str(pathlib.Path(d, "arch"))],
                                capture_output=True).returncode == 0
        except OSError:
            ok = False
    if not ok:
        print(f"fastloss: the C compiler refuses {flag}; building for its default target", file=sys.stderr)
    return [flag] if ok else []


def _inline_flags():
    """GCC's inliner limits raised so that the portable math inlines into every element loop
    (a call left in a loop keeps it scalar): ``pow_nonneg`` (log and exp with error terms,
    some 200 statements) exceeds the default size for an ``inline`` function, and once
    it inlines, the default growth budget of the whole (large) unit runs out before every
    loop has its ``exp`` and ``log``. A compiler that refuses the flags gets none."""
    flags = ["--param=max-inline-insns-single=400", "--param=inline-unit-growth=100"]
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    with tempfile.TemporaryDirectory() as d:
        src = pathlib.Path(d, "inline.c")
        src.write_text("int main(void) { return 0; }\n")
        try:
            result = subprocess.run(cc.split() + ["-Werror", *flags, str(src), "-o", str(pathlib.Path(d, "inline"))],
                                    capture_output=True)
        except OSError:
            return []
    return flags if result.returncode == 0 else []


def extensions():
    pyx = _generate_kernels()
    openmp = _has_openmp()
    # No -ffast-math: it deletes NaN/Inf handling. These two keep IEEE NaN/Inf semantics:
    # libm need not set errno, and FP exceptions do not trap (so branches can become selects).
    # No fused multiply-adds but those the math writes as fma(): a loop's SIMD body and its
    # scalar remainder would fuse differently (fastloss/math/elementary.py says more).
    optimise = os.environ.get("FASTLOSS_OPT", "-O3")
    flags = [optimise, "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", *_arch_flags(), *_inline_flags()]
    if openmp:
        flags.append("-fopenmp")
    else:
        print("fastloss: no OpenMP in this compiler; the Cython backend is built serially", file=sys.stderr)
    common = dict(
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=flags,
        extra_link_args=["-fopenmp"] if openmp else [],
    )
    kernels = Extension("fastloss.cpu_cython._kernels", [str(pyx.relative_to(HERE))], **common)
    fast = Extension("fastloss.cpu_cython._fast", ["fastloss/cpu_cython/_fast.pyx"], **common)
    return cythonize([kernels, fast], language_level=3, quiet=True)


setup(ext_modules=extensions())
