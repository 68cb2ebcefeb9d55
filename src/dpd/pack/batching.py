"""One learner's function run over every learner of a pack, so that a learner's numbers do not depend on its pack.

Why not ``jax.vmap``: XLA lowers a vmapped batch of small matrix products differently by the batch's size. Measured
on XLA's CPU backend (jax 0.10, HalfCheetah-v5's DDPG paper networks, 3,000 env steps): packs of 2-10 learners
trained a learner bit for bit alike, but a pack of 1 and packs of 11 or more each rounded differently, and a float32
difference in one update grows, as in any chaotic training run, into a different trajectory. So a vanilla run
trained alone, or resumed alone from a sweep's pack, and the same seed in a pack of 16 trained three different runs.

:func:`per_learner` maps ``jax.lax.map`` instead: XLA compiles ONE learner's program and loops it over the pack's
leading axis, so every pack size runs the same arithmetic for a learner (bit for bit: tests/test_pack_invariance.py,
DDPG learners alone against a pack of 12; tests/test_pack_engine.py, runs alone against packs, DDPG and PPO).
Inside one jitted call the loop costs no dispatch; its speed against ``vmap``: docs/performance.md, "The JAX
engine's differences from SB3".

On an accelerator (any backend but the CPU) it is ``jax.vmap`` again: a GPU runs the learners in parallel only if
they are batched, a loop would serialise them, and its kernels promise no bit-for-bit invariance across batch sizes
anyway. So the invariance above is the CPU's (where the test suite and this project's studies run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp


def per_learner(fn: Callable[..., Any], in_axes: int | Sequence[int | None] | None = 0) -> Callable[..., Any]:
    """``fn`` of ONE learner over the leading (learner) axis of its arguments, as ``jax.vmap(fn, in_axes)`` with
    ``in_axes`` entries 0 (the argument is stacked per learner: a pytree whose leaves all have the pack's leading
    axis) or None (shared by all learners). Outputs are stacked on a new leading axis, as vmap's. Call it inside
    ``jax.jit`` (it is traced, not run eagerly, like vmap)."""

    def mapped(*args: Any) -> Any:
        axes = tuple(in_axes) if isinstance(in_axes, Sequence) else (in_axes,) * len(args)
        if len(axes) != len(args):
            raise ValueError(f"in_axes has {len(axes)} entries for {len(args)} arguments")
        if any(a not in (0, None) for a in axes):
            raise ValueError(f"per_learner maps axis 0 or nothing, not {axes}")
        stacked = tuple(i for i, a in enumerate(axes) if a == 0)
        if not stacked:
            raise ValueError("per_learner needs at least one argument stacked per learner")
        if jax.default_backend() != "cpu":  # batched for the accelerator's parallelism (module docstring)
            return jax.vmap(fn, in_axes=axes)(*args)

        def one(xs: tuple[Any, ...]) -> Any:
            full = list(args)
            for i, x in zip(stacked, xs, strict=True):
                full[i] = x
            return fn(*full)

        return jax.lax.map(one, tuple(args[i] for i in stacked))

    return mapped


def dense(x: jax.Array, w: jax.Array, b: jax.Array) -> jax.Array:
    """``x @ w + b`` in full float32 on every backend; x (..., in), w (in, out), b (out,) -> (..., out).

    Why the precision is named: on a GPU, XLA's default precision for a float32 matrix product is TF32 (a 10-bit
    mantissa), where torch's default, and so SB3's, is full float32. Measured on an H200 (jax 0.11.2,
    benchmarks/jax_gpu.sh, docs/performance.md): the pack's distillation step then differed from SB3's by 2e-4 to
    8e-4 relative, past the parity tests' 1e-4. ``HIGHEST`` is float32 there, and it changes nothing on the CPU,
    whose float32 product is the same with or without it (the engine's numbers bit for bit the same)."""
    return jnp.matmul(x, w, precision=jax.lax.Precision.HIGHEST) + b
