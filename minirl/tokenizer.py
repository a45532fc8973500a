"""Byte-level BPE: minirl trains the merges, tiktoken does the encoding.

Training (`train_bpe`) is the classic GPT-2 recipe: split text into chunks with
the GPT-2 regex, start from the 256 single bytes, and repeatedly merge the most
frequent adjacent pair. The result is a `dict[bytes, int]` of *ranks* (lower rank
= merged earlier), which is exactly what `tiktoken.Encoding` consumes, so
encoding and decoding run in tiktoken's Rust core.

Vocabulary layout of a trained tokenizer of `vocab_size` V:
    ids 0..255      the single bytes, in byte order
    ids 256..V-2    the merges, in the order they were learned
    id  V-1         <|endoftext|> (EOT), the only special token

Ranks are stored in tiktoken's own rank-file format, one token per line:
`base64(token_bytes) rank`.
"""

from __future__ import annotations

import base64
import heapq
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import regex  # a dependency of tiktoken; the stdlib `re` has no \p{L}
import tiktoken

from minirl.atomic import write_atomic

# tiktoken's r50k/gpt2 pattern. The possessive quantifiers (`++`) only make
# matching faster; the chunks are those of the original GPT-2 pattern.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
EOT = "<|endoftext|>"


def _merge(ids: list[int], a: int, b: int, new_id: int) -> list[int]:
    """Replace every non-overlapping (a, b) in `ids`, left to right, by `new_id`."""
    out, i, n = [], 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_bpe(
    texts: Iterable[str], vocab_size: int, pattern: str = GPT2_SPLIT_PATTERN
) -> dict[bytes, int]:
    """Learn byte-level BPE ranks; returns at most `vocab_size - 1` ranks.

    `vocab_size` counts <|endoftext|>, so the ranks fill ids 0..vocab_size-2 and
    EOT takes vocab_size-1. Each step merges the most frequent adjacent pair;
    ties go to the lexicographically smallest (left bytes, right bytes), so the
    result depends only on the texts. Training stops early, with fewer ranks,
    once no pair occurs at least twice: such a merge memorises one word and
    teaches nothing about the corpus.

    Speed: chunks are counted once, so each distinct chunk ("word") is stored
    once with its count. Pair counts and an index pair -> words are updated
    only for the words that contain the merged pair, and a max-heap with lazy
    deletion (an entry is stale when its count no longer matches) picks the
    next pair, so no step recounts the corpus.

    Should a merge spell bytes that are already a token (two merge paths to
    the same string; it never happened on the tweets), the words are
    rewritten to that token and no rank is spent: tiktoken's ranks map bytes
    to one id, so a second id for the same bytes could never be produced.
    """
    if vocab_size < 257:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: it must be at least 257 "
            "(256 single bytes + <|endoftext|>)"
        )
    split = regex.compile(pattern)
    chunk_counts: Counter[str] = Counter()
    for text in texts:
        chunk_counts.update(split.findall(text))
    if not chunk_counts:
        raise ValueError("cannot train BPE on an empty corpus: no non-empty text was given")

    words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
    counts = list(chunk_counts.values())
    token_bytes = [bytes([i]) for i in range(256)]  # id -> bytes; an id is its rank
    ranks = {t: i for i, t in enumerate(token_bytes)}

    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> words holding it
    for w, ids in enumerate(words):
        for pair in zip(ids, ids[1:]):
            pair_counts[pair] += counts[w]
            where[pair].add(w)

    def entry(pair: tuple[int, int]) -> tuple:
        a, b = pair
        return (-pair_counts[pair], token_bytes[a], token_bytes[b], a, b)

    heap = [entry(pair) for pair in pair_counts]
    heapq.heapify(heap)
    while heap and len(ranks) < vocab_size - 1:
        neg_count, left, right, a, b = heapq.heappop(heap)
        if pair_counts.get((a, b)) != -neg_count:
            continue  # stale entry: the pair's count changed after it was pushed
        if -neg_count < 2:
            break
        merged = left + right
        new_id = ranks.get(merged)
        if new_id is None:
            new_id = ranks[merged] = len(token_bytes)
            token_bytes.append(merged)

        changed: set[tuple[int, int]] = set()
        for w in where.pop((a, b)):
            old, n = words[w], counts[w]
            new = _merge(old, a, b, new_id)
            old_pairs, new_pairs = Counter(zip(old, old[1:])), Counter(zip(new, new[1:]))
            for pair, k in old_pairs.items():
                if new_pairs[pair] != k:
                    pair_counts[pair] += (new_pairs[pair] - k) * n
                    changed.add(pair)
                if pair not in new_pairs and pair != (a, b):
                    where[pair].discard(w)
            for pair, k in new_pairs.items():
                if pair not in old_pairs:
                    pair_counts[pair] += k * n
                    where[pair].add(w)
                    changed.add(pair)
            words[w] = new
        for pair in changed:
            if pair_counts[pair] > 0:
                heapq.heappush(heap, entry(pair))
            else:
                del pair_counts[pair]
                where.pop(pair, None)
    return ranks


def ranks_to_text(ranks: dict[bytes, int]) -> str:
    """Ranks in tiktoken's rank-file format, sorted by rank (for files and checkpoints)."""
    return "".join(
        f"{base64.b64encode(token).decode('ascii')} {rank}\n"
        for token, rank in sorted(ranks.items(), key=lambda item: item[1])
    )


def ranks_from_text(text: str, source: str = "<string>") -> dict[bytes, int]:
    """Parse tiktoken's rank-file format; errors name `source` and the line number."""
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError(f"expected 2 fields, found {len(parts)}")
            token, rank = base64.b64decode(parts[0], validate=True), int(parts[1])
        except ValueError as e:  # binascii.Error is a ValueError
            raise ValueError(
                f"{source}, line {lineno}: malformed rank line {line[:60]!r} "
                f"(expected 'base64(token) rank'): {e}"
            ) from None
        if token in ranks:
            raise ValueError(f"{source}, line {lineno}: token {token!r} appears twice")
        ranks[token] = rank
    if not ranks:
        raise ValueError(f"{source} holds no ranks")
    return ranks


def save_ranks(ranks: dict[bytes, int], path: str | os.PathLike) -> None:
    """Write a rank file atomically: a crash leaves the old file or the new one, never half."""
    path = Path(path)
    write_atomic(path, ranks_to_text(ranks), encoding="ascii")


def load_ranks(path: str | os.PathLike) -> dict[bytes, int]:
    """Read a rank file. Parsed here, not by tiktoken.load, which may try to download."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"rank file not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: byte {raw[e.start]:#04x} is not ASCII, so this is not a tiktoken rank "
                         "file (each line is 'base64(token) rank'). Point to the tokenizer.tiktoken a minirl run "
                         "wrote, or delete it to train a new one.") from None
    return ranks_from_text(text, source=str(path))


def _check_ranks(ranks: dict[bytes, int]) -> None:
    """tiktoken panics on a byte it has no token for, and EOT needs the id after the last rank."""
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise ValueError(
            f"ranks lack {len(missing)} single bytes (first: {missing[0]}); every byte needs a token"
        )
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError(f"ranks must be exactly 0..{len(ranks) - 1}, each used once")


class Tokenizer:
    """A byte-level BPE tokenizer: ranks trained by minirl, encoding by tiktoken.

    Ordinary text never produces EOT: `encode` treats a literal "<|endoftext|>"
    in user text as plain characters, so data cannot inject document breaks.
    EOT is appended only on request (`eot=True`).

    Any string round-trips exactly: `decode(encode(s)) == s`. Decoding an
    arbitrary id sequence can cut a multi-byte character in half; `decode`
    then writes U+FFFD (errors="replace"), while `decode_bytes` is lossless.
    """

    def __init__(self, ranks: dict[bytes, int], pattern: str = GPT2_SPLIT_PATTERN):
        _check_ranks(ranks)
        self.ranks = dict(ranks)
        self.pattern = pattern
        self.eot_id = len(ranks)
        self.vocab_size = len(ranks) + 1
        self._enc = tiktoken.Encoding(
            name=f"minirl-bpe-{self.vocab_size}",
            pat_str=pattern,
            mergeable_ranks=self.ranks,
            special_tokens={EOT: self.eot_id},
        )

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, pattern: str = GPT2_SPLIT_PATTERN) -> Tokenizer:
        """Train BPE ranks on `texts`; `vocab_size` includes EOT (see `train_bpe`)."""
        return cls(train_bpe(texts, vocab_size, pattern), pattern)

    @classmethod
    def from_ranks(cls, ranks: dict[bytes, int], pattern: str = GPT2_SPLIT_PATTERN) -> Tokenizer:
        """A tokenizer from ranks, e.g. `ranks_from_text` of a checkpoint's string."""
        return cls(ranks, pattern)

    @classmethod
    def load(cls, path: str | os.PathLike, pattern: str = GPT2_SPLIT_PATTERN) -> Tokenizer:
        """Load a rank file. The file holds no pattern: pass the one used in training."""
        return cls(load_ranks(path), pattern)

    def save(self, path: str | os.PathLike) -> None:
        """Write the ranks as a tiktoken rank file, atomically."""
        save_ranks(self.ranks, path)

    def encode(self, text: str, *, eot: bool = False) -> list[int]:
        """Token ids of `text`, plus EOT at the end when `eot` is set."""
        ids = self._enc.encode_ordinary(text)
        return ids + [self.eot_id] if eot else ids

    def encode_batch(self, texts: Sequence[str], *, eot: bool = False) -> list[list[int]]:
        """`encode` over many texts.

        A plain loop: tiktoken's `encode_ordinary_batch` hands each text to a thread
        pool, and for short documents such as tweets or 280-character chunks that
        costs more than the encoding (on 2 cores, 36k tweets: 1.5 s in its pool,
        0.38 s in this loop). Many cores and long documents might favour the pool.
        """
        encode = self._enc.encode_ordinary
        if eot:
            return [encode(text) + [self.eot_id] for text in texts]
        return [encode(text) for text in texts]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The exact bytes behind `ids` (EOT decodes to b"<|endoftext|>")."""
        return self._enc.decode_bytes(self._check_ids(ids))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`; bytes that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def _check_ids(self, ids: Iterable[int]) -> list[int]:
        # .tolist() turns a 1-D NumPy/CuPy array into Python ints in one call.
        ids = ids.tolist() if hasattr(ids, "tolist") else [int(i) for i in ids]
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            bad = next(i for i in ids if not 0 <= i < self.vocab_size)
            raise ValueError(
                f"token id {bad} is out of range: this tokenizer has vocab_size="
                f"{self.vocab_size} (valid ids 0..{self.vocab_size - 1})"
            )
        return ids

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, eot_id={self.eot_id})"
