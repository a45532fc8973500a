"""happy_gpt: pretrain a tiny GPT on real tweets, fine-tune it on the positive ones, then steer it
toward happy text with RL, and show what changed.

    python -m minirl.examples.happy_gpt                    # ~8 min on a 2-core CPU
    python -m minirl.examples.happy_gpt --quick            # ~1 min, a smaller model and shorter stages
    python -m minirl.examples.happy_gpt --algo grpo --reward rm --rl-iterations 40

Stages (each cached in --out by the hash of its settings; see `pipeline.py`):
tokenizer → pretrain → SFT on positive tweets → reward (VADER, or a learned
Bradley–Terry model: --reward rm on human labels, --reward rlaif on AI-judge labels)
→ RL (--algo). A rerun reuses every finished stage whose settings are unchanged, so
changing only RL flags reruns only RL; a killed run resumes where it stopped.

At the end it prints the stages and their wall time, reward / fraction positive / KL to
the SFT model / distinct-n / held-out perplexity for the pretrained, SFT and final
models, and samples before and after RL, and writes summary.json, metrics.jsonl,
report.html and rl_curves.png (with matplotlib) to --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import sys
import time
from dataclasses import dataclass, field

from minirl import backend
from minirl.checkpoint import CheckpointError
from minirl.cli import add_dataclass_args, from_args
from minirl.examples import presets as named_presets
from minirl.examples.pipeline import REWARDS, DataConfig, load_labelled_corpus, prepare, reward_function, run_rl
from minirl.examples.report import perplexity, sample_statistics, side_by_side, write_plots
from minirl.examples.report_html import write_report_html
from minirl.examples.stages import StageCache, write_atomic
from minirl.folder_lock import FolderLock
from minirl.model import GPTConfig
from minirl.rl.ppo import PPOConfig
from minirl.rl.reward_model import RewardModelConfig
from minirl.rl.trainer import ALGOS, RLConfig
from minirl.table import format_table
from minirl.train import TrainConfig
from minirl.validation import check_ranges


@dataclass
class RunConfig:
    algo: str = field(default="ppo", metadata={"choices": ALGOS})
    """the RL algorithm"""
    reward: str = field(default="vader", metadata={"choices": REWARDS})
    """vader (the lexicon), rm (Bradley–Terry on human labels) or rlaif (Bradley–Terry on AI-judge labels)"""
    backend: str = field(default="numpy", metadata={"choices": ("numpy", "cupy")})
    """array backend"""
    out: str = "out/happy_gpt"
    """directory for every stage's checkpoints and the report"""
    seed: int = 0
    """seed of the split, every initialisation, batch and sample"""
    eval_samples: int = 128
    """samples per model for the report's statistics"""
    rm_pairs: int = 4000
    """preference pairs for --reward rm (label pairs) or rlaif (judged SFT sample pairs)"""

    def __post_init__(self):
        check_ranges(self, seed="[0, inf)", eval_samples="[1, inf)", rm_pairs="[1, inf)")


@dataclass
class Settings:
    """Every knob of a run; `presets(quick)` gives the defaults."""
    run: RunConfig
    """what to run and where: --algo, --reward, --out, --seed, ..."""
    data: DataConfig
    """corpus, tokenizer size, split, prompts"""
    model: GPTConfig
    """the GPT card (--model-...)"""
    pretrain: TrainConfig
    """next-token pretraining (--pretrain-...)"""
    sft: TrainConfig
    """fine-tuning on positive tweets (--sft-...)"""
    rm: RewardModelConfig
    """the Bradley–Terry reward model of --reward rm/rlaif (--rm-...)"""
    rl: RLConfig
    """the RL run (--rl-..., --rl-ppo-..., --rl-grpo-...)"""


def presets(quick: bool) -> Settings:
    """The default run (sized for ≤ 10 min on 2 CPU cores) or --quick (≤ 90 s, for smoke tests)."""
    if quick:
        return Settings(
            RunConfig(rm_pairs=400), DataConfig(vocab_size=512),
            GPTConfig(n_layer=2, n_head=2, n_embd=64, head_size=32, block_size=48),
            TrainConfig(steps=400, batch_size=32, lr=3e-3, warmup_steps=20, eval_interval=0, checkpoint_interval=50),
            TrainConfig(steps=100, batch_size=16, lr=1e-3, warmup_steps=5, eval_interval=0, checkpoint_interval=20),
            RewardModelConfig(steps=40, batch_size=16, lr=1e-3, eval_interval=0),
            RLConfig(iterations=30, batch_size=32, max_new_tokens=24, lr=5e-4,
                     ppo=PPOConfig(kl_coef=0.05, epochs=2, minibatch_size=16)))
    return Settings(
        RunConfig(), DataConfig(), GPTConfig(),
        TrainConfig(steps=1200, batch_size=32, eval_interval=300, checkpoint_interval=100),
        TrainConfig(steps=300, batch_size=32, lr=5e-4, warmup_steps=20, min_lr=5e-5, eval_interval=0,
                    checkpoint_interval=100),
        RewardModelConfig(steps=300),
        RLConfig(iterations=60, batch_size=64, max_new_tokens=40, lr=2e-4,
                 ppo=PPOConfig(kl_coef=0.05, epochs=2, minibatch_size=32)))


SECTIONS = (("run", ""), ("data", ""), ("model", "model"), ("pretrain", "pretrain"), ("sft", "sft"), ("rm", "rm"),
            ("rl", "rl"))


# --algo sets rl.algo, the tokenizer sets model.vocab_size, --seed sets the reward model's and DPO's seeds,
# --rl-iterations sets DPO's steps; RL's DPO has no held-out pairs and best-of-n's SFT no validation set or
# checkpoint, so their evaluation and checkpoint intervals would be flags that do nothing
SKIPPED = {"rl": ("algo", "dpo.seed", "dpo.steps", "dpo.eval_interval", "sft.eval_interval", "sft.eval_batches",
                  "sft.checkpoint_interval"),
           "model": ("vocab_size",), "rm": ("seed",)}

# The --help groups, common flags first: (title, one-line description) per section of Settings
GROUPS = {"run": ("common flags", "what to run and where"),
          "data": ("data flags", "the corpus, its labels, the tokenizer, the split and the RL prompts"),
          "model": ("model flags (--model-*)", "the GPT card"),
          "pretrain": ("pretrain stage (--pretrain-*)", "next-token prediction on every training document"),
          "sft": ("sft stage (--sft-*)", "fine-tuning on the positive documents; the result is π_ref"),
          "rm": ("reward model stage (--rm-*)", "the Bradley–Terry reward model of --reward rm or rlaif"),
          "rl": ("rl stage (--rl-*)", "the RL run; each algorithm's own flags follow in their groups")}


def parse_settings(argv, prog: str, description: str, extra=None) -> tuple[Settings, argparse.Namespace]:
    """Flags from the config dataclasses, with --quick switching every default to the quick preset;
    `extra(parser)` may add a command's own flags (they come back in the namespace)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--quick", action="store_true")
    pre.add_argument("--preset", default="tweets", choices=named_presets.PRESETS)
    known = pre.parse_known_args(argv)[0]
    defaults = named_presets.apply(presets(known.quick), known.preset, known.quick)
    usage = (f"{prog} [--quick] [--preset tweets|stories] [--algo ALGO] [--reward REWARD] [--out DIR] [--seed N] "
             "[--corpus NAME_OR_FILE] [flags of each stage, below]")
    parser = argparse.ArgumentParser(prog=prog, description=description, usage=usage)
    parser.add_argument("--quick", action="store_true", help="a small model and short stages (~1 min on a CPU)")
    parser.add_argument("--preset", default="tweets", choices=named_presets.PRESETS,
                        help="default settings for: tweets, or stories (an unlabelled story corpus, e.g. TinyStories)")
    if extra is not None:
        extra(parser)
    for name, prefix in SECTIONS:
        add_dataclass_args(parser, type(getattr(defaults, name)), prefix, defaults=getattr(defaults, name),
                           skip=SKIPPED.get(name, ()), title=GROUPS[name][0], description=GROUPS[name][1])
    args = parser.parse_args(argv)
    values = {name: from_args(args, type(getattr(defaults, name)), prefix, defaults=getattr(defaults, name))
              for name, prefix in SECTIONS}
    seed = values["run"].seed
    values["rl"] = dataclasses.replace(values["rl"], algo=values["run"].algo,
                                       dpo=dataclasses.replace(values["rl"].dpo, seed=seed))
    values["rm"] = dataclasses.replace(values["rm"], seed=seed)
    return Settings(**values), args


def writable_dir(out: str) -> pathlib.Path:
    """--out as a directory, created if need be, checked to be writable; nothing in it is changed."""
    path = pathlib.Path(out)
    if path.exists() and not path.is_dir():
        raise OSError(f"--out {out} is a file, not a directory; pass a directory, e.g. --out ./out/happy_gpt.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise OSError(f"--out {out} cannot be written to ({e.strerror or e}); pass a directory you can write, "
                      "e.g. --out ./out/happy_gpt.") from None
    return path


def lock_out(out: str) -> FolderLock:
    """The lock that keeps a second run out of --out while this one works in it; taking it refuses a
    folder of files that no minirl run wrote (`FolderLock`)."""
    return FolderLock(writable_dir(out))


OUTPUTS = ("summary.json", "report.html", "metrics.jsonl", "rl_curves.png")
"""the files a run writes at the top of --out (summary.json last: its presence means the run finished)"""


def open_out(out: str, outputs: tuple[str, ...] = OUTPUTS) -> pathlib.Path:
    """Move aside each of `outputs` (paths under --out) that an earlier run left, as <name>.previous.<ext>,
    so a run never writes over a file, and one that fails never leaves a report that looks like its own.
    Call it only once the settings are validated and the lock is held (`lock_out`, which refuses a folder
    of files no minirl run wrote): it is the first change a run makes to --out."""
    path = writable_dir(out)
    for name in outputs:
        earlier = path / name
        if earlier.exists():
            os.replace(earlier, earlier.with_name(f"{earlier.stem}.previous{earlier.suffix}"))
    return path


def evaluate_models(models: dict, base, reward_fn, max_new_tokens: int, seed: int) -> dict:
    out = {}
    for name, model in models.items():
        stats = sample_statistics(model, base.sft, base.eval_prompts, base.tokenizer, reward_fn, max_new_tokens,
                                  seed=seed + 777)
        stats["val_ppl"] = perplexity(model, base.val_positive)
        out[name] = stats
    return out


def merged_metrics(records, out: pathlib.Path) -> None:
    """One metrics.jsonl for the run: every stage's lines, each tagged with its stage."""
    lines = []
    for record in records:
        log = pathlib.Path(record.dir) / "metrics.jsonl"
        if log.exists():
            lines += [json.dumps({"stage": record.name, **json.loads(line)}) for line in log.read_text().splitlines()]
    write_atomic(out / "metrics.jsonl", "".join(line + "\n" for line in lines))


def run(settings: Settings) -> dict:
    t_start = time.perf_counter()
    cfg = settings.run
    backend.use(cfg.backend)
    corpus = load_labelled_corpus(settings.data, need_negative=cfg.reward == "rm")  # before --out is touched
    with lock_out(cfg.out):
        return _run(settings, corpus, t_start)


def _run(settings: Settings, corpus, t_start: float) -> dict:
    cfg = settings.run
    out = open_out(cfg.out)
    cache = StageCache(out)
    base = prepare(cache, settings.data, settings.model, settings.pretrain, settings.sft, cfg.seed, cfg.eval_samples,
                   corpus=corpus)
    reward_fn, reward_stage = reward_function(cache, base, cfg.reward, settings.rm, cfg.rm_pairs,
                                              settings.rl.max_new_tokens, cfg.seed)
    policy, history, rl_info = run_rl(cache, base, settings.rl, reward_fn, reward_stage, cfg.reward, cfg.seed)

    t0 = time.perf_counter()
    models = evaluate_models({"pretrained": base.pretrained, "sft": base.sft, "final": policy}, base, reward_fn,
                             settings.rl.max_new_tokens, cfg.seed)
    eval_seconds = time.perf_counter() - t0
    broken = [f"{name} {key} = {value}" for name, figures in models.items() for key, value in figures.items()
              if isinstance(value, float) and not math.isfinite(value)]
    if broken:  # never a summary.json that looks finished but holds NaN
        raise FloatingPointError(f"the evaluation gave {', '.join(broken)}; no report was written. A policy whose "
                                 "samples score NaN has diverged: lower --rl-lr, or check the reward function.")
    plot = write_plots(history, out / "rl_curves.png", f"{cfg.algo} against {cfg.reward}")
    merged_metrics(base.records, out)

    sft, final = models["sft"], models["final"]
    acceptance = {"vader_gain_over_sft": final["vader"] - sft["vader"],
                  "fraction_positive": final["fraction_positive"],
                  "distinct_2_ratio_to_sft": final["distinct_2"] / max(sft["distinct_2"], 1e-12),
                  "kl_to_sft": final["kl_to_sft"]}
    prompt_text = [base.tokenizer.decode([t for t in p if t != base.tokenizer.eot_id]) for p in base.eval_prompts]
    samples = {name: [f"[{p}] {t}" if p else t for p, t in zip(prompt_text, models[name].pop("texts"))][:8]
               for name in models}
    summary = {"config": dataclasses.asdict(settings), "stages": [dataclasses.asdict(r) for r in base.records],
               "eval_seconds": eval_seconds, "models": models, "acceptance": acceptance, "samples": samples,
               "rl": rl_info, "plot": str(plot) if plot else None,
               "total_seconds": time.perf_counter() - t_start}
    print_report(summary, cfg)
    page = write_report_html(summary, out)
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))  # last: its presence means the run finished
    print(f"\nwrote {out / 'summary.json'}, {out / 'metrics.jsonl'}, {page}" + (f", {plot}" if plot else ""))
    return summary


def print_report(summary: dict, cfg: RunConfig) -> None:
    stages = [[s["name"], s["status"], s["seconds"]] for s in summary["stages"]]
    stages.append(["evaluation", "ran", summary["eval_seconds"]])
    print("\n" + format_table(stages, ["stage", "status", "seconds"]))
    names = {"pretrained": "pretrained", "sft": "SFT (positive tweets)", "final": f"{cfg.algo} on {cfg.reward}"}
    rows = [[names[k], m["reward"], m["vader"], m["fraction_positive"], m["kl_to_sft"], m["distinct_1"],
             m["distinct_2"], m["response_length"], m["val_ppl"]] for k, m in summary["models"].items()]
    print("\n" + format_table(rows, ["model", "reward", "VADER", "frac. positive", "KL to SFT", "distinct-1",
                                     "distinct-2", "length", "val ppl"]))
    print(f"({cfg.eval_samples} samples per model; KL in nats per response; val ppl on held-out positive tweets)\n")
    print(side_by_side(summary["samples"]["sft"], summary["samples"]["final"], ("before RL (SFT)", "after RL")))
    print(f"\ntotal {summary['total_seconds']:.0f} s")


USER_ERRORS = (ValueError, OSError, ImportError, backend.BackendError, CheckpointError, FloatingPointError)


INTERRUPTED = ("interrupted: rerun the same command to go on; finished stages are reused, and a training stage "
               "that was cut off resumes from its last checkpoint if it had written one.")


def exit_status(work) -> int:
    """Run `work()`: 0 when it finishes; a user's mistake is one line on stderr and status 2, not a traceback;
    Ctrl-C is one line saying how to resume, and status 130 (128 + SIGINT), as a shell reports it."""
    try:
        work()
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{INTERRUPTED}", file=sys.stderr)
        return 130
    return 0


def main(argv=None) -> int:
    return exit_status(lambda: run(parse_settings(argv, "python -m minirl.examples.happy_gpt",
                                                  __doc__.split("\n")[0])[0]))


if __name__ == "__main__":
    sys.exit(main())
