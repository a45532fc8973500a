"""RLAIF on real tweets: does a reward model trained on AI-judge labels agree with one trained on human labels?

    python -m minirl.pretrain --out out/pretrain          # once, ~8 min on 2 cores
    python benchmarks/rlaif_agreement.py --pretrained out/pretrain [--json out/rlaif.json]

1. The pretrained GPT samples two tweets per prompt ([EOT]); VADER judges each pair (MATH.md §7).
2. Reward model A is trained on those judge labels; reward model B on as many human-label pairs
   (a tweet labelled positive beats one labelled negative), both from the pretrained weights.
3. `judge_agreement` compares A and B on tweets held out from pretraining, and both are scored
   on held-out human pairs, next to VADER itself (the judge's own accuracy on real tweets).

Measured (default card pretrained 2,000 steps, seed 0, 150 reward-model steps of 32 pairs each,
2 cores, OPENBLAS_NUM_THREADS=1, ~2 min a run): 1,000 held-out tweets, 499,500 text pairs.

| pairs per model | pairwise agreement | Pearson | Spearman | judge RM acc. | human RM acc. | VADER acc. |
| --- | --- | --- | --- | --- | --- | --- |
| 400 | 0.545 | 0.143 | 0.134 | 0.573 | 0.854 | 0.725 |
| 2,000 | 0.664 | 0.477 | 0.467 | 0.730 | 0.895 | 0.725 |

(accuracies on 1,000 held-out positive-vs-negative pairs; VADER counts a tie as 1/2; 18-21% of the
judged pairs were VADER ties, labelled by position). With 2,000 judged samples the judge-label
reward model is about as accurate as its judge (0.730 vs 0.725), well short of human labels.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

from minirl import backend
from minirl.data import load_tweets, pairs_from_labels, train_val_split
from minirl.pretrain import load_pretrained
from minirl.rl.reward_model import RewardModelConfig, ScalarHeadModel, evaluate_pairs, train_reward_model
from minirl.rl.rlaif import judge_agreement, label_pairs_with_judge, score_judge
from minirl.rl.sentiment import vader_reward
from minirl.table import format_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrained", default="out/pretrain", help="directory of `python -m minirl.pretrain`")
    parser.add_argument("--pairs", type=int, default=400, help="judge-labelled pairs (and as many human pairs)")
    parser.add_argument("--max-new-tokens", type=int, default=40, help="length cap of each sampled tweet")
    parser.add_argument("--steps", type=int, default=150, help="reward-model steps (batch 32) for each model")
    parser.add_argument("--texts", type=int, default=1000, help="held-out tweets the two models are compared on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    backend.manual_seed(args.seed)
    try:
        policy, tok = load_pretrained(pathlib.Path(args.pretrained))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    seconds = {}
    train, val = train_val_split(load_tweets(), 0.05, seed=args.seed)  # the split `minirl.pretrain` held out

    t0 = time.perf_counter()
    judge_pairs = label_pairs_with_judge(policy, [[tok.eot_id]] * args.pairs, score_judge(vader_reward), tok,
                                         args.max_new_tokens, rng=backend.rng(args.seed))
    seconds["sample and judge"] = time.perf_counter() - t0
    chosen = vader_reward([tok.decode([t for t in p.chosen_ids if t != tok.eot_id]) for p in judge_pairs])
    rejected = vader_reward([tok.decode([t for t in p.rejected_ids if t != tok.eot_id]) for p in judge_pairs])
    ties = float(np.mean(np.array(chosen) == np.array(rejected)))

    config = RewardModelConfig(steps=args.steps, batch_size=32, lr=3e-4, eval_interval=0, seed=args.seed)
    models = {}
    for name, pairs in (("judge", judge_pairs), ("human", pairs_from_labels(train, tok, len(judge_pairs), seed=args.seed))):
        t0 = time.perf_counter()
        backend.manual_seed(args.seed)
        models[name] = ScalarHeadModel.from_pretrained(policy)
        train_reward_model(models[name], pairs, None, config, progress=True)
        seconds[f"train the {name}-label reward model"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    texts = [val.texts[i] for i in np.random.default_rng(args.seed).permutation(len(val))[:args.texts]]
    report = judge_agreement(models["judge"], models["human"], texts, tok)
    held_out = pairs_from_labels(val, tok, 1000, seed=args.seed + 1)
    accuracy = {name: evaluate_pairs(model, held_out)["accuracy"] for name, model in models.items()}
    vader = lambda ids: vader_reward([tok.decode([t for t in ids if t != tok.eot_id])])[0]  # noqa: E731
    vader_gap = np.array([vader(p.chosen_ids) - vader(p.rejected_ids) for p in held_out])
    accuracy["VADER (the judge; a tie counts 1/2)"] = float(np.mean((vader_gap > 0) + 0.5 * (vader_gap == 0)))
    seconds["compare"] = time.perf_counter() - t0

    print(f"\n{len(judge_pairs)} judge-labelled pairs ({args.pairs - len(judge_pairs)} skipped as identical; "
          f"{ties:.0%} VADER ties, labelled by position)")
    print(format_table(list(report.items()), ["judge-label RM vs human-label RM, held-out tweets", "value"]))
    print(format_table(list(accuracy.items()), ["accuracy on 1,000 held-out human pairs", "value"]))
    print(format_table([[k, round(v, 1)] for k, v in seconds.items()], ["stage", "seconds"]))
    if args.json:
        result = {"args": vars(args), "judge_pairs": len(judge_pairs), "vader_ties": ties, "agreement": report,
                  "held_out_accuracy": accuracy, "seconds": seconds}
        pathlib.Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
