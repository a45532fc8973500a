"""The language-model training loop, shared by pretraining and SFT.

A thin loop: sample a batch, ``loss = NLL`` (MATH.md §1), backward, clip, AdamW step,
with warmup + cosine learning rate, periodic validation, checkpoints that resume
exactly, and a progress bar showing loss and tokens/s.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from minirl import backend, optim
from minirl.checkpoint import NonFiniteError, check_settings, load_checkpoint, restore, save_checkpoint
from minirl.progress import Progress
from minirl.tensor import no_grad
from minirl.tokenizer import ranks_to_text
from minirl.validation import check_ranges


@dataclass
class TrainConfig:
    steps: int = 2000
    """optimizer steps in the whole run (the cosine schedule ends here)"""
    batch_size: int = 32
    """sequences per step"""
    lr: float = 2e-3
    """peak learning rate, reached after warmup"""
    min_lr: float = 2e-4
    """learning rate at the end of the cosine decay"""
    warmup_steps: int = 100
    """linear warmup from 0 to lr"""
    weight_decay: float = 0.1
    """AdamW decoupled weight decay, applied to weights with ndim >= 2 only"""
    beta1: float = 0.9
    """AdamW first-moment decay"""
    beta2: float = 0.95
    """AdamW second-moment decay"""
    grad_clip: float = 1.0
    """clip the global gradient norm to this (0 turns clipping off)"""
    eval_interval: int = 200
    """steps between validation-loss estimates (0: only at the end)"""
    eval_batches: int = 8
    """batches averaged per validation estimate"""
    checkpoint_interval: int = 500
    """steps between checkpoints (one is always written at the end)"""

    def __post_init__(self):
        check_ranges(self, steps="[1, inf)", batch_size="[1, inf)", eval_batches="[1, inf)", lr="(0, inf)",
                     min_lr="[0, inf)", warmup_steps="[0, inf)", weight_decay="[0, inf)", beta1="[0, 1)",
                     beta2="[0, 1)", grad_clip="[0, inf)", eval_interval="[0, inf)", checkpoint_interval="[0, inf)")


def divergence_cause(config: TrainConfig, flag_prefix: str = "") -> str:
    """The setting that most likely made the weights non-finite, for the error message.

    AdamW's decay multiplies every weight by 1 − lr·wd each step; at lr·wd ≥ 1 that factor is ≤ 0
    and the weights flip sign or grow without bound, whatever the gradients say. Otherwise a step of
    size lr overshot: the learning rate is the usual suspect.
    """
    if config.lr * config.weight_decay >= 1:
        return (f"{flag_prefix}weight-decay {config.weight_decay} with {flag_prefix}lr {config.lr}: AdamW scales "
                f"each weight by 1 − lr·wd = {1 - config.lr * config.weight_decay:.3g} per step; "
                "keep lr·wd well below 1")
    return f"{flag_prefix}lr {config.lr}, too large a step; lower it (e.g. {config.lr / 10:g})"


def evaluate(model, data, batch_size: int, batches: int, seed: int = 1234) -> float:
    """Mean NLL over fixed batches (its own generator, so evaluation never shifts training's RNG)."""
    rng = np.random.default_rng(seed)
    was_training = model.training
    model.eval()
    with no_grad():
        losses = [model.loss(*data.sample(rng, batch_size)).item() for _ in range(batches)]
    model.train(was_training)
    return float(np.mean(losses))


def open_metrics_log(path, start: int, key: str = "step"):
    """Open a JSONL metrics log for appending, first dropping lines whose `key` is past the
    resumed `start` (a killed run logged them, but their updates were never checkpointed)."""
    path = pathlib.Path(path)
    if path.exists():
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line)[key] <= start:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                break  # a half-written last line from a kill
        path.write_text("".join(line + "\n" for line in kept))
    return open(path, "a", buffering=1)  # line-buffered: each step's line is on disk when written


def train_lm(model, train_data, config: TrainConfig, *, val_data=None, checkpoint_path=None,
             tokenizer=None, log_path=None, stop_at: int | None = None, desc: str = "train",
             on_eval: Callable[[int, dict], None] | None = None, progress: bool = True,
             flag_prefix: str = "") -> list[dict]:
    """Train `model` on `train_data` (anything with ``sample(rng, B) -> (x, y, mask)``).

    If `checkpoint_path` exists, training resumes from it (weights, AdamW moments,
    RNG state and step), so a killed run continues where it stopped and ends with
    the same parameters as an uninterrupted one. `stop_at` ends the run early after
    that many total steps, checkpointing first. Returns one metrics dict per logged step.
    Weights that turn NaN or inf are never checkpointed: the run stops with a FloatingPointError
    naming the likely setting, spelled as a flag with `flag_prefix` (e.g. "--pretrain-").
    """
    params = model.parameters()
    opt = optim.AdamW(params, lr=config.lr, betas=(config.beta1, config.beta2),
                      weight_decay=config.weight_decay)
    ranks = ranks_to_text(tokenizer.ranks) if tokenizer is not None else None
    start = 0
    if checkpoint_path is not None and pathlib.Path(checkpoint_path).exists():
        ckpt = load_checkpoint(checkpoint_path)
        check_settings(ckpt, "train_config", dataclasses.asdict(config), "training")
        start = restore(ckpt, model, opt, tokenizer_ranks=ranks)
    end = min(config.steps, stop_at) if stop_at is not None else config.steps
    history: list[dict] = []
    log = open_metrics_log(log_path, start) if log_path else None

    def checkpoint(step: int) -> None:
        if checkpoint_path is not None:
            try:
                save_checkpoint(checkpoint_path, model, step=step, optimizer=opt, tokenizer_ranks=ranks,
                                extra={"train_config": dataclasses.asdict(config)})
            except NonFiniteError as e:
                raise NonFiniteError(f"{desc}: the weights became NaN or inf by step {step} ({e}) The most likely "
                                     f"cause: {divergence_cause(config, flag_prefix)}.") from None

    model.train()
    bar = Progress(range(start, end), desc=desc, total=end, start=start, enabled=progress)
    try:
        for step in bar:
            t_step = time.perf_counter()
            opt.lr = optim.warmup_cosine(step, max_lr=config.lr, total_steps=config.steps,
                                         warmup_steps=min(config.warmup_steps, config.steps), min_lr=config.min_lr)
            x, y, mask = train_data.sample(backend.host_rng(), config.batch_size)
            loss = model.loss(x, y, mask)
            opt.zero_grad()
            loss.backward()
            grad_norm = optim.clip_grad_norm(params, config.grad_clip) if config.grad_clip > 0 else None
            # the step's one read from the device: the logged loss and norm together, before the update
            logged = [loss.data] + ([grad_norm] if grad_norm is not None else [])
            loss_value, *norm = backend.to_numpy(backend.xp().stack([v.astype("float64") for v in logged])).tolist()
            grad_norm = norm[0] if norm else None
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"{desc}: the loss is {loss_value} at step {step + 1}; training stopped "
                                         "before the update so the last checkpoint stays good. The most likely "
                                         f"cause: {divergence_cause(config, flag_prefix)}; or check the data.")
            opt.step()
            done = step + 1
            metrics = {"step": done, "loss": loss_value, "lr": opt.lr, "grad_norm": grad_norm,
                       "tokens_per_s": x.size / max(time.perf_counter() - t_step, 1e-9)}
            if val_data is not None and (done == end or (config.eval_interval and done % config.eval_interval == 0)):
                metrics["val_loss"] = evaluate(model, val_data, config.batch_size, config.eval_batches)
                if on_eval is not None:
                    on_eval(done, metrics)
            bar.set(loss=metrics["loss"], tok_s=round(metrics["tokens_per_s"]),
                    **({"val": metrics["val_loss"]} if "val_loss" in metrics else {}))
            history.append(metrics)
            if log:
                log.write(json.dumps(metrics) + "\n")
            if done == end or (config.checkpoint_interval and done % config.checkpoint_interval == 0):
                checkpoint(done)
    finally:
        if log:
            log.close()
    return history
