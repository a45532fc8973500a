"""Scalar heads on a GPT backbone: the Bradley–Terry reward model and the value head (MATH.md §2).

``r_φ(x, y)`` is a linear head on the final hidden state (after ln_f) at the last
non-pad token of ``x ‖ y``; ``V_ψ(s_t)`` is the same head read at every position.
Both start from a pretrained or SFT GPT's weights, the lm_head replaced by a
(C -> 1) linear head. The reward model is trained here on preference pairs with

    L = mean[−log σ(r_φ(x, y_w) − r_φ(x, y_l) − margin)] + c·mean[(r_w + r_l)²]

(Bradley & Terry 1952; Ouyang et al. 2022), the loss in `minirl.rl.losses`.

In RL a trained reward model is used one of two ways: `reward_fn_from_model` makes it a
text reward (it reads the decoded response alone), and `TokenRewardModel` a
`rewards.TokenReward` (it reads the sampled prompt ‖ response ids, the post included).
`center_rewards` shifts its offset so a chosen set of sequences averages 0.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from minirl import backend, nn, optim
from minirl.checkpoint import check_settings, load_checkpoint, restore, save_checkpoint
from minirl.data.preferences import PreferencePair, pad_right
from minirl.indexing import getitem
from minirl.model import GPT, GPTConfig, positions_from_mask
from minirl.progress import Progress
from minirl.rl.losses import bradley_terry_loss
from minirl.tensor import Tensor, no_grad
from minirl.validation import check_ranges


class ScalarHeadModel(nn.Module):
    """A GPT backbone (no lm_head) and a linear head ``C -> 1``.

    `forward` gives the reward ``r_φ`` (one scalar per sequence); `values` gives
    ``V_ψ(s_t)`` at every position. PPO's value model is a *separate* instance with
    its own backbone, not a head on the policy, so value-loss gradients never move the
    policy; it is usually initialised from the reward model
    (``ScalarHeadModel.from_pretrained(reward_model)``), which already reads sentiment.
    """

    def __init__(self, config: GPTConfig):
        self.config = config
        self.backbone = GPT(config)
        self.backbone.lm_head = None  # untied GPTs carry an output head; a scalar head replaces it
        # std 1/√(C+1), the reward-head init of OpenAI's RLHF code (Ziegler et al. 2019; Stiennon et al. 2020):
        # ln_f normalises the C features to unit variance (before its gain), so initial rewards are of order 1.
        self.head = nn.Linear(config.n_embd, 1, std=1.0 / math.sqrt(config.n_embd + 1))

    @classmethod
    def from_pretrained(cls, source: GPT | ScalarHeadModel) -> ScalarHeadModel:
        """A new model whose backbone copies `source`'s weights.

        From a `GPT` (pretrained or SFT) the head is freshly initialised: that is how
        the reward model starts. From a `ScalarHeadModel` the head is copied too: that
        is how the value model can start from the reward model.
        """
        if not isinstance(source, (GPT, ScalarHeadModel)):
            raise TypeError(f"from_pretrained needs a GPT or a ScalarHeadModel, got {type(source).__name__}.")
        model = cls(GPTConfig(**source.config.to_dict()))
        backbone = source if isinstance(source, GPT) else source.backbone
        state = {k: v for k, v in backbone.state_dict().items() if not k.startswith("lm_head.")}
        model.backbone.load_state_dict(state)
        if isinstance(source, ScalarHeadModel):
            model.head.load_state_dict(source.head.state_dict())
        return model

    def _hidden(self, tokens, attention_mask):
        """Hidden states (B, T, C) and the bool mask (B, T); positions skip left padding."""
        xp = backend.xp()
        tokens = tokens.data if isinstance(tokens, Tensor) else xp.asarray(tokens)
        mask = xp.ones(tokens.shape, dtype=bool) if attention_mask is None else xp.asarray(attention_mask).astype(bool)
        if mask.shape != tokens.shape:
            raise ValueError(f"attention_mask has shape {mask.shape}, tokens {tokens.shape}; they must match.")
        h = self.backbone.hidden_states(tokens, key_mask=mask, positions=positions_from_mask(mask))  # (B, T, C)
        return h, mask

    def forward(self, tokens, attention_mask=None) -> Tensor:
        """Rewards (B,): the head at each row's last real token, ``t_b = max{t : mask[b, t] = 1}``.

        Works for left padding (prompts from `generate`), right padding (`pad_right`)
        and both at once; a pad token never changes the reward.
        """
        xp = backend.xp()
        h, mask = self._hidden(tokens, attention_mask)  # (B, T, C), (B, T)
        B, T = mask.shape
        if not bool(mask.any(axis=1).all()):
            raise ValueError(f"rows {xp.flatnonzero(~mask.any(axis=1)).tolist()} of attention_mask have no real "
                             "token; a reward needs at least one.")
        last = T - 1 - xp.argmax(mask[:, ::-1], axis=1)  # (B,) the last column where mask is 1
        h_last = getitem(h, (xp.arange(B), last))  # (B, C); its backward scatters into h
        return self.head(h_last).reshape(B)  # (B, 1) -> (B,)

    def values(self, tokens, attention_mask=None) -> Tensor:
        """``V(s_t)`` at every position, (B, T): the head applied to each hidden state.

        Entry t summarises ``tokens[:, :t+1]``. Values at pad positions are meaningless;
        mask them out of every loss.
        """
        h, mask = self._hidden(tokens, attention_mask)  # (B, T, C)
        return self.head(h).reshape(mask.shape)  # (B, T, 1) -> (B, T)


@dataclass
class RewardModelConfig:
    steps: int = 300
    """optimizer steps"""
    batch_size: int = 32
    """preference pairs per step (2 × batch_size sequences in the forward pass)"""
    lr: float = 3e-4
    """peak learning rate: linear warmup over the first 5% of steps, then cosine decay to lr/10"""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay (weights with ndim >= 2 only)"""
    margin: float = 0.0
    """required reward gap in −log σ(r_w − r_l − margin)"""
    center_coef: float = 0.0
    """c in c·mean[(r_w + r_l)²], which pins the reward's free offset near 0"""
    grad_clip: float = 1.0
    """clip the global gradient norm to this (0 turns clipping off)"""
    eval_interval: int = 50
    """steps between held-out evaluations (one always runs at the end)"""
    seed: int = 0
    """seed of the generator that draws each step's pairs"""

    def __post_init__(self):
        check_ranges(self, weight_decay="[0, inf)", margin="[0, inf)", center_coef="[0, inf)",
                     grad_clip="[0, inf)", eval_interval="[0, inf)", seed="[0, inf)")
        for name in ("steps", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"RewardModelConfig.{name} must be positive, got {getattr(self, name)}.")
        if not self.lr > 0:
            raise ValueError(f"RewardModelConfig.lr must be positive, got {self.lr}.")


def score(model: ScalarHeadModel, seqs: Sequence[Sequence[int]], batch_size: int = 64, pad_id: int = 0) -> np.ndarray:
    """Rewards of token sequences (right-padded, truncated to the block), as a host array (N,).

    Runs in eval mode under no_grad, in batches of `batch_size`.
    """
    was_training = model.training
    model.eval()
    out = []
    with no_grad():
        for i in range(0, len(seqs), batch_size):
            tokens, mask = pad_right(seqs[i:i + batch_size], model.config.block_size, pad_id)
            out.append(backend.to_numpy(model(tokens, mask).data).astype(np.float64))
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros(0)


def evaluate_pairs(model: ScalarHeadModel, pairs: Sequence[PreferencePair], margin: float = 0.0,
                   center_coef: float = 0.0, batch_size: int = 64) -> dict:
    """Bradley–Terry loss (``loss``) and pairwise accuracy ``mean[r_w > r_l]`` over all `pairs`,
    with the other statistics of `bradley_terry_loss`."""
    if len(pairs) == 0:
        raise ValueError("evaluate_pairs got no pairs.")
    r_chosen = Tensor(score(model, [p.chosen for p in pairs], batch_size))  # (N,) float64
    r_rejected = Tensor(score(model, [p.rejected for p in pairs], batch_size))
    loss, stats = bradley_terry_loss(r_chosen, r_rejected, margin=margin, center_coef=center_coef)
    return {**stats, "loss": loss.item()}


def train_reward_model(model: ScalarHeadModel, train_pairs: Sequence[PreferencePair],
                       val_pairs: Sequence[PreferencePair] | None, config: RewardModelConfig,
                       progress: bool = True, checkpoint_path=None, checkpoint_interval: int = 100,
                       stop_at: int | None = None) -> list[dict]:
    """Fit `model` to `train_pairs` by Bradley–Terry; returns one metrics dict per step.

    Each step draws `batch_size` pairs (with replacement, from a generator seeded by
    `config.seed` and the step, so a resumed run draws the same batches), scores chosen
    and rejected sequences in one (2B, T) forward pass, and takes a clipped AdamW step.
    Every `eval_interval` steps and at the end, `val_pairs` are scored: ``val_accuracy``
    is the held-out ``mean[r_w > r_l]``. With `checkpoint_path`, weights and optimizer
    state are saved every `checkpoint_interval` steps and at the end, and a rerun resumes.
    """
    if len(train_pairs) == 0:
        raise ValueError("train_reward_model got no training pairs; build some with pairs_from_labels.")
    params = model.parameters()
    opt = optim.AdamW(params, lr=config.lr, betas=(0.9, 0.95), weight_decay=config.weight_decay)
    start = 0
    if checkpoint_path is not None and pathlib.Path(checkpoint_path).exists():
        ckpt = load_checkpoint(checkpoint_path)
        check_settings(ckpt, "rm_config", dataclasses.asdict(config), "reward-model")
        start = restore(ckpt, model, opt, restore_rng=False)
    end = min(config.steps, stop_at) if stop_at is not None else config.steps
    warmup = max(1, config.steps // 20)
    history: list[dict] = []
    model.train()
    bar = Progress(range(start, end), desc="reward model", total=end, start=start, enabled=progress)
    for step in bar:
        opt.lr = optim.warmup_cosine(step, max_lr=config.lr, total_steps=config.steps, warmup_steps=warmup,
                                     min_lr=config.lr / 10)
        rng = np.random.default_rng([config.seed, step])
        batch = [train_pairs[i] for i in rng.integers(0, len(train_pairs), size=config.batch_size)]
        # chosen rows then rejected rows, one width: the layout of `collate_pairs`, in one forward pass
        tokens, mask = pad_right([p.chosen for p in batch] + [p.rejected for p in batch], model.config.block_size)
        B = len(batch)
        rewards = model(tokens, mask)  # (2B, T) -> (2B,)
        loss, stats = bradley_terry_loss(rewards[:B], rewards[B:], margin=config.margin,
                                         center_coef=config.center_coef)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"the reward-model loss is {loss.item()} at step {step + 1}; lower the "
                                     "learning rate.")
        opt.zero_grad()
        loss.backward()
        grad_norm = optim.clip_grad_norm(params, config.grad_clip) if config.grad_clip > 0 else None
        opt.step()
        done = step + 1
        grad_norm = None if grad_norm is None else float(grad_norm)
        metrics = {"step": done, "loss": loss.item(), "lr": opt.lr, "grad_norm": grad_norm, **stats}
        if val_pairs and (done == end or (config.eval_interval and done % config.eval_interval == 0)):
            val = evaluate_pairs(model, val_pairs, config.margin, config.center_coef)
            metrics.update(val_loss=val["loss"], val_accuracy=val["accuracy"], val_margin=val["margin_mean"])
        bar.set(loss=metrics["loss"], acc=stats["accuracy"],
                **({"val_acc": metrics["val_accuracy"]} if "val_accuracy" in metrics else {}))
        history.append(metrics)
        if checkpoint_path is not None and (done == end or (checkpoint_interval and done % checkpoint_interval == 0)):
            save_checkpoint(checkpoint_path, model, step=done, optimizer=opt,
                            extra={"rm_config": dataclasses.asdict(config)})
    return history


def reward_fn_from_model(model: ScalarHeadModel, tokenizer, batch_size: int = 64):
    """``R(x, y)`` from a trained reward model, as a reward function on decoded texts.

    Each text is scored as ``[EOT] + tokens + [EOT]``, the layout `pairs_from_labels`
    trains on, so RL can use a learned reward exactly like VADER or any callable.
    """
    if tokenizer.vocab_size != model.config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the reward model expects "
                         f"{model.config.vocab_size}; use the tokenizer it was trained with.")
    eot = tokenizer.eot_id

    def reward_model(texts: list[str]) -> list[float]:
        seqs = [[eot] + ids + [eot] for ids in tokenizer.encode_batch(list(texts))]
        return score(model, seqs, batch_size=batch_size, pad_id=eot).tolist()
    return reward_model


class TokenRewardModel:
    """A reward model as a `rewards.TokenReward`: ``R(x, y) = r_φ(x ‖ y)`` on the rollout's own grid.

    It reads the prompt and the response together, the ids exactly as the policy sampled
    them (EOT included): the rollout's left padding is skipped by the mask and by
    positions that start at the first real token (`ScalarHeadModel.forward`), so a row
    scores as the unpadded sequence ``x ‖ y`` would. Eval mode, no_grad, `batch_size`
    rows per forward pass.
    """

    def __init__(self, model: ScalarHeadModel, batch_size: int = 64):
        self.model = model
        self.batch_size = batch_size

    def score_tokens(self, tokens, attention_mask) -> np.ndarray:
        """(B, T) ids and mask -> (B,) rewards, float64 on the host."""
        was_training = self.model.training
        self.model.eval()
        out = []
        with no_grad():
            for i in range(0, tokens.shape[0], self.batch_size):
                rows = slice(i, i + self.batch_size)
                out.append(backend.to_numpy(self.model(tokens[rows], attention_mask[rows]).data).astype(np.float64))
        self.model.train(was_training)
        return np.concatenate(out)


def center_rewards(model: ScalarHeadModel, seqs: Sequence[Sequence[int]], batch_size: int = 64,
                   pad_id: int = 0) -> float:
    """Shift the head's bias so the mean reward over `seqs` is 0; returns the mean it had.

    ``b ← b − (1/N) Σ_i r_φ(s_i)``. Every reward moves by the same constant, so every
    preference, and the Bradley–Terry loss (which sees only differences), is unchanged;
    what changes is where 0 sits. Centred on human reference summaries, R > 0 reads
    "better than a typical reference", a fixed reward such as −1 for a summary without
    EOT is on that scale, and a value model initialised from this model starts near the
    returns it must predict. Stiennon et al. (2020) normalise their TL;DR reward model the
    same way: after training, the dataset's reference summaries average a score of 0.
    """
    if len(seqs) == 0:
        raise ValueError("center_rewards needs at least one sequence to average over.")
    mean = float(score(model, seqs, batch_size, pad_id).mean())
    model.head.bias.data -= backend.xp().asarray(mean, dtype=model.head.bias.data.dtype)
    return mean
