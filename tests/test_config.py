"""One config truth: a user's partial config and a resolved one are two types, every default is stated once, the
flat names are aliases translated at one boundary, and ``DPD.learn`` runs through ``train``'s lifecycle."""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
import typing
from pathlib import Path

import pytest

import dpd.names as names
from dpd.config import (
    ALIAS_OF,
    DISTILL_ALIASES,
    DistillConfig,
    ResolvedConfig,
    ResolvedDistill,
    TrainConfig,
    apply_overrides,
    parse_value,
)
from dpd.errors import DPDUserError

ROOT = Path(__file__).resolve().parents[1]


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text and text, text
    return text


# ---------------------------------------------------------------------- two types
def test_the_resolved_types_have_no_optional_field():
    """Nothing downstream of resolve() can meet a None where a value belongs (so no code falls back on one)."""
    for cls in (ResolvedConfig, ResolvedDistill):
        for name, hint in typing.get_type_hints(cls).items():
            if name == "resolved_type":
                continue
            args = typing.get_args(hint) if typing.get_origin(hint) in (types.UnionType, typing.Union) else ()
            assert type(None) not in args, f"{cls.__name__}.{name} is optional: {hint}"


def test_resolve_fills_every_field_from_the_schedule_and_the_preset():
    asked = TrainConfig(env_id="Pendulum-v1", algo="ddpg", preset="paper")
    assert asked.distill.lr is None and asked.n_envs is None  # the user's: "from the schedule / the preset"
    resolved = asked.resolve(check_env=False)
    assert type(resolved) is ResolvedConfig and type(resolved.distill) is ResolvedDistill
    assert (resolved.distill.lr, resolved.distill.batch_size, resolved.n_envs) == (1e-4, 64, 1)
    assert resolved.resolve(check_env=False) is resolved  # resolved already: validated again, nothing filled


def test_an_unresolved_config_reaching_training_is_one_line():
    """The trainer, a learner, the student factory and the Distiller take resolved configs only: an unresolved one
    is refused in one line naming the fix, never trained with a fallback (Adam at learning rate 0)."""
    from dpd.distillation import Distiller
    from dpd.students.factory import build_student
    from dpd.training import DPDTrainer
    from dpd.training.learner import Learner

    asked = TrainConfig(env_id="CartPole-v1", total_steps=512, preset="none", n_envs=1, algo_kwargs={"n_steps": 64})
    for who, make in (("DPDTrainer", lambda: DPDTrainer(asked, None)),  # type: ignore[arg-type]
                      ("Learner", lambda: Learner(asked, 0, None)),  # type: ignore[arg-type]
                      ("build_student", lambda: build_student(asked, 0, None))):  # type: ignore[arg-type]
        with pytest.raises(DPDUserError) as exc:
            make()
        assert _one_line(exc) == f"{who} takes a resolved config, got a TrainConfig: pass config.resolve()"
    student = build_student(asked.resolve(), 0, None)
    with pytest.raises(DPDUserError) as exc:
        Distiller(DistillConfig(lr=None), student, active=True, seed=0)  # type: ignore[arg-type]
    assert "takes a resolved distill block, got a DistillConfig" in _one_line(exc)
    student.model.get_env().close()


def test_a_stored_config_reads_back_as_the_resolved_type_and_an_incomplete_one_is_one_line(tmp_path):
    from dpd.config import read_run_config
    from dpd.run_files import write_yaml

    resolved = TrainConfig(env_id="CartPole-v1").resolve(check_env=False)
    write_yaml(tmp_path / "config.yaml", resolved.to_dict())
    assert read_run_config(tmp_path) == resolved
    data = resolved.to_dict()
    del data["distill"]["lr"]
    write_yaml(tmp_path / "config.yaml", data)
    with pytest.raises(DPDUserError) as exc:
        read_run_config(tmp_path)
    assert "config.yaml is not a resolved dpd config (no distill.lr)" in _one_line(exc)


def test_a_choice_is_checked_by_its_declaration_as_the_config_is_made():
    """A Literal field names its choices in one line the moment it is set, in every entrance."""
    for make in (lambda: TrainConfig(env_id="CartPole-v1", algo="ppo2"),  # type: ignore[arg-type]
                 lambda: TrainConfig(env_id="CartPole-v1").with_values(algo="ppo2"),
                 lambda: apply_overrides(TrainConfig(env_id="CartPole-v1"), ["algo=ppo2"])):
        with pytest.raises(DPDUserError) as exc:
            make()
        assert _one_line(exc) == f"unknown algo 'ppo2'; choose one of: {', '.join(names.ALGO_NAMES)}"
    with pytest.raises(DPDUserError, match="unknown distill_target 'mode'; choose one of: mean, sample"):
        DistillConfig(target="mode")  # type: ignore[arg-type]
    with pytest.raises(DPDUserError, match=r"unknown distill\.gate 'always'; choose one of: none, advantage"):
        apply_overrides(TrainConfig(env_id="CartPole-v1"), ["distill.gate=always"])


# ---------------------------------------------------------------------- every default once
def test_the_defaults_a_user_sees_are_the_configs():
    """The CLI's options, DPD()'s signature and a sweep file take their defaults from dpd.names, as the config does:
    a default written twice would drift."""
    from typer.main import get_command

    from dpd.api import DPD
    from dpd.cli import app
    from dpd.experiments.sweep import SweepSpec

    config, distill = TrainConfig(env_id="x"), DistillConfig()
    expected = {"algo": config.algo, "method": config.method, "total_steps": config.total_steps, "seed": config.seed,
                "preset": config.preset, "alpha": distill.alpha, "weighting": distill.weighting}
    assert expected == {"algo": names.DEFAULT_ALGO, "method": names.DEFAULT_METHOD, "preset": names.DEFAULT_PRESET,
                        "total_steps": names.DEFAULT_TOTAL_STEPS, "seed": names.DEFAULT_SEED,
                        "alpha": names.DEFAULT_ALPHA, "weighting": names.DEFAULT_WEIGHTING}
    command = get_command(app)
    train = {p.name: p.default for p in command.commands["train"].params}  # type: ignore[attr-defined]
    assert {k: train[k] for k in expected} == expected
    sweep = {p.name: p.default for p in command.commands["sweep"].params}  # type: ignore[attr-defined]
    assert (sweep["total_steps"], sweep["preset"]) == (config.total_steps, config.preset)
    signature = inspect.signature(DPD.__init__).parameters
    assert {k: signature[k].default for k in ("method", "alpha", "seed", "preset")} == {
        k: expected[k] for k in ("method", "alpha", "seed", "preset")}
    spec = SweepSpec(envs=["x"], total_steps=1)
    assert (spec.algos, spec.alphas, spec.preset) == ([config.algo], [distill.alpha], config.preset)


def _readme_defaults() -> dict[str, str]:
    """README's config table: key -> its default cell, for rows naming one key."""
    rows = re.findall(r"^\| `([a-z_.]+)` \| ([^|]+) \|", (ROOT / "README.md").read_text(), flags=re.M)
    return {key: cell.strip() for key, cell in rows}


def test_the_readme_states_the_codes_defaults_and_lists_every_flat_alias():
    """README's config table: every flat alias is listed, and a default given there as one plain value is the one
    a default config resolves to (the doc repeats the code's default; this keeps them one)."""
    table = _readme_defaults()
    assert set(DISTILL_ALIASES) - {"adaptive_low", "adaptive_high"} <= set(table)  # those two share one row
    resolved = TrainConfig(env_id="CartPole-v1").resolve(check_env=False)
    checked = 0
    for key, cell in table.items():
        text = cell.strip("`")
        if " " in text.replace(", ", ",") and not text.startswith("["):
            continue  # "on 1e-5 · off 1e-4", "1 (authors 5)": per family or per schedule, said in words
        field = DISTILL_ALIASES.get(key)
        if field is not None:
            value = getattr(resolved.distill, field)
        elif key in {f.name for f in dataclasses.fields(ResolvedConfig)} and key not in ("n_envs", "normalize"):
            value = getattr(resolved, key)
        else:
            continue
        assert parse_value(text) == value, f"README says {key} defaults to {cell}; the code says {value!r}"
        checked += 1
    assert checked >= 12


# ---------------------------------------------------------------------- flat names: one table, one boundary
#: a valid non-default value of every distillation field
SAMPLES: dict[str, object] = {
    "alpha": 0.5, "weighting": "uniform", "xi_scale": "none", "xi_estimator": "debiased", "gate": "advantage",
    "max_log_weight": 2.0, "normalize_weights": False, "distance": "clamped_mse", "schedule": "authors", "lr": 3e-4,
    "batch_size": 32, "steps": 3, "ratio": 0.5, "every": 2, "window": 512, "target": "sample", "optimizer": "shared",
    "loss_coef": 0.5, "adaptive_low": 0.3, "adaptive_high": 0.9,
}  # fmt: skip


def test_every_flat_alias_means_its_field_wherever_a_user_types_or_stores_it(tmp_path):
    """--set, with_values, a mapping / config.yaml (flat or inside the block), DPD's keywords and a sweep file's
    overrides: the flat name and the field of the block give the same config."""
    from dpd.api import DPD
    from dpd.config import read_run_config
    from dpd.experiments.sweep import SweepSpec, expand
    from dpd.run_files import write_yaml

    assert set(SAMPLES) == set(ALIAS_OF)  # a new field needs a sample here
    base = TrainConfig(env_id="CartPole-v1", total_steps=4096, algo_kwargs={"n_steps": 256})
    flat = {ALIAS_OF[f]: v for f, v in SAMPLES.items()}
    want = dataclasses.replace(base, distill=DistillConfig(**SAMPLES))  # type: ignore[arg-type]
    assert base.with_values(**flat) == want
    assert apply_overrides(base, [f"{k}={v}" for k, v in flat.items()]) == want
    assert apply_overrides(base, [f"distill.{k}={v}" for k, v in SAMPLES.items()]) == want
    assert TrainConfig.from_dict({**base.to_dict(), **flat, "distill": {}}) == want
    assert TrainConfig.from_dict({**base.to_dict(), "distill": flat}) == want  # aliases inside the block too
    resolved = want.resolve(check_env=False)
    stored = {k: v for k, v in resolved.to_dict().items() if k != "distill"}
    write_yaml(tmp_path / "config.yaml", {**stored, **{ALIAS_OF[k]: v for k, v in resolved.to_dict()["distill"].items()}})
    assert read_run_config(tmp_path) == resolved  # a config.yaml of the flat format
    model = DPD("ppo", "CartPole-v1", n_steps=256, **flat)
    assert model.request.distill == want.distill
    trial = expand(SweepSpec(envs=["CartPole-v1"], total_steps=4096, variants=["arm"], seeds=[0],
                             arms={"arm": [f"{k}={v}" for k, v in flat.items() if k != "alpha"]},
                             alphas=[0.5], overrides=["algo.n_steps=256"]), check_env=False)[0]
    assert trial.config.distill == resolved.distill


# ---------------------------------------------------------------------- DPD.learn = train's lifecycle
def test_dpd_learn_runs_through_trains_lifecycle_and_writes_the_summary_once(tmp_path, monkeypatch):
    """DPD(run_dir=...).learn makes, fills and summarises its folder through train()'s code: the same files as
    train() of the same config, summary.json written once."""
    import dpd.run_files as run_files
    from dpd.api import DPD
    from dpd.training import train

    written: list[str] = []
    real = run_files.atomic_write_text

    def counting(path, text):  # every JSON and YAML file of dpd goes through here
        written.append(Path(path).name)
        return real(path, text)

    monkeypatch.setattr(run_files, "atomic_write_text", counting)
    kwargs = {"eval_freq": 0, "snapshots": [], "n_steps": 128, "batch_size": 64, "n_epochs": 1}
    model = DPD("ppo", "CartPole-v1", preset="none", run_dir=tmp_path / "api", **kwargs).learn(512)
    assert written.count(names.SUMMARY_FILE) == 1
    assert model.summary == run_files.read_json(tmp_path / "api" / names.SUMMARY_FILE)
    model.close()
    train(model.config, tmp_path / "train")

    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("*")}

    assert files(tmp_path / "api") == files(tmp_path / "train")
