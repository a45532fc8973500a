"""The explorer's panels over sweeps run in the same folder, reshaped from their summary.json for the page.

    lab_panel(summary)        # overoptimization/summary.json: per proxy, best-of-n and PPO points and fits
    frontier_panel(summary)   # frontier/summary.json: every run, each algorithm's frontier, the matched KLs

Every number is one the sweep wrote (from `minirl.rl.overoptimization`, `minirl.rl.frontier`) or one
those modules compute here from it: the lab's fitted curves, the gold line through a frontier's runs.
A summary that lacks a field or whose lists disagree raises KeyError, TypeError, IndexError or
ValueError; `Explorer` turns that into one sentence naming the file and the command that rewrites it.
"""

from __future__ import annotations

import numpy as np

from minirl.rl.frontier import through_runs
from minirl.rl.overoptimization import gold_curve

FIT_POINTS = 60
"""values of d at which the lab panel's fitted gold curves are evaluated"""
RUN_FIELDS = ("knob", "symbol", "value", "reward", "gold", "kl_to_sft", "response_length", "distinct_2",
              "sampled_tokens", "iterations", "samples")
"""what the frontier panel shows of one run when its point is clicked"""
SFT_FIELDS = ("reward", "gold", "kl_to_sft", "response_length", "distinct_2", "samples")


def _fitted_curve(fit: dict | None, d_max: float) -> list[list[float]]:
    """[d, Δgold] on FIT_POINTS values of d in [0, d_max], from the lab's fitted α and β (`gold_curve`:
    best-of-n d(α − βd), RL d(α − β log d)); empty when there is no fit."""
    if fit is None or not d_max > 0:
        return []
    d = np.linspace(0.0, d_max, FIT_POINTS)
    return [[float(x), float(y)] for x, y in zip(d, gold_curve(d, fit["alpha"], fit["beta"], fit["form"]))]


def _lab_proxy(size: str, info: dict, bon: dict, ppo: dict) -> dict:
    """One proxy's best-of-n and PPO points, Δgold = gold − gold(d = 0) as the lab fits it, and the fits."""
    columns = zip(bon["n"], bon["kl"], bon["d"], bon["gold"], bon["gold_stderr"], bon["proxy"], bon["proxy_stderr"])
    bon_points = [{"n": n, "kl": kl, "d": d, "gold": g, "gold_stderr": g_se, "delta_gold": g - bon["gold"][0],
                   "proxy": p, "proxy_stderr": p_se} for n, kl, d, g, g_se, p, p_se in columns]
    evals = ppo["evals"]
    ppo_points = [{**e, "delta_gold": e["gold"] - evals[0]["gold"]} for e in evals]
    return {"size": size, "train_pairs": info.get("train_pairs"), "val_accuracy": info.get("val_accuracy"),
            "best_of_n": {"points": bon_points, "fit": bon["fit"], "gold_falls": bon["gold_falls"],
                          "fit_curve": _fitted_curve(bon["fit"], max(bon["d"]))},
            "ppo": {"points": ppo_points, "fit": ppo["fit"], "gold_falls": ppo["gold_falls"],
                    "fit_curve": _fitted_curve(ppo["fit"], max(e["d"] for e in evals))}}


def lab_panel(summary: dict) -> list[dict]:
    """The over-optimisation lab's proxies, each with its best-of-n and PPO points and fitted curves."""
    return [_lab_proxy(size, info, summary["best_of_n"][size], summary["ppo"][size])
            for size, info in summary["proxies"].items()]


def _algo_frontier(algo: str, m: dict, own: list[dict], kls: list[float], proxy: bool) -> dict:
    """One algorithm: its runs, its monotone frontier as the sweep computed it, its gold through the runs
    (under a proxy reward), and what the sweep read off its frontier at each matched KL."""
    for key in ("reward", "reward_per_nat", *(("gold",) if proxy else ())):
        if len(m[key]) != len(kls):
            raise ValueError(f"matched.algos.{algo}.{key} has {len(m[key])} values for {len(kls)} matched KLs")
    if not own:
        raise ValueError(f"matched.algos has {algo}, but no run of it is in runs")
    gold_line = through_runs([r["kl_to_sft"] for r in own], [r["gold"] for r in own]) if proxy else ([], [])
    return {"algo": algo, "symbol": own[0]["symbol"], "runs": own,
            "frontier": [[float(k), float(r)] for k, r in zip(m["frontier_kl"], m["frontier_reward"], strict=True)],
            "gold_line": [[float(k), float(g)] for k, g in zip(*gold_line)],
            "kl_range": [float(k) for k in m["kl_range"]], "reward": m["reward"],
            "reward_per_nat": m["reward_per_nat"], "gold": m["gold"] if proxy else None}


def frontier_panel(summary: dict) -> dict:
    """The frontier sweep: per algorithm its runs (each labelled with its knob, e.g. "δ=0.02"), its monotone
    frontier and its reward, reward per nat and (under a proxy reward) gold at each matched KL; the best
    algorithm at each matched KL, the verdict, and the SFT model the runs start from."""
    matched, proxy = summary["matched"], summary["gold"] is not None
    kls = [float(k) for k in matched["kls"]]
    if len(matched["best"]) != len(kls):
        raise ValueError(f"matched.best has {len(matched['best'])} entries for {len(kls)} matched KLs")
    runs = [{"algo": r["algo"], **{key: r[key] for key in RUN_FIELDS}, "label": f"{r['symbol']}={r['value']:g}"}
            for r in summary["runs"]]
    stray = sorted({r["algo"] for r in runs} - set(matched["algos"]))
    if stray:
        raise ValueError(f"runs has {', '.join(stray)}, which matched.algos lacks")
    algos = [_algo_frontier(algo, m, [r for r in runs if r["algo"] == algo], kls, proxy)
             for algo, m in matched["algos"].items()]
    return {"reward": summary["reward"], "gold": summary["gold"], "token_budget": summary["token_budget"],
            "sft": {key: summary["sft"][key] for key in SFT_FIELDS}, "kls": kls, "best": matched["best"],
            "algos": algos, "verdict": summary["verdict"]}
