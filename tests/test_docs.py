"""The documentation (docs/): every page's examples run as written, the API page lists
every loss, and the site builds with no warnings.

Every ```python block of every page under docs/ (but docs/archive/ and docs/_build/) is
executed, a page's blocks in order in one namespace. ```py blocks are examples that cannot
run here (they need a GPU) and are left alone. A page whose examples need optional
packages is skipped where one is missing (PAGES); the adapter pages import a framework,
which takes seconds, and are in the slow tier. The Keras page runs in a process of its
own with KERAS_BACKEND set, since Keras chooses its backend when it is first imported;
that process, like the Sphinx build, runs as a background job (conftest.py).

Run as a script, ``python tests/test_docs.py docs/<page>.md`` executes one page's blocks.
"""

import importlib.util
import pathlib
import re
import sys
import tempfile

import pytest
from conftest import SESSION_ENV

import fastloss

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

#: The optional packages each adapter page's examples import.
PAGES = {
    "adapters/torch.md": ("torch",),
    "adapters/jax.md": ("jax",),
    "adapters/keras.md": ("keras",),
    "adapters/boosting.md": ("xgboost", "lightgbm", "catboost", "sklearn"),
    "adapters/dask.md": ("dask", "distributed"),
}
#: Pages in the slow tier: importing the framework alone takes seconds.
SLOW = {"adapters/torch.md", "adapters/jax.md", "adapters/keras.md", "adapters/boosting.md"}
#: Pages run in a process of their own, with these environment variables.
SUBPROCESS = {"adapters/keras.md"}
#: What the API page documents with autodoc: the packages its imports need.
API_NEEDS = ("torch", "jax", "keras", "xgboost", "lightgbm", "catboost", "dask")


def pages():
    """Every documentation page with examples to run, relative to docs/, sorted."""
    found = []
    for path in sorted(DOCS.rglob("*.md")):
        rel = path.relative_to(DOCS).as_posix()
        if rel.startswith(("archive/", "_build/")):
            continue
        if BLOCK.search(path.read_text(encoding="utf-8")):
            found.append(rel)
    return found


def run_page(rel):
    """Execute the ```python blocks of docs/<rel> in order, in one namespace; a failure's
    traceback points at the page's own line numbers."""
    path = DOCS / rel
    text = path.read_text(encoding="utf-8")
    namespace = {"__name__": "__docs__"}
    for match in BLOCK.finditer(text):
        first_line = text.count("\n", 0, match.start(1))
        code = compile("\n" * first_line + match.group(1), str(path), "exec")
        exec(code, namespace)


def keras_backend():
    """The Keras backend to run the Keras page on: PyTorch where installed, else JAX."""
    return next((b for b in ("torch", "jax") if importlib.util.find_spec(b) is not None), None)


def _missing(modules):
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _keras_page(run):
    if _missing(PAGES["adapters/keras.md"]) or keras_backend() is None:
        return None  # the test skips
    env = {**SESSION_ENV, "PYTHONPATH": str(ROOT), "KERAS_BACKEND": keras_backend()}
    return run([sys.executable, str(pathlib.Path(__file__)), "adapters/keras.md"], timeout=600, env=env)


def _sphinx_build(run):
    if _missing(("sphinx", "myst_parser", *API_NEEDS)):
        return None  # the test skips
    with tempfile.TemporaryDirectory() as out:
        return run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), out],
                   timeout=600, cwd=str(ROOT))


def _param(rel):
    marks = []
    if rel in SLOW:
        marks.append(pytest.mark.slow)
    if rel in SUBPROCESS:
        marks.append(pytest.mark.background(job=_keras_page))
    return pytest.param(rel, marks=marks, id=rel)


def test_pages_are_found():
    found = pages()
    assert "getting-started.md" in found
    for page in PAGES:  # every adapter page has a runnable example
        assert page in found, f"docs/{page} has no ```python example"


@pytest.mark.parametrize("rel", [_param(rel) for rel in pages()])
def test_page_examples_run(rel, request):
    missing = _missing(PAGES.get(rel, ()))
    if missing:
        pytest.skip(f"docs/{rel} needs {', '.join(missing)}")
    if rel in SUBPROCESS:
        if keras_backend() is None:
            pytest.skip("Keras runs here on PyTorch or JAX; neither is installed")
        done = request.getfixturevalue("background")()
        assert done.returncode == 0, f"docs/{rel}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        return
    run_page(rel)


def test_api_page_lists_every_loss():
    """docs/api.md documents each loss by name (the loss functions, and PyTorch's and JAX's)."""
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    names = set(fastloss.losses())
    others = {"fastloss": {"compute", "losses", "backends", "set_num_threads", "get_num_threads", "num_threads"}}
    for module in ("fastloss", "fastloss.torch", "fastloss.jax"):
        listed = set(re.findall(rf"^\.\. autofunction:: {re.escape(module)}\.(\w+)$", text, re.M))
        listed -= others.get(module, set())
        assert listed == names, f"{module}: missing {sorted(names - listed)}, unknown {sorted(listed - names)}"


@pytest.mark.slow
@pytest.mark.background(job=_sphinx_build)
def test_docs_build_without_warnings(background):
    missing = _missing(("sphinx", "myst_parser", *API_NEEDS))
    if missing:
        pytest.skip(f"building the documentation needs {', '.join(missing)}")
    done = background()
    assert done.returncode == 0, done.stderr[-6000:]


if __name__ == "__main__":
    run_page(sys.argv[1])


def _loss_rows(text):
    """(name, options cell, H cell) of each row of the loss tables in ``text``."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = re.match(r"`(\w+)`", cells[0]) if line.startswith("| `") else None
        if name and name.group(1) in fastloss.losses():
            rows.append((name.group(1), cells[2], cells[-1]))
    return rows


@pytest.mark.parametrize("page", ["docs/contract.md", "README.md"])
def test_loss_tables_list_the_registry(page):
    """The tables of losses in the contract and the README name every loss of the registry
    once, with its options' defaults and its H (hessian) mark."""
    rows = _loss_rows((ROOT / page).read_text(encoding="utf-8"))
    infos = fastloss.losses()
    assert sorted(name for name, _, _ in rows) == sorted(infos)
    for name, options, h in rows:
        assert (h == "H") == infos[name].hessian, name
        documented = dict(re.findall(r"(\w+)=([^,`]+)", options))
        for option, value in documented.items():
            assert option in infos[name].options, (name, option)
            default = infos[name].options[option]
            if isinstance(default, str):
                assert value.strip() == repr(default).replace("'", '"'), (name, option, value)
            else:
                assert str(default) == value.strip() or float(value) == default, (name, option, value)
        if page == "docs/contract.md":  # every option, with its default
            assert set(documented) == set(infos[name].options), name
