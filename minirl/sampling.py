"""Sampling from a GPT with the KV cache: temperature, top-k, top-p, and per-row stopping."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from minirl import backend
from minirl import functional as F
from minirl.model import GPT, KVCache, positions_from_mask
from minirl.tensor import no_grad


@dataclass
class Generation:
    """A batch of prompts and sampled continuations, all aligned on one (B, P+N) grid.

    Prompts are **left-padded** to a common length P, so every row's response starts
    at column P and the new tokens of a step sit in one column.
    """

    tokens: object
    """(B, P+N) int token ids: left padding, prompt, response (padding after a row stops)"""
    attention_mask: object
    """(B, P+N) bool: real tokens (prompt and response up to and including EOT)"""
    response_mask: object
    """(B, P+N) bool: the sampled tokens, ending at the first EOT inclusive (the m_t of MATH.md)"""
    logprobs: object
    """(B, P+N) float: log π(a_t | s_t) of each sampled token at the sampling temperature; 0 elsewhere"""
    prompt_length: int
    """P, the padded prompt length: responses start at this column"""

    def responses(self) -> list[list[int]]:
        """Each row's sampled token ids (EOT included when it was produced)."""
        tokens, mask = backend.to_numpy(self.tokens), backend.to_numpy(self.response_mask)
        return [row[m].tolist() for row, m in zip(tokens, mask)]


_BLOCK = 64


def inverse_cdf(w, r):
    """Draw ``ids[b] = min{i : Σ_{k≤i} w[b, k] > r[b] · Σ_k w[b, k]}`` from (B, V) weights
    ``w ≥ 0`` and uniforms r (B, 1) in [0, 1): inverse-CDF sampling, in two levels.

    A full running sum costs a serial pass over all V weights (NumPy's cumsum, about
    4 ns a number). Instead, cut each row into blocks of 64: sum every block (one
    vectorised pass), take the running sum of the V/64 block masses, find the block
    the threshold u = r·Σw falls in, and run the cumsum only inside that block.

    A token of zero weight is never drawn: the chosen i has ``cdf(i) > u ≥ cdf(i-1)``,
    so its weight is positive (and u < Σw, so the chosen block has mass). Two things
    can break that, so the draw is checked and falls back to the block's last token of
    positive weight: round-off can put u past the end of the block's own cumsum (the
    block mass and the in-block cumsum add in different orders), and a parallel scan,
    as on a GPU, need not be monotone (NumPy's sequential cumsum is). A row with no
    mass at all (every logit -inf) gets the last id, V - 1.
    """
    w, r = backend.to_backend(w), backend.to_backend(r)
    xp = backend.get_array_module(w)
    if w.ndim != 2 or w.shape[1] == 0 or tuple(r.shape) != (w.shape[0], 1):
        raise ValueError(f"inverse_cdf expects weights (B, V) with V >= 1 and uniforms (B, 1); "
                         f"got {tuple(w.shape)} and {tuple(r.shape)}.")
    B, V = w.shape
    nb = -(-V // _BLOCK)
    if nb * _BLOCK != V:
        w = xp.concatenate([w, xp.zeros((B, nb * _BLOCK - V), dtype=w.dtype)], axis=1)
    blocks = w.reshape(B, nb, _BLOCK)
    # Work on (blocks, B) arrays: a running sum down axis 0 adds whole rows of B at a time.
    ends = xp.cumsum(xp.einsum("bnk->nb", blocks), axis=0)  # (nb, B): running mass at each block's end
    total = ends[-1]
    u = r[:, 0] * total  # (B,) the threshold; r < 1 keeps it below the total (the product never rounds up)
    j = xp.minimum((ends <= u).sum(axis=0), nb - 1)  # (B,) the block u falls in; it has positive mass
    cols = xp.arange(B)
    start = xp.where(j > 0, ends[j - 1, cols], 0)  # mass before block j
    inside = blocks[cols, j].T  # (64, B)
    i = ((start + xp.cumsum(inside, axis=0)) <= u).sum(axis=0)
    i = xp.minimum(i, _BLOCK - 1)  # 64 when round-off put u past the block's own cumsum
    last = _BLOCK - 1 - xp.argmax(inside[::-1] > 0, axis=0)  # the block's last token of positive weight
    i = xp.where(inside[i, cols] > 0, i, last)  # the one fallback, for round-off or a scan that dips
    return xp.minimum(j * _BLOCK + i, V - 1)  # V - 1: a row with no mass at all


def sample_next(logits, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                rng=None):
    """Draw one token per row from (B, V) logits; returns (ids (B,), logprobs (B,)).

    The log-prob is under ``softmax(logits / τ)``, the full tempered distribution,
    which is what `GPT.logprobs(..., temperature=τ)` recomputes for the RL losses.
    top-k keeps the k largest logits; top-p (nucleus, Holtzman et al. 2020) keeps the
    smallest set whose probability reaches p. Both only restrict where samples may
    land; with them on, the returned log-probs are those of the untruncated policy.
    """
    logits = backend.to_backend(logits)
    xp = backend.get_array_module(logits)
    if not 0 < temperature < float("inf"):  # NaN too: it would sample garbage
        raise ValueError(f"temperature must be positive, got {temperature}; use top_k=1 for greedy decoding.")
    scaled = logits / temperature if temperature != 1.0 else logits  # (B, V)
    weights, total, shift = F.softmax_parts(scaled, -1)  # unnormalised probs: weights / total
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}.")
        k = min(top_k, scaled.shape[-1])
        # the k-th largest logit, partitioned from the small side: CuPy sorts the whole row once kth >= 1024
        kth = -xp.partition(-scaled, k - 1, axis=-1)[:, :k].max(axis=-1, keepdims=True)
        xp.copyto(weights, 0, where=scaled < kth)  # not weights[mask] = 0: a boolean index syncs on a GPU
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}.")
    if top_p is not None and top_p < 1.0:  # 1.0 keeps everything; skip the sort (and its round-off)
        order = xp.argsort(-weights, axis=-1)
        sorted_w = xp.take_along_axis(weights, order, axis=-1)
        ahead = xp.cumsum(sorted_w, axis=-1) - sorted_w  # mass strictly ahead of each token
        drop = xp.zeros(weights.shape, dtype=bool)
        xp.put_along_axis(drop, order, ahead >= top_p * sorted_w.sum(axis=-1, keepdims=True), axis=-1)
        xp.copyto(weights, 0, where=drop)
    rng = rng if rng is not None else backend.device_rng()
    r = backend.to_backend(rng.random((weights.shape[0], 1), dtype=weights.dtype))  # a NumPy rng's draws move
    ids = inverse_cdf(weights, r)  # on unnormalised weights
    logprobs = (xp.take_along_axis(scaled, ids[:, None], axis=-1) - shift) - xp.log(total)
    return ids, logprobs[:, 0]


def generate(model: GPT, prompts: Sequence[Sequence[int]], max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, eot_id: int | None = None,
             rng=None, use_cache: bool = True) -> Generation:
    """Sample up to `max_new_tokens` per prompt; a row stops after it emits `eot_id`.

    With `use_cache`, each step feeds only the newest token and reads the earlier
    keys and values from a KVCache; without it, each step recomputes the whole
    prefix (kept for tests and the benchmark). Runs under no_grad, in eval mode.
    """
    xp = backend.xp()
    cfg = model.config
    if len(prompts) == 0:
        raise ValueError("generate needs at least one prompt.")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty; start unconditional samples with the <|endoftext|> id.")
        backend.check_range(backend.to_numpy(p), 0, cfg.vocab_size, f"prompt {i}: token id {{bad}} is out of range "
                            f"for vocab_size={cfg.vocab_size}; was the model built for a different tokenizer?")
    P = max(len(p) for p in prompts)
    if P + max_new_tokens > cfg.block_size:
        raise ValueError(f"prompt length {P} + max_new_tokens {max_new_tokens} = {P + max_new_tokens} exceeds "
                         f"block_size={cfg.block_size}; shorten the prompts or ask for fewer tokens.")
    B, pad = len(prompts), eot_id if eot_id is not None else 0
    tokens = xp.full((B, P + max_new_tokens), pad, dtype=xp.int64)
    attention = xp.zeros((B, P + max_new_tokens), dtype=bool)
    for i, p in enumerate(prompts):
        tokens[i, P - len(p):P] = xp.asarray(list(p))
        attention[i, P - len(p):P] = True
    response = xp.zeros_like(attention)
    logprobs = xp.zeros((B, P + max_new_tokens), dtype=backend.default_dtype())
    done = xp.zeros(B, dtype=bool)
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            cache = KVCache(cfg, B) if use_cache else None
            positions = positions_from_mask(attention[:, :P])
            hidden = model.hidden_states(tokens[:, :P], key_mask=attention[:, :P], positions=positions, cache=cache)
            end = P
            for t in range(P, P + max_new_tokens):
                logits = model.lm_logits(hidden[:, -1]).data  # (B, V)
                ids, lp = sample_next(logits, temperature, top_k, top_p, rng)
                tokens[:, t] = xp.where(done, pad, ids)
                response[:, t] = attention[:, t] = ~done
                logprobs[:, t] = xp.where(done, 0, lp)
                end = t + 1
                if eot_id is not None:
                    done |= ids == eot_id
                if t + 1 == P + max_new_tokens:
                    break
                if (t - P + 1) % backend.poll_interval() == 0 and bool(done.all()):  # a sync on a GPU: not every token
                    break
                if use_cache:  # feed only the new token; keys and values of the rest are cached
                    step_pos = positions_from_mask(attention[:, :t + 1])[:, -1:]  # (B, 1)
                    hidden = model.hidden_states(tokens[:, t:t + 1], key_mask=attention[:, :t + 1],
                                                 positions=step_pos, cache=cache)
                else:
                    hidden = model.hidden_states(tokens[:, :t + 1], key_mask=attention[:, :t + 1],
                                                 positions=positions_from_mask(attention[:, :t + 1]))
    finally:
        model.train(was_training)
    return Generation(tokens[:, :end], attention[:, :end], response[:, :end], logprobs[:, :end], P)
