"""Checkpoints: one `.npz` file, written atomically, read without pickle.

It holds the weights, the model config, the tokenizer ranks, the optimizer state,
the RNG state and the step, so a run can stop anywhere and resume bit for bit.
Metadata is stored as a JSON string inside a NumPy unicode array, so
``np.load(..., allow_pickle=False)`` reads everything and loading never executes code.
"""

from __future__ import annotations

import json
import os
import pathlib
import zipfile
from dataclasses import dataclass, field

import numpy as np

from minirl import backend

FORMAT = "minirl-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is unreadable or does not fit the model it is loaded into."""


@dataclass
class Checkpoint:
    meta: dict
    """step, model_config, rng state, optimizer type and hyperparameters, anything extra"""
    model_state: dict[str, np.ndarray]
    """parameter name -> host array"""
    optimizer_state: dict | None = None
    """what Optimizer.state_dict returned, or None"""
    tokenizer_ranks: str | None = None
    """the tokenizer's rank file as text (tiktoken format), or None"""
    extra_arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def save_checkpoint(path, model, *, step: int, optimizer=None, tokenizer_ranks: str | None = None,
                    extra: dict | None = None) -> pathlib.Path:
    """Write everything needed to resume to `path` (tmp file + rename, so a crash never
    leaves a half-written checkpoint under the real name)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"model/{k}": backend.to_numpy(v) for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "version": VERSION, "step": int(step), "rng": backend.rng_state(),
            "model_config": _config_dict(model), "extra": extra or {}}
    if optimizer is not None:
        state = optimizer.state_dict()
        meta["optimizer"] = {"type": type(optimizer).__name__, "step": state["step"], "hparams": state["hparams"]}
        for key, buffers in state.items():
            if isinstance(buffers, list):
                for i, a in enumerate(buffers):
                    arrays[f"optim/{key}/{i}"] = a
    if tokenizer_ranks is not None:
        arrays["tokenizer_ranks"] = np.array(tokenizer_ranks)
    arrays["meta"] = np.array(json.dumps(meta))
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left behind if writing failed
    return path


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`, with allow_pickle=False."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}.")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = {k: z[k] for k in z.files}
        meta = json.loads(str(files.pop("meta")))
    except (zipfile.BadZipFile, ValueError, OSError, KeyError, EOFError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not a readable minirl checkpoint ({type(e).__name__}: {e}). "
                              "It may be truncated or corrupted: delete it and rerun that stage.") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is an .npz file but not a minirl checkpoint.")
    model_state = {k[len("model/"):]: v for k, v in files.items() if k.startswith("model/")}
    optimizer_state = None
    if "optimizer" in meta:
        optimizer_state = {"step": meta["optimizer"]["step"], "hparams": meta["optimizer"]["hparams"]}
        buffers: dict[str, dict[int, np.ndarray]] = {}
        for k, v in files.items():
            if k.startswith("optim/"):
                _, key, i = k.split("/")
                buffers.setdefault(key, {})[int(i)] = v
        for key, by_index in buffers.items():
            optimizer_state[key] = [by_index[i] for i in range(len(by_index))]
    ranks = str(files["tokenizer_ranks"]) if "tokenizer_ranks" in files else None
    rest = {k: v for k, v in files.items() if not k.startswith(("model/", "optim/")) and k != "tokenizer_ranks"}
    return Checkpoint(meta, model_state, optimizer_state, ranks, rest)


def restore(checkpoint: Checkpoint, model, optimizer=None, *, tokenizer_ranks: str | None = None,
            restore_rng: bool = True) -> int:
    """Load weights (and optimizer and RNG state) into live objects; returns the step.

    Refuses, with the differences listed, a checkpoint made for another model config
    or another tokenizer.
    """
    # Everything is checked before anything is written, so a refused checkpoint changes nothing.
    # Dropout is a training knob, not architecture: a checkpoint loads across dropout values.
    saved = {k: v for k, v in checkpoint.meta.get("model_config", {}).items() if k != "dropout"}
    current = {k: v for k, v in _config_dict(model).items() if k != "dropout"}
    if saved != current:
        diffs = [f"{k}: checkpoint {saved.get(k)!r} vs model {current.get(k)!r}"
                 for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
        raise CheckpointError("checkpoint was made for a different model config: " + "; ".join(diffs) + ".")
    if tokenizer_ranks is not None and checkpoint.tokenizer_ranks is not None \
            and tokenizer_ranks != checkpoint.tokenizer_ranks:
        raise CheckpointError("checkpoint was made with a different tokenizer (its BPE ranks differ); "
                              "retrain, or load the tokenizer stored in the checkpoint.")
    if optimizer is not None:
        if checkpoint.optimizer_state is None:
            raise CheckpointError("checkpoint holds no optimizer state; it cannot resume training.")
        saved_type = checkpoint.meta["optimizer"]["type"]
        if saved_type != type(optimizer).__name__:
            raise CheckpointError(f"checkpoint optimizer is {saved_type}, not {type(optimizer).__name__}.")
        try:
            optimizer.check_state_dict(checkpoint.optimizer_state)
        except ValueError as e:
            raise CheckpointError(f"checkpoint optimizer state does not fit this model: {e}") from e
    model.load_state_dict(checkpoint.model_state)
    if optimizer is not None:
        optimizer.load_state_dict(checkpoint.optimizer_state)
    if restore_rng:
        backend.set_rng_state(checkpoint.meta["rng"])
    return checkpoint.step


def check_settings(checkpoint: Checkpoint, key: str, settings: dict, what: str) -> None:
    """Refuse to resume a run whose settings changed: the steps already taken followed the old ones.

    `settings` (a dataclass's asdict) is compared with what `save_checkpoint` stored under
    ``extra[key]``, after the same JSON round trip; a checkpoint without that entry passes.
    """
    saved = checkpoint.meta.get("extra", {}).get(key)
    current = json.loads(json.dumps(settings))
    if saved is not None and saved != current:
        diffs = [f"{k}: {saved.get(k)} -> {v}" for k, v in current.items() if saved.get(k) != v]
        raise CheckpointError(f"the checkpoint was written with other {what} settings ({'; '.join(diffs)}); "
                              "resume with the same settings, or start a new run elsewhere.")


def _config_dict(model) -> dict:
    config = getattr(model, "config", None)
    return config.to_dict() if hasattr(config, "to_dict") else {}
