"""Generate the Cython backend from the one source of the loss math.

``setup.py`` runs this before Cython: it reads the portable modules of ``MODULES``
(``fastloss/math/*.py``, ``fastloss/losses/*.py``) as text (nothing is imported, so the
build needs neither Numba nor fastloss) and writes two build products beside this file,
not committed: ``_primitives.pxd``, the portable math of ``fastloss/math`` (the stable
scalar primitives) as ``cdef inline ... noexcept nogil`` functions, and ``_kernels.pyx``,
which cimports them and holds each loss's math, its block kernel and chunked (OpenMP
``prange``) driver, and a ``def`` entry point that the Python layer calls.

The work is split in three: :mod:`translate` turns each portable function into Cython
(its translation rules are in its docstring; :mod:`syntax` and :mod:`functions` check a
function and type its parts), :mod:`templates` holds the headers and the family
templates, and this module reads the sources and writes the products.

Usage: ``python fastloss/cpu_cython/generate.py`` (setup.py calls :func:`write`). The
modules import each other: loaded without fastloss (by setup.py, by
tests/test_translator.py, or as this script), this folder is made a package of its own,
``_fastloss_cython``, so that importing them runs nothing of fastloss.
"""

import ast
import importlib
import importlib.util
import pathlib
import sys
import types

if __package__:
    from . import templates, translate
else:  # run as a script

    def load(name):
        """The module ``name`` of this folder, imported as ``_fastloss_cython.<name>``
        (this folder a package of its own: fastloss itself is not imported)."""
        package = types.ModuleType("_fastloss_cython")
        package.__path__ = [str(pathlib.Path(__file__).resolve().parent)]
        sys.modules.setdefault("_fastloss_cython", package)
        return importlib.import_module(f"_fastloss_cython.{name}")

    templates, translate = load("templates"), load("translate")

PACKAGE = pathlib.Path(__file__).resolve().parent.parent
# fastloss/_sources.py, loaded by its path (the build imports no fastloss): the one list of
# the math modules, in order, and their hash.
_SOURCES = importlib.util.spec_from_file_location("_fastloss_sources", PACKAGE / "_sources.py")
_sources = importlib.util.module_from_spec(_SOURCES)
_SOURCES.loader.exec_module(_sources)
MODULES = _sources.MODULES
source_hash = _sources.source_hash


def _constant_of(rel, name):
    """The literal value of the module constant ``name`` of ``fastloss/<rel>``, read as text
    (the build imports nothing)."""
    for stmt in ast.parse((PACKAGE / rel).read_text()).body:
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name) \
                and stmt.targets[0].id == name:
            return ast.literal_eval(stmt.value)
    raise LookupError(f"{rel} has no constant {name}")


def lane_count():
    """LANES of :mod:`fastloss.math.reductions`."""
    return _constant_of("math/reductions.py", "LANES")


def tile_size():
    """TILE of :mod:`fastloss._config`."""
    return _constant_of("_config.py", "TILE")


def narrow_tile():
    """NARROW_TILE of :mod:`fastloss._config`."""
    return _constant_of("_config.py", "NARROW_TILE")


def parse():
    """The :class:`translate.Program` of the portable modules: every function checked, in
    dependency order, the natives and the module constants."""
    sources = [(rel, (PACKAGE / rel).read_text()) for rel in MODULES]
    return translate.parse(sources, lanes=lane_count(), scratch=narrow_tile())


def _natives(natives):
    """The natives and Python's integer division, as C inline functions that Cython declares."""
    natives = [n for n in natives if n.c_definition]
    lines = ['cdef extern from *:', '    """', '    #include <math.h>', '    #include <string.h>']
    lines += [f"    {n.c_definition}" for n in natives]
    lines += [f"    static inline {definition}" for _, definition in translate.ARITHMETIC.values()]
    lines += ['    """']
    lines += [f"    {n.declaration()}" for n in natives]
    lines += [f"    {d.split('{')[0].strip()} noexcept nogil" for _, d in translate.ARITHMETIC.values()]
    return "\n".join(lines) + "\n"


def generate():
    """(the primitives' .pxd, the kernels' .pyx) as text."""
    program = parse()
    libc = ", ".join(sorted(translate.LIBC))
    primitives = [templates.PRIMITIVES_HEADER.replace("{libc}", libc), _natives(program.natives)]
    primitives += [c.cython() for c in program.constants if c.scalar]
    header = templates.HEADER.replace("{source_hash}", source_hash()).replace("{libc}", libc)
    header = header.replace("{tile}", str(tile_size())).replace("{lanes}", str(lane_count()))
    header = header.replace("{narrow}", str(_constant_of("_config.py", "NARROW_MAX_WIDTH")))
    header = header.replace("{narrow_tile}", str(narrow_tile()))
    kernels = [header]
    kernels += [c.cython() for c in program.constants if not c.scalar]
    for fn in program.functions:
        (primitives if fn.source.scalar else kernels).append("\n" + translate.cython(fn) + "\n")
    narrow = {fn.cname.removesuffix("_rows"): fn for fn in program.functions if fn.kind == "rows"}
    for fn in program.functions:
        if fn.kind in ("element", "row"):
            kernels.append(templates.driver(fn, narrow.get(fn.cname)))
    return "\n".join(primitives), "\n".join(kernels)


def write(folder=None):
    """Write the generated sources (only where they changed, so builds stay incremental);
    returns the path of the ``.pyx``."""
    folder = pathlib.Path(folder or pathlib.Path(__file__).parent)
    for name, text in zip(("_primitives.pxd", "_kernels.pyx"), generate()):
        path = folder / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    return folder / "_kernels.pyx"


if __name__ == "__main__":
    print(write())
