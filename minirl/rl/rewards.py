"""Sequence scores and the per-token rewards PG and PPO optimise (MATH.md §3).

``r_t = −β·k(t) + [t = T]·R(x, y)``: every response token pays the KL penalty to the
reference model, and the last response token T (the EOT, when one was emitted) also
collects the sequence score R. A response that ran out of tokens without emitting EOT
can have a penalty added to R, or R replaced by a fixed value (the TL;DR seed's −1).

R(x, y) comes from one of two kinds of reward function:
- a *text reward*, any callable ``reward_fn(texts) -> scores`` on the decoded responses
  (VADER, a judge): it sees y only;
- a *token reward* (`TokenReward`), which reads the sampled grid of token ids itself:
  prompt ‖ response, EOT included, exactly as sampled. A learned reward model that must
  see the post it judges a summary of is one (`reward_model.TokenRewardModel`).
`sequence_scores` calls either and checks the answer.
"""

from __future__ import annotations

import math
from typing import Callable, Protocol, Sequence, Union, runtime_checkable

from minirl import backend
from minirl.rl.kl import kl_penalty


@runtime_checkable
class TokenReward(Protocol):
    """R(x, y) read from token ids: ``score_tokens(tokens, attention_mask) -> (B,) scores``.

    tokens (B, T) int and attention_mask (B, T) bool are the rollout's own grid
    (`sampling.Generation`): each row is its left-padded prompt x, then the response y
    up to and including its first EOT, then padding; the mask is 1 exactly on x ‖ y.
    The ids are the ones the policy sampled, so nothing is decoded and re-encoded (a
    round trip that can change the tokens), and one call scores the whole batch.
    The arrays are on the active backend; return B finite numbers (host or device).
    """

    def score_tokens(self, tokens, attention_mask) -> Sequence[float]:
        ...


RewardFunction = Union[Callable[[list[str]], Sequence[float]], TokenReward]
"""what the RL loop accepts as R(x, y): a text reward or a `TokenReward`"""


def check_scores(scores, n: int, source: str = "the reward function") -> list[float]:
    """Validate what a reward function returned: one finite number per response."""
    try:
        values = [float(s) for s in scores]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source} must return a sequence of numbers, one per response; got {scores!r:.200}.") from e
    if len(values) != n:
        raise ValueError(f"{source} returned {len(values)} scores for {n} responses; it must return one per response.")
    bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{source} returned non-finite scores (NaN or inf) for responses {bad[:10]}; "
                         "make it return a finite number for every text.")
    return values


def score_texts(reward_fn: Callable[[list[str]], Sequence[float]], texts: list[str]):
    """Call a plain Python reward function on decoded responses and check its answer."""
    return check_scores(reward_fn(texts), len(texts), source=getattr(reward_fn, "__name__", "the reward function"))


def sequence_scores(reward_fn: RewardFunction, tokens, attention_mask, texts: list[str]) -> list[float]:
    """R(x, y) of every sampled row, checked: a `TokenReward` reads ``tokens`` / ``attention_mask``
    (the (B, T) grid of prompt ‖ response), any other reward function the decoded ``texts``."""
    if isinstance(reward_fn, TokenReward):
        return check_scores(backend.to_numpy(reward_fn.score_tokens(tokens, attention_mask)),
                            len(texts), source=type(reward_fn).__name__)
    return score_texts(reward_fn, texts)


def last_token_index(mask):
    """(B,) column of each row's last masked token: the T of ``[t = T]`` (−1 for an empty row)."""
    mask = backend.to_backend(mask)
    xp = backend.get_array_module(mask)
    T = mask.shape[1]
    flipped_first = xp.argmax(mask[:, ::-1].astype(bool), axis=1)
    return xp.where(mask.any(axis=1), T - 1 - flipped_first, -1)


def token_rewards(scores, logprobs, ref_logprobs, mask, kl_coef: float, kl_estimator: str = "k1",
                  ended=None, missing_eos_penalty: float = 0.0, missing_eos_reward: float | None = None):
    """Per-token rewards ``r_t = −β·k(t) + [t = T]·R``, and the per-token KL k(t); both (B, T).

    scores (B,): R(x, y). logprobs, ref_logprobs (B, T): log-probs of the sampled tokens
    under π_θ (or π_old) and π_ref. mask (B, T): response tokens. ended (B,) bool: rows
    that emitted EOT. A row that did not gets ``R + missing_eos_penalty`` (use a negative
    penalty), or, when `missing_eos_reward` is set, has R replaced:
    ``R' = R if ended else missing_eos_reward`` (the TL;DR seed's rule, with −1).
    """
    logprobs, ref_logprobs, mask = (backend.to_backend(a) for a in (logprobs, ref_logprobs, mask))
    xp = backend.get_array_module(logprobs)
    m = mask.astype(logprobs.dtype)
    kl = kl_penalty(logprobs, ref_logprobs, kl_estimator) * m  # (B, T)
    scores = backend.to_backend(scores, dtype=logprobs.dtype)
    if ended is not None and missing_eos_penalty:
        scores = scores + xp.where(backend.to_backend(ended), 0.0, missing_eos_penalty).astype(logprobs.dtype)
    if ended is not None and missing_eos_reward is not None:
        scores = xp.where(backend.to_backend(ended), scores, missing_eos_reward).astype(logprobs.dtype)
    rewards = -kl_coef * kl
    last = last_token_index(mask)
    rows = xp.flatnonzero(last >= 0)
    rewards[rows, last[rows]] += scores[rows]
    return rewards, kl
