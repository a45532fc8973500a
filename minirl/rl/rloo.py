"""RLOO: REINFORCE with a leave-one-out baseline (Kool et al. 2019; Ahmadian et al. 2024). MATH.md §4.

Sample k responses per prompt. With the KL in the reward, each response's return is
``R'_i = R_i − β·Σ_t k1(t)``, and its advantage is its return minus the mean return of
the *other* k − 1 responses to the same prompt:

    A_i = R'_i − (1/(k−1)) Σ_{j≠i} R'_j

The baseline never sees R'_i, so it adds no bias (unlike GRPO's group mean), and the
REINFORCE loss ``−(1/Σm) Σ_t m_t log π_θ(a_t|s_t)·A_i`` keeps the fixed point
π* ∝ π_ref·exp(R/β). It needs no value model: the other samples are the critic.
"""

from __future__ import annotations

from dataclasses import dataclass

from minirl import backend, optim
from minirl.rl.losses import check_finite, pg_loss
from minirl.rl.pg import rollout_stats
from minirl.rl.rollout import Rollout
from minirl.validation import check_ranges


def leave_one_out_advantages(returns, k: int):
    """``A_i = R'_i − mean_{j≠i} R'_j`` within consecutive groups of k, (B,) -> (B,).

    Uses ``mean_{j≠i} = (Σ_j R'_j − R'_i) / (k − 1)``, so ``A_i = k/(k−1)·(R'_i − mean R')``.
    """
    if k < 2:
        raise ValueError(f"a leave-one-out baseline needs k >= 2 samples per prompt, got k={k}.")
    if returns.shape[0] % k:
        raise ValueError(f"{returns.shape[0]} returns do not split into groups of k={k}; "
                         "sample each prompt exactly k times, consecutively.")
    grouped = returns.reshape(-1, k)  # (prompts, k)
    others = (grouped.sum(axis=1, keepdims=True) - grouped) / (k - 1)
    return backend.get_array_module(returns).asarray((grouped - others).reshape(-1))


@dataclass
class RLOOConfig:
    k: int = 4
    """samples per prompt"""
    kl_coef: float = 0.05
    """β: the per-token KL price, summed into each response's return"""
    kl_estimator: str = "k1"
    """k1 keeps the closed-form optimum"""
    temperature: float = 1.0
    """sampling temperature τ; log-probs are taken at the same τ"""
    max_grad_norm: float = 1.0
    """clip the global gradient norm (0: no clipping)"""

    def __post_init__(self):
        check_ranges(self, kl_coef="[0, inf)", temperature="(0, inf)", max_grad_norm="[0, inf)")
        if self.k < 2:
            raise ValueError(f"RLOO needs k >= 2 samples per prompt, got {self.k}.")


def rloo_update(policy, optimizer, rollout: Rollout, config: RLOOConfig) -> dict:
    """One RLOO step on a rollout whose prompts each appear k times in a row."""
    mask = rollout.response_mask
    returns = rollout.rewards.sum(axis=1)  # R'_i = R_i − β Σ_t k(t): the rollout's per-token rewards, summed
    advantages = leave_one_out_advantages(returns, config.k)  # (B,)
    logprobs = policy.logprobs(rollout.tokens, rollout.attention_mask, temperature=config.temperature,
                               start=rollout.prompt_length)
    loss, stats = pg_loss(logprobs, advantages[:, None] * mask, mask)
    check_finite(loss, "RLOO")
    stats["grad_norm"] = optim.minimize_step(optimizer, loss, config.max_grad_norm)
    stats.update(rollout_stats(rollout))
    stats["advantage_std"] = float(advantages.std())
    return stats
