"""DPO's implicit reward against the true one, on a bandit whose answer is known (MATH.md §6, §12).

    python examples/dpo_implicit_reward.py [STEPS]

The bandit (`minirl.rl.bandit`) is a real GPT whose six one-token responses y have known
rewards R(y). The KL-regularised objective E_π[R] − β·KL(π ‖ π_ref) is maximised by

    π*(y) = π_ref(y)·exp(R(y)/β) / Z,   so   R(y) = β·log(π*(y)/π_ref(y)) + β·log Z.

Pairs (y1, y2) ~ π_ref × π_ref are labelled y1 ≻ y2 with the Bradley–Terry probability
σ(R(y1) − R(y2)). Put the reward above into that likelihood and β·log Z cancels, leaving
the DPO loss (Rafailov et al. 2023) on the log-ratio margin

    h = [log π_θ(y_w) − log π_ref(y_w)] − [log π_θ(y_l) − log π_ref(y_l)],   L = −log σ(β·h).

Its minimiser is the maximum-likelihood Bradley–Terry fit of the pairs, which tends to R
as the pairs grow: the implicit reward β·log(π_θ/π_ref) equals R up to one constant, and
π_θ equals π*. Both are centred in the table, since only differences of rewards are seen.
"""

import argparse

import numpy as np

from minirl.data import PreferencePair
from minirl.rl.bandit import Bandit, total_variation
from minirl.rl.dpo import DPOConfig, train_dpo
from minirl.table import format_table

BETA = 0.5  # β, the KL price of the objective and of the DPO loss


def bradley_terry_pairs(bandit: Bandit, pi_ref: np.ndarray, n_pairs: int, seed: int = 0) -> list[PreferencePair]:
    """Pairs of distinct responses drawn from π_ref, the winner drawn with P(y1 ≻ y2) = σ(R(y1) − R(y2))."""
    rng, R = np.random.default_rng(seed), bandit.rewards
    draws = rng.choice(len(R), size=(2 * n_pairs, 2), p=pi_ref / pi_ref.sum())  # (2N, 2)
    y1, y2 = draws[draws[:, 0] != draws[:, 1]][:n_pairs].T  # equal responses state no preference
    first_wins = rng.random(len(y1)) < 1.0 / (1.0 + np.exp(R[y2] - R[y1]))
    winners, losers = np.where(first_wins, y1, y2), np.where(first_wins, y2, y1)
    return [PreferencePair([bandit.eot_id], [int(w)], [int(l)]) for w, l in zip(winners, losers)]


def main(steps: int = 300, n_pairs: int = 8000) -> dict:
    bandit = Bandit(beta=BETA, sharpness=3.0)  # a soft π_ref, so every response appears in many pairs
    ref, policy = bandit.model(), bandit.model()
    pi_ref = bandit.distribution(ref)
    pairs = bradley_terry_pairs(bandit, pi_ref, n_pairs)
    train_dpo(policy, ref, pairs, DPOConfig(beta=BETA, steps=steps, batch_size=512, lr=0.05), progress=False)
    pi = bandit.distribution(policy)
    implicit = BETA * np.log(pi / pi_ref)  # β·log(π_θ/π_ref), one per response
    implicit, reward = implicit - implicit.mean(), bandit.rewards - bandit.rewards.mean()
    pearson = float(np.corrcoef(implicit, reward)[0, 1])
    pi_star = bandit.optimum(pi_ref)
    rows = [[y, float(pi_ref[y]), float(pi[y]), float(pi_star[y]), float(reward[y]), float(implicit[y])]
            for y in range(len(reward))]
    print(f"DPO on {len(pairs)} Bradley–Terry pairs, β = {BETA}, {steps} steps\n")
    print(format_table(rows, ["y", "π_ref", "π_θ", "π*", "R (centred)", "β·log(π_θ/π_ref) (centred)"]))
    print(f"\nPearson(implicit, R) = {pearson:.4f}   max |implicit − R| = {np.abs(implicit - reward).max():.3f}"
          f"   TV(π_θ, π*) = {total_variation(pi, pi_star):.3f}")
    return {"pearson": pearson, "implicit": implicit, "reward": reward, "pi": pi, "pi_star": pi_star}


def parse_args(argv=None) -> argparse.Namespace:
    """The command line: an optional count of DPO steps, at least 1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("steps", nargs="?", type=int, default=300, help="DPO steps (default: 300)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"steps must be at least 1, got {args.steps} (with none, π_θ would stay π_ref)")
    return args


if __name__ == "__main__":
    main(parse_args().steps)
