"""Reddit TL;DR files a user brings: post → summary pairs for SFT, and human comparisons of summaries.

Layouts (JSONL, one object a line), as in the public TL;DR SFT and comparisons releases:
    SFT file          {"prompt": "SUBREDDIT: ... POST: ... TL;DR:", "label": " the summary"}
    comparisons file  {"prompt": "...", "chosen": "the better summary", "rejected": "the worse one"}
Texts are kept exactly as written: prompt ‖ response is what the model reads.

A post is often longer than the context. `fit_prompt` either keeps its last tokens (the
end, where "TL;DR:" sits, is what the summary continues) or refuses the line, as the
`truncate` setting says; it never cuts silently in the middle.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from minirl.data.corpora import json_value, jsonl_records
from minirl.data.preferences import PreferencePair
from minirl.data.sft import SFTDataset, SFTExample

TRUNCATE = ("left", "refuse")


@dataclass(frozen=True)
class Comparison:
    """One human judgement: ``prompt ‖ chosen`` is preferred to ``prompt ‖ rejected``."""
    prompt: str
    chosen: str
    rejected: str
    line: int
    """line number in its file, for error messages"""


def read_jsonl(path: str | Path, fields: tuple[str, ...]) -> list[tuple[int, dict]]:
    """(line number, record) for every non-blank line; each record must hold `fields` as non-empty strings."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    records = jsonl_records(path)
    for lineno, record in records:
        for field in fields:
            if not isinstance(record.get(field), str) or not record[field].strip():
                found = (f"its {field!r} is {json_value(record[field])}" if field in record
                         else f"the line has {sorted(record)}")
                raise ValueError(f"{path}, line {lineno}: needs a non-empty string {field!r}, but {found}. Expected "
                                 f"the fields {list(fields)}, each a JSON string.")
    if not records:
        raise ValueError(f"{path} holds no records; expected JSON lines with {list(fields)}.")
    return records


def load_sft_file(path: str | Path) -> list[tuple[str, str, int]]:
    """(prompt, summary, line) of an SFT file with `prompt` and `label` fields."""
    return [(r["prompt"], r["label"], lineno) for lineno, r in read_jsonl(path, ("prompt", "label"))]


def load_comparisons(path: str | Path) -> list[Comparison]:
    """The comparisons of a file with `prompt`, `chosen` and `rejected` fields."""
    return [Comparison(r["prompt"], r["chosen"], r["rejected"], lineno)
            for lineno, r in read_jsonl(path, ("prompt", "chosen", "rejected"))]


def fit_prompt(prompt_ids: list[int], max_prompt_tokens: int, truncate: str, where: str) -> list[int]:
    """`prompt_ids` if it fits in `max_prompt_tokens`; else its last `max_prompt_tokens` ids
    (truncate="left"), or an error naming `where` (truncate="refuse")."""
    if truncate not in TRUNCATE:
        raise ValueError(f"truncate must be one of {TRUNCATE}, got {truncate!r}.")
    if len(prompt_ids) <= max_prompt_tokens:
        return prompt_ids
    if truncate == "refuse":
        raise ValueError(f"{where}: the prompt has {len(prompt_ids)} tokens, more than max_prompt_tokens = "
                         f"{max_prompt_tokens}; drop the line, raise the limit, or truncate from the left.")
    return prompt_ids[-max_prompt_tokens:]


def sft_examples(path: str | Path, tokenizer, max_prompt_tokens: int, truncate: str = "left") -> list[SFTExample]:
    """One ``prompt → summary ‖ EOT`` example per line of an SFT file, each prompt fitted by `fit_prompt`."""
    rows = load_sft_file(path)
    prompts = tokenizer.encode_batch([p for p, _, _ in rows])
    summaries = tokenizer.encode_batch([s for _, s, _ in rows], eot=True)
    return [SFTExample(fit_prompt(p, max_prompt_tokens, truncate, f"{path}, line {line}"), s)
            for p, s, (_, _, line) in zip(prompts, summaries, rows)]


def sft_dataset(path: str | Path, tokenizer, block_size: int, max_prompt_tokens: int,
                truncate: str = "left") -> SFTDataset:
    """SFT rows of ``prompt ‖ summary ‖ EOT`` with the prompt masked out of the loss (MATH.md §1).

    A summary that runs past the block loses its tail (see `SFTDataset`)."""
    if not 0 < max_prompt_tokens < block_size:
        raise ValueError(f"max_prompt_tokens must be in [1, block_size={block_size}), got {max_prompt_tokens}.")
    return SFTDataset(sft_examples(path, tokenizer, max_prompt_tokens, truncate), block_size, pad_id=tokenizer.eot_id)


def comparison_pairs(path: str | Path, tokenizer, block_size: int, max_prompt_tokens: int,
                     truncate: str = "left") -> list[PreferencePair]:
    """Preference pairs ``x ‖ y_w`` over ``x ‖ y_l`` for the Bradley–Terry reward model (MATH.md §2).

    Each response ends with EOT and is cut to the ``block_size − len(x)`` tokens left after
    the prompt, so the reward model reads every pair whole."""
    comparisons = load_comparisons(path)
    prompts = tokenizer.encode_batch([c.prompt for c in comparisons])
    chosen = tokenizer.encode_batch([c.chosen for c in comparisons], eot=True)
    rejected = tokenizer.encode_batch([c.rejected for c in comparisons], eot=True)
    pairs = []
    for c, x, y_w, y_l in zip(comparisons, prompts, chosen, rejected):
        x = fit_prompt(x, max_prompt_tokens, truncate, f"{path}, line {c.line}")
        room = block_size - len(x)
        pairs.append(PreferencePair(x, y_w[:room], y_l[:room]))
    return pairs


MARKER = "TL;DR:"
"""where a TL;DR post ends and its summary begins"""


def check_marker(sft_path: str | Path, comparisons_path: str | Path) -> None:
    """Refuse a comparisons file whose summaries start with "TL;DR:" when the SFT file's posts end with it.

    The reward model must read ``x ‖ y`` laid out as the policy writes it: the post, "TL;DR:",
    then the summary. Comparisons exported as ``prompt`` = the post alone and ``chosen`` =
    "TL;DR: the summary" put the marker on the other side, so the policy's samples would be
    scored in a layout the reward model never saw."""
    posts_end_with_it = any(p.rstrip().endswith(MARKER) for p, _, _ in load_sft_file(sft_path))
    moved = next((c for c in load_comparisons(comparisons_path)
                  if not c.prompt.rstrip().endswith(MARKER) and MARKER in (c.chosen.lstrip()[:len(MARKER)],
                                                                           c.rejected.lstrip()[:len(MARKER)])), None)
    if posts_end_with_it and moved is not None:
        raise ValueError(f"{comparisons_path}, line {moved.line}: the summary starts with {MARKER!r}, but the posts "
                         f"of {sft_path} end with it. Move it into the prompt (prompt + \"\\n{MARKER}\", each summary "
                         f"without its leading {MARKER!r}; see the README's TL;DR recipe), so the reward model reads "
                         "the layout the policy writes.")


_NAMES = ["my roommate", "my boss", "my sister", "a friend", "my landlord"]
_ISSUES = ["keeps eating my food", "never answers messages", "borrowed money", "plays loud music at night"]


def write_synthetic_tldr(folder: str | Path, n: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """Small SFT and comparisons files in the release layouts, for tests and --quick runs.

    Each post names a person and a problem; its good summary names both, the bad one neither.
    """
    rng = random.Random(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sft, comparisons = [], []
    for _ in range(n):
        who, issue = rng.choice(_NAMES), rng.choice(_ISSUES)
        post = (f"SUBREDDIT: r/relationships\nTITLE: help with {who}\nPOST: For {rng.randint(2, 9)} weeks "
                f"{who} {issue}. I tried talking, nothing changed. What should I do?\nTL;DR:")
        good, bad = f" {who} {issue}, what do I do?", " stuff happened, idk"
        sft.append({"prompt": post, "label": good})
        comparisons.append({"prompt": post, "chosen": good, "rejected": bad})
    paths = folder / "sft.jsonl", folder / "comparisons.jsonl"
    for path, rows in zip(paths, (sft, comparisons)):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return paths
