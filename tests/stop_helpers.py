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
