"""Every RL algorithm from the same SFT model, the same reward and the same sampling budget.

    python -m minirl.examples.compare                  # all seven, ~10 min on a 2-core CPU
    python -m minirl.examples.compare --quick          # the --quick happy_gpt model, a small budget
    python -m minirl.examples.compare --algos ppo,grpo --token-budget 30000

It takes every flag of happy_gpt and shares its stages in --out: a finished happy_gpt
run's tokenizer, pretraining and SFT are reused, and each algorithm's run is a cached
stage too. Each algorithm stops once it has sampled `--token-budget` response tokens
(`RLConfig.max_sampled_tokens`). DPO spends its budget up front: pairs of SFT samples,
labelled once by an AI judge (the reward, RLAIF), then `--dpo-steps` steps on them;
best-of-n spends it on n samples per prompt per round. Then one table, from the same
prompts and seed for every model: reward, KL(π ‖ π_sft), distinct-2, wall time and
tokens sampled, written to <out>/compare/summary.json with a reward-against-KL plot.
Losing is allowed; the table is the point.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from minirl import backend
from minirl.examples.happy_gpt import exit_status, lock_out, open_out, parse_settings
from minirl.examples.pipeline import load_labelled_corpus, prepare, reward_function, run_rl
from minirl.examples.report import plot_reward_against_kl, sample_statistics
from minirl.examples.stages import StageCache, write_atomic
from minirl.rl.trainer import ALGOS
from minirl.table import format_table

OUTPUTS = ("compare/summary.json", "compare/reward_vs_kl.png")
"""what a run writes in --out; an earlier run's are moved aside as *.previous.*"""


def budgeted(rl, algo: str, token_budget: int, dpo_steps: int):
    """The RL config of one algorithm under the shared budget of sampled response tokens. DPO spends
    it up front, on pairs of SFT samples for the judge, then takes `dpo_steps` steps on them."""
    if algo == "dpo":
        return dataclasses.replace(rl, algo=algo, iterations=dpo_steps, max_sampled_tokens=token_budget)
    return dataclasses.replace(rl, algo=algo, iterations=100_000, max_sampled_tokens=token_budget)


def compare(settings, algos: list[str], token_budget: int, dpo_steps: int) -> dict:
    cfg = settings.run
    backend.use(cfg.backend)
    corpus = load_labelled_corpus(settings.data, need_negative=cfg.reward == "rm")  # before --out is touched
    with lock_out(cfg.out):
        return _compare(settings, corpus, algos, token_budget, dpo_steps)


def _compare(settings, corpus, algos: list[str], token_budget: int, dpo_steps: int) -> dict:
    cfg = settings.run
    out = open_out(cfg.out, OUTPUTS)
    cache = StageCache(out)
    base = prepare(cache, settings.data, settings.model, settings.pretrain, settings.sft, cfg.seed, cfg.eval_samples,
                   corpus=corpus)
    reward_fn, reward_stage = reward_function(cache, base, cfg.reward, settings.rm, cfg.rm_pairs,
                                              settings.rl.max_new_tokens, cfg.seed)
    max_new_tokens = settings.rl.max_new_tokens
    start = sample_statistics(base.sft, base.sft, base.eval_prompts, base.tokenizer, reward_fn, max_new_tokens,
                              cfg.seed + 777)
    rows = [{"algo": "sft (start)", **{k: v for k, v in start.items() if k != "texts"}, "seconds": 0.0,
             "sampled_tokens": 0}]
    for algo in algos:
        rl_cfg = budgeted(settings.rl, algo, token_budget, dpo_steps)
        policy, _, info = run_rl(cache, base, rl_cfg, reward_fn, reward_stage, cfg.reward, cfg.seed,
                                 label=f"compare_{algo}")
        stats = sample_statistics(policy, base.sft, base.eval_prompts, base.tokenizer, reward_fn, max_new_tokens,
                                  cfg.seed + 777)
        stats.pop("texts")
        rows.append({"algo": algo, **stats, "seconds": info["seconds"], "sampled_tokens": info["sampled_tokens"],
                     "iterations": info["iterations"], "cached": base.records[-1].status == "cached"})
    table = format_table([[r["algo"], r["reward"], r["fraction_positive"], r["kl_to_sft"], r["distinct_2"],
                           r["response_length"], r["sampled_tokens"], r["seconds"]] for r in rows],
                         ["algorithm", "reward", "frac. positive", "KL to SFT", "distinct-2", "length",
                          "tokens sampled", "seconds"])
    print(f"\n{cfg.reward} reward, budget {token_budget:,} sampled tokens, {cfg.eval_samples} evaluation samples each\n")
    print(table)
    folder = out / "compare"
    folder.mkdir(exist_ok=True)
    plot = plot_reward_against_kl(rows, folder / "reward_vs_kl.png")
    summary = {"config": dataclasses.asdict(settings), "algos": algos, "token_budget": token_budget,
               "dpo_steps": dpo_steps, "rows": rows, "plot": str(plot) if plot else None}
    write_atomic(folder / "summary.json", json.dumps(summary, indent=2))
    print(f"\nwrote {folder / 'summary.json'}" + (f", {plot}" if plot else ""))
    return summary


def add_compare_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("compare options")
    group.add_argument("--algos", default=",".join(ALGOS), help=f"comma-separated, from {', '.join(ALGOS)}")
    group.add_argument("--token-budget", type=int, default=None,
                       help="response tokens each algorithm may sample (default 60000; 12000 with --quick)")
    group.add_argument("--dpo-steps", type=int, default=None, help="DPO steps on its judged pairs "
                       "(default: --rl-iterations)")


def main(argv=None) -> int:
    def work():
        settings, args = parse_settings(argv, "python -m minirl.examples.compare", __doc__.split("\n")[0],
                                        extra=add_compare_flags)
        algos = [a.strip() for a in args.algos.split(",") if a.strip()]
        unknown = [a for a in algos if a not in ALGOS]
        if unknown or not algos:
            raise ValueError(f"unknown --algos {', '.join(unknown) or repr(args.algos)}; choose from {', '.join(ALGOS)}.")
        budget = args.token_budget if args.token_budget is not None else (12_000 if args.quick else 60_000)
        if budget < 1:
            raise ValueError(f"--token-budget must be positive, got {budget}.")
        if args.dpo_steps is not None and args.dpo_steps < 1:
            raise ValueError(f"--dpo-steps must be positive, got {args.dpo_steps}.")
        compare(settings, algos, budget, args.dpo_steps or settings.rl.iterations)
    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
