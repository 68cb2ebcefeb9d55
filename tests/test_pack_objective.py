"""dpd.pack.objective (the DPD objective in JAX) equals dpd.objective.dpd_loss (torch): the loss, every statistic and
the gradient w.r.t. the student's outputs, to relative 1e-5 in float32, on the hand-computed cases of
tests/test_objective.py (the same inputs) and on random inputs of several shapes."""

import math

import numpy as np
import pytest
import torch as th

jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402

from dpd.objective import DistillStats, compute_xi, dpd_loss  # noqa: E402
from dpd.pack.objective import STAT_NAMES  # noqa: E402
from dpd.pack.objective import dpd_loss as jax_loss  # noqa: E402

pytestmark = pytest.mark.extended  # make test-extended (CI runs it after make test)


def torch_loss(student, peer, v_self, v_peer, alpha, *, xi_divisor=1.0, **kw):
    """The torch objective as the phase runs it: xi once (``compute_xi``), then ``dpd_loss`` on it; the JAX mirror
    takes the values and the divisor itself."""
    return dpd_loss(student, peer, compute_xi(v_self, v_peer, xi_divisor), alpha, **kw)


RTOL, ATOL = 1e-5, 1e-7  # float32: relative 1e-5; ATOL only for exact zeros (a zero gradient, xi_mean 0)


def close(mine, theirs, what: str) -> None:
    mine, theirs = np.asarray(mine, np.float64), np.asarray(theirs, np.float64)
    assert mine.shape == theirs.shape, what
    both_inf = np.isinf(mine) & np.isinf(theirs) & (np.sign(mine) == np.sign(theirs))
    ok = both_inf | np.isclose(mine, theirs, rtol=RTOL, atol=ATOL)
    assert ok.all(), f"{what}: jax {mine} torch {theirs}"


def compare(student, peer, v_self, v_peer, alpha, **kw) -> None:
    """Both functions on the same float32 inputs: loss, statistics, d loss / d student_out."""
    arrays = [np.asarray(x, np.float32) for x in (student, peer, v_self, v_peer)]
    bounds = kw.pop("bounds", None)
    t_in = [th.tensor(a) for a in arrays]
    t_in[0].requires_grad_(True)
    t_bounds = None if bounds is None else tuple(th.tensor(np.asarray(b, np.float32)) for b in bounds)
    t_loss, t_stats = torch_loss(*t_in, alpha, bounds=t_bounds, **kw)
    t_loss.backward()
    assert t_in[0].grad is not None

    j_in = [jnp.asarray(a) for a in arrays]
    j_bounds = None if bounds is None else tuple(jnp.asarray(np.asarray(b, np.float32)) for b in bounds)

    def loss_of(s):
        return jax_loss(s, *j_in[1:], alpha, bounds=j_bounds, **kw)

    (j_loss, j_stats), j_grad = jax.value_and_grad(loss_of, has_aux=True)(j_in[0])
    assert j_loss.dtype == jnp.float32 and j_grad.dtype == jnp.float32
    assert set(j_stats) == set(STAT_NAMES) and tuple(DistillStats.__dataclass_fields__) == STAT_NAMES
    close(j_loss, t_loss.item(), "loss")
    for name in STAT_NAMES:
        close(j_stats[name], getattr(t_stats, name), name)
    close(j_grad, t_in[0].grad.numpy(), "gradient")


# ---------------------------------------------------------------- tests/test_objective.py's hand-computed cases
HAND_CASES = {
    "exp": ([[0.0, 0.0], [1.0, 1.0], [0.5, -0.5]], [[1.0, 1.0], [1.0, 3.0], [0.5, 0.5]], [1.0, 2.0, 0.0],
            [2.0, 1.0, 0.0], 0.5, {}),
    "unnormalized": ([[0.0], [0.0]], [[1.0], [2.0]], [0.0, 0.0], [1.0, 0.0], 1.0, {"normalize_weights": False}),
    "huge_xi_clipped": (np.zeros((4, 2)), np.ones((4, 2)), np.zeros(4), [1e6, -1e6, 0.0, math.inf], 10.0, {}),
    "indicator": ([[0.0], [0.0], [0.0]], [[1.0], [2.0], [3.0]], np.zeros(3), [1.0, -1.0, 0.0], 1.0,
                  {"weighting": "indicator"}),
    "uniform": ([[0.0], [0.0], [0.0]], [[1.0], [2.0], [3.0]], np.zeros(3), [1.0, -1.0, 0.0], 1.0,
                {"weighting": "uniform"}),
    "indicator_all_zero": (np.zeros((2, 1)), np.ones((2, 1)), np.ones(2), np.zeros(2), 1.0, {"weighting": "indicator"}),
    "xi_divisor": (np.zeros((2, 1)), np.ones((2, 1)), np.zeros(2), [100.0, -100.0], 1.0, {"xi_divisor": 100.0}),
    "discrete_kl": (np.log([[0.5, 0.5], [0.9, 0.1]]), np.log([[0.9, 0.1], [0.9, 0.1]]), np.zeros(2), [0.3, -0.2], 1.0,
                    {"discrete": True}),
    "clip_at_the_bound": (np.zeros((3, 1)), np.ones((3, 1)), np.zeros(3), [2.0, -2.0, 1.0], 1.0, {"max_log_weight": 2.0}),
    "clamped_mse": ([[1.8, 0.2], [0.5, -0.1]], [[1.2, 0.4], [0.1, -0.1]], [0.0, 1.0], [1.0, 0.0], 1.0,
                    {"bounds": ([-1.0, -1.0], [1.0, 1.0])}),
}


@pytest.mark.parametrize("name", list(HAND_CASES))
def test_equals_torch_on_the_hand_computed_cases(name):
    student, peer, v_self, v_peer, alpha, kw = HAND_CASES[name]
    compare(student, peer, v_self, v_peer, alpha, **dict(kw))


def test_the_jax_loss_equals_the_hand_computed_weighted_distance_and_clipped_weights():
    """Two of tests/test_objective.py's numbers, computed here again by hand (not only through torch)."""
    loss, stats = jax_loss(jnp.array([[0.0, 0.0], [1.0, 1.0], [0.5, -0.5]]), jnp.array([[1.0, 1.0], [1.0, 3.0], [0.5, 0.5]]),
                           jnp.array([1.0, 2.0, 0.0]), jnp.array([2.0, 1.0, 0.0]), 0.5)
    d, w = [1.0, 2.0, 0.5], [math.exp(0.5), math.exp(-0.5), 1.0]
    assert float(loss) == pytest.approx(sum(a * b for a, b in zip(w, d, strict=True)) / sum(w), rel=1e-6)
    assert float(stats["weight_mean"]) == pytest.approx(sum(w) / 3, rel=1e-6)
    _, stats = jax_loss(jnp.zeros((4, 2)), jnp.ones((4, 2)), jnp.zeros(4), jnp.array([1e6, -1e6, 0.0, jnp.inf]), 10.0)
    assert float(stats["weight_max"]) == pytest.approx(100.0, rel=1e-6)
    assert float(stats["weight_min"]) == pytest.approx(0.01, rel=1e-6)
    assert float(stats["weight_clip_frac"]) == 0.75


# ---------------------------------------------------------------- random inputs
RANDOM = [
    (1, 1, "exp", True, False), (5, 3, "exp", True, False), (64, 6, "exp", False, False),
    (257, 17, "exp", True, False), (64, 6, "indicator", True, False), (33, 2, "uniform", False, False),
    (64, 4, "exp", True, True), (16, 7, "indicator", False, True), (128, 3, "exp", True, "bounds"),
]


@pytest.mark.parametrize("b, a, weighting, normalize, kind", RANDOM)
def test_equals_torch_on_random_inputs(b, a, weighting, normalize, kind):
    rng = np.random.default_rng([b, a])
    scale = 3.0 if kind == "bounds" else 1.0  # means beyond the bounds
    student, peer = rng.normal(0, scale, (b, a)), rng.normal(0, scale, (b, a))
    v_self, v_peer = rng.normal(0, 50, b), rng.normal(0, 50, b)  # raw return units: some alpha xi clip
    kw = {"weighting": weighting, "normalize_weights": normalize, "xi_divisor": float(rng.uniform(5, 20)),
          "max_log_weight": float(rng.uniform(1, 5))}
    if kind is True:
        kw["discrete"] = True
    if kind == "bounds":
        kw["bounds"] = (-np.ones(a), np.ones(a))
    compare(student, peer, v_self, v_peer, float(rng.uniform(0.1, 10)), **kw)


def test_a_mask_counts_only_its_rows_and_works_under_jit_and_vmap():
    """The JAX-only ``mask``: a padded batch equals torch on its valid rows; vmapped over learners with traced alpha
    and xi_divisor it equals each learner alone."""
    rng = np.random.default_rng(0)
    s, p = rng.normal(size=(3, 10, 2)).astype(np.float32), rng.normal(size=(3, 10, 2)).astype(np.float32)
    vs, vp = rng.normal(size=(3, 10)).astype(np.float32), rng.normal(size=(3, 10)).astype(np.float32)
    mask = np.arange(10)[None] < np.array([[10], [7], [1]])
    alpha, div = np.array([1.0, 2.0, 0.5], np.float32), np.array([1.0, 0.5, 3.0], np.float32)

    def one(s, p, vs, vp, a, d, m):
        return jax_loss(s, p, vs, vp, a, xi_divisor=d, mask=m)

    loss, stats = jax.jit(jax.vmap(one))(s, p, vs, vp, alpha, div, mask)
    for i, n in enumerate([10, 7, 1]):
        t_loss, t_stats = torch_loss(*(th.tensor(x[i, :n]) for x in (s, p, vs, vp)), float(alpha[i]),
                                     xi_divisor=float(div[i]))
        close(loss[i], t_loss.item(), "loss")
        for name in STAT_NAMES:
            close(stats[name][i], getattr(t_stats, name), name)


def test_shape_errors_and_unknown_weightings_are_refused():
    with pytest.raises(ValueError, match="differ"):
        jax_loss(jnp.zeros((2, 2)), jnp.zeros((2, 3)), jnp.zeros(2), jnp.zeros(2), 1.0)
    with pytest.raises(ValueError, match=r"\(B,\)"):
        jax_loss(jnp.zeros((2, 2)), jnp.zeros((2, 2)), jnp.zeros((2, 1)), jnp.zeros((2, 1)), 1.0)
    with pytest.raises(ValueError, match="weighting"):
        jax_loss(jnp.zeros((2, 2)), jnp.zeros((2, 2)), jnp.zeros(2), jnp.zeros(2), 1.0, weighting="bogus")
    with pytest.raises(ValueError, match="positive"):
        jax_loss(jnp.zeros((2, 2)), jnp.zeros((2, 2)), jnp.zeros(2), jnp.zeros(2), 1.0, xi_divisor=0.0)
