"""What a learner looks at after a run: sample statistics, side-by-side samples, plots.

The statistics of one model, all on the same prompts and the same sampling seed:

    reward        mean R(x, y) of its samples, with the run's reward function
    vader         mean VADER compound, and fraction positive = mean[compound > 0.05]
    kl_to_sft     KL(π ‖ π_sft) ≈ (1/B) Σ_b Σ_t m_t (log π(a_t|s_t) − log π_sft(a_t|s_t)),
                  the k1 estimate on π's own samples (MATH.md §4): unbiased, per response
    distinct-n    unique n-grams / all n-grams of the samples' words (Li et al., 2016): how
                  varied the text is; a collapsed policy repeats itself and this falls
    response_length   mean response tokens, EOT included; ended_fraction: the share that emitted EOT
    val_ppl       exp(NLL) on held-out positive tweets (MATH.md §1)
"""

from __future__ import annotations

import math
import pathlib
import textwrap
from typing import Callable, Sequence

import numpy as np

from minirl import backend
from minirl import functional as F
from minirl.rl.rewards import RewardFunction, sequence_scores
from minirl.rl.sentiment import vader_reward
from minirl.sampling import generate
from minirl.tensor import no_grad

POSITIVE = 0.05
"""VADER's conventional threshold: compound > 0.05 reads as positive"""


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique word n-grams over all word n-grams of `texts` (0 when there are none)."""
    grams = [tuple(words[i:i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def perplexity(model, data, batch_size: int = 64) -> float:
    """exp of the token-weighted NLL over every row of an SFTDataset, in order (deterministic)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with no_grad():
        for i in range(0, len(data.seqs), batch_size):
            seq, mask = data.seqs[i:i + batch_size], data.mask[i:i + batch_size]  # (B, T+1), (B, T)
            logits = model(backend.to_backend(seq[:, :-1]))  # (B, T, V)
            total += F.cross_entropy(logits, backend.to_backend(seq[:, 1:]), mask=backend.to_backend(mask),
                                     reduction="sum").item()
            count += int(mask.sum())
    model.train(was_training)
    return math.exp(total / max(count, 1))


def policy_statistics(model, sft_model, prompts: Sequence[Sequence[int]], tokenizer, reward_fn: RewardFunction,
                      max_new_tokens: int, seed: int) -> dict:
    """Sample once per prompt (temperature 1, the policy's own distribution) and measure the samples:
    mean reward, KL to the SFT model, response length, the fraction that ended with EOT, and the texts.

    The reward is `rewards.sequence_scores`: a text reward reads the decoded responses, a
    `TokenReward` the sampled prompt ‖ response ids."""
    model.eval()  # no dropout in what is measured
    gen = generate(model, prompts, max_new_tokens, eot_id=tokenizer.eot_id, rng=backend.rng(seed))
    eot = tokenizer.eot_id
    responses = gen.responses()
    texts = [tokenizer.decode([t for t in r if t != eot]) for r in responses]
    m = gen.response_mask
    with no_grad():
        logp = model.logprobs(gen.tokens, gen.attention_mask, start=gen.prompt_length).data  # (B, T)
        ref_logp = sft_model.logprobs(gen.tokens, gen.attention_mask, start=gen.prompt_length).data
    kl = backend.to_numpy(((logp - ref_logp) * m).sum(axis=1)).astype(np.float64)  # (B,) k1 per response
    scores = sequence_scores(reward_fn, gen.tokens, gen.attention_mask, texts)
    return {"reward": float(np.mean(scores)), "kl_to_sft": float(kl.mean()),
            "response_length": float(backend.to_numpy(m).sum(axis=1).mean()),
            "ended_fraction": float(np.mean([bool(r) and r[-1] == eot for r in responses])), "texts": texts}


def sample_statistics(model, sft_model, prompts: Sequence[Sequence[int]], tokenizer,
                      reward_fn: Callable[[list[str]], Sequence[float]], max_new_tokens: int, seed: int) -> dict:
    """`policy_statistics`, and VADER, the fraction positive and distinct-n of the same samples."""
    stats = policy_statistics(model, sft_model, prompts, tokenizer, reward_fn, max_new_tokens, seed)
    texts = stats["texts"]
    vader = np.asarray(vader_reward(texts))
    return {"reward": stats["reward"], "vader": float(vader.mean()),
            "fraction_positive": float((vader > POSITIVE).mean()), "kl_to_sft": stats["kl_to_sft"],
            "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
            "response_length": stats["response_length"], "texts": texts}


def side_by_side(left: Sequence[str], right: Sequence[str], titles: tuple[str, str], width: int = 48) -> str:
    """Two columns of wrapped texts, row i of each next to the other."""
    lines = [f"{titles[0]:<{width}} | {titles[1]}", f"{'-' * width}-+-{'-' * width}"]
    for a, b in zip(left, right):
        wa, wb = textwrap.wrap(a, width) or [""], textwrap.wrap(b, width) or [""]
        for i in range(max(len(wa), len(wb))):
            lines.append(f"{(wa[i] if i < len(wa) else ''):<{width}} | {wb[i] if i < len(wb) else ''}".rstrip())
        lines.append(f"{'':<{width}} |")
    return "\n".join(lines[:-1])


PLOTTED = (("score_mean", "reward"), ("kl_to_ref", "KL to reference (nats / response)"),
           ("entropy", "entropy (nats / token)"), ("response_length", "response length (tokens)"),
           ("reward_margin", "DPO: implicit reward margin"), ("accuracy", "DPO: pair accuracy"))


def _pyplot(notice: Callable[[str], None]):
    """matplotlib.pyplot on a file-only backend, or None (with a notice) when it is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        notice("notice: matplotlib is not installed, so no plots were written (pip install matplotlib).")
        return None
    return plt


def write_plots(history: Sequence[dict], path, title: str, notice: Callable[[str], None] = print) -> pathlib.Path | None:
    """Reward, KL, entropy and length against iteration, as one PNG; skipped (with a notice) without matplotlib."""
    plt = _pyplot(notice)
    if plt is None:
        return None
    panels = [(key, label) for key, label in PLOTTED if any(key in h for h in history)]
    if not panels:
        notice(f"notice: the {title} history has none of {', '.join(k for k, _ in PLOTTED)}; no plot written.")
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        points = [(h.get("iteration", h.get("step")), h[key]) for h in history if key in h]
        ax.plot([p[0] for p in points], [p[1] for p in points])
        ax.set_xlabel("iteration")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_reward_against_kl(rows: Sequence[dict], path, notice: Callable[[str], None] = print) -> pathlib.Path | None:
    """One point per algorithm: its final mean reward against its KL to the SFT model."""
    plt = _pyplot(notice)
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for row in rows:
        ax.scatter(row["kl_to_sft"], row["reward"])
        ax.annotate(row["algo"], (row["kl_to_sft"], row["reward"]), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("KL(π ‖ π_sft), nats per response")
    ax.set_ylabel("mean reward")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def save_figure(fig, path) -> pathlib.Path:
    """Lay out `fig`, write it to `path` as a PNG and free it; returns the path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = pathlib.Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
