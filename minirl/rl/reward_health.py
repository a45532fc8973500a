"""Is the reward model rewarding what we meant? Accuracy, a length check, and rewards per label.

A reward model that learned "long tweets are positive" would score well on pairs and
then teach the policy to ramble (reward hacking through length; Singhal et al. 2023).
So beside pairwise accuracy the report gives the Pearson correlation of the reward
with response length, and the reward's mean and spread for each human label.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from minirl.rl.reward_model import score
from minirl.table import format_table


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """``cov(a, b) / (σ_a σ_b)``; NaN when either is constant or there are fewer than 2 points."""
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _pair_accuracy(r_pos: np.ndarray, r_neg: np.ndarray) -> float:
    """``mean[r_w > r_l]`` over *every* (positive, negative) pair, i.e. the ROC AUC with ties as losses.

    Sorting the negatives makes it O(N log N): each positive beats the negatives below it.
    """
    if len(r_pos) == 0 or len(r_neg) == 0:
        return float("nan")
    beaten = np.searchsorted(np.sort(r_neg), r_pos, side="left")  # (N_pos,) negatives strictly below
    return float(beaten.sum() / (len(r_pos) * len(r_neg)))


def reward_health_report(model, corpus_texts: Sequence[str], labels: Sequence[int], label_names: Sequence[str],
                         tokenizer, positive: str = "positive", negative: str = "negative",
                         batch_size: int = 64) -> dict:
    """Score every text as ``[EOT] ‖ text ‖ [EOT]`` (the layout of `pairs_from_labels`) and report:

    - ``pair_accuracy``: ``mean[r(pos) > r(neg)]`` over all ``n_pairs = N_pos · N_neg`` pairs
      of these texts (use held-out texts);
    - ``length_correlation``: Pearson correlation of reward with response length in tokens;
    - ``per_label``: {name: {"count", "mean", "std"}} of the rewards.
    """
    names = list(label_names)
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(f"the tokenizer has vocab_size={tokenizer.vocab_size} but the model "
                         f"{model.config.vocab_size}: score with the tokenizer the model was trained with.")
    if len(corpus_texts) != len(labels):
        raise ValueError(f"{len(labels)} labels for {len(corpus_texts)} texts.")
    if len(corpus_texts) == 0:
        raise ValueError("reward_health_report got no texts.")
    for role, name in (("positive", positive), ("negative", negative)):
        if name not in names:
            raise ValueError(f"{role} label {name!r} is not among the label names {names}.")
    labels = np.asarray(labels, dtype=np.int64)
    if labels.min() < 0 or labels.max() >= len(names):
        raise ValueError(f"labels must lie in 0..{len(names) - 1} (indices into label_names).")
    eot = tokenizer.eot_id
    ids = tokenizer.encode_batch(list(corpus_texts))
    rewards = score(model, [[eot] + doc + [eot] for doc in ids], batch_size)  # (N,)
    lengths = np.array([len(doc) for doc in ids], dtype=np.float64)  # (N,)
    r_pos, r_neg = rewards[labels == names.index(positive)], rewards[labels == names.index(negative)]
    per_label = {}
    for k, name in enumerate(names):
        r = rewards[labels == k]
        per_label[name] = {"count": int(len(r)), "mean": float(r.mean()) if len(r) else float("nan"),
                           "std": float(r.std()) if len(r) else float("nan")}
    return {"pair_accuracy": _pair_accuracy(r_pos, r_neg), "n_pairs": int(len(r_pos) * len(r_neg)),
            "length_correlation": pearson(rewards, lengths), "n_texts": int(len(rewards)),
            "positive": positive, "negative": negative, "per_label": per_label}


def format_reward_health(report: dict) -> str:
    """The report as two plain-text tables: the summary figures, then rewards per label."""
    summary = format_table([
        [f"pairwise accuracy ({report['positive']} > {report['negative']})", report["pair_accuracy"]],
        ["pairs compared", report["n_pairs"]],
        ["corr(reward, length in tokens)", report["length_correlation"]],
        ["texts scored", report["n_texts"]],
    ], headers=["metric", "value"])
    rows = [[name, s["count"], s["mean"], s["std"]] for name, s in report["per_label"].items()]
    return summary + "\n\n" + format_table(rows, headers=["label", "count", "reward mean", "reward std"])
