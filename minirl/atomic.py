"""Atomic file writes: readers, and a crash at any moment, see the old file or the new one, never half.

The content goes to a temporary file beside the target, with a name of its own (two
processes writing the same target never share one), is flushed to disk, and is then
renamed over the target in one step. If writing fails, the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile


@contextlib.contextmanager
def atomic_file(path, mode: str = "wb", encoding: str | None = None):
    """``with atomic_file(path) as f: f.write(...)``: `path` appears, complete, only when the block ends."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.fchmod(fd, 0o644)  # mkstemp makes the file private; checkpoints and reports are not secrets
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        pathlib.Path(tmp).unlink(missing_ok=True)  # only still there if writing failed


def write_atomic(path, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically."""
    with atomic_file(path, "w", encoding=encoding) as f:
        f.write(text)
