"""PPO for language models (Schulman et al. 2017; Ziegler et al. 2019; Ouyang et al. 2022).

One update takes a rollout (sampled by π_old = the current policy), computes
advantages with GAE (or, without a value model, whitened returns), then runs K
epochs over shuffled minibatches of
``L = L_clip + c_v·L_V − c_e·H[π_θ]`` (MATH.md §4), clipping gradients, and stops
early if ``approx_kl`` runs past 1.5 × `target_kl`.

Invariant worth a test: in the first minibatch of the first epoch π_θ = π_old, so
``ρ ≡ 1`` exactly, ``approx_kl = 0`` and ``clipfrac = 0``. It needs the same
temperature in sampling and scoring and no dropout, which is why rollouts and
updates run the model in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minirl import backend, optim
from minirl.rl.advantages import discounted_returns, gae, whiten
from minirl.rl.losses import check_finite, explained_variance, masked_mean, ppo_policy_loss, ppo_value_loss
from minirl.rl.pg import rollout_stats
from minirl.rl.rollout import Rollout, require_eval_mode, state_values
from minirl.tensor import no_grad
from minirl.validation import check_ranges


@dataclass
class PPOConfig:
    kl_coef: float = 0.05
    """β: per-token KL penalty in the reward"""
    kl_estimator: str = "k1"
    """k1, k2 or k3 for that penalty"""
    gamma: float = 1.0
    """discount over response tokens"""
    lam: float = 0.95
    """GAE λ: 0 trusts the critic (low variance), 1 trusts the sampled return (no bias)"""
    clip_eps: float = 0.2
    """ε of the ratio clip"""
    clip_eps_v: float = 0.2
    """ε_v of the value clip"""
    vf_coef: float = 0.5
    """c_v, the value loss weight"""
    ent_coef: float = 0.0
    """c_e, the entropy bonus weight"""
    epochs: int = 4
    """K passes over each rollout"""
    minibatch_size: int = 16
    """sequences per gradient step"""
    max_grad_norm: float = 1.0
    """clip the global gradient norm (0: no clipping)"""
    target_kl: float | None = None
    """stop the epochs early once approx_kl > 1.5 × this (None: never)"""
    whiten_advantages: bool = True
    """normalise advantages over the batch's response tokens"""
    temperature: float = 1.0
    """sampling temperature τ; the ratio's log-probs are taken at the same τ"""

    def __post_init__(self):
        check_ranges(self, kl_coef="[0, inf)", gamma="[0, 1]", lam="[0, 1]", clip_eps="(0, 1)", clip_eps_v="(0, inf)",
                     vf_coef="[0, inf)", max_grad_norm="[0, inf)", target_kl="(0, inf)", temperature="(0, inf)")
        if self.epochs < 1 or self.minibatch_size < 1:
            raise ValueError(f"PPOConfig needs epochs >= 1 and minibatch_size >= 1, got {self.epochs}, "
                             f"{self.minibatch_size}.")


def advantages_and_returns(rollout: Rollout, config: PPOConfig):
    """GAE with the critic's values; without a critic, the return itself (whitened, it is
    a batch-mean baseline)."""
    mask = rollout.response_mask
    if rollout.values is not None:
        advantages, returns = gae(rollout.rewards, rollout.values, mask, config.gamma, config.lam)
    else:
        returns = discounted_returns(rollout.rewards, mask, config.gamma)
        advantages = returns
    if config.whiten_advantages:
        advantages = whiten(advantages, mask)
    return advantages, returns


def ppo_update(policy, optimizer, rollout: Rollout, config: PPOConfig, value_model=None,
               rng: np.random.Generator | None = None) -> dict:
    """K epochs of minibatch PPO on one rollout. `optimizer` holds the policy's parameters,
    and the value model's too when there is one. Returns the mean metrics of the update."""
    if (value_model is None) != (rollout.values is None):
        raise ValueError("pass a value model exactly when the rollout was collected with one.")
    require_eval_mode(policy, "PPO")
    rng = rng if rng is not None else backend.host_rng()
    advantages, returns = advantages_and_returns(rollout, config)
    B = rollout.tokens.shape[0]
    P = rollout.prompt_length  # log-probs from the first response column: the prompt is context only
    orders = [rng.permutation(B) for _ in range(config.epochs)]

    def minibatches(order):
        for start in range(0, B, config.minibatch_size):
            yield backend.to_backend(order[start:start + config.minibatch_size])

    # log π_old, recomputed minibatch by minibatch exactly as the first epoch will compute
    # log π_θ, so that ρ ≡ 1 holds bit for bit on the first minibatch.
    old_logprobs = backend.xp().zeros_like(rollout.logprobs)
    with no_grad():
        for idx in minibatches(orders[0]):
            old_logprobs[idx] = policy.logprobs(rollout.tokens[idx], rollout.attention_mask[idx],
                                                temperature=config.temperature, start=P).data
    history: list[dict] = []
    stopped_early = False
    for epoch, order in enumerate(orders):
        for idx in minibatches(order):
            tokens, attention, mask = rollout.tokens[idx], rollout.attention_mask[idx], rollout.response_mask[idx]
            logprobs, ent = policy.logprobs(tokens, attention, temperature=config.temperature, with_entropy=True,
                                            start=P)
            loss, stats = ppo_policy_loss(logprobs, old_logprobs[idx], advantages[idx], mask, config.clip_eps)
            entropy = masked_mean(ent, mask)
            stats["entropy"] = entropy.item()
            if config.ent_coef:
                loss = loss - config.ent_coef * entropy
            if value_model is not None:
                values = state_values(value_model, tokens, attention)
                v_loss, v_stats = ppo_value_loss(values, rollout.values[idx], returns[idx], mask, config.clip_eps_v)
                loss = loss + config.vf_coef * v_loss
                stats.update(v_stats)
            check_finite(loss, "PPO")
            stats["grad_norm"] = optim.minimize_step(optimizer, loss, config.max_grad_norm)
            stats["epoch"] = epoch
            history.append(stats)
            if config.target_kl is not None and stats["approx_kl"] > 1.5 * config.target_kl:
                stopped_early = True
                break
        if stopped_early:
            break
    summary = {k: float(np.mean([h[k] for h in history])) for k in history[0] if k != "epoch"}
    summary["first_minibatch_approx_kl"] = history[0]["approx_kl"]
    summary["first_minibatch_clipfrac"] = history[0]["clipfrac"]
    summary["minibatches"] = len(history)
    summary["stopped_early"] = stopped_early
    if rollout.values is not None:
        summary["explained_variance"] = explained_variance(rollout.values, returns, rollout.response_mask)
    summary.update(rollout_stats(rollout))
    return summary
