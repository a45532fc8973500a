"""GRPO: group-relative policy optimisation (Shao et al. 2024), with the Dr. GRPO and DAPO
aggregations (Liu et al. 2025; Yu et al. 2025). MATH.md §4, §12.

Sample G responses per prompt with scores R_1..R_G. Every token of response i gets the
same advantage ``Â_i = (R_i − mean R) / (std R + 1e-4)`` (std over the group, the batch,
or not at all), and the per-token loss is PPO's clip plus a KL term in the *loss*:

    ℓ_t = −min(ρ_t Â_i, clip(ρ_t, 1 − ε_low, 1 + ε_high) Â_i) + β·k3(t)

aggregated by `loss_type`: ``grpo`` averages over a sequence's tokens, then over
sequences; ``dr_grpo`` sums all tokens and divides by a constant, G·max_len (with no std
scaling, Dr. GRPO removes both length and difficulty biases); ``dapo`` sums all tokens
and divides by the number of response tokens.

Why "loss ≈ 0" is expected: at the first update ρ ≡ 1 and the group advantages sum to 0,
so the clipped term averages to about −mean Â ≈ 0 (exactly 0 with `grpo` aggregation),
and k3 = 0 while π_θ = π_ref. The *gradient* is not zero: with `grpo` aggregation it is
−(1/N) Σ_i (Â_i / |y_i|) ∇log π(y_i), each sequence's term divided by its length (the other
aggregations divide by a constant instead). The loss value says nothing about learning
here; read the reward instead.

Why GRPO does not converge to π* ∝ π_ref·exp(R/β): (1) β·k3 sampled from π_θ has the
expected gradient of the *forward* KL(π_ref ‖ π_θ), not the reverse KL of the RLHF
objective; (2) the group mean includes R_i itself, which scales R by c = (G − 1)/G; and
(3) std normalisation rescales it again, per group. With ``dr_grpo`` (no std) on a
one-step problem the fixed point solves c·π(y)(R(y) − E_π R) = β(π(y) − π_ref(y)):
``π(y) = β·π_ref(y) / (λ − c·R(y))``, λ normalising — see `grpo_fixed_point`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minirl import backend, optim
from minirl.rl.kl import kl_penalty
from minirl.rl.losses import check_finite, masked_mean, ppo_clip_per_token
from minirl.rl.pg import rollout_stats
from minirl.rl.rollout import Rollout
from minirl.tensor import no_grad
from minirl.validation import check_ranges

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
SCALES = ("group", "batch", "none")


def _groups(scores, group_size: int):
    if group_size < 2:
        raise ValueError(f"group-relative advantages need at least 2 samples per prompt, got G={group_size}.")
    if scores.shape[0] % group_size:
        raise ValueError(f"{scores.shape[0]} scores do not split into groups of G={group_size}; "
                         "sample each prompt exactly G times, consecutively.")
    return scores.reshape(-1, group_size)  # (prompts, G)


def group_advantages(scores, group_size: int, scale: str = "group", eps: float = 1e-4):
    """``Â_i = (R_i − mean_group R) / (std + eps)``, (B,) -> (B,). A group whose rewards are all
    equal gets exactly 0: nothing in it says which response was better."""
    if scale not in SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}; choose one of {', '.join(SCALES)}.")
    xp = backend.get_array_module(scores)
    grouped = _groups(scores, group_size)
    centred = grouped - grouped.mean(axis=1, keepdims=True)
    if scale == "group":
        centred = centred / (grouped.std(axis=1, keepdims=True) + eps)
    elif scale == "batch":
        centred = centred / (float(scores.std()) + eps)
    return xp.asarray(centred.reshape(-1))


def grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, mask, *, beta: float = 0.04,
              clip_eps: float = 0.2, clip_eps_high: float | None = None, loss_type: str = "grpo",
              max_len: int | None = None):
    """The GRPO objective above; `advantages` is (B,), broadcast to every token of its row."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; choose one of {', '.join(LOSS_TYPES)}.")
    m = mask.astype(logprobs.dtype)
    token_adv = advantages[:, None] * m  # (B, T): Â_i on every token of row i
    per_token, stats = ppo_clip_per_token(logprobs, old_logprobs, token_adv, mask, clip_eps, clip_eps_high)
    # (B, T), differentiable: β·k3 is a loss term. Masked first, so l = 0 off the response: a prompt
    # or pad token with log π < −88 would otherwise overflow e^l to inf, and inf·0 is NaN.
    kl = kl_penalty(logprobs * m, ref_logprobs * m, "k3")
    if beta:
        per_token = per_token + beta * kl
    if loss_type == "grpo":
        loss = masked_mean(per_token, mask, axis=1).mean()
    elif loss_type == "dr_grpo":
        if max_len is None:
            raise ValueError("dr_grpo divides by the constant G·max_len: pass max_len (the max_new_tokens).")
        loss = (per_token * m).sum() / (mask.shape[0] * max_len)
    else:
        loss = (per_token * m).sum() / max(float(m.sum()), 1.0)
    stats.update({"grpo_loss": loss.item(), "kl_k3": float(masked_mean(kl.data, mask))})
    return loss, stats


@dataclass
class GRPOConfig:
    group_size: int = 8
    """G, responses sampled per prompt"""
    beta: float = 0.04
    """weight of the β·k3 KL term in the loss (the reward carries no KL)"""
    clip_eps: float = 0.2
    """ε_low of the ratio clip"""
    clip_eps_high: float | None = None
    """ε_high (DAPO's clip-higher); None means ε_low"""
    loss_type: str = "grpo"
    """grpo, dr_grpo or dapo aggregation"""
    scale_rewards: str | None = None
    """divide by the std of the group, the batch, or none; None picks none for dr_grpo, group otherwise"""
    updates_per_batch: int = 1
    """gradient steps on each batch (μ); the first is exactly on-policy"""
    max_grad_norm: float = 1.0
    """clip the global gradient norm (0: no clipping)"""
    temperature: float = 1.0
    """sampling temperature τ; log-probs are taken at the same τ"""
    kl_coef: float = 0.0
    """β in the *reward* for the shared rollout: 0 for GRPO, which puts KL in the loss"""
    kl_estimator: str = "k3"
    """estimator reported by the rollout"""

    def __post_init__(self):
        check_ranges(self, kl_coef="[0, inf)", temperature="(0, inf)", max_grad_norm="[0, inf)", beta="[0, inf)",
                     clip_eps="(0, 1)", clip_eps_high="(0, inf)", updates_per_batch="[1, inf)")
        if self.group_size < 2:
            raise ValueError(f"GRPO needs group_size >= 2, got {self.group_size}.")
        if self.scale_rewards is None:
            self.scale_rewards = "none" if self.loss_type == "dr_grpo" else "group"
        if self.loss_type not in LOSS_TYPES or self.scale_rewards not in SCALES:
            raise ValueError(f"GRPOConfig: loss_type must be one of {LOSS_TYPES} and scale_rewards one of {SCALES}.")
        if self.loss_type == "dr_grpo" and self.scale_rewards != "none":
            raise ValueError("dr_grpo removes the std scaling (Liu et al. 2025): use scale_rewards='none'.")


def grpo_update(policy, optimizer, rollout: Rollout, config: GRPOConfig, max_len: int | None = None) -> dict:
    """`updates_per_batch` GRPO steps on one grouped rollout (each prompt repeated G times in a row)."""
    advantages = group_advantages(rollout.scores, config.group_size, config.scale_rewards)
    grouped = _groups(rollout.scores, config.group_size)
    with no_grad():  # π_old, scored exactly as the first update will score π_θ
        old = policy.logprobs(rollout.tokens, rollout.attention_mask, temperature=config.temperature,
                              start=rollout.prompt_length).data
    history = []
    for _ in range(config.updates_per_batch):
        logprobs, ent = policy.logprobs(rollout.tokens, rollout.attention_mask, temperature=config.temperature,
                                        with_entropy=True, start=rollout.prompt_length)
        loss, stats = grpo_loss(logprobs, old, rollout.ref_logprobs, advantages, rollout.response_mask,
                                beta=config.beta, clip_eps=config.clip_eps, clip_eps_high=config.clip_eps_high,
                                loss_type=config.loss_type, max_len=max_len)
        check_finite(loss, "GRPO")
        stats["entropy"] = float(masked_mean(ent.data, rollout.response_mask))
        stats["grad_norm"] = optim.minimize_step(optimizer, loss, config.max_grad_norm)
        history.append(stats)
    summary = {k: float(np.mean([h[k] for h in history])) for k in history[0]}
    summary.update(rollout_stats(rollout))
    summary.update({
        "reward_std": float(rollout.scores.std()),
        "zero_std_group_fraction": float((grouped.std(axis=1) == 0).mean()),
        "first_update_approx_kl": history[0]["approx_kl"],
    })
    return summary


def grpo_fixed_point(pi_ref: np.ndarray, rewards: np.ndarray, beta: float, group_size: int) -> np.ndarray:
    """The dr_grpo fixed point on a one-step problem, ``π(y) = β·π_ref(y) / (λ − c·R(y))`` with
    ``c = (G − 1)/G`` and λ > c·max R found by bisection so that Σ π = 1."""
    c = (group_size - 1) / group_size
    total = lambda lam: float((beta * pi_ref / (lam - c * rewards)).sum())  # noqa: E731  decreasing in λ
    lo = c * rewards.max() + 1e-12
    hi = lo + beta + 1.0
    while total(hi) > 1:
        hi = lo + 2 * (hi - lo)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if total(mid) > 1 else (lo, mid)
    pi = beta * pi_ref / (0.5 * (lo + hi) - c * rewards)
    return pi / pi.sum()
