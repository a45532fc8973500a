"""Watch each RL algorithm find the exact answer, or miss it on purpose (MATH.md §12).

    python examples/bandit_oracle.py [ITERATIONS]

The problem is a one-step bandit that is a real GPT (`minirl.rl.bandit`): six one-token
responses with known rewards R. With β·KL(π ‖ π_ref) in the objective the optimum is
π* ∝ π_ref·exp(R/β). REINFORCE, PPO, RLOO and TRPO should land on it. GRPO should not:
its β·k3 term pulls toward the *forward* KL and its group mean shrinks R by (G−1)/G, so
(as dr_grpo, without std scaling) it settles at π = β·π_ref / (λ − c·R) instead.
"""

import argparse

import numpy as np

from minirl import backend, optim
from minirl.rl.advantages import RunningMeanBaseline
from minirl.rl.bandit import Bandit, total_variation
from minirl.rl.grpo import GRPOConfig, grpo_fixed_point, grpo_update
from minirl.rl.pg import PGConfig, reinforce_update
from minirl.rl.ppo import PPOConfig, ppo_update
from minirl.rl.rloo import RLOOConfig, rloo_update
from minirl.rl.trpo import TRPOConfig, trpo_update
from minirl.table import format_table

G = 4  # samples per prompt for RLOO and GRPO


def run(algo: str, bandit: Bandit, iterations: int) -> np.ndarray:
    """Train a fresh policy with `algo`; return its final distribution π(y)."""
    ref, policy = bandit.model(), bandit.model()
    opt = optim.AdamW(policy.parameters(), lr=0.02, weight_decay=0.0)
    rng, baseline = backend.rng(0), RunningMeanBaseline()
    for step in range(iterations):
        # Decay the step size: stochastic updates otherwise hover around the fixed point.
        opt.lr = optim.warmup_linear(step, max_lr=0.02, total_steps=iterations, min_lr=0.002)
        if algo == "REINFORCE":
            reinforce_update(policy, opt, bandit.rollout(policy, ref, rng), PGConfig(kl_coef=bandit.beta), baseline)
        elif algo == "PPO":
            ppo_update(policy, opt, bandit.rollout(policy, ref, rng), PPOConfig(kl_coef=bandit.beta, epochs=2,
                                                                               minibatch_size=128))
        elif algo == "RLOO":
            rloo_update(policy, opt, bandit.rollout(policy, ref, rng), RLOOConfig(k=G, kl_coef=bandit.beta))
        elif algo == "TRPO":
            max_kl = 0.02 * (1e-4 / 0.02) ** (step / max(1, iterations - 1))  # shrink δ as the lr decays
            trpo_update(policy, bandit.rollout(policy, ref, rng), TRPOConfig(max_kl=max_kl, kl_coef=bandit.beta))
        else:  # dr_grpo: KL in the loss, none in the reward
            grpo_update(policy, opt, bandit.rollout(policy, ref, rng, kl_coef=0.0),
                        GRPOConfig(group_size=G, beta=bandit.beta, loss_type="dr_grpo"), max_len=1)
    return bandit.distribution(policy)


def main(iterations: int = 200) -> dict:
    bandit = Bandit()
    pi_ref = bandit.distribution(bandit.model())
    pi_star = bandit.optimum(pi_ref)
    grpo_point = grpo_fixed_point(pi_ref, bandit.rewards, bandit.beta, G)
    print(f"R     = {np.round(bandit.rewards, 2)}\nπ_ref = {np.round(pi_ref, 3)}\nπ*    = {np.round(pi_star, 3)}")
    print(f"GRPO's fixed point = {np.round(grpo_point, 3)} (TV {total_variation(pi_star, grpo_point):.3f} from π*)\n")
    rows, results = [], {}
    for algo in ("REINFORCE", "PPO", "RLOO", "TRPO", "GRPO (dr_grpo)"):
        pi = run(algo, bandit, iterations)
        results[algo] = pi
        rows.append([algo, " ".join(f"{p:.3f}" for p in pi), total_variation(pi, pi_star),
                     total_variation(pi, grpo_point)])
    print(format_table(rows, ["algorithm", "final π", "TV to π*", "TV to GRPO's point"]))
    return results


def parse_args(argv=None) -> argparse.Namespace:
    """The command line: an optional count of updates per algorithm, at least 1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("iterations", nargs="?", type=int, default=200, help="updates per algorithm (default: 200)")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error(f"iterations must be at least 1, got {args.iterations} (with none, the untrained π_ref "
                     "would print as every final π)")
    return args


if __name__ == "__main__":
    main(parse_args().iterations)
