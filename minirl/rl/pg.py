"""REINFORCE / vanilla policy gradient with the KL penalty in the reward (MATH.md §3, §4).

The seed tutorial's algorithm: every response token is rewarded ``r_t = −β·k1(t)``,
the last one also gets R(x, y), the return ``G_t`` sums what follows, and one gradient
step follows ``−(1/Σm) Σ_t m_t log π_θ(a_t|s_t)·sg(G_t − b_t)``. With k1 in the reward,
the expected gradient is exactly that of ``E[R] − β·KL(π_θ‖π_ref)``, so its fixed point
is ``π* ∝ π_ref·exp(R/β)`` (MATH.md §12).
"""

from __future__ import annotations

from dataclasses import dataclass

from minirl import optim
from minirl.rl.advantages import RunningMeanBaseline, discounted_returns, whiten
from minirl.rl.losses import check_finite, masked_mean, pg_loss
from minirl.rl.rollout import Rollout, state_values
from minirl.validation import check_ranges

BASELINES = ("none", "mean", "value")


@dataclass
class PGConfig:
    kl_coef: float = 0.05
    """β, the price of one nat of KL to the reference, paid per token"""
    kl_estimator: str = "k1"
    """k1 (unbiased; the one with the closed-form optimum), k2 or k3"""
    gamma: float = 1.0
    """discount over response tokens"""
    baseline: str = "mean"
    """none, mean (a running mean of R) or value (the rollout's V(s_t))"""
    whiten_advantages: bool = False
    """rescale G − b to unit variance per batch (changes the step size, not the fixed point)"""
    temperature: float = 1.0
    """sampling temperature τ; log-probs are taken at the same τ"""
    max_grad_norm: float = 1.0
    """clip the global gradient norm (0: no clipping)"""

    def __post_init__(self):
        check_ranges(self, kl_coef="[0, inf)", gamma="[0, 1]", temperature="(0, inf)", max_grad_norm="[0, inf)")
        if self.baseline not in BASELINES:
            raise ValueError(f"unknown baseline {self.baseline!r}; choose one of {', '.join(BASELINES)}.")


def reinforce_update(policy, optimizer, rollout: Rollout, config: PGConfig,
                     running_mean: RunningMeanBaseline | None = None, value_model=None) -> dict:
    """One REINFORCE step on a rollout; returns its metrics.

    With ``baseline="value"`` the learned ``V_ψ(s_t)`` is subtracted from ``G_t`` and trained in
    the same step on ``½·mean_m[(V_ψ(s_t) − G_t)²]`` (`optimizer` must hold its parameters too).
    """
    mask = rollout.response_mask
    returns = discounted_returns(rollout.rewards, mask, config.gamma)  # G_t
    if config.baseline == "mean":
        if running_mean is None:
            raise ValueError("baseline='mean' needs a RunningMeanBaseline to carry between updates.")
        advantages = returns - running_mean.update(rollout.scores)
    elif config.baseline == "value":
        if rollout.values is None or value_model is None:
            raise ValueError("baseline='value' needs a value model, and a rollout collected with it.")
        advantages = returns - rollout.values
    else:
        advantages = returns
    advantages = advantages * mask
    if config.whiten_advantages:
        advantages = whiten(advantages, mask)
    logprobs = policy.logprobs(rollout.tokens, rollout.attention_mask, temperature=config.temperature,
                               start=rollout.prompt_length)
    loss, stats = pg_loss(logprobs, advantages, mask)
    if config.baseline == "value":
        values = state_values(value_model, rollout.tokens, rollout.attention_mask)
        value_loss = 0.5 * masked_mean((values - returns) ** 2, mask)
        stats["value_loss"] = value_loss.item()
        loss = loss + value_loss
    check_finite(loss, "REINFORCE")
    stats["grad_norm"] = optim.minimize_step(optimizer, loss, config.max_grad_norm)
    stats.update(rollout_stats(rollout))
    return stats


def rollout_stats(rollout: Rollout) -> dict:
    """What every algorithm logs about its samples: score, KL to the reference, length."""
    mask = rollout.response_mask
    return {
        "score_mean": float(rollout.scores.mean()),
        "score_std": float(rollout.scores.std()),  # ~0: every sample scored alike, nothing to learn from
        "kl_to_ref": float((rollout.kl * mask).sum(axis=1).mean()),  # nats per response
        "kl_per_token": float(masked_mean(rollout.kl, mask)),
        "response_length": float(mask.sum(axis=1).mean()),
        "ended_fraction": float(rollout.ended.mean()),
    }
