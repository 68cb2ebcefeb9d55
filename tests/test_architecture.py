"""The architecture's rule, checked: each layer imports only itself and the layers below it (docs/architecture.md)."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "dpd"

#: module (or package prefix) -> layer, lowest first; the package root (dpd/__init__.py) re-exports and is exempt
LAYERS = [
    ("names", ["dpd.names"]),
    ("objective", ["dpd.errors", "dpd.objective", "dpd.schedule", "dpd.xi"]),
    ("files and environments", ["dpd.run_files", "dpd.envs", "dpd.episodes", "dpd.figures", "dpd.internals"]),
    ("state", ["dpd.state"]),
    ("config", ["dpd.config", "dpd.engine"]),
    ("distillation", ["dpd.distillation"]),
    ("students", ["dpd.students"]),
    ("pack", ["dpd.pack"]),
    ("training", ["dpd.training"]),
    ("use of results", ["dpd.safe_load", "dpd.loading", "dpd.evaluation", "dpd.demo", "dpd.api"]),
    ("experiments", ["dpd.experiments"]),
    ("cli", ["dpd.cli", "dpd._entry"]),
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


def test_a_new_config_key_needs_only_its_dataclass_field():
    """A field added to the config dataclasses (declared once, in a base both the user's and the resolved type
    share, as dpd.config's own fields are) is accepted by --set, YAML (from_dict) and validation, with its type and
    'positive' metadata, and nothing else edited."""
    from dataclasses import dataclass, field
    from typing import ClassVar

    from dpd.config import POSITIVE, ResolvedConfig, TrainConfig, apply_overrides
    from dpd.errors import DPDUserError

    @dataclass(kw_only=True)
    class Knobs:
        my_knob: int = field(default=3, metadata=POSITIVE)
        my_option: float | None = None

    @dataclass(kw_only=True)
    class ExtendedResolved(ResolvedConfig, Knobs):
        pass

    @dataclass
    class Extended(TrainConfig, Knobs):
        resolved_type: ClassVar[type[ResolvedConfig]] = ExtendedResolved

    cfg = apply_overrides(Extended(env_id="CartPole-v1"), ["my_knob=7", "my_option=0.5"])
    assert (cfg.my_knob, cfg.my_option) == (7, 0.5)
    assert Extended.from_dict(cfg.to_dict()) == cfg  # the YAML / resume path: config.yaml -> from_dict
    assert apply_overrides(cfg, ["my_option=null"]).my_option is None  # nullable from the annotation
    resolved = cfg.resolve(check_env=False)
    assert isinstance(resolved, ExtendedResolved) and resolved.my_knob == 7
    with pytest.raises(DPDUserError, match="my_knob expects int"):
        apply_overrides(cfg, ["my_knob=many"])
    with pytest.raises(DPDUserError, match="my_knob must be positive"):
        apply_overrides(cfg, ["my_knob=0"]).resolve()


def test_private_sb3_gymnasium_and_stdlib_names_are_touched_in_dpd_internals_only():
    """dpd/internals.py holds every access to a private name of SB3, Gymnasium or the standard library; an upgrade
    is then checked in one file."""
    from dpd.internals import PRIVATE_NAMES

    found = []
    for name, path in modules():
        if name == "dpd.internals":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            attr = node.attr if isinstance(node, ast.Attribute) else None
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                attr = node.value
            if attr in PRIVATE_NAMES:
                found.append(f"{path.name}:{node.lineno} {attr}")
    assert not found, f"private names used outside dpd/internals.py: {found}"


def test_the_installed_sb3_is_one_dpd_internals_was_checked_against():
    import re
    import tomllib

    from dpd.internals import CHECKED_SB3, sb3_version_checked

    ok, version = sb3_version_checked()
    assert ok, (f"stable-baselines3 {version} is not one of {CHECKED_SB3}: read src/dpd/internals.py against it "
                "(every private name it uses), then add it there and to pyproject's range")
    pyproject = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text())
    (spec,) = [d for d in pyproject["project"]["dependencies"] if d.startswith("stable-baselines3")]
    low, high = re.findall(r">=(\d+\.\d+),<(\d+\.\d+)", spec)[0]
    allowed = [f"2.{m}" for m in range(int(low.split(".")[1]), int(high.split(".")[1]))]
    assert tuple(allowed) == CHECKED_SB3, f"pyproject allows {allowed}, dpd/internals.py was checked against {CHECKED_SB3}"


def test_no_function_of_the_report_is_over_80_lines():
    """dpd/experiments/report/ is split by concern (runs, statistics, figures, markdown): each piece readable."""
    long = []
    for name, path in modules():
        if name.startswith("dpd.experiments.report"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno > 80:
                    long.append(f"{path.name}:{node.name} ({node.end_lineno - node.lineno} lines)")
    assert not long, long
