"""Preference pairs for reward models and DPO: a prompt x, a preferred y_w and a rejected y_l.

Pairs here come from human labels: a tweet labelled positive beats one labelled
negative (MATH.md §2). `pad_right` and `collate_pairs` turn them into padded
(tokens, mask) batches.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from minirl import backend


@dataclass(frozen=True)
class PreferencePair:
    """``x ‖ y_w`` is preferred to ``x ‖ y_l``."""

    prompt_ids: tuple[int, ...]
    """the shared prompt x ([EOT] alone for unconditional text such as tweets)"""
    chosen_ids: tuple[int, ...]
    """the preferred response y_w, ending with EOT"""
    rejected_ids: tuple[int, ...]
    """the rejected response y_l, ending with EOT"""

    def __post_init__(self):
        for name in ("prompt_ids", "chosen_ids", "rejected_ids"):
            object.__setattr__(self, name, tuple(int(i) for i in getattr(self, name)))

    @property
    def chosen(self) -> tuple[int, ...]:
        """``x ‖ y_w``, the sequence the reward model scores."""
        return self.prompt_ids + self.chosen_ids

    @property
    def rejected(self) -> tuple[int, ...]:
        """``x ‖ y_l``."""
        return self.prompt_ids + self.rejected_ids


def pairs_from_labels(corpus, tokenizer, n_pairs: int, seed: int = 0, positive: str = "positive",
                      negative: str = "negative", prefix_tokens: int = 0) -> list[PreferencePair]:
    """`n_pairs` pairs (a `positive` text beats a `negative` one), drawn uniformly, deterministic in `seed`.

    Tweets share no prompt, so with ``prefix_tokens = 0`` the prompt is just [EOT]
    (where unconditional generation starts) and each response is a whole tweet plus
    EOT. With ``prefix_tokens = k > 0`` the prompt is [EOT] plus the first k tokens,
    and a pair only joins texts that start with the *same* k tokens (e.g. "@user"),
    so the two responses really continue one prompt, as in RL. The positive text is
    drawn uniformly among those with a matching negative, then the negative among
    its prefix group. Draws are with replacement: a text can appear in many pairs.

    Build train and validation pairs from disjoint splits (`train_val_split`), so
    held-out accuracy is measured on texts the reward model never saw.
    """
    if corpus.labels is None:
        raise ValueError(f"corpus {corpus.name!r} has no labels, so no pairs can be derived from them; "
                         "load a labelled corpus (tweets, movie_reviews) or a file with a label column.")
    names = list(corpus.label_names)
    for role, name in (("positive", positive), ("negative", negative)):
        if name not in names:
            raise ValueError(f"{role} label {name!r} is not in corpus {corpus.name!r}; its labels are {names}.")
    if positive == negative:
        raise ValueError(f"positive and negative are both {positive!r}; a pair needs two different labels.")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}.")
    if prefix_tokens < 0:
        raise ValueError(f"prefix_tokens must be >= 0, got {prefix_tokens}.")
    eot = tokenizer.eot_id
    ids = tokenizer.encode_batch(corpus.texts)
    groups: dict[int, dict[tuple, list[int]]] = {names.index(positive): defaultdict(list),
                                                  names.index(negative): defaultdict(list)}
    for i, (doc, label) in enumerate(zip(ids, corpus.labels)):
        if label in groups and len(doc) > prefix_tokens:  # the response must keep at least one text token
            groups[label][tuple(doc[:prefix_tokens])].append(i)
    pos_groups, neg_groups = groups[names.index(positive)], groups[names.index(negative)]
    shared = sorted(set(pos_groups) & set(neg_groups))
    candidates = [i for prefix in shared for i in pos_groups[prefix]]  # positives with a matching negative
    if not candidates:
        counts = corpus.label_counts()
        raise ValueError(f"no ({positive!r}, {negative!r}) pair can be formed from corpus {corpus.name!r} "
                         f"(label counts {counts}, prefix_tokens={prefix_tokens}): both labels need texts "
                         "longer than the prefix, with a prefix in common.")
    rng = np.random.default_rng(seed)
    pairs = []
    for i in rng.choice(candidates, size=n_pairs):
        prefix = tuple(ids[i][:prefix_tokens])
        group = neg_groups[prefix]
        j = group[rng.integers(len(group))]
        pairs.append(PreferencePair((eot,) + prefix, ids[i][prefix_tokens:] + [eot],
                                    ids[j][prefix_tokens:] + [eot]))
    return pairs


def pad_right(seqs: Sequence[Sequence[int]], block_size: int, pad_id: int = 0):
    """Token lists -> (tokens (B, T) int64, mask (B, T) bool) on the active backend, T = longest row.

    Rows are right-padded: a row's real tokens are columns 0..L-1 and ``mask`` is 1
    exactly there. A row longer than `block_size` keeps its first `block_size` tokens
    (its end, and its EOT, are cut: a reward head then reads the last kept token).
    Masked positions never influence anything, so any valid id serves as `pad_id`.
    """
    if len(seqs) == 0:
        raise ValueError("pad_right got no sequences.")
    lengths = [min(len(s), block_size) for s in seqs]
    if min(lengths) == 0:
        raise ValueError(f"sequence {lengths.index(0)} is empty; every row needs at least one token.")
    T = max(lengths)
    tokens = np.full((len(seqs), T), pad_id, dtype=np.int64)  # (B, T)
    mask = np.zeros((len(seqs), T), dtype=bool)  # (B, T)
    for b, (s, n) in enumerate(zip(seqs, lengths)):
        tokens[b, :n] = s[:n]
        mask[b, :n] = True
    return backend.to_backend(tokens), backend.to_backend(mask)


def collate_pairs(pairs: Sequence[PreferencePair], block_size: int, pad_id: int = 0):
    """Pairs -> (chosen_tokens, chosen_mask, rejected_tokens, rejected_mask), each (B, T).

    Chosen and rejected rows share one width T, so a trainer can concatenate them
    into a single (2B, T) forward pass. Right padding and truncation as in `pad_right`.
    """
    if len(pairs) == 0:
        raise ValueError("collate_pairs got no pairs.")
    tokens, mask = pad_right([p.chosen for p in pairs] + [p.rejected for p in pairs], block_size, pad_id)  # (2B, T)
    B = len(pairs)
    return tokens[:B], mask[:B], tokens[B:], mask[B:]
