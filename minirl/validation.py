"""Range checks for the config dataclasses, so every command refuses nonsense before it runs.

    def __post_init__(self):
        check_ranges(self, lr="(0, inf)", lam="[0, 1]", eval_interval="[0, inf)")

An interval is written as in mathematics: ``(0, 1]`` excludes 0 and includes 1. Every
float field of the config must also be finite, named in `ranges` or not, because a NaN
learning rate or clip range is never what the user meant and only surfaces later as a
NaN loss far from its cause. A field that is None (an optional setting left unset) is
skipped. The error is a `ConfigError` that carries the field's name, so the command line
(`minirl.cli.from_args`) can restate it as the flag the user typed.
"""

from __future__ import annotations

import dataclasses
import math


class ConfigError(ValueError):
    """A config field holds a value outside its range."""

    def __init__(self, owner: str, field: str, message: str):
        super().__init__(f"{owner}.{field} {message}")
        self.owner, self.field, self.message = owner, field, message


def _parse_interval(text: str) -> tuple[float, float, bool, bool]:
    """'(0, inf)' -> (low, high, low_closed, high_closed)."""
    left, right = text.strip()[0], text.strip()[-1]
    low, high = (float(part) for part in text.strip()[1:-1].split(","))
    if left not in "[(" or right not in ")]":
        raise ValueError(f"an interval is written like '[0, 1)', got {text!r}")
    return low, high, left == "[", right == "]"


def _inside(value: float, interval: str) -> bool:
    low, high, low_closed, high_closed = _parse_interval(interval)
    above = value >= low if low_closed else value > low
    below = value <= high if high_closed else value < high
    return above and below


def _describe(interval: str) -> str:
    """'(0, inf)' -> 'be positive', '[0, 1]' -> 'lie in [0, 1]'."""
    words = {"(0, inf)": "be positive", "[1, inf)": "be positive", "[0, inf)": "be >= 0"}
    return words.get(interval.replace(" ", "").replace(",", ", "), f"lie in {interval}")


def check_ranges(config, **ranges: str) -> None:
    """Raise `ConfigError` for the first field that is non-finite or outside its interval."""
    owner = type(config).__name__
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(owner, f.name, f"must be a finite number, got {value}.")
        interval = ranges.get(f.name)
        if interval is not None and not _inside(value, interval):
            raise ConfigError(owner, f.name, f"must {_describe(interval)}, got {value}.")
    unknown = set(ranges) - {f.name for f in dataclasses.fields(config)}
    if unknown:
        raise TypeError(f"check_ranges: {owner} has no field {sorted(unknown)}")
