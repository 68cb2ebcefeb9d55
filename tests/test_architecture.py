"""The architecture's rule, checked: each layer imports only itself and the layers below it (docs/architecture.md)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dpd"

#: module (or package prefix) -> layer, lowest first; the package root (dpd/__init__.py) re-exports and is exempt
LAYERS = [
    ("objective", ["dpd.errors", "dpd.objective", "dpd.schedule"]),
    ("files and environments", ["dpd.run_files", "dpd.envs", "dpd.episodes"]),
    ("state", ["dpd.state"]),
    ("config", ["dpd.config"]),
    ("students", ["dpd.students"]),
    ("training", ["dpd.training"]),
    ("use of results", ["dpd.safe_load", "dpd.loading", "dpd.evaluation", "dpd.demo"]),
    ("experiments", ["dpd.experiments"]),
    ("cli", ["dpd.cli"]),
]


def layer_of(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and to docs/architecture.md")


def modules():
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != "dpd":
            yield name, path


def dpd_imports(path: Path):
    """Every dpd module imported anywhere in the file (inside functions too)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dpd"):
            yield node.module, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("dpd"):
                    yield alias.name, node.lineno


@pytest.mark.parametrize("name, path", list(modules()), ids=lambda x: str(x) if isinstance(x, str) else "")
def test_no_module_imports_a_layer_above_its_own(name, path):
    mine = layer_of(name)
    for imported, line in dpd_imports(path):
        assert imported != "dpd", f"{path.name}:{line} imports the package root (a layer above everything)"
        theirs = layer_of(imported)
        assert theirs <= mine, (f"{path.name}:{line}: {name} ({LAYERS[mine][0]}) imports {imported}"
                                f" ({LAYERS[theirs][0]}), a layer above it")


def test_every_module_has_a_layer():
    for name, _ in modules():
        layer_of(name)
