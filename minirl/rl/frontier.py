"""Reward against KL(π ‖ π_ref): an algorithm's frontier, and algorithms compared at matched KL.

Every RL method here trades reward for distance from the starting policy, and each has a
knob that sets how far it moves (β for the KL-penalised ones and DPO, the trust region δ for
TRPO, n for best-of-n). One run per knob value gives points (KL_i, R_i), KL_i the k1
estimate on the run's own samples (MATH.md §3). Two algorithms' rewards are comparable only
at the same KL (Gao, Schulman & Hilton 2022 plot every method against it; Rafailov et al.
2023, Fig. 2, compare DPO and PPO on the same reward-KL frontier), so each frontier is read
at a few common KLs:

    frontier:   sort the runs by KL, KL_(1) ≤ … ≤ KL_(m), and keep the running best
                R̃_(i) = max_{j ≤ i} R_(j)   (a run that earns less than one nearer to π_ref is
                dominated: the knob of the nearer run buys more reward for less KL)
    R(k)        = the straight line between the two frontier points around k, for
                  KL_(1) ≤ k ≤ KL_(m) only; outside its measured range a frontier says nothing
    per nat(k)  = (R(k) − R_sft) / k, the reward gained over the SFT model per nat of KL

At one k every algorithm pays the same KL, so the one with the highest R(k) also gains the
most reward per nat there.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _points(kls: Sequence[float], values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    kls, values = np.asarray(kls, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if kls.ndim != 1 or kls.shape != values.shape or len(kls) == 0:
        raise ValueError(f"a frontier needs one KL per value and at least one run; got {kls.shape} KLs and "
                         f"{values.shape} values.")
    if not (np.isfinite(kls).all() and np.isfinite(values).all()):
        raise ValueError(f"a frontier needs finite KLs and values; got KL {kls.tolist()}, values {values.tolist()}.")
    return kls, values


def frontier(kls: Sequence[float], rewards: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The monotone frontier through one algorithm's runs: distinct KLs ascending, and at each the best
    reward of any run at that KL or below (R̃_(i) = max_{j ≤ i} R_(j))."""
    kls, rewards = _points(kls, rewards)
    order = np.argsort(kls, kind="stable")
    k, r = kls[order], np.maximum.accumulate(rewards[order])  # (m,), (m,)
    last = np.append(k[1:] != k[:-1], True)  # of runs at one KL, the last holds their running best
    return k[last], r[last]


def through_runs(kls: Sequence[float], values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The runs' values in KL order, not made monotone (the mean where runs share a KL): the gold score
    under a proxy reward, whose fall with KL is what over-optimisation looks like."""
    kls, values = _points(kls, values)
    k, where = np.unique(kls, return_inverse=True)
    return k, np.bincount(where, weights=values) / np.bincount(where)


def read_at(k: np.ndarray, v: np.ndarray, at: Sequence[float]) -> list[float | None]:
    """Piecewise-linear v at each of `at`, between the points (k ascending); None outside [k_1, k_m]."""
    return [float(np.interp(a, k, v)) if k[0] <= a <= k[-1] else None for a in at]


def reward_at_kl(kls: Sequence[float], rewards: Sequence[float], at: Sequence[float]) -> list[float | None]:
    """R(k) of the frontier at each matched KL k; None where k is outside the runs' KLs."""
    return read_at(*frontier(kls, rewards), at)


def reward_per_nat(reward: float | None, sft_reward: float, kl: float) -> float | None:
    """(R(k) − R_sft) / k: reward gained over the starting model per nat of KL (None when R(k) is)."""
    if kl <= 0:
        raise ValueError(f"reward per nat needs a matched KL above 0, got {kl}.")
    return None if reward is None else (reward - sft_reward) / kl


def best_at(rewards: dict[str, float | None]) -> str | None:
    """The algorithm with the highest reward at one matched KL, among those whose frontier reaches it; None
    unless two or more reach it (a frontier alone there is compared with nothing, so it is best at nothing)."""
    reached = {name: r for name, r in rewards.items() if r is not None}
    return max(reached, key=reached.get) if len(reached) >= 2 else None
