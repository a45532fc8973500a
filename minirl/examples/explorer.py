"""What the explorer page shows, computed by minirl.rl and minirl.sampling on a real run's models.

    ex = Explorer(RunFolder.open("out/happy_gpt"))
    ex.generate("I love", temperature=1.0, top_k=0, max_new_tokens=20, seed=0)
    ex.ledger(rows=4, seed=0)       # one rollout of the RL policy, token by token, with GAE
    ex.ppo_step(seed=0, steps=1)    # one real minibatch update on a copy of the policy
    ex.lab()                        # the over-optimisation lab's curves, when it has run in the folder
    ex.frontier()                   # the frontier sweep's runs and frontiers, when it has run in the folder

Each method returns a JSON-able dict; the page (`explore_static/`) only displays it, so
every number on it is one these functions computed. Bad input raises `InputError`
with a sentence for the page. Calls run one at a time (a lock): the models are shared.
A folder with no RL policy (a frontier sweep's) answers Generate with the pretrained and SFT
models, and the Ledger and PPO step with the command that makes the policy.
"""

from __future__ import annotations

import json
import math
import shlex
import threading

import numpy as np

from minirl import backend, optim
from minirl.data import load_corpus, train_val_split
from minirl.examples.explorer_sweeps import frontier_panel, lab_panel
from minirl.examples.overoptimization_report import verdicts
from minirl.examples.pipeline import copy_model
from minirl.examples.run_folder import RunFolder
from minirl.rl.advantages import gae, td_residuals
from minirl.rl.losses import masked_mean, ppo_clip_per_token, ppo_policy_loss, ppo_value_loss
from minirl.rl.ppo import advantages_and_returns
from minirl.rl.reward_health import reward_health_report
from minirl.rl.rollout import collect_rollout, state_values
from minirl.sampling import generate
from minirl.tensor import no_grad

MODELS = (("pretrained", "pretrained"), ("sft", "SFT (π_ref)"), ("rl", "RL policy"))
MAX_PROMPT_CHARS = 200
CURVES = (("score_mean", "reward R"), ("kl_to_ref", "KL to π_ref (nats / response)"),
          ("entropy", "entropy (nats / token)"), ("response_length", "response length (tokens)"),
          ("value_loss", "value loss L_V"), ("explained_variance", "explained variance 1 − Var[R−V]/Var[R]"))


class InputError(ValueError):
    """A request the page should answer with this message (never a traceback)."""


def _number(value, name: str, low: float, high: float, integer: bool = False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
        kind = "a whole number" if integer else "a number"
        raise InputError(f"{name} must be {kind} between {low:g} and {high:g}, got {value!r:.40}.")
    if not (low <= value <= high):
        raise InputError(f"{name} must be between {low:g} and {high:g}, got {value:g}.")
    return int(value) if integer else float(value)


def _floats(a) -> list[float]:
    return [round(float(x), 6) for x in backend.to_numpy(a)]


def _finite(value):
    """`value` with every NaN or ±inf float replaced by None: JSON has no NaN (an R² of a flat curve is one)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


class Explorer:
    def __init__(self, run: RunFolder):
        self.run = run
        self.tok = run.tokenizer
        self.lock = threading.Lock()
        self._health = None

    def _piece(self, token: int) -> str:
        return "<|endoftext|>" if token == self.tok.eot_id else self.tok.decode([token])

    def _prompt(self, text) -> list[int]:
        if not isinstance(text, str):
            raise InputError(f"the prompt must be text, got {type(text).__name__}.")
        if not text.strip():
            raise InputError("the prompt is empty: type a few words for the models to continue.")
        if len(text) > MAX_PROMPT_CHARS:
            raise InputError(f"the prompt is {len(text)} characters; keep it under {MAX_PROMPT_CHARS}.")
        return [self.tok.eot_id] + self.tok.encode(text)

    def _policy(self):
        """The RL policy, or an InputError with the command that makes it."""
        if self.run.missing_policy:
            raise InputError(self.run.missing_policy)
        return self.run.models["rl"]

    def overview(self) -> dict:
        """What the page says about the run before any request: its settings and final table."""
        s = self.run.summary
        return {"folder": str(self.run.path), "algo": self.run.rl["algo"], "reward": self.run.reward_kind,
                "models": s.get("models", {}), "block_size": self.run.models["sft"].config.block_size,
                "missing_policy": self.run.missing_policy,
                "max_new_tokens": self.run.rl["max_new_tokens"], "has_value_model": self.run.value_model is not None,
                "has_reward_model": self.run.reward_model is not None,
                "ppo": {k: getattr(self.run.ppo, k) for k in ("kl_coef", "kl_estimator", "gamma", "lam", "clip_eps",
                                                               "temperature", "minibatch_size")}}

    def generate(self, prompt, temperature=1.0, top_k=0, max_new_tokens=20, seed=0) -> dict:
        """Each model continues `prompt` (same seed); every response token carries log π, log π_ref
        (the SFT model) and their difference, at temperature τ over the full vocabulary (top-k only
        narrows which tokens are drawn). Each answer has R(x, y) and KL = Σ_t (log π − log π_ref)."""
        ids = self._prompt(prompt)
        temperature = _number(temperature, "temperature", 0.05, 5.0)
        top_k = _number(top_k, "top-k", 0, self.tok.vocab_size, integer=True)
        block = self.run.models["sft"].config.block_size
        max_new_tokens = _number(max_new_tokens, "length", 1, block - 1, integer=True)
        seed = _number(seed, "seed", 0, 2**31 - 1, integer=True)
        if len(ids) + max_new_tokens > block:
            raise InputError(f"the prompt is {len(ids) - 1} tokens (+1 for <|endoftext|>) and {max_new_tokens} more "
                             f"would pass the model's context of {block} tokens: shorten the prompt or the length.")
        ref = self.run.models["sft"]
        answers = []
        with self.lock:
            for key, label in ((k, name) for k, name in MODELS if k in self.run.models):
                model = self.run.models[key]
                gen = generate(model, [ids], max_new_tokens, temperature=temperature, top_k=top_k or None,
                               eot_id=self.tok.eot_id, rng=backend.rng(seed))
                with no_grad():  # without top-k the sampler's log-probs already are those of softmax(logits/τ)
                    logp = gen.logprobs[0] if not top_k else \
                        model.logprobs(gen.tokens, gen.attention_mask, temperature=temperature).data[0]  # (T,)
                    ref_logp = logp if model is ref else \
                        ref.logprobs(gen.tokens, gen.attention_mask, temperature=temperature).data[0]
                mask = backend.to_numpy(gen.response_mask[0]).astype(bool)
                tokens = backend.to_numpy(gen.tokens[0])
                logp, ref_logp = backend.to_numpy(logp), backend.to_numpy(ref_logp)
                response = [int(t) for t in tokens[mask]]
                text = self.tok.decode([t for t in response if t != self.tok.eot_id])
                reward = float(self.run.reward_fn([text])[0])
                diff = (logp - ref_logp)[mask]
                answers.append({"model": key, "label": label, "text": text, "reward": reward,
                                "kl_to_sft": float(diff.sum()),
                                "tokens": [{"text": self._piece(t), "logprob": float(a), "ref_logprob": float(b),
                                            "diff": float(a - b)}
                                           for t, a, b in zip(response, logp[mask], ref_logp[mask])]})
        return {"prompt": prompt, "prompt_tokens": len(ids) - 1, "temperature": temperature, "top_k": top_k,
                "seed": seed, "reward_kind": self.run.reward_kind, "answers": answers,
                "missing_policy": self.run.missing_policy}

    def _rollout(self, rows: int, seed: int, prompt=None):
        policy = self._policy()
        ids = self._prompt(prompt) if prompt else [self.tok.eot_id]
        ppo = self.run.ppo
        max_new = min(self.run.rl["max_new_tokens"], policy.config.block_size - len(ids))
        if max_new < 1:
            raise InputError("the prompt fills the model's context: shorten it.")
        return collect_rollout(policy, [ids] * rows, self.run.reward_fn,
                               ref_model=self.run.models["sft"],
                               decode=self.tok.decode, eot_id=self.tok.eot_id, max_new_tokens=max_new,
                               kl_coef=ppo.kl_coef, kl_estimator=ppo.kl_estimator, value_model=self.run.value_model,
                               temperature=ppo.temperature, rng=backend.rng(seed))

    def ledger(self, rows=4, seed=0, prompt=None) -> dict:
        """A rollout of the RL policy priced token by token (`rl.rollout`, `rl.rewards`), with
        δ_t and the GAE advantages A_t and returns R_t = A_t + V(s_t) (`rl.advantages`). Each
        response token also carries A of the next response step, so the page can show
        ``A_t = δ_t + γλ·A_{t+1}`` being evaluated from the last token backward."""
        rows = _number(rows, "rows", 1, 16, integer=True)
        seed = _number(seed, "seed", 0, 2**31 - 1, integer=True)
        ppo = self.run.ppo
        with self.lock:
            rollout = self._rollout(rows, seed, prompt)
        xp = backend.get_array_module(rollout.rewards)
        values = rollout.values if rollout.values is not None else xp.zeros_like(rollout.rewards)
        deltas = td_residuals(rollout.rewards, values, rollout.response_mask, ppo.gamma)
        advantages, returns = gae(rollout.rewards, values, rollout.response_mask, ppo.gamma, ppo.lam)
        cols = {name: backend.to_numpy(a) for name, a in (
            ("logprob", rollout.logprobs), ("ref_logprob", rollout.ref_logprobs), ("kl", rollout.kl),
            ("reward", rollout.rewards), ("value", values), ("delta", deltas), ("advantage", advantages),
            ("return", returns))}
        tokens = backend.to_numpy(rollout.tokens)
        mask = backend.to_numpy(rollout.response_mask).astype(bool)
        attention = backend.to_numpy(rollout.attention_mask).astype(bool)
        out_rows = []
        for b in range(tokens.shape[0]):
            steps = np.flatnonzero(mask[b])
            following = {int(t): int(steps[i + 1]) if i + 1 < len(steps) else None for i, t in enumerate(steps)}
            cells = []
            for t in range(tokens.shape[1]):
                kind = "response" if mask[b, t] else ("prompt" if t < rollout.prompt_length and attention[b, t]
                                                      else "padding")
                cell = {"t": t, "text": self._piece(int(tokens[b, t])), "kind": kind, "mask": int(mask[b, t])}
                if mask[b, t]:
                    cell.update({k: float(v[b, t]) for k, v in cols.items()})
                    nxt = following[t]  # the next action's column: masked columns are not steps
                    cell["next_t"] = nxt
                    cell["next_advantage"] = float(cols["advantage"][b, nxt]) if nxt is not None else 0.0
                cells.append(cell)
            out_rows.append({"score": float(rollout.scores[b]), "text": rollout.texts[b],
                             "ended": bool(rollout.ended[b]),
                             "reward_sum": float(cols["reward"][b][mask[b]].sum()), "tokens": cells})
        return {"seed": seed, "kl_coef": ppo.kl_coef, "kl_estimator": ppo.kl_estimator, "gamma": ppo.gamma,
                "lam": ppo.lam, "gamma_lam": ppo.gamma * ppo.lam, "has_value_model": self.run.value_model is not None,
                "prompt_length": rollout.prompt_length, "rows": out_rows}

    def ppo_step(self, seed=0, steps=1, rows=None) -> dict:
        """`steps` PPO updates on one minibatch of the ledger's rollout (same seed), made on copies of
        the policy and value model: ``L = L_clip + c_v·L_V`` (`rl.losses`), AdamW at the run's learning
        rate. Then, per token: log π_old, log π_θ, ρ = exp(log π_θ − log π_old), whether ρ left
        [1 − ε, 1 + ε], whether the clip binds (the min picks the clipped term, so no gradient flows),
        and the token's share of L_clip and of approx_kl (each column sums to the batch figure)."""
        seed = _number(seed, "seed", 0, 2**31 - 1, integer=True)
        steps = _number(steps, "steps", 1, 20, integer=True)
        ppo = self.run.ppo
        rows = ppo.minibatch_size if rows is None else _number(rows, "rows", 1, 16, integer=True)
        with self.lock:
            rollout = self._rollout(rows, seed)
            policy = copy_model(self._policy()).eval()
            value_model = copy_model(self.run.value_model).eval() if self.run.value_model is not None else None
            params = policy.parameters() + (value_model.parameters() if value_model is not None else [])
            opt = optim.AdamW(params, lr=self.run.rl["lr"], weight_decay=0.0)
            advantages, returns = advantages_and_returns(rollout, ppo)
            tokens, attention, mask = rollout.tokens, rollout.attention_mask, rollout.response_mask
            with no_grad():
                old = policy.logprobs(tokens, attention, temperature=ppo.temperature).data  # log π_old (B, T)
            history = []
            for _ in range(steps):
                logprobs = policy.logprobs(tokens, attention, temperature=ppo.temperature)
                loss, stats = ppo_policy_loss(logprobs, old, advantages, mask, ppo.clip_eps)
                if value_model is not None:
                    v_loss, v_stats = ppo_value_loss(state_values(value_model, tokens, attention), rollout.values,
                                                     returns, mask, ppo.clip_eps_v)
                    loss = loss + ppo.vf_coef * v_loss
                    stats.update(v_stats)
                stats["grad_norm"] = optim.minimize_step(opt, loss, ppo.max_grad_norm)
                history.append(stats)
            with no_grad():
                new = policy.logprobs(tokens, attention, temperature=ppo.temperature)
                per_token, after = ppo_clip_per_token(new, old, advantages, mask, ppo.clip_eps)
        m = backend.to_numpy(mask).astype(bool)
        count = max(int(m.sum()), 1)
        old_np, new_np = backend.to_numpy(old), backend.to_numpy(new.data)
        ratio = np.exp(new_np - old_np)  # ρ_t
        adv = backend.to_numpy(advantages)
        unclipped = -adv * ratio
        clipped_term = -adv * np.clip(ratio, 1 - ppo.clip_eps, 1 + ppo.clip_eps)
        loss_share = backend.to_numpy(per_token.data) / count
        kl_share = ((ratio - 1) - (new_np - old_np)) / count
        tok = backend.to_numpy(tokens)
        out_rows = []
        for b in range(tok.shape[0]):
            cells = [{"t": int(t), "text": self._piece(int(tok[b, t])), "old_logprob": float(old_np[b, t]),
                      "new_logprob": float(new_np[b, t]), "ratio": float(ratio[b, t]), "advantage": float(adv[b, t]),
                      "outside_clip": bool(abs(ratio[b, t] - 1) > ppo.clip_eps),
                      "clip_binds": bool(clipped_term[b, t] > unclipped[b, t]),
                      "loss_share": float(loss_share[b, t]), "kl_share": float(kl_share[b, t])}
                     for t in np.flatnonzero(m[b])]
            out_rows.append({"text": rollout.texts[b], "tokens": cells})
        return {"seed": seed, "steps": steps, "lr": self.run.rl["lr"], "clip_eps": ppo.clip_eps,
                "first_step": {k: float(v) for k, v in history[0].items() if v is not None},
                "after": {"policy_loss": float(masked_mean(per_token.data, mask)), **after},
                "tokens": count, "rows": out_rows}

    def curves(self) -> dict:
        """Per-iteration metrics of every RL run in the folder (from its metrics.jsonl, as the trainer
        logged them), and compare's reward-against-KL rows when it has run. A frontier sweep's runs are
        labelled with their knob ("frontier: ppo β=0.05") and start unticked when other runs are there."""
        runs = {}
        for name, path in self.run.stage_logs().items():
            lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            runs[name] = {key: [[h.get("iteration", h.get("step")), h[key]] for h in lines
                                if isinstance(h.get(key), (int, float))] for key, _ in CURVES}
        compare = self.run.compare_summary()
        points = [{"algo": r["algo"], "kl_to_sft": r["kl_to_sft"], "reward": r["reward"]}
                  for r in (compare or {}).get("rows", [])]
        sweep = [name for name in runs if name.startswith("frontier_")]
        shown = [name for name in runs if name not in sweep] or sweep
        return {"metrics": [{"key": k, "label": label} for k, label in CURVES], "runs": runs,
                "labels": self._run_labels(runs), "shown": shown, "reward_vs_kl": points}

    def _run_labels(self, names) -> dict[str, str]:
        """stage folder -> what made it: "happy_gpt: ppo", "compare: ppo", and "frontier: ppo β=0.05" for each
        run the frontier summary lists (a frontier stage it does not list, left by an older sweep, keeps its
        folder's name; so does every run when the summary cannot be read, which the Frontier panel reports)."""
        try:
            summary = self.run.frontier_summary() or {}
            swept = {r["stage"]: f"frontier: {r['algo']} {r['symbol']}={r['value']:g}" for r in summary.get("runs", [])}
        except (ValueError, KeyError, TypeError, AttributeError):
            swept = {}
        made_by = {"rl": "happy_gpt", "compare": "compare"}
        labels = {}
        for name in names:
            tool, _, algo = name.split("-")[0].partition("_")
            labels[name] = swept.get(name, f"{made_by[tool]}: {algo}" if tool in made_by else name)
        return labels

    def lab(self) -> dict:
        """The over-optimisation lab's results when it has run in this folder (its summary.json, every
        number from `minirl.rl.overoptimization`): per proxy, best-of-n and PPO gold and proxy against
        d = √KL with standard errors, the fitted Δgold curves, α, β, R², the verdicts, and the samples
        PPO wrote at each evaluation; `samples_at` picks three (first, middle, last of the largest proxy).
        Without the file: the command that makes it."""
        def panel(summary: dict) -> dict:
            proxies = lab_panel(summary)
            last = len(proxies[-1]["ppo"]["points"]) - 1
            return {"kl_coef": summary["lab"]["kl_coef"], "proxies": proxies, "verdicts": verdicts(summary),
                    "samples_at": {"size": proxies[-1]["size"], "points": sorted({0, last // 2, last})}}
        return self._sweep("overoptimization", self.run.lab_summary, panel)

    def frontier(self) -> dict:
        """The frontier sweep's results when it has run in this folder (its summary.json, every number from
        `minirl.rl.frontier`): each algorithm's runs as points labelled with their knob, its monotone frontier,
        its reward and reward per nat at the matched KLs with the best at each, gold under a proxy reward,
        the verdict, and every run's samples. Without the file: the command that makes it."""
        return self._sweep("frontier", self.run.frontier_summary, frontier_panel)

    def _sweep(self, name: str, read, panel) -> dict:
        """`panel(summary)` of sweep `name`'s <out>/<name>/summary.json (as `read()` gives it), or, without the
        file, the command that makes it; a file that does not hold what the panel needs is refused in one
        sentence naming it and that command."""
        command = f"python -m minirl.examples.{name} --out {shlex.quote(str(self.run.path))}"
        try:
            summary = read()
            if summary is None:
                return {"available": False, "command": command}
            shown = panel(summary)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise InputError(f"{self.run.path / name / 'summary.json'} cannot be read "
                             f"({type(e).__name__}: {e}); rerun `{command}` to rewrite it.") from None
        return _finite({"available": True, "command": command, **shown})

    def reward_model(self, text) -> dict:
        """R(x, y) of `text` under the run's learned reward model, and its health report
        (`rl.reward_health`) on up to 400 held-out documents of the run's corpus."""
        if self.run.reward_model is None:
            raise InputError(f"this run's reward is {self.run.reward_kind}, not a learned reward model: "
                             "rerun happy_gpt with --reward rm (or rlaif) to have one.")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_PROMPT_CHARS:
            raise InputError(f"type a text of 1 to {MAX_PROMPT_CHARS} characters to score.")
        with self.lock:
            score = float(self.run.reward_fn([text])[0])
            if self._health is None:
                self._health = self._health_report()
        return {"text": text, "reward": score, "health": self._health}

    def _health_report(self) -> dict:
        config = self.run.summary["config"]
        corpus = load_corpus(config["data"]["corpus"])
        _, val = train_val_split(corpus, config["data"]["val_fraction"], seed=config["run"]["seed"])
        n = min(len(val.texts), 400)
        return reward_health_report(self.run.reward_model, val.texts[:n], list(val.labels[:n]), corpus.label_names,
                                    self.tok)
