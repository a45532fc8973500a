"""PPO against VADER sentiment at full scale: pretrained GPT -> SFT on positive tweets -> PPO.

    python -m minirl.pretrain --out out/pretrain          # once, ~8 min on 2 cores
    python benchmarks/ppo_vader.py --pretrained out/pretrain [--json out/ppo_vader.json]

Prints the reward and KL curve as a table, samples before and after, and the wall time
of each stage. It is the measurement behind the README's PPO figures; the quick-scale
version of the same claim is tests/test_rl_gpt.py.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

from minirl import backend
from minirl.data import filter_labels, load_corpus, train_val_split
from minirl.data.sft import SFTDataset
from minirl.examples.report import sample_statistics
from minirl.model import GPT
from minirl.pretrain import load_pretrained
from minirl.rl.ppo import PPOConfig
from minirl.rl.reward_model import ScalarHeadModel
from minirl.rl.sentiment import vader_reward
from minirl.rl.trainer import RLConfig, train_rl
from minirl.table import format_table
from minirl.train import TrainConfig, train_lm


def sample_texts(model, tok, n: int, seed: int) -> list[str]:
    return sentiment_summary(model, tok, n, seed)["texts"]


def sentiment_summary(model, tok, n: int = 128, seed: int = 123) -> dict:
    """VADER over `n` unconditional samples, measured as happy_gpt's report measures them."""
    stats = sample_statistics(model, model, [[tok.eot_id]] * n, tok, vader_reward, 40, seed)
    return {"vader_mean": stats["vader"], "fraction_positive": stats["fraction_positive"], "texts": stats["texts"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrained", default="out/pretrain", help="directory of `python -m minirl.pretrain`")
    parser.add_argument("--sft-steps", type=int, default=300, help="SFT steps on positive tweets")
    parser.add_argument("--iterations", type=int, default=60, help="PPO iterations")
    parser.add_argument("--batch-size", type=int, default=64, help="responses per PPO rollout")
    parser.add_argument("--kl-coef", type=float, default=0.05, help="β, the per-token KL price")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    backend.manual_seed(args.seed)
    try:
        policy, tok = load_pretrained(pathlib.Path(args.pretrained))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    timings = {}
    t0 = time.perf_counter()
    train_docs, _ = train_val_split(load_corpus("tweets"), 0.05, seed=args.seed)
    positive = filter_labels(train_docs, "positive")
    sft_data = SFTDataset.from_texts(positive.texts, tok, policy.config.block_size)
    before = sentiment_summary(policy, tok)
    train_lm(policy, sft_data, TrainConfig(steps=args.sft_steps, batch_size=32, lr=5e-4, warmup_steps=20,
                                           eval_interval=0, checkpoint_interval=0), desc="sft")
    timings["sft_s"] = time.perf_counter() - t0
    sft = GPT(policy.config)
    sft.load_state_dict(policy.state_dict())  # π_ref: the frozen SFT model
    after_sft = sentiment_summary(policy, tok)
    samples_before = sample_texts(policy, tok, 4, seed=7)

    t0 = time.perf_counter()
    value_model = ScalarHeadModel.from_pretrained(sft)
    config = RLConfig(algo="ppo", iterations=args.iterations, batch_size=args.batch_size, max_new_tokens=40,
                      lr=2e-4, ppo=PPOConfig(kl_coef=args.kl_coef, epochs=2, minibatch_size=32))
    history = train_rl(policy, sft, [[tok.eot_id]], vader_reward, tokenizer=tok, config=config,
                       value_model=value_model, rng=np.random.default_rng(args.seed))
    timings["ppo_s"] = time.perf_counter() - t0
    after_ppo = sentiment_summary(policy, tok)
    samples_after = sample_texts(policy, tok, 4, seed=7)

    step = max(1, args.iterations // 10)
    rows = [[h["iteration"], h["score_mean"], h["kl_to_ref"], h["response_length"], h["approx_kl"], h["clipfrac"],
             h.get("explained_variance", float("nan"))] for h in history[step - 1::step]]
    print(format_table(rows, ["iteration", "VADER", "KL to SFT", "length", "approx_kl", "clipfrac", "expl. var"]))
    stages = [["pretrained", before["vader_mean"], before["fraction_positive"]],
              ["SFT (positive tweets)", after_sft["vader_mean"], after_sft["fraction_positive"]],
              ["PPO", after_ppo["vader_mean"], after_ppo["fraction_positive"]]]
    print("\n" + format_table(stages, ["model", "VADER mean (128 samples)", "fraction positive"]))
    print(f"\nSFT {timings['sft_s']:.0f} s, PPO {timings['ppo_s']:.0f} s")
    for b, a in zip(samples_before, samples_after):
        print(f"  SFT: {b}\n  PPO: {a}\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"stages": stages, "timings": timings, "history": history,
                       "samples": {"sft": samples_before, "ppo": samples_after}}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
