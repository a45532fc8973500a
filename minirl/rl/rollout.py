"""One shared rollout for every RL algorithm: sample, score, and price each token (MATH.md §3).

1. The policy samples responses with the KV cache and records ``log π_old(a_t|s_t)`` at
   the sampling temperature τ.
2. The frozen reference scores the same tokens: ``log π_ref(a_t|s_t)`` at τ.
3. An optional value model gives ``V(s_t)``, the value of the state *before* token t.
4. The reward function scores each response, R(x, y): a text reward reads the decoded
   response, a `TokenReward` (a reward model that must see the post) the sampled ids of
   prompt ‖ response themselves (`rewards.sequence_scores`).
5. ``r_t = −β·k(t) + [t = T]·R`` on the response tokens (`rewards.token_rewards`).

Every (B, T) array shares the token grid of `Generation`: column t describes token t.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from minirl import backend, nn
from minirl.indexing import concatenate
from minirl.rl.rewards import RewardFunction, sequence_scores, token_rewards
from minirl.tensor import Tensor, no_grad


@dataclass
class Rollout:
    tokens: object
    """(B, T) prompt (left-padded) and response token ids"""
    attention_mask: object
    """(B, T) real tokens"""
    response_mask: object
    """(B, T) the actions: response tokens up to and including the first EOT"""
    logprobs: object
    """(B, T) log π_old(a_t|s_t) at the sampling temperature, rescored in one forward pass; 0 off the response"""
    ref_logprobs: object
    """(B, T) log π_ref(a_t|s_t) at the same temperature"""
    values: object | None
    """(B, T) V(s_t) from the value model, or None"""
    scores: object
    """(B,) the sequence scores R(x, y), as the reward function gave them (before any missing-EOT rule)"""
    rewards: object
    """(B, T) per-token rewards r_t"""
    kl: object
    """(B, T) the per-token KL estimate k(t)"""
    texts: list[str]
    """the decoded responses (without EOT), as a text reward function saw them"""
    ended: object
    """(B,) bool: the response emitted EOT (rather than running out of tokens)"""
    prompt_length: int
    """column where responses start"""


def require_eval_mode(model, what: str) -> None:
    """RL needs deterministic forward passes: with dropout on, π_old ≠ π_θ even before any update."""
    if any(isinstance(m, nn.Dropout) and m.p > 0 and m.training for m in model.modules()):
        raise ValueError(f"{what} needs the policy without dropout: call policy.eval() first (train_rl does).")


def state_values(value_model, tokens, attention_mask) -> Tensor:
    """``V(s_t)`` on the token grid: the head read at position t−1, the last token the policy
    saw before choosing token t. Column 0 (no state before it) is 0. (B, T) -> (B, T)."""
    per_position = value_model.values(tokens, attention_mask)  # (B, T): head at every position
    first = Tensor(backend.xp().zeros((tokens.shape[0], 1), dtype=per_position.dtype))
    return concatenate([first, per_position[:, :-1]], axis=1)


def collect_rollout(policy, prompts: Sequence[Sequence[int]], reward_fn: RewardFunction, *,
                    ref_model, decode: Callable[[list[int]], str], eot_id: int, max_new_tokens: int,
                    kl_coef: float, kl_estimator: str = "k1", value_model=None, temperature: float = 1.0,
                    missing_eos_penalty: float = 0.0, missing_eos_reward: float | None = None, rng=None) -> Rollout:
    """Sample one response per prompt (repeat a prompt for G samples of it) and price every token.

    There is no top-k or top-p here on purpose: they truncate the distribution the tokens come
    from, while the log-probs, the KL and the PPO ratio are those of the full policy at τ.
    """
    if policy.config.vocab_size != ref_model.config.vocab_size:
        raise ValueError(f"policy and reference vocabularies differ ({policy.config.vocab_size} vs "
                         f"{ref_model.config.vocab_size}): they must share one tokenizer.")
    require_eval_mode(policy, "a rollout")
    gen = policy.generate(prompts, max_new_tokens, temperature=temperature, eot_id=eot_id, rng=rng)
    with no_grad():  # π_old rescored in one pass like π_ref, so the two agree exactly while π_θ = π_ref
        logprobs = policy.logprobs(gen.tokens, gen.attention_mask, temperature=temperature,
                                   start=gen.prompt_length).data * gen.response_mask
        ref_logprobs = ref_model.logprobs(gen.tokens, gen.attention_mask, temperature=temperature,
                                         start=gen.prompt_length).data
        values = state_values(value_model, gen.tokens, gen.attention_mask).data if value_model is not None else None
    responses = gen.responses()
    ended = backend.xp().asarray([bool(r) and r[-1] == eot_id for r in responses])
    texts = [decode([t for t in r if t != eot_id]) for r in responses]
    scores = sequence_scores(reward_fn, gen.tokens, gen.attention_mask, texts)
    scores = backend.xp().asarray(scores, dtype=logprobs.dtype)
    ref_logprobs = ref_logprobs * gen.response_mask
    rewards, kl = token_rewards(scores, logprobs, ref_logprobs, gen.response_mask, kl_coef, kl_estimator,
                                ended=ended, missing_eos_penalty=missing_eos_penalty,
                                missing_eos_reward=missing_eos_reward)
    return Rollout(gen.tokens, gen.attention_mask, gen.response_mask, logprobs, ref_logprobs, values, scores,
                   rewards, kl, texts, ended, gen.prompt_length)
