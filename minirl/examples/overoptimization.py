"""The reward over-optimisation lab (Gao, Schulman & Hilton 2022): Goodhart's law, measured.

    python -m minirl.examples.overoptimization            # the default happy_gpt model and stages
    python -m minirl.examples.overoptimization --quick    # a small model, small label sets, short runs

The gold reward is VADER's compound score. Each proxy is a Bradley–Terry reward model trained on
pairs of SFT samples that VADER judged (happy_gpt's `--reward rlaif` stage), one per size in
`--lab-label-sets`. Against each proxy:

- best-of-n from the SFT model for n = 1, 2, 4, …, `--lab-bon-max-n`, at the analytic KL
  ``log n − (n − 1)/n``; every n is read off one scored pool per seed (`best_of_n_means`),
  and the seeds give the error bars;
- PPO at β = `--lab-kl-coef` (0 by default: nothing holds it near the SFT model), evaluated
  every `--lab-eval-every` iterations on its own samples: KL to SFT, gold, proxy, length, distinct-2.

The gold curves, relative to the SFT model, are fitted with d = √KL by the paper's forms,
``d(α − βd)`` for best-of-n and ``d(α − β log d)`` for RL (`minirl.rl.overoptimization`).
It shares happy_gpt's cached stages in --out (tokenizer, pretraining, SFT, the proxies), and each
PPO run is a cached, resumable stage. Writes <out>/overoptimization/summary.json and
overoptimization.png (with matplotlib), and prints the tables and whether the gold score fell.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass

import numpy as np

from minirl import backend
from minirl.cli import add_dataclass_args, from_args
from minirl.examples.happy_gpt import exit_status, lock_out, open_out, parse_settings
from minirl.examples.overoptimization_report import plot_lab, print_lab
from minirl.examples.pipeline import copy_model, load_labelled_corpus, prepare, reward_function, run_stage
from minirl.examples.report import distinct_n, sample_statistics
from minirl.examples.stages import StageCache, write_atomic
from minirl.rl.overoptimization import best_of_n_means, fit_gold_curve, gold_falls
from minirl.rl.reward_model import ScalarHeadModel
from minirl.rl.sentiment import vader_reward
from minirl.rl.trainer import train_rl
from minirl.sampling import generate

OUTPUTS = ("overoptimization/summary.json", "overoptimization/overoptimization.png")
"""what the lab writes in --out; an earlier lab's are moved aside as *.previous.*"""


@dataclass
class LabConfig:
    label_sets: str = "250,1000,4000"
    """comma-separated numbers of VADER-judged SFT sample pairs, one proxy reward model each"""
    bon_pool: int = 512
    """SFT samples scored per seed for best-of-n; must be at least bon_max_n"""
    bon_max_n: int = 256
    """the largest n of best-of-n (a power of two)"""
    seeds: int = 3
    """independent best-of-n pools, for the error bars"""
    ppo_iterations: int = 150
    """PPO iterations against each proxy"""
    eval_every: int = 15
    """PPO iterations between evaluations"""
    kl_coef: float = 0.0
    """PPO's β against the proxy (0: no KL penalty at all)"""

    def sizes(self) -> list[int]:
        try:
            sizes = [int(s) for s in self.label_sets.split(",") if s.strip()]
        except ValueError:
            sizes = []
        if not sizes or min(sizes) < 20:
            raise ValueError(f"--lab-label-sets {self.label_sets!r} must be comma-separated pair counts of at least "
                             "20, e.g. --lab-label-sets 250,1000,4000.")
        return sizes

    def ns(self) -> list[int]:
        if self.bon_max_n < 1 or self.bon_max_n & (self.bon_max_n - 1):
            raise ValueError(f"--lab-bon-max-n must be a power of two, got {self.bon_max_n}; e.g. 256.")
        if self.bon_pool < self.bon_max_n:
            raise ValueError(f"--lab-bon-pool {self.bon_pool} is smaller than --lab-bon-max-n {self.bon_max_n}; "
                             "raise the pool or lower n.")
        return [2 ** k for k in range(int(math.log2(self.bon_max_n)) + 1)]


QUICK_LAB = LabConfig(label_sets="100,200,400", bon_pool=128, bon_max_n=64, seeds=2, ppo_iterations=8,
                      eval_every=4)


def _mean_stderr(rows) -> tuple[list[float], list[float]]:
    rows = np.asarray(rows, dtype=np.float64)  # (seeds, len(ns))
    stderr = rows.std(axis=0, ddof=1) / math.sqrt(len(rows)) if len(rows) > 1 else np.zeros(rows.shape[1])
    return rows.mean(axis=0).tolist(), stderr.tolist()


def best_of_n_lab(base, proxies: dict, lab: LabConfig, max_new_tokens: int, seed: int) -> dict:
    """Per proxy: gold and proxy of best-of-n at each n (mean and standard error over seeds) and the fit."""
    eot, ns = base.tokenizer.eot_id, lab.ns()
    curves = {size: [] for size in proxies}
    for s in range(lab.seeds):
        rng = backend.rng(seed * 1000 + 500 + s)
        texts = []
        for start in range(0, lab.bon_pool, 128):  # the first RL prompt, sampled bon_pool times
            gen = generate(base.sft, [base.prompts[0]] * min(128, lab.bon_pool - start), max_new_tokens,
                           eot_id=eot, rng=rng)
            texts += [base.tokenizer.decode([t for t in r if t != eot]) for r in gen.responses()]
        gold = vader_reward(texts)
        for size, proxy_fn in proxies.items():
            curves[size].append(best_of_n_means(proxy_fn(texts), gold, ns))
    out = {}
    for size, runs in curves.items():
        gold, gold_se = _mean_stderr([r["gold"] for r in runs])
        proxy, proxy_se = _mean_stderr([r["proxy"] for r in runs])
        d = np.sqrt(runs[0]["kl"])
        out[size] = {"n": ns, "kl": runs[0]["kl"], "d": d.tolist(), "gold": gold, "gold_stderr": gold_se,
                     "proxy": proxy, "proxy_stderr": proxy_se,
                     "fit": fit_gold_curve(d, np.asarray(gold) - gold[0], "bon"),
                     "gold_falls": gold_falls(gold, gold_se)}
    return out


def measure(policy, base, proxy_fn, max_new_tokens: int, seed: int, iteration: int) -> dict:
    """One checkpoint on its own samples (the same prompts and seed at every checkpoint)."""
    stats = sample_statistics(policy, base.sft, base.eval_prompts, base.tokenizer, proxy_fn, max_new_tokens, seed)
    texts = stats.pop("texts")
    gold = np.asarray(vader_reward(texts))
    kl = stats["kl_to_sft"]
    return {"iteration": iteration, "kl": kl, "d": math.sqrt(max(kl, 0.0)), "proxy": stats["reward"],
            "gold": float(gold.mean()), "gold_stderr": float(gold.std(ddof=1) / math.sqrt(len(gold))),
            "length": stats["response_length"], "distinct_2": distinct_n(texts, 2), "samples": texts[:4]}


def ppo_lab(cache, base, rl_cfg, proxy_fn, proxy_stage, lab: LabConfig, seed: int) -> dict:
    """PPO against one proxy from the SFT model, evaluated every `eval_every` iterations; a cached,
    resumable stage (a killed run resumes from its checkpoint and keeps the evaluations it had)."""
    stage = cache.stage("overopt_ppo", {"rl": rl_cfg.settings(), "eval_every": lab.eval_every, "seed": seed,
                                        "eval_prompts": base.eval_prompts[:50], "eval_samples": len(base.eval_prompts),
                                        "prompts": base.prompts[:50], "n_prompts": len(base.prompts)},
                        [base.stages["sft"], proxy_stage])
    partial = stage.path("evals.jsonl")

    def train():
        policy = copy_model(base.sft)
        value_model = ScalarHeadModel.from_pretrained(base.sft)
        lines = partial.read_text().splitlines() if partial.exists() else []
        if lines and not lines[-1].endswith("}"):  # a kill in the middle of the last append
            lines.pop()
        evals = [json.loads(line) for line in lines]
        seen = {e["iteration"] for e in evals}
        stops = sorted(set(range(0, rl_cfg.iterations, lab.eval_every)) | {rl_cfg.iterations})
        for stop in stops:
            if stop > 0:
                train_rl(policy, base.sft, base.prompts, proxy_fn, tokenizer=base.tokenizer, config=rl_cfg,
                         value_model=value_model, log_path=stage.path("metrics.jsonl"), checkpoint_interval=0,
                         checkpoint_path=stage.path("rl.npz"), stop_at=stop, progress=False)
            if stop not in seen:
                evals.append(measure(policy, base, proxy_fn, rl_cfg.max_new_tokens, seed + 777, stop))
                with open(partial, "a") as f:
                    f.write(json.dumps(evals[-1]) + "\n")
                print(f"  ppo vs {proxy_stage.name}: iteration {stop:>4}  KL {evals[-1]['kl']:7.2f}  "
                      f"proxy {evals[-1]['proxy']:+.3f}  gold {evals[-1]['gold']:+.3f}")
        write_atomic(stage.path("evals.json"), json.dumps(sorted(evals, key=lambda e: e["iteration"]), indent=2))
        return {"evaluations": len(evals)}
    run_stage(cache, stage, ["evals.json"], base.records, train, seed=seed * 100 + 4, resumable=("rl.npz",))
    evals = json.loads(stage.path("evals.json").read_text())
    gold = np.array([e["gold"] for e in evals])
    fit = None
    if sum(e["d"] > 0 for e in evals) >= 2:
        fit = fit_gold_curve([e["d"] for e in evals], gold - gold[0], "rl")
    return {"evals": evals, "fit": fit, "max_kl": max(e["kl"] for e in evals),
            "gold_falls": gold_falls(gold, [e["gold_stderr"] for e in evals])}


def run_lab(settings, lab: LabConfig) -> dict:
    cfg = settings.run
    backend.use(cfg.backend)
    lab.sizes(), lab.ns()  # each refuses a malformed list before anything runs
    if lab.seeds < 1 or lab.ppo_iterations < 1 or lab.eval_every < 1:
        raise ValueError("--lab-seeds, --lab-ppo-iterations and --lab-eval-every must be at least 1.")
    corpus = load_labelled_corpus(settings.data, need_negative=False)  # before --out is touched
    with lock_out(cfg.out):
        return _run_lab(settings, lab, corpus)


def _run_lab(settings, lab: LabConfig, corpus) -> dict:
    cfg, sizes = settings.run, lab.sizes()
    out = open_out(cfg.out, OUTPUTS)
    cache = StageCache(out)
    base = prepare(cache, settings.data, settings.model, settings.pretrain, settings.sft, cfg.seed, cfg.eval_samples,
                   corpus=corpus)
    max_new_tokens = settings.rl.max_new_tokens
    proxies, proxy_stages = {}, {}
    for size in sizes:
        try:
            proxies[size], proxy_stages[size] = reward_function(cache, base, "rlaif", settings.rm, size,
                                                                max_new_tokens, cfg.seed)
        except ValueError as e:
            raise ValueError(f"label set of {size} pairs: {str(e).replace('--rm-pairs', '--lab-label-sets')}") from e
    rm_info = {size: cache.info(proxy_stages[size]) for size in sizes}
    bon = best_of_n_lab(base, proxies, lab, max_new_tokens, cfg.seed)
    rl_cfg = dataclasses.replace(settings.rl, algo="ppo", iterations=lab.ppo_iterations,
                                 ppo=dataclasses.replace(settings.rl.ppo, kl_coef=lab.kl_coef))
    ppo = {size: ppo_lab(cache, base, rl_cfg, proxies[size], proxy_stages[size], lab, cfg.seed) for size in sizes}
    folder = out / "overoptimization"
    folder.mkdir(exist_ok=True)
    plot = plot_lab(bon, ppo, folder / "overoptimization.png")
    summary = {"config": dataclasses.asdict(settings), "lab": dataclasses.asdict(lab),
               "proxies": {str(s): {"train_pairs": rm_info[s].get("pairs"),
                                    "val_accuracy": rm_info[s].get("val_accuracy"),
                                    "stage": proxy_stages[s].dir.name} for s in sizes},
               "best_of_n": {str(s): v for s, v in bon.items()}, "ppo": {str(s): v for s, v in ppo.items()},
               "stages": [dataclasses.asdict(r) for r in base.records], "plot": str(plot) if plot else None}
    print_lab(summary)
    write_atomic(folder / "summary.json", json.dumps(summary, indent=2))
    print(f"\nwrote {folder / 'summary.json'}" + (f", {plot}" if plot else ""))
    return summary


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    defaults = QUICK_LAB if "--quick" in argv else LabConfig()

    def extra(parser):
        add_dataclass_args(parser, LabConfig, "lab", defaults=defaults)

    def work():
        settings, args = parse_settings(argv, "python -m minirl.examples.overoptimization", __doc__.split("\n")[0],
                                        extra=extra)
        run_lab(settings, from_args(args, LabConfig, "lab", defaults=defaults))
    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
