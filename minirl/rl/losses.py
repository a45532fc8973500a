"""Policy-gradient, PPO and Bradley–Terry losses as pure functions (MATH.md §2, §4).

Each loss takes Tensors for what is differentiated (log-probs, values, rewards) and
plain arrays for what is held fixed (advantages, old log-probs, masks: the sg(·) of
MATH.md), and returns ``(loss, stats)`` with `stats` a dict of floats for logging.
Host arrays are moved to the active backend on entry (the rule in `minirl.backend`).
Token losses are averaged over masked tokens: ``mean_m[x] = Σ_t m_t x_t / Σ_t m_t``.
"""

from __future__ import annotations

from minirl import backend
from minirl import functional as F
from minirl.indexing import where
from minirl.tensor import Tensor


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def _fixed(x):
    """A held-fixed input (advantages, old log-probs, a mask) as an array of the active backend."""
    return backend.to_backend(_data(x))


def check_finite(loss: Tensor, what: str) -> None:
    """Stop before a NaN or inf loss reaches the optimizer (and, from there, every weight)."""
    value = loss.item()
    if value != value or value in (float("inf"), float("-inf")):
        raise FloatingPointError(f"the {what} loss is {value}; the update was skipped. Lower the learning rate, "
                                 "check the reward function, or raise the KL coefficient.")


def _same_shape(what: str, **arrays) -> None:
    shapes = {name: tuple(_data(a).shape) for name, a in arrays.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"{what}: inputs must share one shape, got " + ", ".join(f"{k} {v}" for k, v in shapes.items()))


def masked_mean(x, mask, axis=None):
    """``Σ m·x / Σ m`` over all entries (or along `axis`); 0 where nothing is masked in.

    Works on Tensors (differentiably) and on arrays.
    """
    x = x if isinstance(x, Tensor) else _fixed(x)
    m = _fixed(mask).astype(_data(x).dtype)
    xp = backend.get_array_module(m)
    return (x * m).sum(axis=axis) / xp.maximum(m.sum(axis=axis), 1.0)  # a device scalar: no host sync


def pg_loss(logprobs: Tensor, advantages, mask):
    """REINFORCE with a baseline (Williams 1992):
    ``L = −(1/Σm) Σ_t m_t · log π_θ(a_t|s_t) · sg(G_t − b_t)``; pass ``G − b`` as `advantages`."""
    _same_shape("pg_loss", logprobs=logprobs, advantages=advantages, mask=mask)
    loss = -masked_mean(logprobs * _fixed(advantages), mask)
    return loss, {"policy_loss": loss.item()}


def ppo_clip_per_token(logprobs: Tensor, old_logprobs, advantages, mask, clip_eps: float = 0.2,
                       clip_eps_high: float | None = None):
    """Per-token PPO clip terms ``−min(ρ_t A_t, clip(ρ_t, 1 − ε_low, 1 + ε_high) A_t)``, (B, T), and
    their diagnostics; `ppo_policy_loss` averages them, GRPO aggregates them its own ways."""
    _same_shape("ppo_policy_loss", logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages, mask=mask)
    eps_low, eps_high = clip_eps, clip_eps if clip_eps_high is None else clip_eps_high
    if not (0 < eps_low < 1 and eps_high > 0):
        raise ValueError(f"clip range needs 0 < clip_eps < 1 and clip_eps_high > 0, got {eps_low}, {eps_high}.")
    advantages, mask = _fixed(advantages), _fixed(mask)
    logratio = logprobs - _fixed(old_logprobs)
    ratio = logratio.exp()  # ρ_t
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * ratio.clip(1.0 - eps_low, 1.0 + eps_high)
    per_token = where(pg_losses_clipped.data > pg_losses.data, pg_losses_clipped, pg_losses)
    r, lr = ratio.data, logratio.data
    stats = {
        "approx_kl": float(masked_mean((r - 1.0) - lr, mask)),
        "clipfrac": float(masked_mean((r < 1.0 - eps_low) | (r > 1.0 + eps_high), mask)),
        "ratio_mean": float(masked_mean(r, mask)),
    }
    return per_token, stats


def ppo_policy_loss(logprobs: Tensor, old_logprobs, advantages, mask, clip_eps: float = 0.2,
                    clip_eps_high: float | None = None):
    """PPO's clipped surrogate (Schulman et al. 2017), with ``ρ_t = exp(log π_θ − log π_old)``:

    ``L_clip = −mean_m[min(ρ_t A_t, clip(ρ_t, 1 − ε_low, 1 + ε_high) A_t)]``

    written as the max of the two negated terms. `clip_eps_high` (default ε) gives DAPO's
    asymmetric clip. Diagnostics: ``approx_kl = mean_m[(ρ − 1) − log ρ]`` (k3 of π_old
    against π_θ, ≥ 0) and ``clipfrac = mean_m[ρ outside the clip range]``.
    """
    per_token, stats = ppo_clip_per_token(logprobs, old_logprobs, advantages, mask, clip_eps, clip_eps_high)
    loss = masked_mean(per_token, mask)
    stats["policy_loss"] = loss.item()
    return loss, stats


def ppo_value_loss(values: Tensor, old_values, returns, mask, clip_eps_v: float = 0.2):
    """PPO's clipped value loss:
    ``L_V = ½·mean_m[max((V − R)², (V_old + clip(V − V_old, −ε_v, ε_v) − R)²)]``."""
    _same_shape("ppo_value_loss", values=values, old_values=old_values, returns=returns, mask=mask)
    old_values, returns, mask = _fixed(old_values), _fixed(returns), _fixed(mask)
    clipped = old_values + (values - old_values).clip(-clip_eps_v, clip_eps_v)
    loss_unclipped = (values - returns) ** 2
    loss_clipped = (clipped - returns) ** 2
    loss = 0.5 * masked_mean(where(loss_clipped.data > loss_unclipped.data, loss_clipped, loss_unclipped), mask)
    stats = {"value_loss": loss.item(),
             "value_clipfrac": float(masked_mean(abs(values.data - old_values) > clip_eps_v, mask))}
    return loss, stats


def entropy(logits: Tensor, mask):
    """Mean policy entropy over masked tokens, ``mean_m[−Σ_v π(v|s_t) log π(v|s_t)]``, differentiable
    (PPO subtracts ``c_e·H`` to keep exploring)."""
    return masked_mean(F.entropy(logits), mask)  # (B, T, V) -> (B, T) -> ()


def explained_variance(values, returns, mask) -> float:
    """``1 − Var[R − V] / Var[R]`` over masked tokens: 1 is a perfect critic, ≤ 0 no better than a constant."""
    values, returns = _fixed(values), _fixed(returns)
    m = _fixed(mask).astype(bool)
    r, v = returns[m], values[m]
    var_r = float(r.var()) if r.size else 0.0
    return float("nan") if var_r == 0 else 1.0 - float((r - v).var()) / var_r


def bradley_terry_loss(r_chosen: Tensor, r_rejected: Tensor, margin: float = 0.0, center_coef: float = 0.0):
    """Reward-model loss on preference pairs (Bradley & Terry 1952; Ouyang et al. 2022):

    ``L = mean[−log σ(r_w − r_l − margin)] + c·mean[(r_w + r_l)²]``

    The centering term (c > 0) pins the reward's free offset near 0, since the first term
    only sees differences. Reports ``accuracy = mean[r_w > r_l]``.
    """
    _same_shape("bradley_terry_loss", r_chosen=r_chosen, r_rejected=r_rejected)
    diff = r_chosen - r_rejected  # (N,)
    loss = -F.log_sigmoid(diff - margin).mean()
    if center_coef:
        total = r_chosen + r_rejected
        loss = loss + center_coef * (total * total).mean()
    d = diff.data
    stats = {
        "bt_loss": loss.item(),
        "accuracy": float((d > 0).mean()),
        "margin_mean": float(d.mean()),
        "reward_chosen": float(r_chosen.data.mean()),
        "reward_rejected": float(r_rejected.data.mean()),
    }
    return loss, stats
