"""The package's structure, read from its source: no import cycle, no private name of
another module, no adapter imported by the core, and small modules."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "fastloss"
#: Modules that adapt fastloss to another library; the core never imports them.
ADAPTERS = {"fastloss.torch", "fastloss.jax", "fastloss.keras", "fastloss.dask", "fastloss.xgboost",
            "fastloss.lightgbm", "fastloss.catboost", "fastloss._torch_op", "fastloss._boosting"}
#: What is not the core: the adapters and the tour (an application of fastloss).
NOT_CORE = ADAPTERS | {"fastloss.tour", "fastloss.__main__"}
MAX_LINES = 500


def _modules():
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


MODULES = _modules()


def _package_of(name, path):
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imports(name, path):
    """(imported module, imported name or None) for every import in ``path``, at any depth
    (an import inside a function is an import too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from ((a.name, None) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(name, path).split(".")
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([node.module] if node.module else []))
            for a in node.names:
                full = f"{base}.{a.name}"
                yield (full, None) if full in MODULES else (base, a.name)


def _edges():
    graph = {}
    for name, path in MODULES.items():
        for target, _ in _imports(name, path):
            while target not in MODULES and "." in target:
                target = target.rpartition(".")[0]
            if target in MODULES and target != name:
                graph.setdefault(name, set()).add(target)
    return graph


def _cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(set(graph).union(*graph.values())):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle():
    assert _cycles(_edges()) == []


#: Private attributes of other libraries the adapters still use, each for a reason:
#: PyTorch has no public query for "a torch.func transform is active" or "this tensor is
#: a functorch wrapper", which decide whether a call may skip the dispatcher.
THIRD_PARTY_PRIVATE = {("fastloss._torch_op", "torch._C"), ("fastloss.torch", "torch._C")}


def _is_package(name):
    return name in MODULES and MODULES[name].name == "__init__.py"


def test_no_private_name_of_another_module():
    """``from m import _name`` and ``m._name`` reach into another module's privates. A
    private submodule of a fastloss package (``fastloss._plan``, ``cpu_cython._kernels``)
    is the package's own and may be imported."""
    found = []
    for name, path in MODULES.items():
        for target, imported in _imports(name, path):
            own_submodule = target.startswith("fastloss") and _is_package(target)
            if imported and imported.startswith("_") and not imported.startswith("__") and not own_submodule:
                found.append(f"{name}: from {target} import {imported}")
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for a in node.names:
                    aliases[a.asname or a.name.split(".")[0]] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")
                    and (name, f"{node.value.id}.{node.attr}") not in THIRD_PARTY_PRIVATE):
                found.append(f"{name}:{node.lineno}: {node.value.id}.{node.attr}")
    assert found == []


def test_the_core_imports_no_adapter():
    """Dask takes its calls through the array-handler hook (fastloss._arrays.HANDLERS); the
    framework adapters sit on top of the core, never under it."""
    graph = _edges()
    core = [m for m in MODULES if not any(m == a or m.startswith(a + ".") for a in NOT_CORE)]
    found = [f"{m} -> {t}" for m in core for t in graph.get(m, ()) if t in ADAPTERS]
    assert found == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_small(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(PACKAGE.parent)} has {lines} lines"
