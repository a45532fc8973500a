"""Every RL algorithm on its reward-versus-KL frontier, compared at matched KL.

    python -m minirl.examples.frontier                 # 7 algorithms × 3–4 knob values (see FrontierConfig)
    python -m minirl.examples.frontier --quick         # happy_gpt's --quick model, 2 values each, a small budget
    python -m minirl.examples.frontier --frontier-algos ppo,dpo --frontier-ppo 0.2,0.05 --reward rlaif

`compare` runs each algorithm once with its defaults, so they land at very different KLs
and their rewards say little about which is better. Here each algorithm's knob that sets
how far it moves from the SFT model is swept: β (the KL price) for pg, ppo, rloo, grpo
(its k3 term in the loss) and dpo, the trust region δ for trpo, n for best-of-n. Every run
starts from the same SFT model with the same reward, prompts, seed and budget of sampled
response tokens (compare's `budgeted`), and is a cached, resumable stage sharing
happy_gpt's stages in --out; so is its evaluation (`frontier_eval`): reward, KL(π ‖ π_sft)
on its own samples, length, distinct-2, and the gold score, VADER, on the same samples when
the reward is a proxy (--reward rm or rlaif). Each algorithm's frontier is read at
`--frontier-matched-kls` (`minirl.rl.frontier`), and the report says which gives the most
reward per nat there.
Writes <out>/frontier/summary.json, table.txt and frontier.png (with matplotlib).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass

from minirl import backend
from minirl.cli import add_dataclass_args, from_args
from minirl.examples.compare import budgeted
from minirl.examples.frontier_report import closest_runs, plot_frontier, print_frontier, tables, verdict
from minirl.examples.happy_gpt import exit_status, lock_out, open_out, parse_settings
from minirl.examples.pipeline import load_labelled_corpus, prepare, reward_function, rl_stage, run_rl, run_stage
from minirl.examples.report import sample_statistics
from minirl.examples.stages import StageCache, write_atomic
from minirl.rl.frontier import best_at, frontier, read_at, reward_per_nat, through_runs
from minirl.rl.trainer import ALGOS
from minirl.validation import check_ranges

OUTPUTS = ("frontier/summary.json", "frontier/table.txt", "frontier/frontier.png")
"""what a sweep writes in --out; an earlier sweep's are moved aside as *.previous.*"""

KNOBS = {"pg": ("pg", "kl_coef", "β"), "ppo": ("ppo", "kl_coef", "β"), "rloo": ("rloo", "kl_coef", "β"),
         "trpo": ("trpo", "max_kl", "δ"), "grpo": ("grpo", "beta", "β"), "best_of_n": ("best_of_n", "n", "n"),
         "dpo": ("dpo", "beta", "β")}
"""algorithm -> (its section of RLConfig, the field swept, the symbol printed)"""


@dataclass
class FrontierConfig:
    algos: str = ",".join(ALGOS)
    """comma-separated algorithms to sweep, from pg, ppo, grpo, rloo, trpo, best_of_n, dpo"""
    pg: str = "0.2,0.05,0.01,0"
    """REINFORCE's β (--rl-pg-kl-coef), the KL price per token in the reward, one run each; 0 puts no price
    on KL at all (the farthest run)"""
    ppo: str = "0.2,0.05,0.01,0"
    """PPO's β (--rl-ppo-kl-coef), the KL price per token in the reward"""
    grpo: str = "1,0.3,0.1,0.03"
    """GRPO's β (--rl-grpo-beta), the weight of its k3 KL term in the loss (its reward carries no KL)"""
    rloo: str = "0.2,0.05,0.01,0"
    """RLOO's β (--rl-rloo-kl-coef), the KL price per token in the reward"""
    trpo: str = "0.005,0.02,0.08"
    """TRPO's trust region δ (--rl-trpo-max-kl), the most mean per-token KL one update may move; its β stays
    at --rl-trpo-kl-coef. Not β: δ bounds every step, so β = 0.2 … 0 all stayed within 2.4–3.9 nats at
    δ = 0.01. Three values, not four, because TRPO's runs are the slowest"""
    best_of_n: str = "4,6,8"
    """best-of-n's n (--rl-best-of-n-n): samples per prompt in each round, the best one fine-tuned on. On a
    fixed budget a larger n means fewer rounds, so KL falls as n grows; n ≥ 16 passes a 30,000-token
    budget by a whole round (64 × 16 responses)"""
    dpo: str = "0.5,0.1,0.03,0.01"
    """DPO's β (--rl-dpo-beta): small lets π drift far from π_ref, large keeps it close; its steps
    (--frontier-dpo-steps) bound how far it gets"""
    token_budget: int = 30_000
    """response tokens each run may sample: half of compare's 60,000, so the 26 runs fit in 30 min on 2 cores"""
    dpo_steps: int | None = None
    """DPO steps on its judged pairs (default: --rl-iterations)"""
    matched_kls: str = "2,4,8,16"
    """comma-separated KLs (nats per response) at which every frontier is read and compared"""

    def __post_init__(self):
        check_ranges(self, token_budget="[1, inf)", dpo_steps="[1, inf)")

    def check(self) -> None:
        """Parse every sweep flag, so a typo is refused before any stage runs."""
        for algo in self.chosen():
            self.values(algo)
        self.matched()

    def chosen(self) -> list[str]:
        algos = [a.strip() for a in self.algos.split(",") if a.strip()]
        unknown = [a for a in algos if a not in ALGOS]
        if unknown or not algos:
            raise ValueError(f"unknown --frontier-algos {', '.join(unknown) or repr(self.algos)}; choose from "
                             f"{', '.join(ALGOS)}.")
        return algos

    def values(self, algo: str) -> list:
        """The knob values of `algo`, parsed and range-checked, each naming its flag when it is wrong."""
        flag, raw = f"--frontier-{algo.replace('_', '-')}", getattr(self, algo)
        kind = int if algo == "best_of_n" else float
        try:
            values = [kind(v) for v in raw.split(",") if v.strip()]
        except ValueError:
            values = []
        low = 1 if algo == "best_of_n" else 0
        positive = algo in ("dpo", "trpo")
        if not values or min(values) < low or (positive and min(values) <= 0):
            symbol = KNOBS[algo][2]
            what = ("whole numbers n >= 1" if algo == "best_of_n" else f"positive {symbol}s" if positive
                    else f"{symbol}s >= 0")
            raise ValueError(f"{flag} {raw!r} must be comma-separated {what}, e.g. {flag} "
                             f"{getattr(FrontierConfig, algo)}.")
        return values

    def matched(self) -> list[float]:
        try:
            kls = [float(v) for v in self.matched_kls.split(",") if v.strip()]
        except ValueError:
            kls = []
        if not kls or min(kls) <= 0:
            raise ValueError(f"--frontier-matched-kls {self.matched_kls!r} must be comma-separated KLs above 0 "
                             "(nats per response), e.g. --frontier-matched-kls 2,5,10.")
        return sorted(kls)


QUICK_FRONTIER = FrontierConfig(pg="0.2,0", ppo="0.2,0", grpo="1,0.03", rloo="0.2,0", trpo="0.01,0.05", best_of_n="2,4",
                                dpo="0.5,0.02", token_budget=2500, dpo_steps=10, matched_kls="0.3,0.5,1")
"""--quick: two values each and a small budget; a smoke run of the machinery, whose KLs stay within a few nats"""


def with_knob(rl, algo: str, value):
    """`rl` with the swept field of `algo` set to `value`."""
    section, name, _ = KNOBS[algo]
    return dataclasses.replace(rl, **{section: dataclasses.replace(getattr(rl, section), **{name: value})})


def evaluate(cache, base, stage, policy, reward_fn, proxy: bool, max_new_tokens: int, seed: int) -> dict:
    """One run measured on its own samples (the same prompts and seed for every run), as a cached stage."""
    settings = {"eval_prompts": base.eval_prompts[:50], "eval_samples": len(base.eval_prompts), "seed": seed,
                "max_new_tokens": max_new_tokens, "gold": "vader" if proxy else None}
    eval_stage = cache.stage("frontier_eval", settings, [stage])

    def measure():
        stats = sample_statistics(policy, base.sft, base.eval_prompts, base.tokenizer, reward_fn, max_new_tokens,
                                  seed)
        figures = {"reward": stats["reward"], "gold": stats["vader"] if proxy else None,
                   "kl_to_sft": stats["kl_to_sft"], "response_length": stats["response_length"],
                   "distinct_2": stats["distinct_2"], "fraction_positive": stats["fraction_positive"],
                   "samples": stats["texts"][:6]}
        write_atomic(eval_stage.path("eval.json"), json.dumps(figures, indent=2))
        return {}
    run_stage(cache, eval_stage, ["eval.json"], base.records, measure, seed=seed, resumable=())
    return json.loads(eval_stage.path("eval.json").read_text())


def sweep(cache, base, settings, fcfg: FrontierConfig, reward_fn, reward_stage, dpo_steps: int) -> list[dict]:
    """One trained and measured run per (algorithm, knob value)."""
    cfg, runs = settings.run, []
    proxy = cfg.reward != "vader"
    for algo in fcfg.chosen():
        section, name, symbol = KNOBS[algo]
        for value in fcfg.values(algo):
            rl_cfg = with_knob(budgeted(settings.rl, algo, fcfg.token_budget, dpo_steps), algo, value)
            print(f"\n{algo}, {symbol} = {value}")
            policy, _, info = run_rl(cache, base, rl_cfg, reward_fn, reward_stage, cfg.reward, cfg.seed,
                                     label=f"frontier_{algo}")
            stage = rl_stage(cache, base, rl_cfg, reward_stage, cfg.reward, cfg.seed, label=f"frontier_{algo}")
            figures = evaluate(cache, base, stage, policy, reward_fn, proxy, settings.rl.max_new_tokens,
                               cfg.seed + 777)
            runs.append({"algo": algo, "knob": f"{section}.{name}", "symbol": symbol, "value": value, **figures,
                         "seconds": info["seconds"], "sampled_tokens": info["sampled_tokens"],
                         "iterations": info["iterations"], "stage": stage.dir.name})
    return runs


def matched_kl(runs: list[dict], sft: dict, kls: list[float], proxy: bool) -> dict:
    """Each algorithm's frontier points, and its reward (and gold) and reward per nat at each matched KL."""
    algos = list(dict.fromkeys(r["algo"] for r in runs))
    per_algo = {}
    for algo in algos:
        own = [r for r in runs if r["algo"] == algo]
        kl, reward = [r["kl_to_sft"] for r in own], [r["reward"] for r in own]
        front = frontier(kl, reward)
        at = read_at(*front, kls)
        per_algo[algo] = {"frontier_kl": front[0].tolist(), "frontier_reward": front[1].tolist(),
                          "kl_range": [min(kl), max(kl)], "reward": at,
                          "reward_per_nat": [reward_per_nat(r, sft["reward"], k) for r, k in zip(at, kls)],
                          "gold": read_at(*through_runs(kl, [r["gold"] for r in own]), kls) if proxy else None}
    best = [best_at({a: per_algo[a]["reward"][i] for a in algos}) for i in range(len(kls))]
    return {"kls": kls, "algos": per_algo, "best": best}


def run_frontier(settings, fcfg: FrontierConfig) -> dict:
    t_start = time.perf_counter()
    cfg = settings.run
    fcfg.check()
    backend.use(cfg.backend)
    corpus = load_labelled_corpus(settings.data, need_negative=cfg.reward == "rm")  # before --out is touched
    with lock_out(cfg.out):
        return _run_frontier(settings, fcfg, corpus, t_start)


def _run_frontier(settings, fcfg: FrontierConfig, corpus, t_start: float) -> dict:
    cfg = settings.run
    out = open_out(cfg.out, OUTPUTS)
    cache = StageCache(out)
    base = prepare(cache, settings.data, settings.model, settings.pretrain, settings.sft, cfg.seed, cfg.eval_samples,
                   corpus=corpus)
    reward_fn, reward_stage = reward_function(cache, base, cfg.reward, settings.rm, cfg.rm_pairs,
                                              settings.rl.max_new_tokens, cfg.seed)
    proxy = cfg.reward != "vader"
    start = sample_statistics(base.sft, base.sft, base.eval_prompts, base.tokenizer, reward_fn,
                              settings.rl.max_new_tokens, cfg.seed + 777)
    sft = {"reward": start["reward"], "gold": start["vader"] if proxy else None, "kl_to_sft": start["kl_to_sft"],
           "response_length": start["response_length"], "distinct_2": start["distinct_2"],
           "fraction_positive": start["fraction_positive"], "samples": start["texts"][:6]}
    dpo_steps = fcfg.dpo_steps or settings.rl.iterations
    runs = sweep(cache, base, settings, fcfg, reward_fn, reward_stage, dpo_steps)
    matched = matched_kl(runs, sft, fcfg.matched(), proxy)
    summary = {"config": dataclasses.asdict(settings), "frontier_config": dataclasses.asdict(fcfg),
               "reward": cfg.reward, "gold": "vader" if proxy else None, "token_budget": fcfg.token_budget,
               "dpo_steps": dpo_steps, "sft": sft, "runs": runs, "matched": matched}
    summary["verdict"] = verdict(summary)
    summary["samples"] = closest_runs(summary)
    folder = out / "frontier"
    folder.mkdir(exist_ok=True)
    plot = plot_frontier(summary, folder / "frontier.png")
    text = tables(summary)
    write_atomic(folder / "table.txt", text + "\n")
    summary.update(stages=[dataclasses.asdict(r) for r in base.records], plot=str(plot) if plot else None,
                   table=str(folder / "table.txt"), total_seconds=time.perf_counter() - t_start)
    print_frontier(summary, text)
    write_atomic(folder / "summary.json", json.dumps(summary, indent=2))  # last: its presence means it finished
    print(f"\nwrote {folder / 'summary.json'}, {folder / 'table.txt'}" + (f", {plot}" if plot else ""))
    return summary


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    defaults = QUICK_FRONTIER if "--quick" in argv else FrontierConfig()

    def extra(parser):
        add_dataclass_args(parser, FrontierConfig, "frontier", defaults=defaults, title="frontier flags (--frontier-*)",
                           description="the knob values swept per algorithm, the budget and the matched KLs")

    def work():
        settings, args = parse_settings(argv, "python -m minirl.examples.frontier", __doc__.split("\n")[0],
                                        extra=extra)
        run_frontier(settings, from_args(args, FrontierConfig, "frontier", defaults=defaults))
    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
