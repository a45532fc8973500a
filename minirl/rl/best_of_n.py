"""Rejection sampling / best-of-n fine-tuning (MATH.md §5; Zelikman et al. 2022, Yuan et al. 2023).

Each round: sample n responses per prompt at temperature τ, score them, keep the best k,
and run SFT (§1) on the kept ones with the prompt masked. With one sample kept out of n
and distinct rewards, the kept responses follow exactly
``P_bon(y) = F(y)^n − (F(y) − π(y))^n`` with ``F(y) = Σ_{R(y') ≤ R(y)} π(y')``:
the chance that the best of n draws is y.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from minirl import backend
from minirl.data.sft import SFTDataset, SFTExample
from minirl.rl.rewards import RewardFunction, sequence_scores
from minirl.train import TrainConfig, train_lm
from minirl.validation import check_ranges


def best_of_n_indices(scores, n: int, k: int = 1) -> np.ndarray:
    """Rows of the k best samples in each consecutive group of n (a prompt repeated n times).

    Ties go to the earlier sample, so the choice is deterministic.
    """
    scores = np.asarray(backend.to_numpy(scores), dtype=np.float64)
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"best-of-n needs n >= 1 and 1 <= k <= n, got n={n}, k={k}.")
    if scores.ndim != 1 or scores.size % n:
        raise ValueError(f"expected a flat list of scores whose length is a multiple of n={n}, got {scores.shape}.")
    groups = scores.reshape(-1, n)  # (prompts, n)
    best = np.argsort(-groups, axis=1, kind="stable")[:, :k]  # (prompts, k)
    return (best + n * np.arange(groups.shape[0])[:, None]).reshape(-1)


@dataclass
class BestOfNConfig:
    n: int = 4
    """samples per prompt"""
    k: int = 1
    """samples kept per prompt"""
    temperature: float = 1.0
    """sampling temperature τ"""

    def __post_init__(self):
        check_ranges(self, n="[1, inf)", k="[1, inf)", temperature="(0, inf)")
        if self.k > self.n:
            raise ValueError(f"best-of-n keeps k = {self.k} of n = {self.n} samples per prompt; k must be <= n.")


def best_of_n_round(policy, prompts: Sequence[Sequence[int]], reward_fn: RewardFunction,
                    config: BestOfNConfig, sft: TrainConfig, *, max_new_tokens: int,
                    decode: Callable[[list[int]], str], eot_id: int, rng=None) -> dict:
    """One round: sample n per prompt (up to `max_new_tokens` each), keep the best k, fine-tune the policy on them."""
    repeated = [list(p) for p in prompts for _ in range(config.n)]
    gen = policy.generate(repeated, max_new_tokens, temperature=config.temperature, eot_id=eot_id, rng=rng)
    responses = gen.responses()
    texts = [decode([t for t in r if t != eot_id]) for r in responses]
    scores = np.asarray(sequence_scores(reward_fn, gen.tokens, gen.attention_mask, texts))
    keep = best_of_n_indices(scores, config.n, config.k)
    examples = [SFTExample(repeated[i], responses[i]) for i in keep if responses[i]]
    data = SFTDataset(examples, policy.config.block_size, pad_id=eot_id)
    train_lm(policy, data, sft, progress=False, desc="best-of-n sft")
    return {"score_mean": float(scores.mean()), "kept_score_mean": float(scores[keep].mean()),
            "kept": len(examples), "response_tokens": sum(len(r) for r in responses)}
