"""Named presets for happy_gpt: what `--preset NAME` changes in the default settings.

    tweets   the default: short tweets, a 64-token context
    stories  the seed's happy-stories run (TinyStories, or any file of stories): a longer
             context, a larger vocabulary, longer responses, and policy gradient (REINFORCE)
             as the seed uses. The corpus has no labels, so SFT uses the stories whose VADER
             compound is above --positive-threshold (see `minirl.data.selection`).

A preset is a table of field overrides per settings section, applied on top of the
tweets defaults (or the --quick ones), so every flag still overrides the preset.
"""

from __future__ import annotations

import dataclasses

PRESETS = ("tweets", "stories")

# Sized so the full run takes minutes, not hours, on a 2-core CPU: 16 × 256 = 4,096 tokens per
# pretraining step (twice the tweets' 32 × 64). A TinyStories story is ~200 tokens of a 4,096 BPE.
_STORIES = {
    "run": {"algo": "pg"},
    "data": {"vocab_size": 4096, "val_fraction": 0.02},
    "model": {"block_size": 256, "n_layer": 4, "n_head": 4, "n_embd": 128, "head_size": 32},
    "pretrain": {"steps": 1500, "batch_size": 16},
    "sft": {"steps": 300, "batch_size": 16},
    "rl": {"iterations": 60, "batch_size": 32, "max_new_tokens": 128},
}
_STORIES_QUICK = {
    "run": {"algo": "pg"},
    "data": {"vocab_size": 512, "val_fraction": 0.1},
    "model": {"block_size": 96},
    "rl": {"max_new_tokens": 48},
}


def overrides(name: str, quick: bool) -> dict[str, dict]:
    """Section name -> {field: value} that preset `name` sets."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    if name == "tweets":
        return {}
    return _STORIES_QUICK if quick else _STORIES


def apply(settings, name: str, quick: bool):
    """A copy of `settings` (a dataclass of section dataclasses) with preset `name` applied."""
    changes = {section: dataclasses.replace(getattr(settings, section), **fields)
               for section, fields in overrides(name, quick).items()}
    return dataclasses.replace(settings, **changes)
