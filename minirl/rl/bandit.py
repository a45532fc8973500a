"""A one-step bandit that *is* a GPT: the smallest RLHF problem with an exact answer (MATH.md §12).

The prompt is <|endoftext|> alone and every response is one token, so the policy is a
categorical distribution π(y) over the vocabulary that one forward pass reads exactly.
With a known reward R(y) and β·k1 in the reward, the optimum of E[R] − β·KL(π ‖ π_ref)
is ``π*(y) = π_ref(y)·exp(R(y)/β) / Z``. The algorithms run on it unchanged: the same
`collect_rollout` and updates as the tweet model, which is what makes it a test of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minirl import backend
from minirl.model import GPT, GPTConfig
from minirl.rl.rollout import collect_rollout
from minirl.tensor import no_grad


@dataclass
class Bandit:
    rewards: np.ndarray = field(default_factory=lambda: np.array([1.0, 0.0, 0.5, -1.0, 0.2, -0.3]))
    """R(y) for each one-token response; the last token is <|endoftext|>, itself an action"""
    beta: float = 0.5
    """β of the KL-regularised objective"""
    sharpness: float = 10.0
    """scale of the initial embeddings: larger makes π_ref further from uniform"""
    seed: int = 7
    """seed of the initial weights, so policy and reference start identical"""

    @property
    def eot_id(self) -> int:
        return len(self.rewards) - 1

    def model(self) -> GPT:
        """A fresh one-step GPT; two calls give identical weights (π_θ = π_ref at the start)."""
        backend.manual_seed(self.seed)
        model = GPT(GPTConfig(vocab_size=len(self.rewards), block_size=2, n_layer=1, n_head=1, n_embd=8))
        model.wte.weight.data *= self.sharpness
        return model

    def distribution(self, model) -> np.ndarray:
        """π(y) for every y, exactly: one forward pass over all one-token responses."""
        with no_grad():
            tokens = np.array([[self.eot_id, y] for y in range(len(self.rewards))])
            return np.exp(model.logprobs(tokens).numpy()[:, 1].astype(np.float64))

    def optimum(self, pi_ref: np.ndarray) -> np.ndarray:
        """π* ∝ π_ref·exp(R/β)."""
        p = pi_ref * np.exp(self.rewards / self.beta)
        return p / p.sum()

    def decode(self, ids) -> str:
        """A response as text: its token id, or "" for a bare <|endoftext|>."""
        return str(ids[0]) if ids else ""

    def reward_fn(self, texts: list[str]) -> list[float]:
        return [float(self.rewards[int(t)] if t else self.rewards[self.eot_id]) for t in texts]

    def rollout(self, policy, ref, rng=None, batch: int = 256, kl_coef: float | None = None):
        """`batch` one-token samples, priced with β·k1 in the reward (pass kl_coef=0 for GRPO)."""
        return collect_rollout(policy, [[self.eot_id]] * batch, self.reward_fn, ref_model=ref, decode=self.decode,
                               eot_id=self.eot_id, max_new_tokens=1,
                               kl_coef=self.beta if kl_coef is None else kl_coef, kl_estimator="k1", rng=rng)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """``½ Σ |p − q|``: the largest difference in probability the two give any event."""
    return 0.5 * float(np.abs(p - q).sum())
