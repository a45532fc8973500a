"""Progress bars for long loops, drawn by tqdm: ``for step in Progress(range(n), "pretrain"):``.

tqdm draws on terminals, as a widget in notebooks (`tqdm.auto`), and as plain updates
in pipes. This wrapper adds what the training loops need on top: the key numbers of the
run in the bar (`set(loss=..., tok_s=...)`), resuming at a step other than 0 (`start`),
and progress measured in something other than items (`measure`, e.g. tokens sampled
against a token budget).
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


class Progress:
    """Wraps an iterable in a tqdm bar that shows the loop's metrics.

    `set(**metrics)` puts the key numbers (loss, tokens/s, reward) into the bar. With `measure`,
    a callable, progress is what it returns after each item (e.g. tokens sampled against a
    token budget `total`), counted in `unit`, instead of the number of items. Off a terminal
    the bar is redrawn at most every 10 s, so a log file gets a few lines, not thousands.
    """

    def __init__(self, iterable, desc: str = "", total: int | None = None, file=None, enabled: bool = True,
                 start: int = 0, measure=None, unit: str = "it"):
        self.iterable = iterable
        self.measure = measure
        file = file or sys.stderr
        tty = hasattr(file, "isatty") and file.isatty()
        total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.bar = tqdm(total=total, initial=start, desc=desc, unit=unit, file=file, disable=not enabled,
                        dynamic_ncols=True, mininterval=0.1 if tty else 10.0)

    def set(self, **metrics) -> None:
        self.bar.set_postfix({k: (f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in metrics.items()},
                             refresh=False)

    def _advance(self) -> None:
        self.bar.update(self.measure() - self.bar.n if self.measure is not None else 1)

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self._advance()
        finally:
            self.bar.close()

    def close(self) -> None:
        """Draw the last state of a loop left early (a `break`)."""
        if self.measure is not None:
            self.bar.update(self.measure() - self.bar.n)
        self.bar.close()
