"""A tiny GPT (Radford et al. 2019): pre-LayerNorm transformer blocks, GELU MLPs,
learned positional embeddings, and an optional KV cache for fast sampling.

Shapes: B batch, T time, C = n_embd, nh = n_head, hs = head_size, V = vocab_size.

One import circle is kept on purpose: `GPT.generate` imports `minirl.sampling` inside the
method, and `sampling` imports this module (the model and its KV cache). The sampling loop
is long enough to deserve its own file, yet ``policy.generate(prompts, n)`` is what every
RL algorithm calls and what a reader of the model looks for. The import runs when the
method is first called, after both modules are loaded, so the circle never bites.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from minirl import backend, nn
from minirl import functional as F
from minirl.indexing import concatenate
from minirl.tensor import Tensor
from minirl.validation import ConfigError


@dataclass
class GPTConfig:
    vocab_size: int = 2048
    """number of token ids, <|endoftext|> included; take it from the tokenizer"""
    block_size: int = 64
    """longest sequence the model sees: the number of learned positions"""
    n_layer: int = 4
    """transformer blocks"""
    n_head: int = 3
    """attention heads per block"""
    n_embd: int = 128
    """width of the residual stream"""
    head_size: int | None = None
    """width of one head; None means n_embd // n_head. 128 is not divisible by 3, so the
    default card's heads are 42 wide: attention works in 3·42 = 126 dims and c_proj maps
    them back to 128. Set it explicitly (e.g. 43 or 64) to change that trade-off."""
    dropout: float = 0.0
    """dropout after embeddings, attention and MLP outputs (0 keeps RL's ρ ≡ 1 invariant)"""
    bias: bool = True
    """biases in Linear and LayerNorm layers, as in GPT-2"""
    tie_weights: bool = True
    """share the token embedding with the output head, as GPT-2 does"""

    def __post_init__(self):
        for field in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, field)
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ConfigError("GPTConfig", field, f"must be a positive integer, got {value!r}.")
        if self.head_size is None:
            if self.n_embd < self.n_head:
                raise ConfigError("GPTConfig", "head_size", f"must be set when n_embd={self.n_embd} < "
                                  f"n_head={self.n_head} (n_embd // n_head would be 0).")
            self.head_size = self.n_embd // self.n_head
        if self.head_size <= 0:
            raise ConfigError("GPTConfig", "head_size", f"must be positive, got {self.head_size}.")
        if not 0.0 <= self.dropout < 1.0:  # NaN fails this too
            raise ConfigError("GPTConfig", "dropout", f"must be in [0, 1), got {self.dropout}.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class KVCache:
    """Keys and values of every layer for the tokens seen so far, so each new token
    costs one position of compute instead of the whole prefix.

    Preallocated as (n_layer, 2, B, nh, block_size, hs), keys at index 0 and values
    at 1 of the second axis; `length` positions are filled.
    """

    def __init__(self, config: GPTConfig, batch_size: int, dtype=None):
        shape = (config.n_layer, 2, batch_size, config.n_head, config.block_size, config.head_size)
        self.kv = backend.xp().zeros(shape, dtype=dtype or backend.default_dtype())
        self.length = 0

    def update(self, layer: int, kv: Tensor) -> tuple[Tensor, Tensor]:
        """Store this step's keys and values, stacked as (2, B, nh, T, hs), in one copy;
        return the keys and the values so far, each (B, nh, length+T, hs)."""
        end = self.length + kv.shape[3]
        self.kv[layer, :, :, :, self.length:end] = kv.data
        return Tensor(self.kv[layer, 0, :, :, :end]), Tensor(self.kv[layer, 1, :, :, :end])


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        inner = config.n_head * config.head_size
        std = 0.02
        self.c_attn = nn.Linear(config.n_embd, 3 * inner, bias=config.bias, std=std)
        # GPT-2 scales the residual projections by 1/√(2·n_layer): each block adds two of them.
        self.c_proj = nn.Linear(inner, config.n_embd, bias=config.bias, std=std / math.sqrt(2 * config.n_layer))
        self.resid_drop = nn.Dropout(config.dropout)
        self.n_head, self.head_size, self.layer = config.n_head, config.head_size, layer

    def forward(self, x: Tensor, key_mask=None, cache: KVCache | None = None) -> Tensor:
        B, T, C = x.shape
        nh, hs = self.n_head, self.head_size
        qkv = self.c_attn(x).reshape(B, T, 3, nh, hs).transpose(2, 0, 3, 1, 4)  # (3, B, nh, T, hs)
        if cache is None:  # q, k, v stay stacked: their gradients come back as one array
            y = F.attention_qkv(qkv, causal=True, key_mask=key_mask)  # (B, nh, T, hs)
        else:
            k, v = cache.update(self.layer, qkv[1:])  # (B, nh, t0+T, hs)
            y = F.scaled_dot_product_attention(qkv[0], k, v, causal=True, key_mask=key_mask)
        y = y.transpose(0, 2, 1, 3).reshape(B, T, nh * hs)
        return self.resid_drop(self.c_proj(y))  # (B, T, C)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias, std=0.02)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias,
                                std=0.02 / math.sqrt(2 * config.n_layer))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.c_proj(F.gelu(self.c_fc(x))))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class Block(nn.Module):
    """Pre-LN: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, config: GPTConfig, layer: int):
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, key_mask=None, cache: KVCache | None = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), key_mask, cache)
        return x + self.mlp(self.ln_2(x))


def positions_from_mask(attention_mask):
    """Position ids that skip padding: ``cumsum(mask) - 1``, so a left-padded prompt's
    first real token is at position 0 (pads get 0 too; attention ignores them)."""
    xp = backend.get_array_module(attention_mask)
    return xp.maximum(xp.cumsum(attention_mask, axis=-1) - 1, 0)


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd, std=0.02)
        self.wpe = nn.Embedding(config.block_size, config.n_embd, std=0.02)
        self.drop = nn.Dropout(config.dropout)
        self.h = [Block(config, i) for i in range(config.n_layer)]
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = None if config.tie_weights else nn.Linear(config.n_embd, config.vocab_size, bias=False, std=0.02)

    def _check_ids(self, idx, t0: int):
        idx = idx.data if isinstance(idx, Tensor) else idx
        if not hasattr(idx, "dtype"):
            idx = np.asarray(idx)
        if idx.ndim != 2 or idx.shape[1] == 0 or idx.shape[0] == 0:
            raise ValueError(f"GPT expects token ids of shape (B, T) with B, T >= 1, got {idx.shape}.")
        if idx.dtype.kind not in "iu":
            raise TypeError(f"token ids must be integers, got dtype {idx.dtype}.")
        if t0 + idx.shape[1] > self.config.block_size:
            raise ValueError(f"sequence of {t0 + idx.shape[1]} tokens is longer than block_size="
                             f"{self.config.block_size}; truncate it or use a model with a larger block_size.")
        backend.check_range(idx, 0, self.config.vocab_size, "token id {bad} is out of range for vocab_size="
                            f"{self.config.vocab_size}; was the model built for a different tokenizer?")
        return backend.to_backend(idx)  # checked on the host, then moved

    def hidden_states(self, idx, key_mask=None, positions=None, cache: KVCache | None = None) -> Tensor:
        """Final hidden states after ln_f, (B, T) ids -> (B, T, C): what reward and value heads read.

        key_mask (B, t0+T): True for real tokens (t0 = tokens already in `cache`).
        positions (B, T) or None: position ids; default t0 .. t0+T-1.
        """
        t0 = cache.length if cache is not None else 0
        idx = self._check_ids(idx, t0)
        B, T = idx.shape
        if positions is None:
            positions = backend.xp().arange(t0, t0 + T)[None, :]  # (1, T)
        x = self.drop(self.wte(idx) + self.wpe(positions))  # (B, T, C)
        for block in self.h:
            x = block(x, key_mask, cache)
        if cache is not None:
            cache.length += T
        return self.ln_f(x)

    def lm_logits(self, hidden: Tensor) -> Tensor:
        """(..., C) -> (..., V). With tied weights the head is the embedding table transposed."""
        if self.lm_head is None:
            return hidden @ self.wte.weight.T
        return self.lm_head(hidden)

    def forward(self, idx, key_mask=None, positions=None, cache: KVCache | None = None) -> Tensor:
        """Next-token logits (B, T, V) for token ids (B, T)."""
        return self.lm_logits(self.hidden_states(idx, key_mask, positions, cache))

    def loss(self, idx, targets, mask=None) -> Tensor:
        """Mean next-token NLL over counted tokens (MATH.md §1).

        With a mask, the (B, T, V) logits are computed only from the first column any row
        counts: an SFT row's prompt (a TL;DR post is ~90% of it) is read but never scored,
        and the vocabulary projection is most of a step's work. The loss is the same."""
        start = 0
        if mask is not None:
            raw = mask.data if isinstance(mask, Tensor) else mask
            raw = backend.get_array_module(raw).asarray(raw)
            counted = backend.to_numpy(raw.reshape(-1, raw.shape[-1]).any(axis=0))  # a host mask (SFT's) costs no sync
            m = backend.to_backend(raw)
            start = int(counted.argmax()) if counted.any() else 0
        if start == 0:
            return F.cross_entropy(self(idx), targets, mask=mask)
        hidden = self.hidden_states(idx)[:, start:]  # (B, T, C) -> (B, T - start, C)
        targets = targets.data if isinstance(targets, Tensor) else targets
        return F.cross_entropy(self.lm_logits(hidden), targets[:, start:], mask=m[:, start:])

    def logprobs(self, tokens, attention_mask=None, temperature: float = 1.0, with_entropy: bool = False,
                 start: int = 1):
        """``out[b, t] = log π(tokens[b, t] | tokens[b, <t])`` at temperature τ, in one forward pass.

        (B, T) -> (B, T); column 0 has no context and is 0. Differentiable: this is
        what the RL losses call. Use the sampling temperature, so these are the
        log-probs of the distribution the tokens were drawn from (MATH.md §3).
        With `with_entropy`, also returns the entropy ``−Σ_v π(v|s_t) log π(v|s_t)`` of
        the distribution each token was drawn from, on the same (B, T) grid.
        Only columns ``t ≥ start`` are computed, the others are 0: pass a rollout's
        prompt length, and the vocabulary projection skips the prompt (every column is
        still read as context).
        """
        xp = backend.xp()
        tokens = self._check_ids(tokens, 0)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        mask = xp.ones(tokens.shape, dtype=bool) if attention_mask is None else xp.asarray(attention_mask).astype(bool)
        if mask.shape != tokens.shape:
            raise ValueError(f"attention_mask has shape {mask.shape}, tokens {tokens.shape}; they must match.")
        B, T = tokens.shape
        start = min(max(int(start), 1), T)
        first = Tensor(xp.zeros((B, start), dtype=backend.default_dtype()))
        if start == T:  # nothing to predict: a lone token, or a window past the end
            return (first, first) if with_entropy else first
        positions = positions_from_mask(mask[:, :-1])
        hidden = self.hidden_states(tokens[:, :-1], key_mask=mask[:, :-1], positions=positions)  # (B, T-1, C)
        logits = self.lm_logits(hidden[:, start - 1:] if start > 1 else hidden)  # (B, T-start, V)
        if temperature != 1.0:
            logits = logits / temperature  # the same expression as sampling uses, to the last bit
        logp = -F.cross_entropy(logits, tokens[:, start:], reduction="none")  # (B, T-start)
        logp = concatenate([first.astype(logp.dtype), logp], axis=1)
        if not with_entropy:
            return logp
        ent = F.entropy(logits)  # (B, T-start, V) -> (B, T-start), keeping no (B, T-start, V) array for backward
        return logp, concatenate([first.astype(ent.dtype), ent], axis=1)

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        n = super().num_parameters()
        return n - self.wpe.weight.size if exclude_embeddings else n

    def generate(self, prompts, max_new_tokens: int, **kwargs):
        """Sample continuations with the KV cache; see `minirl.sampling.generate`."""
        from minirl.sampling import generate

        return generate(self, prompts, max_new_tokens, **kwargs)
