"""A dependency-free progress bar for long loops: ``for step in Progress(range(n), "pretrain"):``."""

from __future__ import annotations

import sys
import time


class Progress:
    """Wraps an iterable; redraws one line on a terminal, or prints ~10 lines when piped to a file.

    `set(**metrics)` puts the key numbers (loss, tokens/s, reward) into the bar. With `measure`,
    a callable, progress is what it returns after each item (e.g. tokens sampled against a
    token budget `total`), counted in `unit`, instead of the number of items.
    """

    def __init__(self, iterable, desc: str = "", total: int | None = None, file=None, enabled: bool = True,
                 start: int = 0, measure=None, unit: str = "it"):
        self.iterable = iterable
        self.desc = desc
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.file = file or sys.stderr
        self.enabled = enabled
        self.metrics: dict[str, str] = {}
        self.measure, self.unit = measure, unit
        self.count = start
        self.start_count = start
        self.tty = hasattr(self.file, "isatty") and self.file.isatty()
        self.t0 = time.perf_counter()
        self.last_draw = 0.0
        self.last_logged_tenth = -1
        self.last_logged_count = -1

    def set(self, **metrics) -> None:
        self.metrics = {k: (f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in metrics.items()}

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.t0
        rate = (self.count - self.start_count) / elapsed if elapsed > 0 else 0.0
        total = f"/{self.total}" if self.total else ""
        bar = ""
        if self.total:
            filled = int(20 * self.count / self.total)
            bar = "[" + "#" * filled + "." * (20 - filled) + "] "
        eta = ""
        if self.total and rate > 0:
            eta = f" eta {max(0.0, (self.total - self.count) / rate):.0f}s"
        extras = " ".join(f"{k}={v}" for k, v in self.metrics.items())
        return f"{self.desc} {bar}{self.count}{total} {rate:.2f} {self.unit}/s{eta} {extras}".rstrip()

    def _draw(self, final: bool = False) -> None:
        if not self.enabled:
            return
        if self.tty:
            now = time.perf_counter()
            if final or now - self.last_draw > 0.1:
                self.file.write("\r\x1b[2K" + self._line() + ("\n" if final else ""))
                self.file.flush()
                self.last_draw = now
            return
        tenth = int(10 * self.count / self.total) if self.total else -1
        if (final and self.count != self.last_logged_count) or tenth > self.last_logged_tenth:
            self.last_logged_tenth, self.last_logged_count = tenth, self.count
            self.file.write(self._line() + "\n")
            self.file.flush()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.count = self.measure() if self.measure is not None else self.count + 1
            self._draw()
        self._draw(final=True)

    def close(self) -> None:
        """Draw the last line of a loop left early (a `break`)."""
        if self.measure is not None:
            self.count = self.measure()
        self._draw(final=True)
