"""A pipeline of cached stages: each one lives in a folder named by the hash of its settings.

    cache = StageCache("out/happy_gpt")
    sft = cache.stage("sft", {"train": asdict(sft_config)}, parents=[pretrain])
    if not cache.is_done(sft, ["ckpt.npz"]):
        ...train, writing sft.dir / "ckpt.npz" (resumable)...
        cache.finish(sft, ["ckpt.npz"], {"seconds": 84.0})

A stage's key hashes its own settings *and its parents' keys*, so changing the
pretraining settings invalidates SFT and everything after it, while changing only the
RL settings reuses pretraining and SFT. Nothing is ever overwritten: other settings
get another folder, so switching back reuses the older result too.

`done.json` is written last (atomically), with the SHA-256 of each output file; a
stage without it is unfinished, and its trainer resumes from its checkpoint. A
finished stage whose files no longer match their checksums, or an unfinished one whose
checkpoint cannot be read, is set aside (renamed ``*.corrupt``) with a notice and recomputed; so is
a finished one whose done.json cannot be read, since its outputs cannot be checked without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from dataclasses import dataclass
from typing import Callable, Sequence

from minirl.atomic import write_atomic  # re-exported: happy_gpt and compare write through it
from minirl.checkpoint import CheckpointError, check_finite, load_checkpoint


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def file_sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Stage:
    name: str
    """what the stage does: tokenizer, pretrain, sft, reward_rm, rl_ppo, ..."""
    key: str
    """SHA-256 of the stage's name, settings and parent keys"""
    settings: dict
    """everything that shapes its result, as stored in settings.json"""
    dir: pathlib.Path
    """<root>/<name>-<first 10 hex digits of key>"""

    def path(self, filename: str) -> pathlib.Path:
        return self.dir / filename


class StageCache:
    def __init__(self, root, notice: Callable[[str], None] = print):
        self.root = pathlib.Path(root)
        self.notice = notice

    def stage(self, name: str, settings: dict, parents: Sequence[Stage] = ()) -> Stage:
        settings = json.loads(canonical_json(settings))  # tuples -> lists, as they will be stored
        key = hashlib.sha256(canonical_json({"name": name, "settings": settings,
                                             "parents": [p.key for p in parents]}).encode()).hexdigest()
        stage = Stage(name, key, settings, self.root / f"{name}-{key[:10]}")
        stage.dir.mkdir(parents=True, exist_ok=True)
        write_atomic(stage.path("settings.json"), json.dumps({"name": name, "key": key, "settings": settings,
                                                              "parents": [p.dir.name for p in parents]}, indent=2))
        return stage

    def is_done(self, stage: Stage, files: Sequence[str], resumable: Sequence[str] = ()) -> bool:
        """True when `stage` finished and every one of `files` is intact. Otherwise damaged files are
        set aside: outputs that fail their checksum, and `resumable` checkpoints that cannot be read."""
        marker = stage.path("done.json")
        if not marker.exists():
            for name in resumable:
                self._check_resumable(stage, name)
            return False
        recorded = _read_marker(marker)
        if recorded is None:  # no checksums to hold the outputs to, so none of them can be trusted
            bad = [name for name in files if stage.path(name).exists()]
            self.notice(f"notice: stage {stage.name}: {marker} is unreadable (damaged?), so "
                        f"{', '.join(bad) or 'its outputs'} cannot be checked; setting the stage aside (*.corrupt) "
                        "and recomputing it.")
        else:
            bad = [name for name in files
                   if not stage.path(name).exists() or recorded.get(name) != file_sha256(stage.path(name))]
            if not bad:
                return True
            self.notice(f"notice: stage {stage.name}: {', '.join(bad)} missing or not what was written "
                        f"(checksum mismatch: corrupted?); setting it aside and recomputing the stage.")
        for name in bad:
            self._set_aside(stage.path(name))
        self._set_aside(marker)
        return False

    def info(self, stage: Stage) -> dict:
        """What `finish` recorded for a finished stage (timings, metrics)."""
        return json.loads(stage.path("done.json").read_text())["info"]

    def finish(self, stage: Stage, files: Sequence[str], info: dict) -> None:
        """Mark `stage` done, with the checksums of `files`; a checkpoint among them whose weights are
        NaN or inf is refused (FloatingPointError), so a diverged stage is never reused."""
        for name in files:
            if name.endswith(".npz"):
                try:
                    check_finite(load_checkpoint(stage.path(name)))
                except CheckpointError as e:
                    raise FloatingPointError(f"stage {stage.name} is not marked done: {e}") from None
        sums = {name: file_sha256(stage.path(name)) for name in files}
        write_atomic(stage.path("done.json"), json.dumps({"key": stage.key, "sha256": sums, "info": info}, indent=2))

    def _check_resumable(self, stage: Stage, name: str) -> None:
        """An unfinished stage resumes from its checkpoint; one that cannot be read is set aside."""
        path = stage.path(name)
        if not path.exists():
            return
        try:
            check_finite(load_checkpoint(path))
        except CheckpointError as e:
            self.set_aside(stage, name, f"cannot resume from it ({e})")

    def set_aside(self, stage: Stage, name: str, why: str) -> None:
        """Rename a damaged or unusable file of `stage` to ``*.corrupt``, with a notice naming both."""
        path = stage.path(name)
        self.notice(f"notice: stage {stage.name}: {path}: {why}; setting it aside as {path.name}.corrupt and "
                    "starting the stage over.")
        self._set_aside(path)

    @staticmethod
    def _set_aside(path: pathlib.Path) -> None:
        if path.exists():
            os.replace(path, path.with_name(path.name + ".corrupt"))


def _read_marker(marker: pathlib.Path) -> dict | None:
    """The output checksums a done.json records, or None when it is not the JSON that `finish` writes."""
    try:
        done = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(done, dict) and isinstance(done.get("sha256"), dict) and isinstance(done.get("info"), dict)):
        return None
    return done["sha256"]
