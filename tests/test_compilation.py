"""Numba compilation never breaks the import, and the on-disk cache works across processes."""

import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

import pytest
from conftest import SESSION_ENV

import fastloss as fl

ROOT = pathlib.Path(__file__).resolve().parent.parent

PROBE = """
import json, numpy as np, fastloss as fl
from fastloss import cpu_numba
x = np.linspace(-1, 1, 12).reshape(3, 4)
r = fl.huber(x, x[::-1].copy(), delta=0.5, backend="numba")
k = cpu_numba.kernel(fl._registry.REGISTRY["huber"].math, "elementwise", "block")
print(json.dumps({"loss": float(r.loss), "hits": sum(k.stats.cache_hits.values()),
                  "misses": sum(k.stats.cache_misses.values()),
                  "cached": type(k._cache).__name__}))
"""


def _probe(run, **env):
    full = {**SESSION_ENV, **env, "PYTHONPATH": str(ROOT)}
    out = run([sys.executable, "-c", PROBE], env=full, timeout=300)
    if out.returncode != 0:
        raise subprocess.CalledProcessError(out.returncode, out.args, out.stdout, out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


# The probes compile in processes of their own: on the idle core (conftest.py).
def _cache_written_then_hit(run):
    with tempfile.TemporaryDirectory() as tmp:
        first = _probe(run, NUMBA_CACHE_DIR=tmp)
        second = _probe(run, NUMBA_CACHE_DIR=tmp)
        return first, second, [p.suffix for p in pathlib.Path(tmp).rglob("*")]


@pytest.mark.slow
@pytest.mark.background(job=_cache_written_then_hit)
def test_cache_is_written_then_hit_by_a_second_process(background):
    first, second, suffixes = background()
    assert first["cached"] == "SourceKeyedCache"
    assert first["misses"] == 1 and first["hits"] == 0
    assert second["hits"] == 1 and second["misses"] == 0
    assert second["loss"] == first["loss"]
    assert ".nbi" in suffixes


def _no_cache_location(run):
    # The IPython locator is the only one allowed, and it declines outside IPython: no
    # cache location exists, as with a read-only site-packages and HOME.
    return _probe(run, NUMBA_CACHE_LOCATOR_CLASSES="IPythonCacheLocator")


@pytest.mark.slow
@pytest.mark.background(job=_no_cache_location)
def test_no_writable_cache_location_still_works(background):
    result = background()
    assert result["cached"] == "NullCache"
    assert result["hits"] == 0
    assert result["loss"] > 0


def _cpu_portable_modules():
    """Every module of fastloss that defines ``@portable`` math for the CPU (cuda/ has its
    own, compiled for the GPU only), relative to the package."""
    package = pathlib.Path(fl.__file__).parent
    return {p.relative_to(package).as_posix() for p in package.rglob("*.py")
            if re.search(r"^@portable", p.read_text(), re.M) and p.parent.name != "cuda"}


def test_both_backends_build_from_every_portable_module():
    """A module of portable math missing from the one list of them (fastloss/_sources.py)
    would never be translated by the Cython generator, and would be outside the Numba
    cache key (stale kernels in the cache); the generator and both backends' source
    hashes read that list."""
    from fastloss import _sources
    from fastloss.cpu_cython import generate

    portable = _cpu_portable_modules()
    assert "math/online_softmax.py" in portable and "losses/cross_entropy.py" in portable
    assert portable <= set(_sources.MODULES)
    assert generate.MODULES == _sources.MODULES and generate.source_hash() == _sources.source_hash()


PROBE_IMPORTS = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("_fastloss_generate", sys.argv[1])
generate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generate)
generate.generate()
build = sorted(m for m in sys.modules if m.split(".")[0] in ("fastloss", "numba"))
import fastloss.cpu_cython
print(json.dumps([build, "fastloss.cpu_cython.generate" in sys.modules]))
"""


def test_the_build_imports_no_fastloss_and_the_runtime_no_generator():
    """The generator, loaded by its path as setup.py loads it, reads the list of math
    modules from fastloss/_sources.py without importing fastloss or Numba; the Cython
    backend checks its extension against the sources' hash without importing the
    generator (a build tool)."""
    generator = ROOT / "fastloss" / "cpu_cython" / "generate.py"
    out = subprocess.run([sys.executable, "-c", PROBE_IMPORTS, str(generator)], capture_output=True, text=True,
                         env={**SESSION_ENV, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [[], False]


@pytest.mark.parametrize("edited", ["math/elementary.py", "losses/regression.py", "cpu_numba/drivers.py", "_config.py"])
def test_editing_a_kernel_source_changes_the_cache_key(edited, tmp_path, monkeypatch):
    """The Numba cache key (a hash of the sources) changes with any kernel source, and
    with nothing else: a kernel never outlives the math it inlined."""
    import shutil

    from fastloss.cpu_numba import jit

    package = pathlib.Path(fl.__file__).parent
    copy = tmp_path / "fastloss"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))

    def key():
        monkeypatch.setattr(jit, "_PACKAGE", copy)
        monkeypatch.setattr(jit, "_source_hash", None)
        return jit.package_source_hash()

    before = key()
    (copy / "_api.py").write_text((copy / "_api.py").read_text() + "\n# not a kernel source\n")
    assert key() == before
    (copy / edited).write_text((copy / edited).read_text() + "\n# edited\n")
    assert key() != before


def test_cython_extension_is_built():
    """CI builds the extension (pip install -e .); a missing build must not pass silently."""
    if os.environ.get("FASTLOSS_ALLOW_NO_CYTHON"):
        pytest.skip("FASTLOSS_ALLOW_NO_CYTHON is set")
    from fastloss import cpu_cython

    assert cpu_cython.AVAILABLE
    assert {"numba", "cython"} <= set(fl_backends())


def fl_backends():
    import fastloss

    return fastloss.backends()


PROBE_OPENMP = """
import importlib.machinery, importlib.util, sys
loader = importlib.machinery.ExtensionFileLoader("fastloss.cpu_cython._kernels", sys.argv[1])
spec = importlib.util.spec_from_loader(loader.name, loader)
m = importlib.util.module_from_spec(spec); loader.exec_module(m)
print(m.OPENMP)
"""


def _build_without_openmp(run):
    """(the build, the extensions it built, the probe of the one built or None)."""
    env = {**SESSION_ENV, "FASTLOSS_NO_OPENMP": "1", "FASTLOSS_OPT": "-O0"}  # -O0: 7 s of C compiler, not 90
    with tempfile.TemporaryDirectory() as tmp:
        build = run(
            [sys.executable, "setup.py", "-q", "build_ext", "--build-lib", str(pathlib.Path(tmp, "lib")),
             "--build-temp", str(pathlib.Path(tmp, "tmp"))],
            cwd=ROOT, env=env, timeout=600,
        )
        built = list(pathlib.Path(tmp, "lib").rglob("_kernels*.so"))
        if build.returncode != 0 or len(built) != 1:
            return build, built, None
        return build, built, run([sys.executable, "-c", PROBE_OPENMP, str(built[0])], timeout=60)


@pytest.mark.slow
@pytest.mark.background(job=_build_without_openmp)
def test_extension_builds_without_openmp(background):
    """Without OpenMP the extension still builds, serially, and says so."""
    build, built, probe = background()
    assert build.returncode == 0, build.stderr[-2000:]
    assert "no OpenMP" in build.stderr
    assert len(built) == 1, built
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip() == "False"
