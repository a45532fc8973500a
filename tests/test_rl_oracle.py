"""Closed-form oracles (MATH.md §12) on a one-step bandit that *is* a GPT.

The policy is a real `GPT` with a one-token prompt (<|endoftext|>) and one-token
responses, driven by the same `collect_rollout`, `reinforce_update` and `ppo_update`
the tweet model uses. With β·k1 in the reward, the optimum of E[R] − β·KL(π‖π_ref)
is π* ∝ π_ref·exp(R/β); REINFORCE and PPO must land on it.
"""

import numpy as np
import pytest

from minirl import backend, optim
from minirl.rl.advantages import RunningMeanBaseline
from minirl.rl.bandit import Bandit, total_variation
from minirl.rl.best_of_n import best_of_n_indices
from minirl.rl.pg import PGConfig, reinforce_update
from minirl.rl.ppo import PPOConfig, ppo_update

BANDIT = Bandit()
EOT, REWARD, BETA = BANDIT.eot_id, BANDIT.rewards, BANDIT.beta
TV_TOLERANCE = 0.015
bandit_gpt, distribution, optimum = BANDIT.model, BANDIT.distribution, BANDIT.optimum
decode, reward_fn, tv = BANDIT.decode, BANDIT.reward_fn, total_variation


def decaying_lr(step, total, lr):
    """Stochastic updates hover around the optimum at a distance set by the step size; decaying
    it to a tenth lets the final iterate settle (a Robbins–Monro-style schedule)."""
    return optim.warmup_linear(step, max_lr=lr, total_steps=total, min_lr=lr / 10)


def rollout(policy, ref, rng, batch=256):
    return BANDIT.rollout(policy, ref, rng, batch)


def test_reinforce_converges_to_the_kl_regularised_optimum():
    ref, policy = bandit_gpt(), bandit_gpt()
    pi_ref = distribution(ref)
    start = tv(pi_ref, optimum(pi_ref))
    opt = optim.AdamW(policy.parameters(), lr=0.02, weight_decay=0.0)
    config, baseline, rng = PGConfig(kl_coef=BETA, baseline="mean"), RunningMeanBaseline(), backend.rng(0)
    for step in range(300):
        opt.lr = decaying_lr(step, 300, 0.02)
        reinforce_update(policy, opt, rollout(policy, ref, rng), config, baseline)
    final = tv(distribution(policy), optimum(pi_ref))
    print(f"REINFORCE: TV(π, π*) {start:.3f} -> {final:.4f}")
    assert start > 0.2 and final < TV_TOLERANCE


def test_ppo_converges_to_the_kl_regularised_optimum():
    ref, policy = bandit_gpt(), bandit_gpt()
    pi_ref = distribution(ref)
    opt = optim.AdamW(policy.parameters(), lr=0.01, weight_decay=0.0)
    config, rng = PPOConfig(kl_coef=BETA, epochs=2, minibatch_size=128), backend.rng(1)
    first = None
    for step in range(200):
        opt.lr = decaying_lr(step, 200, 0.01)
        stats = ppo_update(policy, opt, rollout(policy, ref, rng), config, rng=np.random.default_rng(step))
        first = first or stats
    final = tv(distribution(policy), optimum(pi_ref))
    print(f"PPO: TV(π, π*) {tv(pi_ref, optimum(pi_ref)):.3f} -> {final:.4f}")
    assert final < TV_TOLERANCE
    # The first update starts from π_θ = π_old = π_ref: ρ ≡ 1 and no KL, exactly.
    assert first["first_minibatch_approx_kl"] == 0.0 and first["first_minibatch_clipfrac"] == 0.0
    assert first["kl_to_ref"] == 0.0


def test_best_of_n_follows_its_exact_distribution():
    ref = bandit_gpt()
    pi = distribution(ref)
    n, groups = 4, 6000
    order = np.argsort(REWARD)  # distinct rewards: F(y) = mass of responses scoring ≤ R(y)
    F = np.empty(6)
    F[order] = np.cumsum(pi[order])
    exact = F ** n - (F - pi) ** n
    gen = ref.generate([[EOT]] * (n * groups), 1, eot_id=EOT, rng=backend.rng(3))
    picks = backend.to_numpy(gen.tokens)[:, 1]
    kept = picks[best_of_n_indices(REWARD[picks], n)]
    empirical = np.bincount(kept, minlength=6) / groups
    sigma = np.sqrt(exact * (1 - exact) / groups)
    assert np.all(np.abs(empirical - exact) < 4 * sigma + 1e-3), (empirical, exact)
    assert exact.sum() == pytest.approx(1.0)


def test_best_of_n_selection_and_errors():
    assert best_of_n_indices([0.1, 0.9, 0.5, 3.0, 2.0, 2.0], n=3).tolist() == [1, 3]
    assert best_of_n_indices([1, 2, 2, 0], n=2, k=2).tolist() == [1, 0, 2, 3]
    with pytest.raises(ValueError, match="multiple of n=4"):
        best_of_n_indices([1.0, 2.0, 3.0], n=4)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        best_of_n_indices([1.0, 2.0], n=2, k=3)
