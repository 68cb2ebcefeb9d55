"""A distillation phase's call path, recorded: in sequential mode a phase is trainer -> learner -> student ->
Distiller -> objective, and xi is computed once per phase. A new layer on the way (a dispatcher, a second
random-state swap, a helper in between) makes a recorded chain longer and this test fail: shorten the path, or
change the expected chains here and docs/architecture.md together."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import dpd.objective
from dpd.config import TrainConfig
from dpd.training import DPDTrainer

PACKAGE = str(Path(dpd.objective.__file__).resolve().parent)
OBJECTIVE = str(Path(dpd.objective.__file__).resolve())
ROUND = "DPDTrainer._sequential_round"

TRAINER_TO_DISTILLER = (ROUND, "_in_own_stream.<locals>.in_own_stream", "Learner.distill", "Student.distill",
                        "Distiller.phase")
#: every chain of dpd functions from the trainer's round into the objective (the first objective function entered)
EXPECTED = {
    (*TRAINER_TO_DISTILLER, "Distiller.window", "compute_xi"),  # xi, once
    (*TRAINER_TO_DISTILLER, "Distiller._pair", "dpd_loss"),  # the pair on the whole window
    (*TRAINER_TO_DISTILLER, "Distiller._pair", "dpd_weights"),  # the window's weights (the histogram)
    (*TRAINER_TO_DISTILLER, "dpd_loss"),  # each gradient step
}


def _dpd_chain(frame: FrameType) -> tuple[str, ...] | None:
    """The dpd functions on the stack from the trainer's round down to ``frame`` (None: not inside a round)."""
    chain: list[str] = []
    f: FrameType | None = frame
    while f is not None:
        if str(Path(f.f_code.co_filename).resolve()).startswith(PACKAGE):
            chain.append(f.f_code.co_qualname)
            if f.f_code.co_qualname == ROUND:
                return tuple(reversed(chain))
        f = f.f_back
    return None


def test_a_sequential_phase_goes_trainer_learner_student_distiller_objective_and_computes_xi_once():
    config = TrainConfig.from_dict({
        "env_id": "Pendulum-v1", "algo": "ppo", "preset": "none", "total_steps": 640, "seed": 1, "eval_freq": 0,
        "tensorboard": False, "snapshots": [], "distill": {"steps": 3, "gate": "advantage"},
        "algo_kwargs": {"n_steps": 64, "batch_size": 32, "n_epochs": 1, "policy_kwargs": {"net_arch": [8]}},
    }).resolve()
    trainer = DPDTrainer(config)
    chains: Counter[tuple[str, ...]] = Counter()
    calls: Counter[str] = Counter()

    def profile(frame: FrameType, event: str, _arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        if code.co_qualname in ("Distiller.phase", "compute_xi"):
            calls[code.co_qualname] += 1
        caller = frame.f_back
        # a function of the objective (not a method of its statistics, which the learner's logging reads), entered
        # from outside the objective
        entering = (code.co_filename == OBJECTIVE and "." not in code.co_qualname
                    and (caller is None or caller.f_code.co_filename != OBJECTIVE))
        if entering:
            chain = _dpd_chain(frame)
            if chain is not None:
                chains[chain] += 1

    sys.setprofile(profile)
    try:
        trainer.learn()
    finally:
        sys.setprofile(None)
        trainer.close()
    assert set(chains) == EXPECTED, sorted(set(chains) ^ EXPECTED)
    phases = calls["Distiller.phase"]
    assert phases >= 8  # 5 iterations per student, the first of student0 skipped (student1 had not collected)
    assert calls["compute_xi"] == phases  # xi once per phase: weights, gate and loss reuse it
    assert chains[(*TRAINER_TO_DISTILLER, "Distiller._pair", "dpd_loss")] == phases
