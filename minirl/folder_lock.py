"""One run per output folder: a lock file that a second run sees, and a killed run cannot leave stuck.

    with FolderLock("out/happy_gpt"):
        ...train, checkpoint, report...

Two runs writing the same checkpoints and logs would interleave their lines and race
on the same files, so the second one is refused with the first one's pid. The lock is
an advisory `flock` on ``<folder>/.minirl.lock``: the kernel drops it when its process
dies, however it dies, so a lock left by a killed run is simply taken over (with a
notice naming the dead pid). The file holds the holder's pid only for the messages.

A run writes its reports at fixed names (summary.json, metrics.jsonl, ...), so it must
never start in a folder of someone else's files: a folder that is not empty and shows no
sign of minirl (this lock file, a stage folder ``<name>-<hash>/settings.json``, or a
command's summary.json) is refused before the lock file is made in it.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import re
from typing import Callable

LOCK_NAME = ".minirl.lock"
STAGE_DIR = re.compile(r"[a-z0-9_]+-[0-9a-f]{10}")
"""the name of a cached stage's folder (`minirl.examples.stages`): <name>-<first 10 hex digits of its key>"""
SUMMARIES = ("summary.json", "compare/summary.json", "frontier/summary.json", "overoptimization/summary.json")
"""where happy_gpt / summarize, compare, frontier and the over-optimisation lab write their summaries"""


class FolderBusyError(OSError):
    """Another live run holds the folder's lock."""


class ForeignFolderError(OSError):
    """The folder holds files, and none of them shows that a minirl run worked there."""


class FolderLock:
    def __init__(self, folder, notice: Callable[[str], None] = print):
        self.path = pathlib.Path(folder) / LOCK_NAME
        self.notice = notice
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        refuse_foreign(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise FolderBusyError(f"another run (pid {holder or 'unknown'}) is using {self.path.parent}; wait for "
                                  "it to finish, or pass another --out.") from None
        stale = _read_pid(fd)
        if stale and stale != os.getpid():
            self.notice(f"notice: {self.path.parent} was locked by pid {stale}, which is no longer running "
                        "(killed?); taking the lock over.")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # an empty file tells the next run that nobody was killed
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 64, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def refuse_foreign(folder: pathlib.Path) -> None:
    """Raise ForeignFolderError when `folder` holds files but no sign that a minirl run worked there."""
    entries = sorted(entry.name for entry in folder.iterdir())
    if not entries or _minirl_worked_in(folder):
        return
    shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
    raise ForeignFolderError(f"{folder} holds files that no minirl run wrote ({shown}), and a run writes its reports "
                             "at fixed names there; pass another --out: a new or empty folder.")


def _minirl_worked_in(folder: pathlib.Path) -> bool:
    if (folder / LOCK_NAME).exists():
        return True
    if any(STAGE_DIR.fullmatch(d.name) and (d / "settings.json").is_file() for d in folder.iterdir()):
        return True
    for name in SUMMARIES:
        try:
            summary = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(summary, dict) and "config" in summary:
            return True
    return False
