"""The RL loop shared by the sampling algorithms: sample, update, log, repeat.

    history = train_rl(policy, ref, prompts, vader_reward, tokenizer=tok, config=RLConfig(algo="ppo"))

Each iteration samples `batch_size` prompts, collects one rollout (`rollout.py`), runs
the algorithm's update (`pg.reinforce_update`, `ppo.ppo_update`, `grpo.grpo_update`,
`rloo.rloo_update` or `trpo.trpo_update`), optionally adapts β
(Ziegler et al. 2019), and appends one dict of metrics to a JSONL file. For best-of-n
an iteration is one round: sample n per prompt, keep the best, fine-tune on them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from minirl import backend, nn, optim
from minirl.checkpoint import CheckpointError, NonFiniteError, check_settings, load_checkpoint, restore, save_checkpoint
from minirl.progress import Progress
from minirl.rl.advantages import RunningMeanBaseline
from minirl.rl.best_of_n import BestOfNConfig, best_of_n_round
from minirl.rl.dpo import DPOConfig, train_dpo
from minirl.rl.grpo import GRPOConfig, grpo_update
from minirl.rl.kl import AdaptiveKLController
from minirl.rl.pg import PGConfig, reinforce_update
from minirl.rl.ppo import PPOConfig, ppo_update
from minirl.rl.rlaif import label_pairs_with_judge, score_judge
from minirl.rl.rloo import RLOOConfig, rloo_update
from minirl.rl.rewards import RewardFunction, TokenReward
from minirl.rl.rollout import collect_rollout
from minirl.rl.trpo import TRPOConfig, trpo_update
from minirl.tokenizer import ranks_to_text
from minirl.train import TrainConfig, open_metrics_log
from minirl.validation import check_ranges

ALGOS = ("pg", "ppo", "grpo", "rloo", "trpo", "best_of_n", "dpo")


@dataclass
class RLConfig:
    algo: str = "ppo"
    """pg (REINFORCE with KL in the reward), ppo, grpo, rloo, trpo, best_of_n (rejection sampling + SFT),
    or dpo (on pairs of the starting policy's samples labelled by a judge built from the reward: RLAIF)"""
    iterations: int = 100
    """rollouts collected (one update each)"""
    batch_size: int = 32
    """responses per rollout"""
    max_new_tokens: int = 48
    """response length cap"""
    lr: float = 5e-4
    """AdamW learning rate for the policy (and value model); dpo uses dpo.lr and best_of_n sft.lr"""
    kl_target: float | None = None
    """if set, adapt β toward this KL to the reference (nats per response)"""
    kl_horizon: int = 10_000
    """the adaptive controller's horizon, in responses"""
    max_sampled_tokens: int | None = None
    """if set, stop after the iteration in which this many response tokens have been sampled in all
    (an equal sampling budget across algorithms); `iterations` stays the cap"""
    missing_eos_penalty: float = 0.0
    """added to R when a response runs out of tokens without EOT (use a negative number)"""
    missing_eos_reward: float | None = None
    """if set, R is replaced by this when a response runs out of tokens without EOT (the TL;DR seed's −1)"""
    pg: PGConfig = field(default_factory=PGConfig)
    """REINFORCE settings (β, baseline, ...)"""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """PPO settings (β, clip, epochs, ...)"""
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    """GRPO settings (G, β·k3 in the loss, loss_type, ...)"""
    rloo: RLOOConfig = field(default_factory=RLOOConfig)
    """RLOO settings (k, β, ...)"""
    trpo: TRPOConfig = field(default_factory=TRPOConfig)
    """TRPO settings (δ, conjugate gradient, line search, ...)"""
    dpo: DPOConfig = field(default_factory=lambda: DPOConfig(steps=1))
    """DPO settings; its steps are `iterations`"""
    dpo_pairs: int = 256
    """prompts sampled twice and judged, for DPO's preference pairs"""
    best_of_n: BestOfNConfig = field(default_factory=BestOfNConfig)
    """best-of-n settings (n, k, τ); its rounds are `iterations`, its length cap `max_new_tokens`, its SFT `sft`"""
    sft: TrainConfig = field(default_factory=lambda: TrainConfig(steps=20, batch_size=16, lr=3e-4, warmup_steps=0,
                                                                 eval_interval=0, checkpoint_interval=0))
    """the fine-tuning run on each best-of-n round's kept samples"""

    def __post_init__(self):
        if self.algo not in ALGOS:
            raise ValueError(f"unknown algo {self.algo!r}; choose one of {', '.join(ALGOS)}.")
        check_ranges(self, iterations="[1, inf)", batch_size="[1, inf)", max_new_tokens="[1, inf)", lr="(0, inf)",
                     kl_target="(0, inf)", kl_horizon="[1, inf)", max_sampled_tokens="[1, inf)", dpo_pairs="[1, inf)")
        if self.kl_target is not None and not (self.algo in ("pg", "ppo", "rloo", "trpo") and self.algo_config.kl_coef > 0):
            raise ValueError(f"kl_target adapts β in the reward, and {self.algo} has none to adapt here (GRPO puts its KL "
                             "in the loss, DPO and best-of-n have none, and a kl_coef of 0 cannot be scaled). Drop "
                             "kl_target, or use pg/ppo/rloo/trpo with kl_coef > 0.")
        group = self.group_size
        if self.batch_size % group:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of the {self.algo} group size {group}.")

    @property
    def group_size(self) -> int:
        """Samples per prompt in one rollout: G for GRPO, k for RLOO, 1 otherwise."""
        return {"grpo": self.grpo.group_size, "rloo": self.rloo.k}.get(self.algo, 1)

    def settings(self) -> dict:
        """The fields that shape a run of `algo` (the shared ones and its own section): what a
        resumed run must match, and what a cache of finished runs is keyed by."""
        own = {"pg": ("pg",), "ppo": ("ppo",), "grpo": ("grpo",), "rloo": ("rloo",), "trpo": ("trpo",),
               "dpo": ("dpo",), "best_of_n": ("best_of_n", "sft")}[self.algo]
        sections = ("pg", "ppo", "grpo", "rloo", "trpo", "dpo", "best_of_n", "sft")
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in sections or k in own}

    @property
    def algo_config(self):
        return {"pg": self.pg, "ppo": self.ppo, "grpo": self.grpo, "rloo": self.rloo, "trpo": self.trpo}[self.algo]


@contextlib.contextmanager
def _jsonl_log(path, start: int = 0):
    """Yield ``log(metrics)``, appending one JSON line per call to `path` (a no-op without a path)."""
    if path is None:
        yield lambda metrics: None
        return
    with open_metrics_log(path, start, key="iteration") as f:
        yield lambda metrics: f.write(json.dumps(metrics) + "\n")


class _PolicyAndValue(nn.Module):
    """The policy and (for PPO) its value model, checkpointed together as one model."""

    def __init__(self, policy, value_model):
        self.config = policy.config
        self.policy = policy
        self.value = value_model


def train_rl(policy, ref_model, prompts: Sequence[Sequence[int]], reward_fn: RewardFunction,
             *, tokenizer, config: RLConfig, value_model=None, log_path=None, progress: bool = True,
             rng: np.random.Generator | None = None, checkpoint_path=None, checkpoint_interval: int = 10,
             stop_at: int | None = None) -> list[dict]:
    """Run `config.iterations` rollout-and-update iterations; returns (and logs) their metrics.

    With `checkpoint_path`, the policy, value model, optimizer, baseline, β and RNG state
    are saved every `checkpoint_interval` iterations and at the end, and a rerun resumes
    from there. Resuming is exact when `rng` is left None (the global host generator,
    which the checkpoint carries). `stop_at` ends early after that many iterations.
    """
    if len(prompts) == 0:
        raise ValueError("train_rl needs at least one prompt (use [[eot_id]] for unconditional samples).")
    if config.algo == "best_of_n":
        if checkpoint_path is not None or stop_at is not None:
            raise ValueError("best_of_n rounds are not checkpointed yet: run them without checkpoint_path/stop_at.")
        rng = rng if rng is not None else backend.host_rng()
        return _train_best_of_n(policy, prompts, reward_fn, tokenizer, config, log_path, progress, rng)
    if config.algo == "dpo":
        if isinstance(reward_fn, TokenReward):
            raise ValueError("dpo judges pairs of samples with a text reward function, and this reward reads token "
                             "ids (a TokenReward); use ppo, pg, grpo, rloo, trpo or best_of_n with it.")
        return _train_dpo_from_judge(policy, ref_model, prompts, reward_fn, tokenizer, config, log_path, progress,
                                     checkpoint_path, stop_at)
    algo = config.algo_config
    policy.eval()  # no dropout in RL forward passes: ρ ≡ 1 on the first step depends on it
    if value_model is not None:
        value_model.eval()
    trainable = _PolicyAndValue(policy, value_model)
    # TRPO moves the policy by its own natural-gradient step; AdamW then only trains the value model.
    learned = (value_model.parameters() if value_model is not None else []) if config.algo == "trpo" \
        else trainable.parameters()
    opt = optim.AdamW(learned, lr=config.lr, weight_decay=0.0) if learned else None
    controller = AdaptiveKLController(algo.kl_coef, config.kl_target, config.kl_horizon) if config.kl_target else None
    baseline = RunningMeanBaseline()
    ranks = ranks_to_text(tokenizer.ranks)
    start, sampled_tokens = 0, 0
    if checkpoint_path is not None and pathlib.Path(checkpoint_path).exists():
        ckpt = load_checkpoint(checkpoint_path)
        check_settings(ckpt, "rl_config", config.settings(), "RL")
        (baseline_value, baseline_count), sampled_tokens, saved_kl_coef = _loop_state(ckpt, checkpoint_path)
        start = restore(ckpt, trainable, opt, tokenizer_ranks=ranks)  # after every check: a refusal changes nothing
        baseline.value, baseline.count = baseline_value, baseline_count
        if controller:
            controller.kl_coef = saved_kl_coef
    end = min(config.iterations, stop_at) if stop_at is not None else config.iterations
    if config.max_sampled_tokens is not None and sampled_tokens >= config.max_sampled_tokens:
        end = start  # a resumed run whose budget was already spent
    rng = rng if rng is not None else backend.host_rng()  # fetched after restore, which replaces the generator

    def checkpoint(iteration: int) -> None:
        if checkpoint_path is not None:
            try:
                save_checkpoint(checkpoint_path, trainable, step=iteration, optimizer=opt, tokenizer_ranks=ranks,
                                extra={"rl_config": config.settings(), "baseline": [baseline.value, baseline.count],
                                       "sampled_tokens": sampled_tokens,
                                       "kl_coef": controller.kl_coef if controller else algo.kl_coef})
            except NonFiniteError as e:
                cause = (f"the trust region, --rl-trpo-max-kl {config.trpo.max_kl}, or the value model's --rl-lr "
                         f"{config.lr}" if config.algo == "trpo" else f"the learning rate, --rl-lr {config.lr}")
                raise NonFiniteError(f"{config.algo}: the weights became NaN or inf by iteration {iteration} ({e}) "
                                     f"The most likely cause: {cause}; lower it.") from None

    history: list[dict] = []
    budget = config.max_sampled_tokens
    bar = Progress(range(start, end), desc=config.algo, total=budget or end, start=sampled_tokens if budget else start,
                   enabled=progress, measure=(lambda: min(sampled_tokens, budget)) if budget else None,
                   unit="tok" if budget else "it")
    with _jsonl_log(log_path, start) as log:
        for iteration in bar:
            t0 = time.perf_counter()
            kl_coef = controller.kl_coef if controller else algo.kl_coef
            G = config.group_size  # each sampled prompt appears G times in a row
            batch = [list(prompts[i]) for i in rng.integers(0, len(prompts), size=config.batch_size // G)
                     for _ in range(G)]
            rollout = collect_rollout(policy, batch, reward_fn, ref_model=ref_model, decode=tokenizer.decode,
                                      eot_id=tokenizer.eot_id, max_new_tokens=config.max_new_tokens,
                                      kl_coef=kl_coef, kl_estimator=algo.kl_estimator, value_model=value_model,
                                      temperature=algo.temperature, missing_eos_penalty=config.missing_eos_penalty,
                                      missing_eos_reward=config.missing_eos_reward)
            if config.algo == "pg":
                stats = reinforce_update(policy, opt, rollout, algo, baseline, value_model=value_model)
            elif config.algo == "ppo":
                stats = ppo_update(policy, opt, rollout, algo, value_model=value_model, rng=rng)
            elif config.algo == "grpo":
                stats = grpo_update(policy, opt, rollout, algo, max_len=config.max_new_tokens)
            elif config.algo == "rloo":
                stats = rloo_update(policy, opt, rollout, algo)
            else:
                stats = trpo_update(policy, rollout, algo, value_model=value_model, value_optimizer=opt)
            if controller:
                controller.update(stats["kl_to_ref"], config.batch_size)
            sampled_tokens += int(backend.to_numpy(rollout.response_mask).sum())
            stats.update({"iteration": iteration + 1, "kl_coef": kl_coef, "sampled_tokens": sampled_tokens,
                          "seconds": time.perf_counter() - t0})
            history.append(stats)
            bar.set(score=stats["score_mean"], kl=stats["kl_to_ref"])
            log(stats)
            spent = config.max_sampled_tokens is not None and sampled_tokens >= config.max_sampled_tokens
            if spent or iteration + 1 == end or (checkpoint_interval and (iteration + 1) % checkpoint_interval == 0):
                checkpoint(iteration + 1)
            if spent:
                bar.close()
                break
    return history


def _loop_state(ckpt, path) -> tuple[tuple[float, int], int, float]:
    """The running baseline, tokens sampled and β a checkpoint of `train_rl` carries, checked."""
    extra = ckpt.meta.get("extra")
    try:
        value, count = extra["baseline"]
        state = (float(value), int(count)), int(extra.get("sampled_tokens", 0)), float(extra["kl_coef"])
    except (TypeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path} is not a checkpoint of the RL loop: its baseline, token count or β is "
                              f"missing or malformed ({type(e).__name__}: {e}).") from None
    if not all(np.isfinite(x) for x in (state[0][0], state[2])):
        raise CheckpointError(f"{path} carries a NaN or infinite baseline or β: the run that wrote it had diverged.")
    return state


def _train_best_of_n(policy, prompts, reward_fn, tokenizer, config: RLConfig, log_path, progress, rng) -> list[dict]:
    """`config.iterations` rounds of best-of-n, each on `batch_size` sampled prompts."""
    history: list[dict] = []
    sampled_tokens, budget = 0, config.max_sampled_tokens
    bar = Progress(range(config.iterations), desc="best_of_n", total=budget or config.iterations, enabled=progress,
                   measure=(lambda: min(sampled_tokens, budget)) if budget else None, unit="tok" if budget else "it")
    with _jsonl_log(log_path) as log:
        for iteration in bar:
            t0 = time.perf_counter()
            batch = [list(prompts[i]) for i in rng.integers(0, len(prompts), size=config.batch_size)]
            stats = best_of_n_round(policy, batch, reward_fn, config.best_of_n, config.sft,
                                    max_new_tokens=config.max_new_tokens, decode=tokenizer.decode,
                                    eot_id=tokenizer.eot_id)
            sampled_tokens += stats.pop("response_tokens")
            stats.update({"iteration": iteration + 1, "sampled_tokens": sampled_tokens,
                          "seconds": time.perf_counter() - t0})
            history.append(stats)
            log(stats)
            if budget is not None and sampled_tokens >= budget:
                bar.close()
                break
    return history


def _train_dpo_from_judge(policy, ref_model, prompts, reward_fn, tokenizer, config: RLConfig, log_path, progress,
                          checkpoint_path, stop_at) -> list[dict]:
    """RLAIF with DPO: the reward function judges pairs of π_ref's samples once (higher score
    wins), then DPO trains on those pairs for `config.iterations` steps. The pairs come from the
    frozen reference, not the moving policy, so a resumed run trains on the same pairs. Ties
    (equal scores; common with VADER, which scores many short texts 0) carry no preference
    and are dropped."""
    rng = np.random.default_rng([config.dpo.seed, len(prompts)])
    sample_rng = backend.rng(config.dpo.seed)
    budget, pairs, sampled_tokens = config.max_sampled_tokens, [], 0
    while True:  # with a token budget, 64 prompts at a time until it is spent; otherwise dpo_pairs prompts once
        size = config.dpo_pairs if budget is None else 64
        batch = [list(prompts[i]) for i in rng.integers(0, len(prompts), size=size)]
        new = label_pairs_with_judge(ref_model, batch, score_judge(reward_fn), tokenizer, config.max_new_tokens,
                                     rng=sample_rng)
        pairs += new
        sampled_tokens += sum(len(p.chosen_ids) + len(p.rejected_ids) for p in new)
        if budget is None or sampled_tokens >= budget or not new:
            break
    text = lambda ids: tokenizer.decode([t for t in ids if t != tokenizer.eot_id])  # noqa: E731
    chosen = reward_fn([text(p.chosen_ids) for p in pairs])
    rejected = reward_fn([text(p.rejected_ids) for p in pairs])
    scores = np.asarray([chosen, rejected], dtype=np.float64)  # (2, pairs)
    if not np.isfinite(scores).all():
        raise ValueError("the reward function gave NaN or inf to some of the judged samples; DPO needs finite "
                         "scores to tell chosen from rejected. Fix the reward function.")
    pairs = [p for p, a, b in zip(pairs, chosen, rejected) if a != b]
    if not pairs:
        raise ValueError("every judged pair was a tie: the reward function cannot tell the policy's samples "
                         "apart, so DPO has nothing to learn from. Sample more pairs or use another reward.")
    dpo = dataclasses.replace(config.dpo, steps=config.iterations)
    history = train_dpo(policy, ref_model, pairs, dpo, progress=progress, log_path=log_path,
                        checkpoint_path=checkpoint_path, stop_at=stop_at)
    for metrics in history:  # every response DPO learns from was sampled once, before its first step
        metrics.update(sampled_tokens=sampled_tokens, pairs=len(pairs))
    return history
