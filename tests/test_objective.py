"""The DPD objective against hand-computed numbers."""

import math

import pytest
import torch as th

from dpd.objective import DEFAULT_MAX_LOG_WEIGHT, action_distance, compute_xi, dpd_loss, dpd_weights


def test_exp_weighting_matches_hand_computation():
    student = th.tensor([[0.0, 0.0], [1.0, 1.0], [0.5, -0.5]], requires_grad=True)
    peer = th.tensor([[1.0, 1.0], [1.0, 3.0], [0.5, 0.5]])
    v_self = th.tensor([1.0, 2.0, 0.0])
    v_peer = th.tensor([2.0, 1.0, 0.0])  # peer better, worse, equal
    loss, stats = dpd_loss(student, peer, compute_xi(v_self, v_peer), alpha=0.5)
    # D = mean over action dims of squared error: [1, 2, 0.5]; xi = [1, -1, 0]; w = exp(0.5 xi)
    d = [1.0, 2.0, 0.5]
    w = [math.exp(0.5), math.exp(-0.5), 1.0]
    expected = sum(wi * di for wi, di in zip(w, d, strict=True)) / sum(w)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert stats.weight_mean == pytest.approx(sum(w) / 3, rel=1e-6)
    assert stats.weight_max == pytest.approx(math.exp(0.5), rel=1e-6)
    assert stats.peer_better_frac == pytest.approx(1 / 3)
    assert stats.xi_mean == pytest.approx(0.0)
    assert stats.action_distance == pytest.approx(sum(d) / 3)
    assert stats.weight_clip_frac == 0.0


def test_unnormalized_weights_are_eq11_literally():
    student = th.tensor([[0.0], [0.0]], requires_grad=True)
    peer = th.tensor([[1.0], [2.0]])
    loss, _ = dpd_loss(student, peer, compute_xi(th.zeros(2), th.tensor([1.0, 0.0])), alpha=1.0,
                       normalize_weights=False)
    assert loss.item() == pytest.approx((math.e * 1.0 + 1.0 * 4.0) / 2, rel=1e-6)


def test_weight_above_one_exactly_where_peer_is_better():
    gen = th.Generator().manual_seed(0)
    v_self, v_peer = th.randn(200, generator=gen), th.randn(200, generator=gen)
    weights, _ = dpd_weights(v_peer - v_self, alpha=2.0)
    assert th.equal(weights > 1.0, v_peer > v_self)


def test_no_gradient_reaches_the_peer_or_the_values():
    student = th.randn(8, 3, requires_grad=True)
    peer = th.randn(8, 3, requires_grad=True)
    v_self = th.randn(8, requires_grad=True)
    v_peer = th.randn(8, requires_grad=True)
    loss, _ = dpd_loss(student, peer, compute_xi(v_self, v_peer), alpha=1.0)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert peer.grad is None and v_self.grad is None and v_peer.grad is None


def test_clipping_keeps_weights_finite_for_huge_xi():
    xi = th.tensor([1e6, -1e6, 0.0, float("inf")])
    weights, clipped = dpd_weights(xi, alpha=10.0)
    assert th.isfinite(weights).all()
    assert weights[0].item() == pytest.approx(100.0) and weights[1].item() == pytest.approx(0.01)
    assert clipped.tolist() == [True, True, False, True]
    student = th.zeros(4, 2, requires_grad=True)
    loss, stats = dpd_loss(student, th.ones(4, 2), xi, alpha=10.0)
    assert math.isfinite(loss.item()) and stats.weight_max == pytest.approx(math.exp(DEFAULT_MAX_LOG_WEIGHT))
    assert stats.weight_clip_frac == pytest.approx(0.75)


def test_indicator_weights_only_states_where_the_peer_is_better_and_uniform_weights_all_alike():
    student = th.zeros(3, 1, requires_grad=True)
    peer = th.tensor([[1.0], [2.0], [3.0]])
    v_self = th.zeros(3)
    v_peer = th.tensor([1.0, -1.0, 0.0])
    loss_ind, stats = dpd_loss(student, peer, compute_xi(v_self, v_peer), alpha=1.0, weighting="indicator")
    assert loss_ind.item() == pytest.approx(1.0)  # only the first state counts (xi > 0, strictly)
    assert stats.weight_mean == pytest.approx(1 / 3)
    loss_uni, stats = dpd_loss(student, peer, compute_xi(v_self, v_peer), alpha=1.0, weighting="uniform")
    assert loss_uni.item() == pytest.approx((1 + 4 + 9) / 3)
    assert stats.weight_min == stats.weight_max == 1.0


def test_indicator_with_no_better_state_gives_zero_loss_and_gradient():
    student = th.zeros(2, 1, requires_grad=True)
    loss, _ = dpd_loss(student, th.ones(2, 1), compute_xi(th.ones(2), th.zeros(2)), alpha=1.0,
                       weighting="indicator")
    loss.backward()
    assert loss.item() == 0.0 and student.grad is not None and student.grad.abs().sum() == 0


def test_xi_scale_divides_xi_before_alpha():
    student = th.zeros(2, 1, requires_grad=True)
    xi = compute_xi(th.zeros(2), th.tensor([100.0, -100.0]), xi_divisor=100.0)
    assert xi.tolist() == [1.0, -1.0]  # V_peer - V_self, then divided
    _, stats = dpd_loss(student, th.ones(2, 1), xi, alpha=1.0)
    assert stats.weight_max == pytest.approx(math.e, rel=1e-6)
    assert stats.xi_mean == pytest.approx(0.0)
    with pytest.raises(ValueError, match="positive"):
        compute_xi(th.zeros(2), th.zeros(2), xi_divisor=0.0)


def test_discrete_distance_is_kl_peer_to_student():
    student_logits = th.log(th.tensor([[0.5, 0.5], [0.9, 0.1]]))
    peer_logits = th.log(th.tensor([[0.9, 0.1], [0.9, 0.1]]))
    d = action_distance(student_logits, peer_logits, discrete=True)
    expected0 = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert d[0].item() == pytest.approx(expected0, rel=1e-5)
    assert d[1].item() == pytest.approx(0.0, abs=1e-6)


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="differ"):
        dpd_loss(th.zeros(2, 2), th.zeros(2, 3), th.zeros(2), alpha=1.0)
    with pytest.raises(ValueError, match=r"\(B,\)"):
        dpd_loss(th.zeros(2, 2), th.zeros(2, 2), th.zeros(2, 1), alpha=1.0)
    with pytest.raises(ValueError, match=r"\(B,\)"):
        compute_xi(th.zeros(2, 1), th.zeros(2, 1))
    with pytest.raises(ValueError, match="batch size"):
        dpd_loss(th.zeros(2, 2), th.zeros(2, 2), th.zeros(3), alpha=1.0)
    with pytest.raises(ValueError, match="weighting"):
        dpd_weights(th.zeros(2), 1.0, "bogus")  # type: ignore[arg-type]


def test_clamped_mse_counts_two_means_beyond_the_same_bound_as_equal():
    """distill_distance=clamped_mse: Gaussian means beyond an action bound act alike (the env clips), so they are not
    pulled together; inside the bounds it is the plain MSE (the default, which keeps the paper's numbers)."""
    student = th.tensor([[1.8, 0.2], [0.5, -0.1]], requires_grad=True)
    peer = th.tensor([[1.2, 0.4], [0.1, -0.1]])
    bounds = (th.tensor([-1.0, -1.0]), th.tensor([1.0, 1.0]))
    plain = action_distance(student, peer, discrete=False)
    clamped = action_distance(student, peer, discrete=False, bounds=bounds)
    assert plain[0].item() == pytest.approx(((1.8 - 1.2) ** 2 + 0.2 ** 2) / 2)
    assert clamped[0].item() == pytest.approx(0.2 ** 2 / 2)  # dim 0: both clipped to 1.0
    assert clamped[1].item() == pytest.approx(plain[1].item())  # inside the bounds: the same
    clamped.sum().backward()
    assert student.grad is not None and student.grad[0, 0] == 0.0  # no pull where the env cannot tell them apart
