"""The package's import structure: no import cycle between modules, no import against the layers.

Reads the source with ast and imports nothing, so it runs in a second and sees imports inside
functions too. The layers and the rule are described in CONTRIBUTING.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tfanomaly"

# Low to high: a module may import its own layer and the ones below. The key is the module's
# first name under tfanomaly (a subpackage, or a top-level module without .py).
LAYERS = (
    ("base", ("__init__", "errors", "fileio", "_tf", "_lazy")),
    ("core", ("data", "simulate", "models")),
    ("outputs", ("results", "serving")),
    ("stages", ("pipelines",)),
    # api is the top-level facade that tfanomaly/__init__.py re-exports lazily: it may call any
    # stage, so it sits with the other interfaces.
    ("interface", ("cli", "explore", "api")),
)
LAYER_NAMES = tuple(name for name, _ in LAYERS)

# tfanomaly/__init__.py may import from any layer inside a function (the module __getattr__ of
# its lazy exports): those imports run on first attribute access, never when a lower layer
# imports the package, so they are exempt from the layer rule. They still count for cycles.
LAZY_EXPORTS_MODULE = "tfanomaly"


def module_name(package: Path, path: Path) -> str:
    parts = [package.name, *path.relative_to(package).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    """The layer's index of a module, None for a module in no listed layer."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else "__init__"
    for index, (_, heads) in enumerate(LAYERS):
        if head in heads:
            return index
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.Module, module: str, is_package: bool):
    """Yield (target, inside_function) for every tfanomaly import of a module.

    Imports under ``if TYPE_CHECKING:`` never run and are left out.
    """

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    yield from visit_one(other, in_function)
                continue
            yield from visit_one(child, in_function)

    def visit_one(node, in_function):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, in_function
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, in_function
            for alias in node.names:
                yield f"{target}.{alias.name}", in_function
        else:
            nested = in_function or isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            )
            yield from visit(node, nested)

    root = module.split(".")[0]
    for target, in_function in visit(tree, False):
        if target == root or target.startswith(root + "."):
            yield target, in_function


def import_graph(package: Path) -> tuple[dict[str, set[str]], list[str]]:
    """The graph module -> imported modules of a package, and the imports against the layers."""
    files = {module_name(package, path): path for path in sorted(package.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    against: list[str] = []
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        deps: set[str] = set()
        for target, in_function in _imports(tree, module, path.name == "__init__.py"):
            # "from tfanomaly.data import dataset" names a module; "... import load_dataset" does
            # not: walk up to the module that holds the name.
            while target and target not in files:
                target = target.rpartition(".")[0]
            if not target or target == module or target == package.name:
                continue
            deps.add(target)
            low, high = layer_of(module), layer_of(target)
            if low is None or high is None or high <= low:
                continue
            if module == LAZY_EXPORTS_MODULE and in_function:
                continue
            against.append(
                f"against the layers: {module} ({LAYER_NAMES[low]}) imports {target} "
                f"({LAYER_NAMES[high]})"
            )
        graph[module] = deps
    return graph, sorted(set(against))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def problems(package: Path) -> list[str]:
    graph, against = import_graph(package)
    return against + ["cycle: " + " <-> ".join(cycle) for cycle in cycles(graph)]


def test_package_imports_follow_the_layers():
    assert problems(PACKAGE) == []


def test_every_module_has_a_layer():
    graph, _ = import_graph(PACKAGE)
    unplaced = sorted(module for module in graph if layer_of(module) is None)
    assert unplaced == [], f"add these to LAYERS in {Path(__file__).name}: {unplaced}"


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "tfanomaly" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "tfanomaly"


@pytest.fixture
def clean_package(tmp_path):
    return _write(
        tmp_path,
        {
            "__init__.py": (
                "def __getattr__(name):\n"
                "    from tfanomaly import api\n"
                "    return getattr(api, name)\n"
            ),
            "errors.py": "",
            "api.py": "from tfanomaly.pipelines.score import score\n",
            "data/__init__.py": "",
            "data/dataset.py": "from tfanomaly.errors import InputError\n",
            "results/__init__.py": "",
            "results/catalog.py": "from ..data import dataset\n",
            "pipelines/__init__.py": "",
            "pipelines/train.py": "from tfanomaly.data.dataset import InputError\n",
            "pipelines/score.py": (
                "from typing import TYPE_CHECKING\n"
                "from tfanomaly.results.catalog import write\n"
                "if TYPE_CHECKING:\n"
                "    from tfanomaly.cli import main\n"
            ),
            "cli/__init__.py": "from tfanomaly.pipelines import score\nimport tfanomaly.api\n",
        },
    )


def test_a_clean_synthetic_package_passes(clean_package):
    assert problems(clean_package) == []


def test_an_import_against_the_layers_is_reported(clean_package):
    # Inside a function, and relative: both count.
    (clean_package / "data" / "dataset.py").write_text(
        "def load():\n    from ..pipelines.train import fit\n    return fit\n"
    )
    assert problems(clean_package) == [
        "against the layers: tfanomaly.data.dataset (core) imports tfanomaly.pipelines.train "
        "(stages)",
        "cycle: tfanomaly.data.dataset <-> tfanomaly.pipelines.train",
    ]


def test_the_facade_is_an_interface(clean_package):
    (clean_package / "results" / "catalog.py").write_text("import tfanomaly.api\n")
    assert problems(clean_package) == [
        "against the layers: tfanomaly.results.catalog (outputs) imports tfanomaly.api (interface)",
        "cycle: tfanomaly.api <-> tfanomaly.pipelines.score <-> tfanomaly.results.catalog",
    ]


def test_lazy_exports_only_inside_a_function(clean_package):
    (clean_package / "__init__.py").write_text("from tfanomaly.api import score\n")
    assert problems(clean_package) == [
        "against the layers: tfanomaly (base) imports tfanomaly.api (interface)"
    ]


def test_an_import_cycle_is_reported(clean_package):
    (clean_package / "results" / "labels.py").write_text("from tfanomaly.results import catalog\n")
    (clean_package / "results" / "catalog.py").write_text(
        "def read():\n    from tfanomaly.results.labels import LabelStore\n"
    )
    assert problems(clean_package) == [
        "cycle: tfanomaly.results.catalog <-> tfanomaly.results.labels"
    ]
