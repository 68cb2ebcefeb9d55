"""The library apart from its studies: src/dpd never imports studies/, code only studies use lives there, and the
studies' tests run apart from the library's (make test-studies; .ci/run runs it after make test and test-extended)."""

import ast
import re
import tomllib
from pathlib import Path

import pytest
from test_architecture import SRC, modules

REPO = SRC.parents[1]

STUDIES = REPO / "studies"


def test_the_library_never_imports_the_studies():
    """studies/ and benchmarks/ sit on top of dpd: no module of src/dpd imports them (nor puts them on sys.path)."""
    found = []
    study_modules = {p.stem for p in STUDIES.rglob("*.py")} | {"studies", "benchmarks"}
    for _name, path in modules():
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            imported = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}:{node.lineno} {m}" for m in imported if m.split(".")[0] in study_modules]
        if "sys.path" in text:
            found.append(f"{path.name}: sys.path")
    assert not found, found


def _names_used_in_library(defining: Path, name: str) -> bool:
    """``name`` read somewhere in src/dpd other than its own definition (a re-export from a package's __init__ does
    not count)."""
    pattern = re.compile(rf"\b{re.escape(name)}\b")
    for _module, path in modules():
        lines = [line for line in path.read_text().splitlines() if pattern.search(line)]
        if path.name == "__init__.py":
            lines = [line for line in lines if not line.lstrip().startswith(("from ", "import ", '"', "'"))
                     and not re.fullmatch(rf"\s*{re.escape(name)},?", line)]
        if path == defining:
            lines = [line for line in lines if not re.match(rf"\s*(def|class) {re.escape(name)}\b|{re.escape(name)}\s*[:=]",
                                                            line)]
        if lines:
            return True
    return False


def test_code_only_the_studies_use_lives_in_studies():
    """Every dpd name a study script imports is also used by the library itself: a function only studies call
    belongs under studies/ (as studies/study_figures.py holds the per-seed strip figures)."""
    only_studies = []
    for script in sorted(STUDIES.rglob("*.py")):
        for node in ast.walk(ast.parse(script.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dpd"):
                parts = node.module.split(".")
                base = SRC.parent.joinpath(*parts)
                defining = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
                for alias in node.names:
                    if not _names_used_in_library(defining, alias.name):
                        only_studies.append(f"{script.relative_to(STUDIES)}:{node.lineno} {node.module}.{alias.name}")
    assert not only_studies, f"used by studies/ only: move them under studies/: {only_studies}"


def _marks(node: ast.FunctionDef | ast.Module) -> set[str]:
    """The pytest marks a test function's decorators or a module's ``pytestmark`` name."""
    exprs = node.decorator_list if isinstance(node, ast.FunctionDef) else [
        n.value for n in node.body if isinstance(n, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)]
    return {m.group(1) for e in exprs for m in re.finditer(r"pytest\.mark\.(\w+)", ast.unparse(e))}


def _touching_studies(tree: ast.Module) -> set[str]:
    """The module-level functions of a test file that run or read something under studies/: their source names it,
    or they call (or take as a fixture) one that does."""
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    touching = {name for name, node in functions.items() if "studies" in ast.unparse(node) or any(
        isinstance(n, ast.Name) and n.id in ("STUDY", "WHY", "STUDIES") for n in ast.walk(node))}
    while True:
        more = {name for name, node in functions.items() if name not in touching and (
            any(isinstance(n, ast.Name) and n.id in touching for n in ast.walk(node))
            or any(a.arg in touching for a in node.args.args))}
        if not more:
            return touching
        touching |= more


def test_every_test_of_studies_code_is_marked_studies_and_ci_runs_the_three_parts():
    """A test that runs or reads something under studies/ (itself or through a helper or fixture of its file)
    carries the ``studies`` mark (so make test, README's command, is the library's suite only), the default run
    leaves those out, and CI runs all three targets."""
    unmarked = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        if path.name == Path(__file__).name:
            continue
        tree = ast.parse(path.read_text())
        module_marks = _marks(tree)
        touching = _touching_studies(tree)
        for node in tree.body:
            if (isinstance(node, ast.FunctionDef) and node.name.startswith("test_") and node.name in touching
                    and "studies" not in module_marks | _marks(node)):
                unmarked.append(f"{path.name}::{node.name}")
    assert not unmarked, f"tests of studies/ without @pytest.mark.studies: {unmarked}"
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "not studies" in options["addopts"] and any(m.startswith("studies:") for m in options["markers"])
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^test-studies:.*\n\t\$\(BIN\)/pytest -m studies$", makefile, re.M)
    assert re.search(r"^test-extended:.*\n\t\$\(BIN\)/pytest -m \"extended and not studies\"$", makefile, re.M)
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line.startswith("make ")]
    assert ci == ["make test", "make test-extended", "make test-studies"]


@pytest.mark.studies
def test_the_studies_figure_module_draws_a_png(tmp_path):
    """studies/study_figures.py (moved out of dpd.figures): one panel per task, each label's seeds as dots."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("study_figures", STUDIES / "study_figures.py")
    assert spec and spec.loader
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    path = figures.seed_strips({"A-v0": {"x": [1.0, 2.0], "y": [3.0]}, "B-v0": {"x": [0.5]}}, tmp_path / "f.png", "t",
                               hollow=["y"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
