"""Token batches for language-model training: ``(x, y, mask)`` with ``y`` one step ahead of ``x``."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from minirl import backend


class TokenStream:
    """Every document tokenized and joined by <|endoftext|> into one long stream.

    A batch is B random windows of block_size + 1 tokens: ``x = w[:-1]``, ``y = w[1:]``
    (the nanoGPT recipe). Windows cross document boundaries; the EOT between
    documents teaches the model where a tweet ends. Every token counts (mask None).
    """

    def __init__(self, ids: np.ndarray, block_size: int):
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 1:
            raise ValueError(f"TokenStream needs a 1-D array of token ids, got shape {ids.shape}.")
        if len(ids) < block_size + 1:
            raise ValueError(f"the corpus has {len(ids)} tokens, fewer than block_size + 1 = {block_size + 1}; "
                             "use more text or a smaller block_size.")
        self.ids, self.block_size = ids, block_size

    @classmethod
    def from_texts(cls, texts: Sequence[str], tokenizer, block_size: int) -> TokenStream:
        if len(texts) == 0:
            raise ValueError("cannot build a token stream from an empty corpus.")
        docs = tokenizer.encode_batch(list(texts), eot=True)
        return cls(np.fromiter((t for doc in docs for t in doc), dtype=np.int64), block_size)

    def __len__(self) -> int:
        return len(self.ids)

    def sample(self, rng: np.random.Generator, batch_size: int):
        """B random windows: x, y of shape (B, T) on the active backend, and mask None."""
        starts = rng.integers(0, len(self.ids) - self.block_size, size=batch_size)
        window = self.ids[starts[:, None] + np.arange(self.block_size + 1)]  # (B, T+1)
        return backend.to_backend(window[:, :-1]), backend.to_backend(window[:, 1:]), None
