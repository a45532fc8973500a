"""Checkpoints: one `.npz` file, written atomically, read without pickle.

It holds the weights, the model config, the tokenizer ranks, the optimizer state,
the RNG state and the step, so a run can stop anywhere and resume bit for bit.
Metadata is stored as a JSON string inside a NumPy unicode array, so
``np.load(..., allow_pickle=False)`` reads everything and loading never executes code.
"""

from __future__ import annotations

import json
import pathlib
import zipfile
from dataclasses import dataclass, field

import numpy as np

from minirl import backend
from minirl.atomic import atomic_file

FORMAT = "minirl-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is unreadable or does not fit the model it is loaded into."""


class NonFiniteError(FloatingPointError):
    """The weights or optimizer state to be saved hold NaN or inf: the run diverged."""


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
    leaves a half-written checkpoint under the real name). Weights or optimizer moments that
    hold NaN or inf are refused with `NonFiniteError`: the last good checkpoint stays."""
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
    bad = [k for k, a in arrays.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad:
        raise NonFiniteError(f"not saving {path} at step {step}: {', '.join(bad[:4])}"
                             f"{f' and {len(bad) - 4} more' if len(bad) > 4 else ''} hold NaN or inf, so the "
                             "training diverged; the last good checkpoint is kept.")
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_file(path) as f:  # a temporary name of its own, so two writers never share one
        np.savez(f, **arrays)
    return path


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`, with allow_pickle=False; anything malformed,
    down to a header that claims more memory than the machine has, is a `CheckpointError`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}.")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = {k: z[k] for k in z.files}
        meta = json.loads(str(files.pop("meta")))
    except (zipfile.BadZipFile, ValueError, OSError, KeyError, EOFError, MemoryError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is not a readable minirl checkpoint ({type(e).__name__}: {e}). "
                              "It may be truncated or corrupted: delete it and rerun that stage.") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is an .npz file but not a minirl checkpoint.")
    try:
        return _unpack(meta, files)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path} is a malformed minirl checkpoint ({type(e).__name__}: {e}); "
                              "delete it and rerun that stage.") from e


def _unpack(meta: dict, files: dict) -> Checkpoint:
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
    or another tokenizer. Everything is checked before anything is written, so a
    refused checkpoint changes nothing, and every refusal is a `CheckpointError`.
    """
    check_restorable(checkpoint, model, optimizer, tokenizer_ranks=tokenizer_ranks, restore_rng=restore_rng)
    model.load_state_dict(checkpoint.model_state)
    if optimizer is not None:
        optimizer.load_state_dict(checkpoint.optimizer_state)
    if restore_rng:
        backend.set_rng_state(checkpoint.meta["rng"])
    return checkpoint.step


def check_restorable(checkpoint: Checkpoint, model, optimizer=None, *, tokenizer_ranks: str | None = None,
                     restore_rng: bool = True) -> None:
    """Raise `CheckpointError` unless `restore` can load all of `checkpoint` into `model` (and `optimizer`)."""
    meta = checkpoint.meta
    if not isinstance(meta.get("step"), int) or meta["step"] < 0:
        raise CheckpointError(f"checkpoint step is {meta.get('step')!r}, not a non-negative integer.")
    # Dropout is a training knob, not architecture: a checkpoint loads across dropout values.
    saved_config = meta.get("model_config")
    if not isinstance(saved_config, dict):
        raise CheckpointError(f"checkpoint model_config is {saved_config!r}, not a dict of settings.")
    saved = {k: v for k, v in saved_config.items() if k != "dropout"}
    current = {k: v for k, v in _config_dict(model).items() if k != "dropout"}
    if saved != current:
        diffs = [f"{k}: checkpoint {saved.get(k)!r} vs model {current.get(k)!r}"
                 for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
        raise CheckpointError("checkpoint was made for a different model config: " + "; ".join(diffs) + ".")
    if tokenizer_ranks is not None and checkpoint.tokenizer_ranks is not None \
            and tokenizer_ranks != checkpoint.tokenizer_ranks:
        raise CheckpointError("checkpoint was made with a different tokenizer (its BPE ranks differ); "
                              "retrain, or load the tokenizer stored in the checkpoint.")
    _check_arrays("weight", checkpoint.model_state)
    try:
        _check_shapes(model, checkpoint.model_state)
    except ValueError as e:
        raise CheckpointError(str(e)) from e
    if optimizer is not None:
        _check_optimizer(checkpoint, optimizer)
    if restore_rng:
        _check_rng_state(meta.get("rng"))


def check_finite(checkpoint: Checkpoint) -> None:
    """Raise `CheckpointError` if any weight or optimizer buffer is NaN or inf (or not a number)."""
    _check_arrays("weight", checkpoint.model_state)
    for key, arrays in (checkpoint.optimizer_state or {}).items():
        if key not in ("step", "hparams"):
            _check_arrays(f"optimizer {key}", dict(enumerate(arrays)))


def _check_arrays(what: str, arrays: dict) -> None:
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.dtype.kind not in "fiu":
            raise CheckpointError(f"checkpoint {what} {name} has dtype {getattr(a, 'dtype', type(a))}, not a number.")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise CheckpointError(f"checkpoint {what} {name} holds NaN or inf: the run that wrote it had diverged.")


def _check_shapes(model, state: dict) -> None:
    params = dict(model.named_parameters())
    missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    if missing or unexpected:
        raise ValueError(f"checkpoint weights do not fit {type(model).__name__}: missing {missing}, "
                         f"unexpected {unexpected}.")
    wrong = [f"{k}: checkpoint {state[k].shape} vs model {p.shape}" for k, p in params.items()
             if tuple(state[k].shape) != tuple(p.shape)]
    if wrong:
        raise ValueError("checkpoint weights have other shapes than the model: " + "; ".join(wrong) + ".")


def _check_optimizer(checkpoint: Checkpoint, optimizer) -> None:
    saved = checkpoint.meta.get("optimizer")
    if checkpoint.optimizer_state is None or not isinstance(saved, dict):
        raise CheckpointError("checkpoint holds no optimizer state; it cannot resume training.")
    if saved.get("type") != type(optimizer).__name__:
        raise CheckpointError(f"checkpoint optimizer is {saved.get('type')}, not {type(optimizer).__name__}.")
    step, hparams = checkpoint.optimizer_state["step"], checkpoint.optimizer_state["hparams"]
    if not isinstance(step, int) or step < 0:
        raise CheckpointError(f"checkpoint optimizer step is {step!r}, not a non-negative integer.")
    expected = optimizer.state_dict()["hparams"]
    if not isinstance(hparams, dict) or set(hparams) != set(expected) \
            or not all(_is_number_or_numbers(v) for v in hparams.values()):
        raise CheckpointError(f"checkpoint optimizer hyperparameters {hparams!r} are not those of "
                              f"{type(optimizer).__name__} ({sorted(expected)}, numbers).")
    buffers = {k: v for k, v in checkpoint.optimizer_state.items() if k not in ("step", "hparams")}
    for key, arrays in buffers.items():
        _check_arrays(f"optimizer {key}", dict(enumerate(arrays)))
    try:
        optimizer.check_state_dict(checkpoint.optimizer_state)
    except (ValueError, AttributeError, TypeError) as e:
        raise CheckpointError(f"checkpoint optimizer state does not fit this model: {e}") from e


def _is_number_or_numbers(value) -> bool:
    if isinstance(value, list):
        return all(_is_number_or_numbers(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_rng_state(state) -> None:
    """Try the saved generator state on throwaway generators, so a malformed one never reaches the real ones."""
    try:
        if not isinstance(state, dict) or not isinstance(state.get("seed"), int) or state["seed"] < 0:
            raise ValueError(f"seed is {state.get('seed') if isinstance(state, dict) else state!r}")
        if "host" not in state:
            raise KeyError("host")
        type(backend.host_rng().bit_generator)().state = state["host"]
        if "device" in state and backend.name() == "numpy":
            type(backend.device_rng().bit_generator)().state = state["device"]
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise CheckpointError(f"checkpoint RNG state is malformed ({e}); it cannot resume exactly.") from e


def check_settings(checkpoint: Checkpoint, key: str, settings: dict, what: str) -> None:
    """Refuse to resume a run whose settings changed: the steps already taken followed the old ones.

    `settings` (a dataclass's asdict) is compared with what `save_checkpoint` stored under
    ``extra[key]``, after the same JSON round trip; a checkpoint without that entry passes.
    """
    extra = checkpoint.meta.get("extra", {})
    saved = extra.get(key) if isinstance(extra, dict) else None
    current = json.loads(json.dumps(settings))
    if not isinstance(extra, dict) or saved is not None and not isinstance(saved, dict):
        raise CheckpointError(f"the checkpoint's {what} settings are malformed "
                              f"({saved if saved is not None else extra!r}).")
    if saved is not None and saved != current:
        diffs = [f"{k}: {saved.get(k)} -> {v}" for k, v in current.items() if saved.get(k) != v]
        raise CheckpointError(f"the checkpoint was written with other {what} settings ({'; '.join(diffs)}); "
                              "resume with the same settings, or start a new run elsewhere.")


def _config_dict(model) -> dict:
    config = getattr(model, "config", None)
    return config.to_dict() if hasattr(config, "to_dict") else {}
