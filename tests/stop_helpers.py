"""Helpers shared by tests that stop a run on purpose."""

import os


class SignalAt:
    """An SB3 callback that sends a signal to this process once the learner passed ``steps``."""

    def __new__(cls, steps, sig):
        from stable_baselines3.common.callbacks import BaseCallback

        class _Cb(BaseCallback):
            sent = False

            def _on_step(self) -> bool:
                if not _Cb.sent and self.num_timesteps >= steps:
                    _Cb.sent = True
                    os.kill(os.getpid(), sig)
                return True

        return _Cb()


class SigtermOnPackIterate:
    """Within ``with``: a JAX pack's ``PackGroup.iterate`` sends this process SIGTERM right after its ``call``-th call
    (every learner's view calls it each round; the pack steps on the round's first call)."""

    def __init__(self, call):
        self.call = call

    def __enter__(self):
        import signal

        import dpd.training.pack_learner as pl

        self.original = original = pl.PackGroup.iterate
        calls = {"n": 0}
        call = self.call

        def iterate(group, target):
            original(group, target)
            calls["n"] += 1
            if calls["n"] == call:
                signal.raise_signal(signal.SIGTERM)

        pl.PackGroup.iterate = iterate
        return self

    def __exit__(self, *exc):
        import dpd.training.pack_learner as pl

        pl.PackGroup.iterate = self.original
        return False
