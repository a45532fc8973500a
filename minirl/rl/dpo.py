"""Direct Preference Optimization (Rafailov et al. 2023; MATH.md §6): RLHF without sampling.

The KL-regularised optimum ``π*(y|x) ∝ π_ref(y|x)·exp(R(x,y)/β)`` (MATH.md §12) turns
around into ``R(x,y) = β·log(π*(y|x)/π_ref(y|x)) + β·log Z(x)``. Put that reward into
the Bradley–Terry likelihood of a preference pair and Z(x) cancels, so the policy is
fitted to the pairs directly, with its own log-ratio as an implicit reward model.

    history = train_dpo(policy, ref_model, pairs, DPOConfig(beta=0.1))

Reference log-probs are computed once for the whole dataset (`pair_logprobs`), before
the first step: π_ref is frozen, so recomputing them every step would only cost time.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from minirl import backend, optim
from minirl.checkpoint import check_settings, load_checkpoint, restore, save_checkpoint
from minirl import functional as F
from minirl.data.preferences import PreferencePair, pad_right
from minirl.progress import Progress
from minirl.tensor import Tensor, as_tensor, no_grad
from minirl.train import open_metrics_log
from minirl.validation import check_ranges

LOSS_TYPES = ("sigmoid", "ipo")


def check_loss_settings(beta: float, loss_type: str, label_smoothing: float) -> None:
    """Raise a clear ValueError for settings `dpo_loss` cannot use."""
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta}: it is the KL price, and DPO divides by it.")
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown DPO loss_type {loss_type!r}; choose one of {', '.join(LOSS_TYPES)}.")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}: it is the probability "
                         "that a label is wrong, and at 0.5 the labels carry no information.")
    if loss_type == "ipo" and label_smoothing:
        raise ValueError("label_smoothing applies to the sigmoid loss only; IPO already has a finite target.")


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float,
             loss_type: str = "sigmoid", label_smoothing: float = 0.0):
    """The DPO loss on sequence log-probs, each (N,), with the log-ratio margin

        h = [log π_θ(y_w|x) − log π_ref(y_w|x)] − [log π_θ(y_l|x) − log π_ref(y_l|x)]

    - ``sigmoid`` (Rafailov et al. 2023): ``L = −log σ(βh)``; with label smoothing ε (the
      chance that a label is flipped; Mitchell 2023's conservative DPO):
      ``L = −(1−ε)·log σ(βh) − ε·log σ(−βh)``.
    - ``ipo`` (Azar et al. 2023): ``L = (h − 1/(2β))²``, which regresses h onto a fixed
      target instead of pushing it to infinity on separable data. (h uses summed log-probs
      here, as MATH.md says; TRL's IPO averages them over tokens instead.)

    Both are averaged over the N pairs. Stats: the implicit rewards ``β·(log π_θ − log π_ref)``
    of chosen and rejected (``reward_chosen``, ``reward_rejected``, their mean difference
    ``reward_margin``), ``accuracy = mean[h > 0]``, and the policy's own sequence log-probs
    (``logps_chosen``, ``logps_rejected``).

    Why ``logps_chosen`` can fall while accuracy rises: the loss sees only the *difference*
    h, never the chosen log-prob on its own. Lowering both log-probs, the rejected one
    faster, raises h just as well as lifting the chosen one, and it is often easier: the
    mass can go to sequences that appear in no pair. So falling chosen log-probs are
    common in DPO runs and are not by themselves a bug; watch the margin and accuracy.
    """
    check_loss_settings(beta, loss_type, label_smoothing)
    policy_chosen, policy_rejected = as_tensor(policy_chosen), as_tensor(policy_rejected)
    # a cached reference (host float64) takes the policy's dtype, so the backward stays float32
    ref_chosen, ref_rejected = (r if isinstance(r, Tensor) else Tensor(r, dtype=policy_chosen.dtype)
                                for r in (ref_chosen, ref_rejected))
    shapes = {tuple(x.shape) for x in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)}
    if len(shapes) != 1 or len(shapes.pop()) != 1:
        raise ValueError("dpo_loss needs four log-prob vectors of one shape (N,), got shapes "
                         f"{[tuple(x.shape) for x in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)]}.")
    chosen_logratio = policy_chosen - ref_chosen  # (N,)
    rejected_logratio = policy_rejected - ref_rejected  # (N,)
    h = chosen_logratio - rejected_logratio  # (N,)
    if loss_type == "sigmoid":
        losses = -F.log_sigmoid(beta * h)
        if label_smoothing:
            losses = (1.0 - label_smoothing) * losses - label_smoothing * F.log_sigmoid(-beta * h)
    else:
        target = h - 1.0 / (2.0 * beta)
        losses = target * target
    loss = losses.mean()
    reward_chosen, reward_rejected = beta * chosen_logratio.data, beta * rejected_logratio.data  # (N,)
    stats = {
        "dpo_loss": loss.item(),
        "reward_chosen": float(reward_chosen.mean()),
        "reward_rejected": float(reward_rejected.mean()),
        "reward_margin": float((reward_chosen - reward_rejected).mean()),
        "accuracy": float((h.data > 0).mean()),
        "logps_chosen": float(policy_chosen.data.mean()),
        "logps_rejected": float(policy_rejected.data.mean()),
    }
    return loss, stats


def check_pairs(pairs: Sequence[PreferencePair], block_size: int) -> None:
    """Raise a clear ValueError for data DPO cannot learn from; change nothing."""
    if len(pairs) == 0:
        raise ValueError("DPO got no preference pairs; build some with pairs_from_labels or label_pairs_with_judge.")
    for i, p in enumerate(pairs):
        if not isinstance(p, PreferencePair):
            raise TypeError(f"pair {i} is a {type(p).__name__}, not a PreferencePair.")
        if not p.prompt_ids:
            raise ValueError(f"pair {i} has an empty prompt: the first response token would have no context "
                             "to be scored in. Start prompts with the <|endoftext|> id.")
        if not p.chosen_ids or not p.rejected_ids:
            raise ValueError(f"pair {i} has an empty {'chosen' if not p.chosen_ids else 'rejected'} response; "
                             "DPO compares two non-empty responses to one prompt.")
        if len(p.prompt_ids) >= block_size:
            raise ValueError(f"pair {i}'s prompt has {len(p.prompt_ids)} tokens, so block_size={block_size} "
                             "leaves no room for the response; shorten the prompt.")
    same = [i for i, p in enumerate(pairs) if p.chosen_ids == p.rejected_ids]
    if same:
        raise ValueError(f"{len(same)} of {len(pairs)} pairs (first: {same[:5]}) have identical chosen and rejected "
                         "responses: such a pair states no preference (h ≡ 0). Drop them, or check how the pairs "
                         "were built.")


def pair_batch(pairs: Sequence[PreferencePair], block_size: int, pad_id: int = 0):
    """Pairs -> (tokens, attention_mask, response_mask), each (2N, T): chosen rows, then rejected rows.

    Rows are ``x ‖ y`` right-padded by `pad_right` (truncated to `block_size`).
    ``response_mask[b, t] = 1`` for the response tokens: ``t >= len(x)`` and real. Prompt
    tokens are never counted; the log-prob of the first response token is read at
    column ``len(x) >= 1``, where its context is the whole prompt. A response cut by
    `block_size` counts its kept tokens only, the same way for π_θ and π_ref.
    """
    xp = backend.xp()
    tokens, mask = pad_right([p.chosen for p in pairs] + [p.rejected for p in pairs], block_size, pad_id)  # (2N, T)
    prompt_length = xp.asarray([len(p.prompt_ids) for p in pairs] * 2)  # (2N,)
    response_mask = mask & (xp.arange(tokens.shape[1])[None, :] >= prompt_length[:, None])  # (2N, T)
    return tokens, mask, response_mask


def sequence_logprobs(model, tokens, mask, response_mask) -> Tensor:
    """``log π(y|x) = Σ_t m_t·log π(a_t|s_t)`` for each row, differentiable: (N, T) -> (N,)."""
    xp = backend.xp()
    response_mask = xp.asarray(response_mask)
    if bool(response_mask[:, 0].any()):
        raise ValueError("response_mask marks column 0, which has no context and no log-prob; a response "
                         "must follow a prompt of at least one token.")
    logprobs = model.logprobs(tokens, mask)  # (N, T), column t = log π(tokens[t] | tokens[<t])
    return (logprobs * response_mask.astype(logprobs.dtype)).sum(axis=1)  # (N,)


def pair_logprobs(model, pairs: Sequence[PreferencePair], block_size: int, batch_size: int = 64):
    """``(log π(y_w|x), log π(y_l|x))`` of every pair as two host float64 arrays (N,), under no_grad.

    Called once on π_ref before training: that is the reference cache.
    """
    was_training = model.training
    model.eval()
    chosen, rejected = [], []
    try:
        with no_grad():
            for i in range(0, len(pairs), batch_size):
                batch = pairs[i:i + batch_size]
                logps = backend.to_numpy(sequence_logprobs(model, *pair_batch(batch, block_size)).data)  # (2B,)
                chosen.append(logps[:len(batch)])
                rejected.append(logps[len(batch):])
    finally:
        model.train(was_training)
    return np.concatenate(chosen).astype(np.float64), np.concatenate(rejected).astype(np.float64)


@dataclass
class DPOConfig:
    beta: float = 0.1
    """β, the KL price: small lets π drift far from π_ref, large keeps it close"""
    loss_type: str = "sigmoid"
    """sigmoid (Rafailov et al. 2023) or ipo (Azar et al. 2023)"""
    label_smoothing: float = 0.0
    """ε in [0, 0.5): the assumed probability that a label is flipped (sigmoid loss only)"""
    steps: int = 200
    """optimizer steps"""
    batch_size: int = 32
    """preference pairs per step (2 × batch_size sequences in the forward pass)"""
    lr: float = 1e-4
    """peak learning rate: linear warmup over the first 5% of steps, then cosine decay to lr/10"""
    max_grad_norm: float = 1.0
    """clip the global gradient norm to this (0 turns clipping off)"""
    eval_interval: int = 50
    """steps between held-out evaluations (one always runs at the end)"""
    seed: int = 0
    """seed of the generator that draws each step's pairs"""

    def __post_init__(self):
        check_ranges(self)  # every float finite; the ranges follow
        check_loss_settings(self.beta, self.loss_type, self.label_smoothing)
        for name in ("steps", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DPOConfig.{name} must be positive, got {getattr(self, name)}.")
        if not self.lr > 0 or self.max_grad_norm < 0 or self.eval_interval < 0:
            raise ValueError(f"DPOConfig needs lr > 0, max_grad_norm >= 0 and eval_interval >= 0; got lr={self.lr}, "
                             f"max_grad_norm={self.max_grad_norm}, eval_interval={self.eval_interval}.")


def evaluate_dpo(policy, pairs: Sequence[PreferencePair], ref_chosen, ref_rejected, config: DPOConfig,
                 block_size: int | None = None) -> dict:
    """The DPO loss and its stats over all `pairs`, with the policy in eval mode under no_grad."""
    block_size = block_size or policy.config.block_size
    chosen, rejected = pair_logprobs(policy, pairs, block_size)
    loss, stats = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, config.beta, config.loss_type,
                           config.label_smoothing)
    return {**stats, "loss": loss.item()}


def train_dpo(policy, ref_model, pairs: Sequence[PreferencePair], config: DPOConfig,
              val_pairs: Sequence[PreferencePair] | None = None, progress: bool = True, log_path=None,
              checkpoint_path=None, checkpoint_interval: int = 100, stop_at: int | None = None) -> list[dict]:
    """Fit `policy` to preference pairs by DPO; returns one metrics dict per step.

    π_ref's log-probs of every pair (and every validation pair) are computed once, up
    front. Each step draws `batch_size` pairs with replacement from a generator seeded
    by ``(seed, step)``, so a run is reproducible batch for batch; scores chosen and
    rejected rows in one (2B, T) forward pass; and takes a clipped AdamW step. Every
    `eval_interval` steps and at the end, `val_pairs` give ``val_loss``, ``val_accuracy``
    and ``val_reward_margin``. With `log_path`, each step's metrics are a JSONL line. With
    `checkpoint_path`, weights and optimizer state are saved every `checkpoint_interval`
    steps and at the end, and a rerun resumes there; `stop_at` ends early.

    The policy runs without dropout, as RL does. At step 1 (π_θ = π_ref) the loss is log 2
    and h is 0 up to float round-off (training batches pad differently from the cache's),
    so ``accuracy = mean[h > 0]`` means nothing there yet.
    """
    if policy.config.vocab_size != ref_model.config.vocab_size:
        raise ValueError(f"policy and reference vocabularies differ ({policy.config.vocab_size} vs "
                         f"{ref_model.config.vocab_size}): they must share one tokenizer.")
    block_size = min(policy.config.block_size, ref_model.config.block_size)
    check_pairs(pairs, block_size)
    if val_pairs:
        check_pairs(val_pairs, block_size)
    ref_chosen, ref_rejected = pair_logprobs(ref_model, pairs, block_size)  # (N,), (N,): the reference cache
    val_ref = pair_logprobs(ref_model, val_pairs, block_size) if val_pairs else None
    params = policy.parameters()
    opt = optim.AdamW(params, lr=config.lr, betas=(0.9, 0.95), weight_decay=0.0)
    start = 0
    if checkpoint_path is not None and pathlib.Path(checkpoint_path).exists():
        ckpt = load_checkpoint(checkpoint_path)
        check_settings(ckpt, "dpo_config", dataclasses.asdict(config), "DPO")
        start = restore(ckpt, policy, opt, restore_rng=False)
    end = min(config.steps, stop_at) if stop_at is not None else config.steps
    warmup = max(1, config.steps // 20)
    history: list[dict] = []
    log = open_metrics_log(log_path, start) if log_path is not None else None
    was_training = policy.training
    policy.eval()  # no dropout: π_θ must score pairs as the cached π_ref did, so step 1 starts at h ≈ 0
    bar = Progress(range(start, end), desc=f"dpo ({config.loss_type})", total=end, start=start, enabled=progress)
    try:
        for step in bar:
            opt.lr = optim.warmup_cosine(step, max_lr=config.lr, total_steps=config.steps, warmup_steps=warmup,
                                         min_lr=config.lr / 10)
            idx = np.random.default_rng([config.seed, step]).integers(0, len(pairs), size=config.batch_size)  # (B,)
            B = len(idx)
            logps = sequence_logprobs(policy, *pair_batch([pairs[i] for i in idx], block_size))  # (2B,)
            loss, stats = dpo_loss(logps[:B], logps[B:], ref_chosen[idx], ref_rejected[idx], config.beta,
                                   config.loss_type, config.label_smoothing)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"the DPO loss is {loss.item()} at step {step + 1}; lower the learning "
                                         "rate or raise beta.")
            opt.zero_grad()
            loss.backward()
            grad_norm = optim.clip_grad_norm(params, config.max_grad_norm) if config.max_grad_norm > 0 else None
            opt.step()
            done = step + 1
            grad_norm = None if grad_norm is None else float(grad_norm)
            metrics = {"step": done, "loss": loss.item(), "lr": opt.lr, "grad_norm": grad_norm, **stats}
            if val_pairs and (done == end or (config.eval_interval and done % config.eval_interval == 0)):
                val = evaluate_dpo(policy, val_pairs, *val_ref, config, block_size)
                metrics.update(val_loss=val["loss"], val_accuracy=val["accuracy"],
                               val_reward_margin=val["reward_margin"])
            bar.set(loss=metrics["loss"], acc=stats["accuracy"], margin=stats["reward_margin"],
                    **({"val_acc": metrics["val_accuracy"]} if "val_accuracy" in metrics else {}))
            history.append(metrics)
            if log:
                log.write(json.dumps(metrics) + "\n")
            if checkpoint_path is not None and (done == end or (checkpoint_interval and done % checkpoint_interval == 0)):
                save_checkpoint(checkpoint_path, policy, step=done, optimizer=opt,
                                extra={"dpo_config": dataclasses.asdict(config)})
    finally:
        policy.train(was_training)
        if log:
            log.close()
    return history

