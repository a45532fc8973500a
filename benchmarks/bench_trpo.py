"""The time of one TRPO update against one PPO update on the same rollout, on the default card.

    python benchmarks/bench_trpo.py [--rounds R] [--batch B] [--new-tokens N] [--backend numpy|cupy]
                                    [--quick] [--json PATH]

One rollout is sampled from a GPT of the default card (4 layers, 3 heads, n_embd 128, vocab
2048, random weights) at happy_gpt's default RL settings: 64 prompts, 40 new tokens, β = 0.05,
no value model. Then, R rounds in turn, the same policy (its weights restored before every
update, so π_old is the policy that sampled) takes
  trpo  one `trpo_update` at TRPOConfig's defaults (10 conjugate-gradient products, line search);
  ppo   one `ppo_update` at happy_gpt's settings (2 epochs of minibatches of 32, AdamW).
The table gives each update's median and fastest time and the ratio trpo/ppo per round
(median and range): the two take turns, so a neighbour's load lands on both.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import minirl  # noqa: F401  (first: it sets OPENBLAS_THREAD_TIMEOUT before numpy loads OpenBLAS)
import numpy as np

from minirl import backend, optim
from minirl.model import GPT, GPTConfig
from minirl.rl.ppo import PPOConfig, ppo_update
from minirl.rl.rollout import collect_rollout
from minirl.rl.trpo import TRPOConfig, trpo_update
from minirl.table import format_table

PROMPT_LEN = 8


def _sync():
    if backend.name() == "cupy":
        backend.xp().cuda.Device().synchronize()


def setup(batch: int, new_tokens: int, model: GPTConfig):
    """A policy of the card, its starting weights, and one rollout it sampled (the reward: count of even ids)."""
    backend.manual_seed(0)
    policy, ref = GPT(model).eval(), GPT(model).eval()
    ref.load_state_dict(policy.state_dict())
    prompts = np.random.default_rng(0).integers(0, model.vocab_size - 1, (batch, PROMPT_LEN)).tolist()
    rollout = collect_rollout(policy, prompts, lambda texts: [t.split().count("0") / 10 for t in texts],
                              ref_model=ref, decode=lambda ids: " ".join(str(i % 2) for i in ids),
                              eot_id=model.vocab_size - 1, max_new_tokens=new_tokens, kl_coef=0.05,
                              rng=backend.rng(0))
    return policy, policy.state_dict(), rollout


def measure(rounds: int, batch: int, new_tokens: int, model: GPTConfig) -> dict:
    """Seconds per update, one list per algorithm, trpo and ppo alternating; plus TRPO's last stats."""
    policy, start, rollout = setup(batch, new_tokens, model)
    opt = optim.AdamW(policy.parameters(), lr=2e-4, weight_decay=0.0)
    updates = {"trpo": lambda: trpo_update(policy, rollout, TRPOConfig(kl_coef=0.05)),
               "ppo": lambda: ppo_update(policy, opt, rollout, PPOConfig(kl_coef=0.05, epochs=2, minibatch_size=32),
                                         rng=np.random.default_rng(0))}
    seconds, stats = {name: [] for name in updates}, {}
    for r in range(rounds + 1):  # round 0 warms up and is not counted
        for name, update in updates.items():
            policy.load_state_dict(start)
            t0 = time.perf_counter()
            out = update()
            _sync()
            if r > 0:
                seconds[name].append(time.perf_counter() - t0)
            if name == "trpo":
                stats = out
    trpo_stats = {k: float(stats[k]) for k in ("kl", "backtracks", "cg_residual", "surrogate_after")}
    return {"seconds": seconds, "trpo_stats": trpo_stats,
            "response_tokens": int(backend.to_numpy(rollout.response_mask).sum())}


def rows(result: dict) -> list[list]:
    seconds = result["seconds"]
    ratios = np.array(seconds["trpo"]) / np.array(seconds["ppo"])
    ratio = f"{np.median(ratios):.2f}x ({ratios.min():.2f}-{ratios.max():.2f})"
    return [[name, round(float(np.median(s)), 3), round(min(s), 3), ratio if name == "trpo" else ""]
            for name, s in seconds.items()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds of trpo then ppo (after one warm-up)")
    parser.add_argument("--batch", type=int, default=64, help="prompts in the rollout (happy_gpt's default: 64)")
    parser.add_argument("--new-tokens", type=int, default=40, help="tokens sampled per prompt (default: 40)")
    parser.add_argument("--backend", default="numpy", choices=("numpy", "cupy"), help="array backend")
    parser.add_argument("--quick", action="store_true", help="a smoke test: a 1-layer model, 8 prompts, 1 round")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if min(args.rounds, args.batch, args.new_tokens) < 1:
        parser.error("--rounds, --batch and --new-tokens must each be at least 1")
    if args.backend == "cupy" and not backend.cupy_available():
        print("bench_trpo: the cupy backend was requested but no GPU is usable here; use --backend numpy.",
              file=sys.stderr)
        return 2
    backend.use(args.backend)
    model = GPTConfig(n_layer=1, vocab_size=256, block_size=32) if args.quick else GPTConfig()
    batch, new_tokens, rounds = (8, 8, 1) if args.quick else (args.batch, args.new_tokens, args.rounds)
    result = measure(rounds, batch, new_tokens, model)
    print(f"one update on {batch} prompts x {new_tokens} new tokens ({result['response_tokens']} response tokens), "
          f"{args.backend}, {rounds} rounds; {platform.processor() or platform.machine()}")
    print(format_table(rows(result), ["update", "median s", "min s", "trpo / ppo (range)"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": args.backend, "batch": batch, "new_tokens": new_tokens, "rounds": rounds,
                       "config": model.to_dict(), **result}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
