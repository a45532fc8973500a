"""KL estimators and the adaptive KL coefficient (MATH.md §3, §4).

With ``l_t = log π_ref(a_t|s_t) − log π_θ(a_t|s_t)`` and ``a_t ~ π_θ``, each estimator
``k(t)`` has expectation (under π_θ) related to ``KL(π_θ ‖ π_ref)`` at that state
(Schulman 2020, "Approximating KL divergence"):

- ``k1 = −l``: unbiased, but a single sample can be negative;
- ``k2 = ½ l²``: biased, always ≥ 0, low variance;
- ``k3 = (e^l − 1) − l``: unbiased and always ≥ 0 (since e^l ≥ 1 + l).

They take arrays or Tensors: GRPO puts ``β·k3`` in its loss, so it must differentiate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from minirl import backend
from minirl.tensor import Tensor

KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_penalty(logprobs, ref_logprobs, kind: str = "k1"):
    """Per-token KL estimate k(t) of the chosen `kind`; same shape as the inputs."""
    if kind not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {kind!r}; choose one of {', '.join(KL_ESTIMATORS)}.")
    if not isinstance(logprobs, Tensor) and not isinstance(ref_logprobs, Tensor):
        logprobs, ref_logprobs = backend.to_backend(logprobs), backend.to_backend(ref_logprobs)  # host arrays move
    log_ratio = ref_logprobs - logprobs  # l_t
    if kind == "k1":
        return -log_ratio
    if kind == "k2":
        return 0.5 * log_ratio * log_ratio
    exp = (lambda t: t.exp()) if isinstance(log_ratio, Tensor) else backend.get_array_module(log_ratio).exp
    return (exp(log_ratio) - 1.0) - log_ratio


@dataclass
class AdaptiveKLController:
    """Ziegler et al. 2019: steer β so the measured KL tracks a target.

    ``β ← β·(1 + clip(KL/KL_target − 1, −0.2, 0.2)·n_steps/horizon)``: a proportional
    controller whose error is clipped so one noisy batch cannot swing β far.
    """

    kl_coef: float
    """current β"""
    target: float
    """the KL (in nats per sequence, or per token: whatever `update` is given) to hold"""
    horizon: int = 10_000
    """samples over which the error is corrected"""

    def __post_init__(self):
        if not (self.kl_coef >= 0 and self.target > 0 and self.horizon > 0):
            raise ValueError(f"AdaptiveKLController needs kl_coef >= 0, target > 0 and horizon > 0, got {self}.")

    def update(self, kl: float, n_steps: int) -> float:
        if not math.isfinite(kl):
            raise ValueError(f"AdaptiveKLController.update got a non-finite KL ({kl}).")
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.kl_coef *= 1.0 + error * n_steps / self.horizon
        return self.kl_coef
