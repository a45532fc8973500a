"""summarize: fine-tune GPT-2 to write Reddit TL;DRs, learn a reward from human comparisons, then PPO.

    python -m minirl.examples.summarize --model gpt2/ --sft-data tldr_sft.jsonl --comparisons tldr_cmp.jsonl
    python -m minirl.examples.summarize --quick            # a tiny random GPT-2 on generated posts

Stages (each cached in --out by the hash of its settings and inputs, resumable; see `pipeline.py`):
1. sft           GPT-2 on post ‖ summary ‖ EOT, the post masked out of the loss; a held-out
                 share of the file (--val-fraction) gives the validation loss.
2. reward_model  a Bradley–Terry `ScalarHeadModel` from the SFT weights on the comparisons
                 (held-out accuracy reported), then centred: its head bias shifted so the
                 mean reward of post ‖ reference summary ‖ EOT over SFT training rows is 0.
3. ppo           the seed's settings (`tldr.seed_rl_config`) on the held-out posts; the value
                 model starts as a copy of the reward model; the reward model reads the exact
                 sampled ids of post ‖ summary (`TokenRewardModel`); a summary without EOT gets −1.
The report compares the SFT and PPO models on --eval-samples other held-out posts: reward,
KL to SFT, summary length, the fraction ending with EOT, and their summaries side by side.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import pathlib
import sys
import time
from dataclasses import dataclass

import numpy as np

from minirl import backend
from minirl.checkpoint import save_checkpoint
from minirl.cli import add_dataclass_args, from_args
from minirl.data.sft import SFTDataset
from minirl.data.summaries import check_marker, comparison_pairs, sft_examples, write_synthetic_tldr
from minirl.examples.happy_gpt import OUTPUTS, exit_status, lock_out, merged_metrics, open_out
from minirl.examples.pipeline import load_weights, run_stage, train_policy
from minirl.examples.report import policy_statistics, write_plots
from minirl.examples.report_html import write_report_html
from minirl.examples.stages import StageCache, file_sha256, write_atomic
from minirl.examples.tldr import QUICK_GPT2, QUICK_POSTS, SummarizeSettings, presets
from minirl.gpt2 import gpt2_config, load_gpt2_with_tokenizer, save_gpt2
from minirl.model import GPT
from minirl.rl.reward_model import (ScalarHeadModel, TokenRewardModel, center_rewards, evaluate_pairs, score,
                                    train_reward_model)
from minirl.table import format_table
from minirl.tokenizer import Tokenizer, ranks_to_text
from minirl.train import train_lm

SECTIONS = (("run", ""), ("data", ""), ("sft", "sft"), ("rm", "rm"), ("rl", "rl"))
# PPO is the algorithm; the other algorithms' sections get no flags, the reward model's seed is --seed
SKIPPED = {"rl": ("algo", "pg", "grpo", "rloo", "trpo", "dpo", "best_of_n", "sft", "dpo_pairs"), "rm": ("seed",)}
GROUPS = {"run": ("common flags", "where and how to run"),
          "data": ("data flags", "the GPT-2 folder, the TL;DR files, the context and the splits"),
          "sft": ("sft stage (--sft-*)", "fine-tuning on post ‖ summary ‖ EOT, the post masked"),
          "rm": ("reward model stage (--rm-*)", "Bradley–Terry on the human comparisons"),
          "rl": ("ppo stage (--rl-*)", "PPO against the reward model, the seed's settings by default")}
COLUMNS = (("reward", "reward"), ("kl_to_sft", "KL to SFT"), ("response_length", "length"),
           ("ended_fraction", "ends with EOT"))
NAMES = {"sft": "SFT", "ppo": "PPO"}


def parse_settings(argv) -> SummarizeSettings:
    """Flags from the config dataclasses; --quick switches every default to the quick preset."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--quick", action="store_true")
    defaults = presets(pre.parse_known_args(argv)[0].quick)
    parser = argparse.ArgumentParser(prog="python -m minirl.examples.summarize", description=__doc__.split("\n")[0],
                                     usage="python -m minirl.examples.summarize (--quick | --model DIR --sft-data FILE "
                                           "--comparisons FILE) [--out DIR] [--seed N] [flags of each stage, below]")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny random GPT-2 and generated TL;DR files (no downloads; about a minute on 2 CPU "
                             "cores)")
    for name, prefix in SECTIONS:
        add_dataclass_args(parser, type(getattr(defaults, name)), prefix, defaults=getattr(defaults, name),
                           skip=SKIPPED.get(name, ()), title=GROUPS[name][0], description=GROUPS[name][1])
    args = parser.parse_args(argv)
    values = {name: from_args(args, type(getattr(defaults, name)), prefix, defaults=getattr(defaults, name))
              for name, prefix in SECTIONS}
    values["rm"] = dataclasses.replace(values["rm"], seed=values["run"].seed)
    return SummarizeSettings(**values), args.quick


def quick_inputs(cache: StageCache, data, seed: int, records: list):
    """--quick's model and files, each a cached stage: a random GPT-2 (`QUICK_GPT2`, GPT-2's vocabulary)
    written as a Hugging Face folder, and generated SFT and comparisons files. A path the user gave is kept."""
    model_stage = cache.stage("quick_gpt2", {"card": QUICK_GPT2, "seed": seed})

    def init():
        model = GPT(gpt2_config("gpt2", **QUICK_GPT2))
        save_gpt2(model, model_stage.dir)
        return {"parameters": model.num_parameters()}
    run_stage(cache, model_stage, ["model.safetensors", "config.json"], records, init, seed=seed * 100 + 21,
              resumable=())
    data_stage = cache.stage("quick_data", {"posts": QUICK_POSTS, "seed": seed})
    run_stage(cache, data_stage, ["sft.jsonl", "comparisons.jsonl"], records,
              lambda: {"posts": len(write_synthetic_tldr(data_stage.dir, QUICK_POSTS, seed))}, seed=seed, resumable=())
    return dataclasses.replace(data, model=data.model or str(model_stage.dir),
                               sft_data=data.sft_data or str(data_stage.path("sft.jsonl")),
                               comparisons=data.comparisons or str(data_stage.path("comparisons.jsonl")))


def require_paths(data) -> None:
    """Refuse a run without its model folder or data files, naming the flag."""
    for flag, value in (("--model", data.model), ("--sft-data", data.sft_data), ("--comparisons", data.comparisons)):
        if not value:
            raise ValueError(f"{flag} is required (see --help), or run --quick for a tiny model on generated data.")


def check_context(settings: SummarizeSettings, model: GPT) -> None:
    """Refuse a context longer than the model's, or too short for a post and its sampled summary."""
    data, rl = settings.data, settings.rl
    if data.block_size > model.config.block_size:
        raise ValueError(f"--block-size {data.block_size} is longer than the model's {model.config.block_size} "
                         f"positions ({data.model}); lower it.")
    if data.max_prompt_tokens + rl.max_new_tokens > data.block_size:
        raise ValueError(f"--max-prompt-tokens {data.max_prompt_tokens} + --rl-max-new-tokens {rl.max_new_tokens} "
                         f"is more than --block-size {data.block_size}; a post and its sampled summary must fit.")


def split(items: list, fraction: float, seed: int, what: str, flag: str) -> tuple[list, list]:
    """(kept, held out): a seeded shuffle, `fraction` of it held out; both halves non-empty."""
    order = np.random.default_rng(seed).permutation(len(items))
    n_out = int(round(len(items) * fraction))
    if not 0 < n_out < len(items):
        raise ValueError(f"{flag} {fraction} holds out {n_out} of the {len(items)} {what}; both parts need at "
                         f"least one. Change {flag} or use a larger file.")
    return [items[i] for i in order[n_out:]], [items[i] for i in order[:n_out]]


def digest(*parts) -> str:
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()


@dataclass
class Inputs:
    """The checked model, tokenizer and data of a run, split."""
    model: GPT
    tokenizer: Tokenizer
    train_rows: list
    """SFT examples trained on"""
    held_out: list
    """SFT examples held out: validation loss; the first `eval_samples` posts for the report, the rest PPO's"""
    train_pairs: list
    val_pairs: list
    digests: dict
    """SHA-256 of the model files, the tokenizer and the SFT file: what the stage keys start from"""


def load_inputs(settings: SummarizeSettings) -> Inputs:
    """Every input read and checked, before anything in --out changes: a bad file stops the run here."""
    data, seed = settings.data, settings.run.seed
    require_paths(data)
    model, tok = load_gpt2_with_tokenizer(data.model, data.tokenizer or None)
    check_context(settings, model)
    check_marker(data.sft_data, data.comparisons)
    examples = sft_examples(data.sft_data, tok, data.max_prompt_tokens, data.truncate)
    train_rows, held_out = split(examples, data.val_fraction, seed, "SFT rows", "--val-fraction")
    if len(held_out) <= settings.run.eval_samples:
        raise ValueError(f"--eval-samples {settings.run.eval_samples} takes all {len(held_out)} held-out posts, "
                         "leaving none for PPO; lower it or raise --val-fraction.")
    pairs = comparison_pairs(data.comparisons, tok, data.block_size, data.max_prompt_tokens, data.truncate)
    train_pairs, val_pairs = split(pairs, data.rm_val_fraction, seed + 1, "comparisons", "--rm-val-fraction")
    folder = pathlib.Path(data.model)
    digests = {"model": digest(*(file_sha256(folder / f) for f in ("model.safetensors", "config.json"))),
               "tokenizer": digest(ranks_to_text(tok.ranks)), "sft_data": file_sha256(pathlib.Path(data.sft_data)),
               "comparisons": file_sha256(pathlib.Path(data.comparisons))}
    return Inputs(model, tok, train_rows, held_out, train_pairs, val_pairs, digests)


def run(settings: SummarizeSettings, quick: bool) -> dict:
    t_start = time.perf_counter()
    backend.use(settings.run.backend)
    with lock_out(settings.run.out):
        cache, records = StageCache(settings.run.out), []
        if quick:
            settings = dataclasses.replace(settings, data=quick_inputs(cache, settings.data, settings.run.seed,
                                                                       records))
        inputs = load_inputs(settings)
        out = open_out(settings.run.out, OUTPUTS)  # every input is valid: the first change to an earlier report
        return _run(settings, inputs, cache, records, out, t_start)


def fine_tune(cache: StageCache, records: list, settings: SummarizeSettings, inputs: Inputs):
    """Stage 1: SFT on post ‖ summary ‖ EOT, the post masked; returns the model (π_ref) and its stage."""
    data, tok, seed = settings.data, inputs.tokenizer, settings.run.seed
    shape = {k: getattr(data, k) for k in ("block_size", "max_prompt_tokens", "truncate", "val_fraction")}
    inherited = {k: inputs.digests[k] for k in ("model", "tokenizer", "sft_data")}
    stage = cache.stage("sft", {**inherited, "data": shape, "train": dataclasses.asdict(settings.sft), "seed": seed,
                                "backend": backend.name()})
    sft = inputs.model

    def train():
        history = train_lm(sft, SFTDataset(inputs.train_rows, data.block_size, tok.eot_id), settings.sft,
                           val_data=SFTDataset(inputs.held_out, data.block_size, tok.eot_id),
                           checkpoint_path=stage.path("ckpt.npz"), tokenizer=tok, log_path=stage.path("metrics.jsonl"),
                           desc="sft", flag_prefix="--sft-")
        return {"val_loss": history[-1].get("val_loss") if history else None, "train_rows": len(inputs.train_rows),
                "held_out_rows": len(inputs.held_out), "parameters": sft.num_parameters()}
    run_stage(cache, stage, ["ckpt.npz"], records, train, seed=seed * 100 + 2)
    load_weights(sft, stage.path("ckpt.npz"))
    return sft.eval(), stage


def train_reward(cache: StageCache, records: list, settings: SummarizeSettings, inputs: Inputs, sft: GPT, sft_stage):
    """Stage 2: Bradley–Terry from the SFT weights, then centred (`center_rewards`): the head bias is
    shifted so the mean reward of post ‖ reference summary ‖ EOT over the first --center-samples SFT
    training rows is 0, as the seed does. Returns the model, its stage and what the stage recorded."""
    data, seed = settings.data, settings.run.seed
    stage = cache.stage("reward_model", {"comparisons": inputs.digests["comparisons"],
                                         "rm": dataclasses.asdict(settings.rm), "rm_val_fraction": data.rm_val_fraction,
                                         "center_samples": data.center_samples}, [sft_stage])
    backend.manual_seed(seed * 100 + 13)  # the fresh head's weights
    rm = ScalarHeadModel.from_pretrained(sft)
    references = [(ex.prompt_ids + ex.response_ids)[:data.block_size] for ex in inputs.train_rows[:data.center_samples]]

    def train():
        train_reward_model(rm, inputs.train_pairs, inputs.val_pairs, settings.rm,
                           checkpoint_path=stage.path("ckpt.npz"))
        val = evaluate_pairs(rm, inputs.val_pairs)
        mean = center_rewards(rm, references, pad_id=inputs.tokenizer.eot_id)
        save_checkpoint(stage.path("rm.npz"), rm, step=settings.rm.steps)
        return {"val_accuracy": val["accuracy"], "val_loss": val["loss"], "train_pairs": len(inputs.train_pairs),
                "val_pairs": len(inputs.val_pairs), "mean_reward_before_centering": mean}
    info = run_stage(cache, stage, ["rm.npz"], records, train, seed=seed * 100 + 3)
    load_weights(rm, stage.path("rm.npz"))
    return rm.eval(), stage, info


def _run(settings: SummarizeSettings, inputs: Inputs, cache: StageCache, records: list, out: pathlib.Path,
         t_start: float) -> dict:
    run_cfg, tok, n_eval = settings.run, inputs.tokenizer, settings.run.eval_samples
    sft, sft_stage = fine_tune(cache, records, settings, inputs)
    rm, rm_stage, rm_info = train_reward(cache, records, settings, inputs, sft, sft_stage)
    reward = TokenRewardModel(rm)  # R(x, y) = r_φ(x ‖ y) on the sampled ids

    # Stage 3: PPO on the held-out posts the report does not use; the value model starts as the reward model.
    prompts = [list(ex.prompt_ids) for ex in inputs.held_out[n_eval:]]
    ppo_stage = cache.stage("ppo", {"rl": settings.rl.settings(), "eval_samples": n_eval, "seed": run_cfg.seed},
                            [sft_stage, rm_stage])
    policy, history, rl_info = train_policy(cache, ppo_stage, records, sft, prompts, tok, settings.rl, reward,
                                            run_cfg.seed, value_init=rm)

    t0 = time.perf_counter()
    eval_rows = inputs.held_out[:n_eval]
    eval_prompts = [list(ex.prompt_ids) for ex in eval_rows]
    models = {name: policy_statistics(model, sft, eval_prompts, tok, reward, settings.rl.max_new_tokens,
                                      run_cfg.seed + 777) for name, model in (("sft", sft), ("ppo", policy))}
    reference = score(rm, [(ex.prompt_ids + ex.response_ids)[:settings.data.block_size] for ex in eval_rows],
                      pad_id=tok.eot_id)
    eval_seconds = time.perf_counter() - t0
    broken = [f"{name} {key} = {value}" for name, figures in models.items() for key, value in figures.items()
              if isinstance(value, float) and not math.isfinite(value)]
    if broken:  # never a summary.json that looks finished but holds NaN
        raise FloatingPointError(f"the evaluation gave {', '.join(broken)}; no report was written. A policy whose "
                                 "summaries score NaN has diverged: lower --rl-lr.")
    plot = write_plots(history, out / "rl_curves.png", "PPO against the TL;DR reward model")
    merged_metrics(records, out)

    def text(ids):
        return tok.decode([t for t in ids if t != tok.eot_id])
    samples = {"post": [text(ex.prompt_ids) for ex in eval_rows],
               "reference": [text(ex.response_ids) for ex in eval_rows],
               **{name: figures.pop("texts") for name, figures in models.items()}}
    headline = {"reward_gain_over_sft": models["ppo"]["reward"] - models["sft"]["reward"],
                "reference_reward": float(reference.mean()), "rm_val_accuracy": rm_info["val_accuracy"],
                "ended_fraction": models["ppo"]["ended_fraction"], "kl_to_sft": models["ppo"]["kl_to_sft"]}
    summary = {"config": dataclasses.asdict(settings), "stages": [dataclasses.asdict(r) for r in records],
               "eval_seconds": eval_seconds, "models": models, "acceptance": headline, "samples": samples,
               "rl": rl_info, "plot": str(plot) if plot else None, "total_seconds": time.perf_counter() - t_start}
    print_report(summary)
    page = write_report_html(summary, out, title="minirl summarize: GPT-2 on Reddit TL;DR, SFT → reward model → "
                             "PPO", columns=COLUMNS, names=NAMES, note=f"{n_eval} held-out posts, the same for both "
                             "models and the same sampling seed; reward from the centred reward model; KL in nats per "
                             "summary; length in tokens, EOT included.", explorable=False)
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))  # last: its presence means the run finished
    print(f"\nwrote {out / 'summary.json'}, {out / 'metrics.jsonl'}, {page}" + (f", {plot}" if plot else ""))
    return summary


def print_report(summary: dict, shown: int = 3) -> None:
    stages = [[s["name"], s["status"], s["seconds"]] for s in summary["stages"]]
    stages.append(["evaluation", "ran", summary["eval_seconds"]])
    print("\n" + format_table(stages, ["stage", "status", "seconds"]))
    rows = [[NAMES[k]] + [m[key] for key, _ in COLUMNS] for k, m in summary["models"].items()]
    print("\n" + format_table(rows, ["model"] + [h for _, h in COLUMNS]))
    head, samples = summary["acceptance"], summary["samples"]
    print(f"({len(samples['post'])} held-out posts; the human reference summaries score "
          f"{head['reference_reward']:.3f}; reward-model held-out accuracy {head['rm_val_accuracy']:.3f}; "
          "KL in nats per summary)")
    for i in range(min(shown, len(samples["post"]))):
        post = " / ".join(samples["post"][i].split("\n"))
        print(f"\npost       …{post[-160:]}")
        for key, label in (("reference", "reference"), ("sft", "SFT"), ("ppo", "PPO")):
            print(f"{label:<10} {samples[key][i].strip()}")
    print(f"\ntotal {summary['total_seconds']:.0f} s")


def main(argv=None) -> int:
    return exit_status(lambda: run(*parse_settings(argv)))


if __name__ == "__main__":
    sys.exit(main())
