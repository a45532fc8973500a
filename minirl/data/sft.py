"""Prompt/response examples for supervised fine-tuning, with the prompt masked (MATH.md §1).

SFT minimises ``NLL = -(1/Σm) Σ_t m_t log π_θ(a_t | s_t)`` where ``m_t = 1`` only for
response tokens: the model is taught to continue a prompt, never to produce one.
`SFTDataset.sample` returns ``(x, y, mask)`` exactly like `TokenStream.sample`, so
`minirl.train.train_lm` trains on it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from minirl import backend


@dataclass(frozen=True)
class SFTExample:
    """One supervised example: the model reads `prompt_ids` and learns to write `response_ids`."""

    prompt_ids: tuple[int, ...]
    """the context x, not trained on (at least one token: generation needs something to start from)"""
    response_ids: tuple[int, ...]
    """the target y = (a_1 … a_T), normally ending with <|endoftext|>"""

    def __post_init__(self):
        object.__setattr__(self, "prompt_ids", tuple(int(i) for i in self.prompt_ids))
        object.__setattr__(self, "response_ids", tuple(int(i) for i in self.response_ids))


class SFTDataset:
    """Examples as fixed rows of ``block_size + 1`` tokens, with a loss mask over the response.

    Row layout, for prompt length P and response length R (``P + R ≤ block_size + 1``)::

        seq  = prompt ‖ response ‖ pad …        (block_size + 1,)  right-padded with pad_id
        x    = seq[:-1]                         (block_size,)       what the model reads
        y    = seq[1:]                          (block_size,)       what it must predict: y[t] = seq[t+1]
        mask[t] = 1  iff  y[t] is a response token  iff  P - 1 ≤ t < P + R - 1

    So the first counted position is t = P - 1, where x[t] is the *last prompt token*
    and y[t] the first response token; the last is t = P + R - 2, where y[t] is the
    response's final token (the EOT, which teaches the model to stop). Predictions
    of prompt tokens and of padding never count.

    An example longer than ``block_size + 1`` tokens is truncated at the end: its
    response loses its tail and its EOT (the model is then taught that the text
    goes on, which is true). A prompt that leaves no room for a single response
    token is refused. Padding sits only after the sequence, and attention is causal,
    so pad tokens never influence a counted prediction: any valid id serves as pad_id.
    """

    def __init__(self, examples: Sequence[SFTExample], block_size: int, pad_id: int):
        if len(examples) == 0:
            raise ValueError("SFTDataset got no examples; check that the corpus (or its filtered subset) "
                             "is not empty and that its texts are longer than the prompt.")
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}.")
        n, width = len(examples), block_size + 1
        seqs = np.full((n, width), pad_id, dtype=np.int64)  # (N, T+1)
        mask = np.zeros((n, block_size), dtype=bool)  # (N, T)
        for i, ex in enumerate(examples):
            P, R = len(ex.prompt_ids), len(ex.response_ids)
            if P == 0 or R == 0:
                raise ValueError(f"example {i} has an empty {'prompt' if P == 0 else 'response'}; every example "
                                 "needs at least one prompt token (e.g. <|endoftext|>) and one response token.")
            if P >= width:
                raise ValueError(f"example {i}: its prompt has {P} tokens, leaving no room for a response in "
                                 f"block_size + 1 = {width}; shorten the prompt or raise block_size.")
            seq = (ex.prompt_ids + ex.response_ids)[:width]
            seqs[i, :len(seq)] = seq
            mask[i, P - 1:len(seq) - 1] = True  # y[t] = seq[t+1] is a response token
        self.seqs, self.mask = seqs, mask
        self.block_size, self.pad_id = block_size, pad_id

    @classmethod
    def from_texts(cls, texts: Sequence[str], tokenizer, block_size: int, prompt_tokens: int = 0) -> SFTDataset:
        """Each text becomes ``prompt = [EOT] + ids[:prompt_tokens]``, ``response = ids[prompt_tokens:] + [EOT]``.

        The leading EOT is where unconditional generation starts, so with
        ``prompt_tokens = 0`` this is "write a whole tweet". Texts with nothing left
        for the response (at most `prompt_tokens` tokens) are dropped; texts longer
        than the block are truncated as the class docstring describes. The pad id is
        the EOT id (it is never counted).
        """
        if prompt_tokens < 0 or prompt_tokens >= block_size:
            raise ValueError(f"prompt_tokens must be in [0, block_size={block_size}), got {prompt_tokens}.")
        eot = tokenizer.eot_id
        examples = [SFTExample([eot] + ids[:prompt_tokens], ids[prompt_tokens:] + [eot])
                    for ids in tokenizer.encode_batch(list(texts)) if len(ids) > prompt_tokens]
        if not examples:
            raise ValueError(f"no SFT examples from {len(texts)} texts: every text has at most "
                             f"prompt_tokens={prompt_tokens} tokens, or the corpus is empty.")
        return cls(examples, block_size, pad_id=eot)

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def n_response_tokens(self) -> int:
        """Σm over the whole dataset: how many tokens SFT actually trains on."""
        return int(self.mask.sum())

    def sample(self, rng: np.random.Generator, batch_size: int):
        """B rows drawn with replacement: x, y (B, T) int and mask (B, T) bool, on the active backend."""
        rows = rng.integers(0, len(self.seqs), size=batch_size)
        seq = self.seqs[rows]  # (B, T+1)
        return backend.to_backend(seq[:, :-1]), backend.to_backend(seq[:, 1:]), backend.to_backend(self.mask[rows])
