"""Pack invariance (4c): replaying the same recorded transitions with the same minibatch keys, a learner inside a pack
equals it trained alone, bit for bit; with distillation between pairs, a learner depends on its peer only."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("optax")

import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from pack_helpers import leaves_np  # noqa: E402

from dpd.pack.ddpg import Buffers, DDPGPack, Learners, PackConfig, init_mlp  # noqa: E402
from dpd.pack.distill import DistillSpec, init_state, make_distill_phase, pair_peers  # noqa: E402

pytestmark = pytest.mark.extended  # make test-extended (CI runs it after make test)

OBS_DIM, ACT_DIM = 3, 1


# ---------------------------------------------------------------- pack invariance
N, T, ROUNDS, GRAD_STEPS = 12, 256, 5, 20  # 5 rounds x 20 = 100 updates
CFG = PackConfig(net_arch=(32, 32), batch_size=32, gradient_steps=GRAD_STEPS)


#: bit for bit: the pack maps one learner's program over its learners (dpd.pack.batching.per_learner). With jax.vmap
#: XLA lowered a pack of 1, of 2-10 and of 11+ learners three ways (jaxlib 0.10.2, CPU): 1.6e-7 apart after these 100
#: updates (8 vs 1), enough to send two DDPG runs along different trajectories; N = 12 crosses both boundaries
TOL = 0.0
TX = optax.adam(CFG.learning_rate)  # one object: the jitted phase is compiled once per pack size


def recorded_pack(seeds: list[int]):
    """Learners seeded ``seeds`` (weights from torch's law, a PRNG key each) and their buffers, filled from one
    recorded stream per learner (NumPy, seeded by the learner's seed): the same data whatever the pack."""
    tx = TX
    nets = [(init_mlp(np.random.default_rng([s, 1]), [OBS_DIM, *CFG.net_arch, ACT_DIM]),
             init_mlp(np.random.default_rng([s, 2]), [OBS_DIM + ACT_DIM, *CFG.net_arch, 1])) for s in seeds]

    def stacked(k: int) -> list:
        return [tuple(jnp.asarray(np.stack(x)) for x in zip(*layers, strict=True))
                for layers in zip(*(n[k] for n in nets), strict=True)]

    actor, critic = stacked(0), stacked(1)
    opt = jax.vmap(tx.init)
    learners = Learners(actor, critic, jax.tree.map(jnp.copy, actor), jax.tree.map(jnp.copy, critic), opt(actor),
                        opt(critic), jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    rngs = [np.random.default_rng([s, 3]) for s in seeds]
    streams = [{"obs": r.normal(0, 2, (T, OBS_DIM)), "next_obs": r.normal(0, 2, (T, OBS_DIM)),
                "actions": r.uniform(-1, 1, (T, ACT_DIM)), "rewards": r.normal(size=T),
                "terminated": (r.uniform(size=T) < 0.05)} for r in rngs]
    buffers = Buffers(**{k: jnp.asarray(np.stack([st[k] for st in streams]), jnp.float32) for k in Buffers._fields})
    stats = [np.random.default_rng([s, 4]) for s in seeds]
    mean = jnp.asarray(np.stack([r.normal(0, 0.5, OBS_DIM) for r in stats]), jnp.float32)
    var = jnp.asarray(np.stack([r.uniform(0.5, 3, OBS_DIM) for r in stats]), jnp.float32)
    return tx, learners, buffers, mean, var


def learner(tree, i: int):
    return jax.tree.map(lambda x: x[i : i + 1], tree)


@pytest.fixture(scope="module")
def update():
    """DDPGPack's own update (``_update``: GRAD_STEPS updates of every learner in one jitted call; it donates
    the learners), one pack per size, so that each size is compiled once: ``update[n](learners, buffers, ...)``."""
    packs = {n: DDPGPack("Pendulum-v1", list(range(n)), CFG, max_steps=T) for n in (1, 2, N)}
    yield {n: pack._update for n, pack in packs.items()}
    for pack in packs.values():
        pack.close()


def max_diff(a, b) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(leaves_np(a), leaves_np(b), strict=True))


def test_a_learner_in_a_pack_of_12_equals_it_alone_after_100_updates(update):
    """The same recorded transitions and the same minibatch keys, 100 updates: each learner of a pack of 12 against
    the same learner as a pack of 1."""
    seeds = list(range(10, 10 + N))
    _, pack, buffers, mean, var = recorded_pack(seeds)
    for _ in range(ROUNDS):
        pack, _ = update[N](pack, buffers, jnp.int32(T), mean, var)
    worst = 0.0
    for i, s in enumerate(seeds):
        _, alone, buf1, mean1, var1 = recorded_pack([s])
        assert np.array_equal(np.asarray(buf1.obs[0]), np.asarray(buffers.obs[i]))
        for _ in range(ROUNDS):
            alone, _ = update[1](alone, buf1, jnp.int32(T), mean1, var1)
        worst = max(worst, max_diff(learner(pack, i), alone))
    assert worst <= TOL, f"max abs difference {worst}"


def test_with_distillation_a_pair_depends_on_its_peer_only(update):
    """A pack of 12 (six pairs: 0-1, 2-3, ...), two rounds of 20 RL updates then a 5-step distillation phase, equals
    each pair trained as a pack of 2, bit for bit (12 learners: the update is then compiled once for both tests)."""
    from dpd.config import DistillConfig

    spec = DistillSpec.from_config(DistillConfig(lr=1e-4, batch_size=16, window=64, optimizer="own", loss_coef=1.0
                                                 ).resolve("ddpg"), max_steps=5)
    seeds = list(range(10, 10 + N))

    def train(seeds: list[int]):
        tx, pack, buffers, mean, var = recorded_pack(seeds)
        n = len(seeds)
        state = init_state(spec, tx, pack.actor, [s + 100 for s in seeds])
        phase = make_distill_phase(spec, CFG, tx)
        for _ in range(2):
            pack, _ = update[n](pack, buffers, jnp.int32(T), mean, var)
            pack, state, out = phase(pack, state, buffers.obs, jnp.int32(0), jnp.int32(T), mean, var,
                                     jnp.asarray(pair_peers(n)), jnp.ones(n), jnp.full(n, 5))
            assert np.all(np.asarray(out.taken) == 5)
        return pack, state

    whole, whole_state = train(seeds)
    worst = 0.0
    for k in range(N // 2):
        two, two_state = train(seeds[2 * k : 2 * k + 2])
        for j in range(2):
            worst = max(worst, max_diff(learner((whole, whole_state), 2 * k + j), learner((two, two_state), j)))
    assert worst <= TOL, f"max abs difference {worst}"
    # and the phase did couple them: learner 0 with another peer ends elsewhere
    swapped, _ = train([10, 12])
    assert max_diff(learner(swapped.actor, 0), learner(whole.actor, 0)) > 1e-5
