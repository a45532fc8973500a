"""GRPO and RLOO: hand-computed advantages and losses, and their closed-form fixed points (MATH.md §12)."""

import numpy as np
import pytest

from minirl import optim
from minirl.rl.grpo import GRPOConfig, group_advantages, grpo_fixed_point, grpo_loss, grpo_update
from minirl.rl.rloo import RLOOConfig, leave_one_out_advantages, rloo_update
from minirl.rl.rollout import collect_rollout
from minirl.tensor import Tensor
from tests.test_rl_oracle import (BETA, EOT, REWARD, bandit_gpt, decaying_lr, decode, distribution, optimum,
                                  reward_fn, tv)


def test_group_advantages_by_hand():
    scores = np.array([1.0, 3.0, 2.0, 2.0, 5.0, 5.0])
    adv = group_advantages(scores, 2, scale="none")
    np.testing.assert_allclose(adv, [-1, 1, 0, 0, 0, 0])
    adv = group_advantages(scores, 2, scale="group")
    np.testing.assert_allclose(adv, [-1 / 1.0001, 1 / 1.0001, 0, 0, 0, 0])  # std of (1, 3) is 1
    assert not np.any(np.isnan(adv)) and np.all(adv[2:] == 0)  # zero-std groups: exactly 0
    np.testing.assert_allclose(group_advantages(scores, 2, scale="batch"), [-1, 1, 0, 0, 0, 0] / (scores.std() + 1e-4))
    with pytest.raises(ValueError, match="at least 2 samples per prompt"):
        group_advantages(scores, 1)
    with pytest.raises(ValueError, match="do not split into groups of G=4"):
        group_advantages(scores, 4)


def test_leave_one_out_by_hand():
    adv = leave_one_out_advantages(np.array([1.0, 2.0, 6.0, 0.0, 0.0, 3.0]), 3)
    np.testing.assert_allclose(adv, [1 - 4, 2 - 3.5, 6 - 1.5, 0 - 1.5, 0 - 1.5, 3 - 0])
    with pytest.raises(ValueError, match="k >= 2"):
        leave_one_out_advantages(np.ones(4), 1)
    with pytest.raises(ValueError, match="RLOO needs k >= 2"):
        RLOOConfig(k=1)


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_grpo_loss_by_hand(loss_type):
    logp = np.log(np.array([[0.5, 0.25, 0.5], [0.5, 0.5, 0.5]]))
    old = logp + np.array([[0.0, 0.1, 0.0], [-0.2, 0.0, 0.0]])  # ratios e^0, e^-0.1 / e^0.2, e^0
    ref = np.log(np.full((2, 3), 0.4))
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    adv = np.array([1.0, -2.0])
    loss, stats = grpo_loss(Tensor(logp), old, ref, adv, mask, beta=0.1, clip_eps=0.15, loss_type=loss_type,
                            max_len=4)
    ratio = np.exp(logp - old)
    a = adv[:, None]
    clip_term = np.maximum(-a * ratio, -a * np.clip(ratio, 0.85, 1.15))
    l = ref - logp
    per_token = clip_term + 0.1 * (np.exp(l) - 1 - l)
    if loss_type == "grpo":
        expected = np.mean([(per_token[b] * mask[b]).sum() / mask[b].sum() for b in range(2)])
    elif loss_type == "dr_grpo":
        expected = (per_token * mask).sum() / (2 * 4)
    else:
        expected = (per_token * mask).sum() / mask.sum()
    assert loss.item() == pytest.approx(expected)
    assert stats["clipfrac"] == pytest.approx(1 / 5)  # e^0.2 = 1.22 > 1.15 on one of five tokens


def test_grpo_loss_is_zero_at_the_start_but_its_gradient_is_not():
    logp = Tensor(np.log(np.array([[0.5, 0.2], [0.1, 0.3], [0.6, 0.6], [0.05, 0.9]])), requires_grad=True)
    adv = group_advantages(np.array([1.0, 0.0, 3.0, 2.0]), 2)
    loss, _ = grpo_loss(logp, logp.data.copy(), logp.data.copy(), adv, np.ones((4, 2)), beta=0.04)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    loss.backward()
    assert np.abs(logp.grad).max() > 0.1


def grouped_rollout(policy, ref, rng, kl_coef, prompts=64, group=4):
    return collect_rollout(policy, [[EOT]] * (prompts * group), reward_fn, ref_model=ref, decode=decode, eot_id=EOT,
                           max_new_tokens=1, kl_coef=kl_coef, kl_estimator="k1", rng=rng)


def test_rloo_converges_to_the_kl_regularised_optimum():
    from minirl import backend

    ref, policy = bandit_gpt(), bandit_gpt()
    pi_star = optimum(distribution(ref))
    opt = optim.AdamW(policy.parameters(), lr=0.02, weight_decay=0.0)
    config, rng = RLOOConfig(k=4, kl_coef=BETA), backend.rng(2)
    for step in range(300):
        opt.lr = decaying_lr(step, 300, 0.02)
        rloo_update(policy, opt, grouped_rollout(policy, ref, rng, BETA), config)
    final = tv(distribution(policy), pi_star)
    print(f"RLOO: TV(π, π*) = {final:.4f}")
    assert final < 0.015


def test_dr_grpo_converges_to_its_own_fixed_point_not_pi_star():
    from minirl import backend

    ref, policy = bandit_gpt(), bandit_gpt()
    pi_ref = distribution(ref)
    G = 4
    target, pi_star = grpo_fixed_point(pi_ref, REWARD, BETA, G), optimum(pi_ref)
    opt = optim.AdamW(policy.parameters(), lr=0.02, weight_decay=0.0)
    config, rng = GRPOConfig(group_size=G, beta=BETA, loss_type="dr_grpo", scale_rewards="none"), backend.rng(3)
    for step in range(300):
        opt.lr = decaying_lr(step, 300, 0.02)
        grpo_update(policy, opt, grouped_rollout(policy, ref, rng, 0.0, group=G), config, max_len=1)
    pi = distribution(policy)
    print(f"dr_grpo: TV to its fixed point {tv(pi, target):.4f}, to π* {tv(pi, pi_star):.4f} "
          f"(the two differ by {tv(target, pi_star):.3f})")
    assert tv(target, pi_star) > 0.05  # the teaching point: they really are different distributions
    assert tv(pi, target) < 0.02 and tv(pi, target) < tv(pi, pi_star) / 3


def test_grpo_fixed_point_satisfies_its_equation():
    pi_ref = np.array([0.1, 0.2, 0.3, 0.4])
    rewards = np.array([1.0, -1.0, 0.5, 0.0])
    pi = grpo_fixed_point(pi_ref, rewards, beta=0.5, group_size=4)
    c = 0.75
    lhs = c * pi * (rewards - (pi * rewards).sum())
    np.testing.assert_allclose(lhs, 0.5 * (pi - pi_ref), atol=1e-10)
    assert pi.sum() == pytest.approx(1.0) and pi.min() > 0
    lam = 0.5 * pi_ref / pi + c * rewards  # π = β·π_ref / (λ − c·R) ⇒ λ = β·π_ref/π + c·R, the same λ for every y
    np.testing.assert_allclose(lam, lam[0], rtol=1e-9)
    assert lam[0] > c * rewards.max()  # the root the docstring names, where λ − c·R > 0 for every y


def test_grpo_k3_ignores_unlikely_prompt_tokens_instead_of_overflowing():
    logp = Tensor(np.array([[0.0, -95.0, -1.0, -2.0]], dtype=np.float32), requires_grad=True)
    ref = np.array([[0.0, 0.0, -1.5, -1.5]], dtype=np.float32)  # off the response the rollout stores 0
    loss, _ = grpo_loss(logp, logp.data.copy(), ref, np.array([1.0], dtype=np.float32), np.array([[0, 0, 1, 1]]),
                        beta=0.1)
    loss.backward()
    assert np.isfinite(loss.item()) and np.all(np.isfinite(logp.grad))


def test_dr_grpo_settings_are_consistent():
    assert GRPOConfig(loss_type="dr_grpo").scale_rewards == "none"
    assert GRPOConfig().scale_rewards == "group"
    with pytest.raises(ValueError, match="dr_grpo removes the std scaling"):
        GRPOConfig(loss_type="dr_grpo", scale_rewards="group")
    with pytest.raises(ValueError, match="pass max_len"):
        grpo_loss(Tensor(np.zeros((2, 2))), np.zeros((2, 2)), np.zeros((2, 2)), np.zeros(2), np.ones((2, 2)),
                  loss_type="dr_grpo")
