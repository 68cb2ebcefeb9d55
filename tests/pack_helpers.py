"""Helpers of the pack's tests: torch <-> JAX weights (an SB3 MLP as the pack's Params, one learner axis)."""

import jax.numpy as jnp
import numpy as np
import torch


def from_torch(seq: torch.nn.Module) -> list:
    """An SB3 ``nn.Sequential`` MLP -> the pack's Params with a learner axis of 1: [(w (1, in, out), b (1, out))]."""
    lins = [m for m in seq if isinstance(m, torch.nn.Linear)]
    return [(jnp.asarray(m.weight.detach().numpy().T[None]), jnp.asarray(m.bias.detach().numpy()[None])) for m in lins]


def stack(*params: list) -> list:
    """Params of single learners (learner axis 1 each) -> one pack's Params (learner axis N)."""
    return [tuple(jnp.concatenate(xs) for xs in zip(*layers, strict=True)) for layers in zip(*params, strict=True)]


def leaves_np(tree) -> list[np.ndarray]:
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]
