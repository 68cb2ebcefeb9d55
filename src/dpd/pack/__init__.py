"""A *pack*: the learners of one task trained in one process with JAX (``pip install 'dpd[jax]'``).

Parameters are stacked on a leading learner axis, updates and acting are one jitted call for all learners (one
learner's program mapped over the pack: ``dpd.pack.batching``), replay buffers are device arrays sampled inside jit,
and the learners' Gymnasium envs are stepped together on the CPU. ``import dpd`` does not import this package (nor
JAX); only ``import dpd.pack`` does.

Step 1 of the JAX engine (the go/no-go benchmark, ``benchmarks/throughput.py --engine jax``): DDPG only. Then
``dpd.pack.objective`` (the DPD objective in JAX), ``dpd.pack.distill`` (a distillation phase of DDPG pairs) and
``dpd.pack.ppo`` (PPO: ``PPOPack``, the paper's on-policy preset).
"""

try:
    import jax  # noqa: F401
    import optax  # noqa: F401
except ImportError as exc:  # one line naming the fix, not a traceback from deep inside
    raise ImportError(f"dpd.pack needs JAX ({exc.name} is not installed): pip install 'dpd[jax]'") from None

from dpd.pack.ddpg import DDPGPack, PackConfig
from dpd.pack.ppo import PPOConfig, PPOPack

__all__ = ["DDPGPack", "PPOConfig", "PPOPack", "PackConfig"]
