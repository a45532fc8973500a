"""RL from AI feedback (Bai et al. 2022; Lee et al. 2023; MATH.md §7): an AI judge labels the pairs.

1. Sample two responses per prompt from the current policy.
2. A judge says which is better.
3. The labelled pairs train a reward model (`train_reward_model`, MATH.md §2) or the
   policy directly (`train_dpo`, MATH.md §6).

A judge is any callable ``judge(prompt_text, text_a, text_b) -> 0 | 1``: 0 when text_a is
the better response, 1 when text_b is. `score_judge` makes one from any scorer of texts
(VADER, a classifier), `model_judge` from a second minirl model (a trained reward model).
`judge_agreement` compares two reward models, e.g. one trained on judge labels and one
trained on human labels, text by text.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from minirl.data.preferences import PreferencePair
from minirl.rl.reward_health import pearson
from minirl.rl.reward_model import reward_fn_from_model

Judge = Callable[[str, str, str], int]


def score_judge(score_fn: Callable[[list[str]], Sequence[float]]) -> Judge:
    """A judge that prefers the response with the higher ``score_fn`` score.

    `score_fn` maps a list of texts to one float each, like the RL reward functions
    (`minirl.rl.sentiment.vader_reward`); it sees the responses only, as R(x, y) does
    in the RL loop. A NaN or infinite score is refused (ValueError). A tie goes to
    text_a. That is deterministic, and because `label_pairs_with_judge` presents the
    two samples in the order they were drawn, a tied pair gets a label that is random
    with respect to its content: noise, but no bias (a "shorter wins" rule would teach
    the reward model to prefer short texts).
    """
    def judge(prompt_text: str, text_a: str, text_b: str) -> int:
        s_a, s_b = (float(s) for s in score_fn([text_a, text_b]))
        if not (math.isfinite(s_a) and math.isfinite(s_b)):  # NaN >= x is False: it would silently pick text_b
            raise ValueError(f"the score function gave {s_a} to {text_a!r} and {s_b} to {text_b!r}; a judge needs "
                             "finite scores. Fix the reward function (or make it return 0 for texts it cannot score).")
        return 0 if s_a >= s_b else 1
    judge.__name__ = f"score_judge({getattr(score_fn, '__name__', 'score_fn')})"
    return judge


def model_judge(reward_model, tokenizer, batch_size: int = 64) -> Judge:
    """A judge from a second minirl model: a `ScalarHeadModel` reward model reads ``x ‖ y``
    (via `reward_fn_from_model`) and the higher reward wins; a tie goes to text_a."""
    reward_fn = reward_fn_from_model(reward_model, tokenizer, batch_size)

    def judge(prompt_text: str, text_a: str, text_b: str) -> int:
        r_a, r_b = reward_fn([prompt_text + text_a, prompt_text + text_b])
        return 0 if r_a >= r_b else 1
    judge.__name__ = "model_judge"
    return judge


def _checked_label(label, index: int) -> int:
    valid = isinstance(label, (int, np.integer)) and not isinstance(label, (bool, np.bool_)) and label in (0, 1)
    if not valid:
        raise ValueError(f"the judge returned {label!r} (a {type(label).__name__}) for pair {index}; a judge must "
                         "return the int 0 (text_a is better) or 1 (text_b is better).")
    return int(label)


def label_pairs_with_judge(policy, prompts: Sequence[Sequence[int]], judge: Judge, tokenizer, max_new_tokens: int, *,
                           temperature: float = 1.0, rng=None, batch_size: int = 64) -> list[PreferencePair]:
    """Sample two responses per prompt from `policy`, let `judge` pick, return the pairs.

    Pair i belongs to ``prompts[i]``. Each response keeps its tokens exactly as sampled,
    EOT included when the policy produced it, so DPO scores the very sequences the
    policy drew. The judge sees the decoded prompt (without EOT) and the two decoded
    responses. A pair whose two responses are the same tokens is skipped: it states no
    preference (DPO's h ≡ 0, and `train_dpo` refuses it), so the result can be shorter
    than `prompts`. A judge that raises or returns anything but 0 or 1 stops the
    labelling with a ValueError naming the pair.
    """
    if tokenizer.vocab_size != policy.config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the policy expects "
                         f"{policy.config.vocab_size}; use the tokenizer it was trained with.")
    eot = tokenizer.eot_id
    pairs = []
    for start in range(0, len(prompts), batch_size):
        chunk = [list(p) for p in prompts[start:start + batch_size]]
        doubled = [p for p in chunk for _ in range(2)]  # (2B,): rows 2i and 2i+1 answer prompt i
        gen = policy.generate(doubled, max_new_tokens, temperature=temperature, eot_id=eot, rng=rng)
        responses = gen.responses()
        for j, prompt in enumerate(chunk):
            i = start + j
            response_a, response_b = responses[2 * j], responses[2 * j + 1]
            if response_a == response_b:
                continue
            prompt_text, text_a, text_b = (tokenizer.decode([t for t in ids if t != eot])
                                           for ids in (prompt, response_a, response_b))
            try:
                label = judge(prompt_text, text_a, text_b)
            except Exception as e:
                raise ValueError(f"the judge raised {type(e).__name__} on pair {i} ({text_a!r} vs {text_b!r}): "
                                 f"{e}") from e
            chosen, rejected = (response_a, response_b) if _checked_label(label, i) == 0 else (response_b, response_a)
            pairs.append(PreferencePair(prompt, chosen, rejected))
    return pairs


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 0..N-1 of x, tied values sharing their mean rank (what Spearman's ρ correlates)."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, ranks)
    return sums[inverse] / counts[inverse]


def judge_agreement(rm_a, rm_b, texts: Sequence[str], tokenizer) -> dict:
    """How two reward models agree on `texts`, each scored as ``[EOT] + text + [EOT]``.

    - ``pairwise_agreement``: over all N(N−1)/2 pairs i < j, the fraction where the two
      models order the texts the same way, ``mean[sign(a_i − a_j) = sign(b_i − b_j)]``
      (a tie agrees only with a tie). 1 is the same ranking, 0.5 unrelated, 0 reversed.
    - ``pearson``: the linear correlation of the two scores; ``spearman``: that of
      their ranks (ties share a mean rank). NaN when a model gives every text one score.
    """
    if len(texts) < 2:
        raise ValueError(f"judge_agreement needs at least 2 texts to form a pair, got {len(texts)}.")
    a = np.asarray(reward_fn_from_model(rm_a, tokenizer)(list(texts)), dtype=np.float64)  # (N,)
    b = np.asarray(reward_fn_from_model(rm_b, tokenizer)(list(texts)), dtype=np.float64)  # (N,)
    upper = np.triu_indices(len(texts), k=1)  # the N(N−1)/2 pairs i < j
    sign_a = np.sign(a[:, None] - a[None, :])[upper]  # (N(N−1)/2,)
    sign_b = np.sign(b[:, None] - b[None, :])[upper]
    return {
        "n_texts": len(texts),
        "n_pairs": int(sign_a.size),
        "pairwise_agreement": float((sign_a == sign_b).mean()),
        "pearson": pearson(a, b),
        "spearman": pearson(_ranks(a), _ranks(b)),
    }

