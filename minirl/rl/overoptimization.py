"""Reward over-optimisation (Gao, Schulman & Hilton 2022, arXiv 2210.10760; MATH.md §8).

A proxy reward R̂ (a reward model trained on labels from a gold reward R*) is optimised
and R* is measured, against the distance from the start ``d = √KL(π ‖ π_init)``.

- Best-of-n from π_init has ``KL_bon(n) = log n − (n − 1)/n`` (`best_of_n_kl`): exact
  for continuous scores, an upper bound when scores can tie (Beirami et al. 2024).
  `best_of_n_exact_kl` enumerates ``P_bon(y) = F(y)^n − (F(y) − π(y))^n`` instead.
- `best_of_n_means` estimates E[R* of the proxy's best of n] for every n from one pool of
  N ≥ n scored samples, without resampling: the mean over all C(N, n) subsets (below).
- The paper's fits of the gold score, relative to its value at d = 0:
  best-of-n ``R*(d) = d·(α − β·d)``, RL ``R*(d) = d·(α − β·log d)`` (`fit_gold_curve`).
  Both are linear in (α, β), so ordinary least squares fits them exactly.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

FORMS = ("bon", "rl")


def best_of_n_kl(n) -> np.ndarray:
    """``KL(π_bon ‖ π_init) = log n − (n − 1)/n`` nats, for n ≥ 1 (0 at n = 1)."""
    n = np.asarray(n, dtype=np.float64)
    if np.any(n < 1):
        raise ValueError(f"best-of-n needs n >= 1, got {n}.")
    return np.log(n) - (n - 1) / n


def best_of_n_exact_kl(pi_ref: np.ndarray, rewards: np.ndarray, n: int) -> float:
    """Exact ``KL(P_bon ‖ π_ref)`` over a finite support with distinct rewards (MATH.md §12):
    order the outcomes by R, ``F(y) = Σ_{R(y') ≤ R(y)} π_ref(y')``, ``P_bon = F^n − (F − π_ref)^n``."""
    pi_ref, rewards = np.asarray(pi_ref, dtype=np.float64), np.asarray(rewards, dtype=np.float64)
    if len(np.unique(rewards)) != len(rewards):
        raise ValueError("best_of_n_exact_kl needs distinct rewards; with ties the best of n is not one outcome.")
    order = np.argsort(rewards)
    p = pi_ref[order]  # (K,) in increasing reward
    F = np.cumsum(p)
    p_bon = F ** n - np.clip(F - p, 0.0, None) ** n  # (K,)
    keep = p_bon > 0
    return float(np.sum(p_bon[keep] * np.log(p_bon[keep] / p[keep])))


def best_of_n_weights(N: int, n: int) -> np.ndarray:
    """w_i = C(i, n−1) / C(N, n) for the pool sorted by proxy ascending (i = 0..N−1): the chance that
    sample i is the best of a uniformly drawn n-subset of the N. The weights sum to 1."""
    if not 1 <= n <= N:
        raise ValueError(f"best-of-{n} from a pool of {N} samples needs 1 <= n <= N; raise the pool size.")
    i = np.arange(N, dtype=np.float64)
    log_w = np.full(N, -np.inf)
    ok = i >= n - 1
    lgamma = np.vectorize(math.lgamma)
    log_w[ok] = (lgamma(i[ok] + 1) - lgamma(n) - lgamma(i[ok] - n + 2)) \
        - (math.lgamma(N + 1) - math.lgamma(n + 1) - math.lgamma(N - n + 1))
    return np.exp(log_w)


def best_of_n_means(proxy: Sequence[float], gold: Sequence[float], ns: Sequence[int]) -> dict:
    """For each n: the mean proxy and gold score of the proxy's best of n, averaged over every
    n-subset of the pool, ``Σ_i w_i·R(y_(i))`` with y sorted by proxy (`best_of_n_weights`).
    Equal proxy scores are ordered by their place in the pool."""
    proxy, gold = np.asarray(proxy, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if proxy.shape != gold.shape or proxy.ndim != 1:
        raise ValueError(f"proxy and gold must be flat and the same length, got {proxy.shape} and {gold.shape}.")
    order = np.argsort(proxy, kind="stable")
    weights = np.stack([best_of_n_weights(len(proxy), n) for n in ns])  # (len(ns), N)
    return {"n": [int(n) for n in ns], "kl": best_of_n_kl(ns).tolist(),
            "proxy": (weights @ proxy[order]).tolist(), "gold": (weights @ gold[order]).tolist()}


def _design(d: np.ndarray, form: str) -> np.ndarray:
    """Columns multiplying (α, β): bon ``[d, −d²]``, rl ``[d, −d·log d]``."""
    if form == "bon":
        return np.stack([d, -d * d], axis=1)
    if form == "rl":
        return np.stack([d, -d * np.log(d)], axis=1)
    raise ValueError(f"unknown fit form {form!r}; choose one of {', '.join(FORMS)}.")


def gold_curve(d, alpha: float, beta: float, form: str) -> np.ndarray:
    """The paper's gold score at distance d: bon ``d(α − βd)``, rl ``d(α − β log d)`` (0 at d = 0)."""
    d = np.asarray(d, dtype=np.float64)
    safe = np.where(d > 0, d, 1.0)
    return np.where(d > 0, _design(safe.reshape(-1), form) @ np.array([alpha, beta]), 0.0).reshape(d.shape)


def fit_gold_curve(d, gold, form: str) -> dict:
    """Least-squares (α, β) of ``gold ≈ gold_curve(d, α, β, form)``; gold is relative to d = 0.

    Points at d = 0 carry no information (both columns vanish) and are dropped. Returns α, β,
    the fit's R² (1 − SS_res/SS_tot about the mean), its RMSE, the number of points, and the
    peak: bon ``d* = α/(2β)``, rl ``d* = exp(α/β − 1)`` (None when β ≤ 0: no peak).
    """
    d, gold = np.asarray(d, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    keep = d > 0
    d, gold = d[keep], gold[keep]
    if len(d) < 2:
        raise ValueError(f"fitting the {form} form needs at least 2 points with KL > 0, got {len(d)}; "
                         "evaluate more checkpoints or more values of n.")
    X = _design(d, form)  # (P, 2)
    (alpha, beta), *_ = np.linalg.lstsq(X, gold, rcond=None)
    residual = gold - X @ np.array([alpha, beta])
    ss_tot = float(np.sum((gold - gold.mean()) ** 2))
    peak = None
    if beta > 0:
        peak = alpha / (2 * beta) if form == "bon" else math.exp(min(alpha / beta - 1, 700.0))
    return {"form": form, "alpha": float(alpha), "beta": float(beta),
            "r2": 1 - float(np.sum(residual ** 2)) / ss_tot if ss_tot > 0 else float("nan"),
            "rmse": float(np.sqrt(np.mean(residual ** 2))), "points": int(len(d)), "peak_d": peak}


def gold_falls(gold: Sequence[float], stderr: Sequence[float] | None = None) -> bool:
    """True when the gold score's last point lies below its peak by more than the peak's and the
    last point's standard errors together (or at all, without errors): it rose and came down."""
    gold = np.asarray(gold, dtype=np.float64)
    top = int(np.argmax(gold))
    if top == len(gold) - 1:
        return False
    margin = 0.0 if stderr is None else float(np.asarray(stderr)[top] + np.asarray(stderr)[-1])
    return bool(gold[top] - gold[-1] > margin)
