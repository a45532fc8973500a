"""Settings of the seed's Reddit TL;DR run: GPT-2 124M, SFT on post → summary, a Bradley–Terry reward
model on human comparisons, then PPO. The data files are the user's (see `minirl.data.summaries`).

The seed's PPO stage, as `seed_rl_config` sets it:
    β = 0.02 (k1 KL in the reward), clip 0.8–1.2 (ε = 0.2), 2 epochs, γ = 1, λ = 0.95,
    value-loss coefficient 0.1; the value model starts from the reward model;
    a summary that ends without <|endoftext|> is penalised (see `missing_eos_penalty`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from minirl.data.summaries import TRUNCATE
from minirl.rl.ppo import PPOConfig
from minirl.rl.trainer import RLConfig


@dataclass
class SummarizeData:
    model: str = ""
    """a Hugging Face GPT-2 folder (config.json + model.safetensors), e.g. a download of openai-community/gpt2"""
    sft_data: str = ""
    """JSONL with prompt / label (the TL;DR SFT release's layout)"""
    comparisons: str = ""
    """JSONL with prompt / chosen / rejected (the TL;DR comparisons release's layout)"""
    block_size: int = 512
    """context used, of GPT-2's 1,024 positions: prompt + summary"""
    max_prompt_tokens: int = 448
    """longest prompt kept; block_size − max_prompt_tokens is left for the summary"""
    truncate: str = field(default="left", metadata={"choices": TRUNCATE})
    """a longer prompt: left (keep its last tokens, where "TL;DR:" is) or refuse (stop with the file and line)"""

    def __post_init__(self):
        if not 0 < self.max_prompt_tokens < self.block_size:
            raise ValueError(f"max_prompt_tokens must be in [1, block_size={self.block_size}), "
                             f"got {self.max_prompt_tokens}.")


def seed_rl_config(**changes) -> RLConfig:
    """The seed's PPO settings. Note: the seed sets R = −1 for a summary without EOT; minirl's
    `missing_eos_penalty` adds −1 to R instead (the same sign and size of push, not the same value)."""
    ppo = PPOConfig(kl_coef=0.02, kl_estimator="k1", clip_eps=0.2, epochs=2, gamma=1.0, lam=0.95, vf_coef=0.1)
    return RLConfig(**{"algo": "ppo", "max_new_tokens": 48, "missing_eos_penalty": -1.0, "ppo": ppo, **changes})
