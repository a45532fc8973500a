"""Returns, GAE and whitening over masked tokens (MATH.md §3, §4).

All arrays are (B, T) on the token grid of a rollout: column t describes token t.
A mask m_t marks the tokens that are actions (the response). Masked-out columns
(prompt, padding, anything after EOT) are not steps: a recursion passes straight
through them, so "the next step" after t is the next masked column.
Host arrays are moved to the active backend on entry (the rule in `minirl.backend`).
"""

from __future__ import annotations

from minirl import backend


def _check(mask, *arrays) -> None:
    for a in arrays:
        if a.shape != mask.shape:
            raise ValueError(f"expected arrays of the mask's shape {mask.shape}, got {a.shape}.")


def discounted_returns(rewards, mask, gamma: float = 1.0):
    """Reward-to-go ``G_t = Σ_{k≥t} γ^{k−t} r_k`` over masked steps; 0 where m_t = 0."""
    rewards, mask = backend.to_backend(rewards), backend.to_backend(mask)
    _check(mask, rewards)
    xp = backend.get_array_module(rewards)
    m = mask.astype(bool)
    returns = xp.zeros_like(rewards)
    running = xp.zeros(rewards.shape[0], dtype=rewards.dtype)  # (B,) return of the next step
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = xp.where(m[:, t], rewards[:, t] + gamma * running, running)
        returns[:, t] = xp.where(m[:, t], running, 0)
    return returns


def td_residuals(rewards, values, mask, gamma: float = 1.0):
    """``δ_t = r_t + γ V(s_{t+1}) − V(s_t)``, with ``V(s_{T+1}) = 0`` after the last step; 0 where m_t = 0."""
    rewards, values, mask = backend.to_backend(rewards), backend.to_backend(values), backend.to_backend(mask)
    _check(mask, rewards, values)
    xp = backend.get_array_module(rewards)
    m = mask.astype(bool)
    deltas = xp.zeros_like(rewards)
    next_value = xp.zeros(rewards.shape[0], dtype=rewards.dtype)  # (B,) V(s_{t+1})
    for t in range(rewards.shape[1] - 1, -1, -1):
        deltas[:, t] = xp.where(m[:, t], rewards[:, t] + gamma * next_value - values[:, t], 0)
        next_value = xp.where(m[:, t], values[:, t], next_value)
    return deltas


def gae(rewards, values, mask, gamma: float = 1.0, lam: float = 0.95):
    """Generalised advantage estimation (Schulman et al. 2016); returns ``(advantages, returns)``.

    ``A_t = Σ_{l≥0} (γλ)^l δ_{t+l}`` over the TD residuals δ (`td_residuals`), computed
    backwards as ``A_t = δ_t + γλ A_{t+1}``, and the value targets ``R_t = A_t + V(s_t)``.
    Vectorised over the batch; a loop over T.
    """
    rewards, values, mask = backend.to_backend(rewards), backend.to_backend(values), backend.to_backend(mask)
    xp = backend.get_array_module(rewards)
    m = mask.astype(bool)
    deltas = td_residuals(rewards, values, mask, gamma)
    advantages = xp.zeros_like(rewards)
    next_advantage = xp.zeros(rewards.shape[0], dtype=rewards.dtype)  # (B,) A_{t+1}
    for t in range(rewards.shape[1] - 1, -1, -1):
        next_advantage = xp.where(m[:, t], deltas[:, t] + gamma * lam * next_advantage, next_advantage)
        advantages[:, t] = xp.where(m[:, t], next_advantage, 0)
    returns = xp.where(m, advantages + values, 0)
    return advantages, returns


def whiten(x, mask, shift_mean: bool = True, eps: float = 1e-8):
    """``(x − mean) / std`` over the masked entries of the whole batch; 0 where m_t = 0.

    With ``shift_mean=False`` only the scale changes, keeping the sign of every advantage.
    """
    x, mask = backend.to_backend(x), backend.to_backend(mask)
    _check(mask, x)
    xp = backend.get_array_module(x)
    m = mask.astype(x.dtype)
    count = float(m.sum())
    if count == 0:
        return xp.zeros_like(x)
    mean = float((x * m).sum()) / count
    var = float((((x - mean) * m) ** 2).sum()) / count
    out = (x - mean) if shift_mean else x
    return out / (var ** 0.5 + eps) * m


class RunningMeanBaseline:
    """``b = running mean of the sequence scores R`` (an exponential moving average),
    the simplest REINFORCE baseline: it lowers variance without biasing the gradient
    because it does not depend on the sampled action."""

    def __init__(self, momentum: float = 0.9):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}.")
        self.momentum, self.value, self.count = momentum, 0.0, 0

    def update(self, scores) -> float:
        """Return the baseline for this batch (the mean of earlier batches; 0 for the first),
        then fold this batch's mean score in."""
        batch_mean = float(scores.mean())
        baseline = self.value
        self.value = batch_mean if self.count == 0 else self.momentum * self.value + (1 - self.momentum) * batch_mean
        self.count += 1
        return baseline
