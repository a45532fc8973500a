"""A finished happy_gpt output folder, opened for reading: its tokenizer, models, reward and logs.

    run = RunFolder.open("out/happy_gpt")
    run.models["sft"], run.models["rl"], run.value_model, run.reward_fn, run.ppo

Everything is found *inside* the folder: stage folders are located by name under it
(never by a path read from a file), checkpoints load with allow_pickle=False, and a
missing or unfinished run is refused with the stage that is missing and the command
that makes it. A folder holding only a frontier sweep (`python -m minirl.examples.frontier`)
opens from the sweep's summary, with the pretrained and SFT models but no RL policy:
`missing_policy` then says which command makes one.
"""

from __future__ import annotations

import json
import pathlib
import shlex
from dataclasses import dataclass

from minirl.checkpoint import load_checkpoint, restore
from minirl.model import GPT, GPTConfig
from minirl.rl.ppo import PPOConfig
from minirl.rl.reward_model import ScalarHeadModel, reward_fn_from_model
from minirl.rl.sentiment import vader_reward
from minirl.tokenizer import Tokenizer

STAGES = ("tokenizer", "pretrain", "sft", "rl")
"""the stages every happy_gpt run has, in order (the RL stage is named rl_<algo>)"""


class RunFolderError(ValueError):
    """The folder is not a finished happy_gpt run; the message says what to run."""


def _make_command(out: pathlib.Path) -> str:
    return f"python -m minirl.examples.happy_gpt --out {shlex.quote(str(out))}"


def _finished(folder: pathlib.Path, prefix: str) -> pathlib.Path | None:
    """The finished stage folder named `prefix`-<hash> (the newest, if several), or None."""
    done = [d for d in folder.glob(f"{prefix}-*") if (d / "done.json").is_file()]
    return max(done, key=lambda d: (d / "done.json").stat().st_mtime) if done else None


def _stage_dir(folder: pathlib.Path, summary: dict, name: str) -> pathlib.Path:
    """The folder of stage `name` of this run: its recorded folder name, looked up under `folder` only."""
    for stage in summary.get("stages", []):
        if stage.get("name") == name:
            candidate = folder / pathlib.PurePath(str(stage.get("dir", ""))).name
            if candidate.parent == folder and (candidate / "done.json").is_file():
                return candidate
    raise RunFolderError(f"{folder} has no finished {name} stage; run `{_make_command(folder)}` to make it.")


def _load_gpt(path: pathlib.Path) -> GPT:
    ckpt = load_checkpoint(path)
    model = GPT(GPTConfig(**ckpt.meta["model_config"]))
    restore(ckpt, model, restore_rng=False)
    return model.eval()


def _value_model(path: pathlib.Path) -> ScalarHeadModel | None:
    """The PPO value model saved beside the policy in the trainer's checkpoint (keys ``value.*``)."""
    if not path.is_file():
        return None
    ckpt = load_checkpoint(path)
    state = {k[len("value."):]: v for k, v in ckpt.model_state.items() if k.startswith("value.")}
    if not state:
        return None
    model = ScalarHeadModel(GPTConfig(**ckpt.meta["model_config"]))
    model.load_state_dict(state)
    return model.eval()


@dataclass
class RunFolder:
    path: pathlib.Path
    """the --out folder of the run"""
    summary: dict
    """its summary.json"""
    tokenizer: Tokenizer
    models: dict
    """pretrained, sft (= π_ref) and rl (the final policy; absent when `missing_policy` says why), each a GPT
    in eval mode"""
    value_model: ScalarHeadModel | None
    """PPO's critic V(s_t), or None when the algorithm has none"""
    reward_model: ScalarHeadModel | None
    """the learned Bradley–Terry reward model (--reward rm or rlaif), or None for VADER"""
    reward_fn: object
    """R(x, y) on decoded texts, as the run used it"""
    ppo: PPOConfig
    """the run's PPO settings: β, γ, λ, ε, τ (the ledger and the PPO step use them)"""
    rl: dict
    """the run's RL settings (algo, lr, max_new_tokens, ...), as stored"""
    missing_policy: str | None = None
    """why `models` has no "rl" policy and the command that makes one (a frontier sweep's folder), else None"""

    @property
    def reward_kind(self) -> str:
        return self.summary["config"]["run"]["reward"]

    @classmethod
    def open(cls, out) -> RunFolder:
        folder = pathlib.Path(out).expanduser().resolve()
        command = _make_command(pathlib.Path(out))
        if folder.exists() and not folder.is_dir():
            raise RunFolderError(f"{out} is a file, not a folder: pass the folder a happy_gpt run wrote "
                                 "(its --out, e.g. out/happy_gpt).")
        if not folder.is_dir():
            raise RunFolderError(f"no run folder at {out}: run `{command}` to make one "
                                 "(add --quick for a small model in about a minute).")
        summary_path = folder / "summary.json"
        if summary_path.is_file():
            return cls._load(folder, summary_path, command, missing_policy=None)
        sweep = folder / "frontier" / "summary.json"
        if sweep.is_file():
            why = (f"{out} holds a frontier sweep but no happy_gpt RL policy: run `{command}` with the sweep's "
                   "flags (it reuses the tokenizer, pretraining and SFT it shares), then reload the page.")
            return cls._load(folder, sweep, f"python -m minirl.examples.frontier --out {shlex.quote(str(out))}",
                             missing_policy=why)
        found = [name for name in STAGES if _finished(folder, name if name != "rl" else "rl_*")]
        missing = next((name for name in STAGES if name not in found), "report")
        if (folder / "compare" / "summary.json").is_file():
            raise RunFolderError(f"{out} holds a compare run but no happy_gpt run, which the explorer opens: "
                                 f"run `{command}` with the same flags (it reuses the stages they share).")
        raise RunFolderError(f"{out} holds no finished happy_gpt run: the {missing} stage has not finished "
                             f"(finished: {', '.join(found) or 'none'}). Run `{command}` with the same flags "
                             "to finish it; finished stages are reused.")

    @classmethod
    def _load(cls, folder: pathlib.Path, summary_path: pathlib.Path, command: str,
              missing_policy: str | None) -> RunFolder:
        """The run whose config and stages `summary_path` records; its RL policy too unless `missing_policy`."""
        try:
            summary = json.loads(summary_path.read_text())
            config = summary["config"]
            rl = config["rl"]
            reward_kind = config["run"]["reward"]
        except (ValueError, KeyError, TypeError) as e:
            raise RunFolderError(f"{summary_path} cannot be read ({e}); rerun `{command}` to rewrite it.") from None
        tokenizer = Tokenizer.load(_stage_dir(folder, summary, "tokenizer") / "tokenizer.tiktoken")
        models = {"pretrained": _load_gpt(_stage_dir(folder, summary, "pretrain") / "ckpt.npz"),
                  "sft": _load_gpt(_stage_dir(folder, summary, "sft") / "ckpt.npz")}
        value_model = None
        if missing_policy is None:
            rl_dir = _stage_dir(folder, summary, f"rl_{rl['algo']}")
            models["rl"] = _load_gpt(rl_dir / "policy.npz")
            value_model = _value_model(rl_dir / "rl.npz")
        reward_model, reward_fn = None, vader_reward
        if reward_kind != "vader":
            reward_model = ScalarHeadModel(models["sft"].config)
            restore(load_checkpoint(_stage_dir(folder, summary, f"reward_{reward_kind}") / "ckpt.npz"), reward_model,
                    restore_rng=False)
            reward_model.eval()
            reward_fn = reward_fn_from_model(reward_model, tokenizer)
        return cls(folder, summary, tokenizer, models, value_model, reward_model, reward_fn, PPOConfig(**rl["ppo"]), rl,
                   missing_policy)

    def stage_logs(self) -> dict[str, pathlib.Path]:
        """metrics.jsonl of every finished RL stage in the folder (happy_gpt's rl_*, compare's compare_* and the
        frontier sweep's frontier_*; its frontier_eval-* stages keep no metrics)."""
        logs = {}
        for prefix in ("rl_", "compare_", "frontier_"):
            for d in sorted(self.path.glob(f"{prefix}*-*")):
                if (d / "done.json").is_file() and (d / "metrics.jsonl").is_file():
                    logs[d.name] = d / "metrics.jsonl"
        return logs

    def compare_summary(self) -> dict | None:
        """compare/summary.json when `python -m minirl.examples.compare` has run here, else None."""
        path = self.path / "compare" / "summary.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except ValueError:
            return None

    def lab_summary(self) -> dict | None:
        """overoptimization/summary.json when `python -m minirl.examples.overoptimization` has run here,
        else None. A file that is not JSON raises ValueError."""
        path = self.path / "overoptimization" / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def frontier_summary(self) -> dict | None:
        """frontier/summary.json when `python -m minirl.examples.frontier` has run here, else None. A file that
        is not JSON raises ValueError."""
        path = self.path / "frontier" / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else None
