"""The frontier sweep's tables, verdict, samples and plot (numbers from `minirl.rl.frontier`)."""

from __future__ import annotations

import pathlib
from typing import Callable

from minirl.examples.report import _pyplot, save_figure
from minirl.rl.frontier import through_runs
from minirl.table import format_table


def _cell(value):
    return "-" if value is None else value


def tables(summary: dict) -> str:
    """Every run, then every frontier read at the matched KLs: the plain-text report (also table.txt)."""
    proxy, sft, matched = summary["gold"] is not None, summary["sft"], summary["matched"]
    gold = ["gold (VADER)"] if proxy else []
    rows = [["sft (start)", "-", "-", sft["reward"], *([sft["gold"]] if proxy else []), sft["kl_to_sft"],
             sft["response_length"], sft["distinct_2"], 0, 0.0]]
    rows += [[r["algo"], r["knob"], r["value"], r["reward"], *([r["gold"]] if proxy else []), r["kl_to_sft"],
              r["response_length"], r["distinct_2"], r["sampled_tokens"], r["seconds"]] for r in summary["runs"]]
    runs = format_table(rows, ["algorithm", "knob", "value", "reward", *gold, "KL to SFT", "length", "distinct-2",
                               "tokens sampled", "seconds"])
    kls = matched["kls"]
    heads = [h for k in kls for h in (f"R @ {k:g}", f"per nat @ {k:g}", *([f"gold @ {k:g}"] if proxy else []))]
    rows = []
    for algo, m in matched["algos"].items():
        cells = []
        for i in range(len(kls)):
            cells += [_cell(m["reward"][i]), _cell(m["reward_per_nat"][i])] + ([_cell(m["gold"][i])] if proxy else [])
        rows.append([algo, f"{m['kl_range'][0]:.2f}-{m['kl_range'][1]:.2f}", *cells])
    rows.append(["best", "", *[c for b in matched["best"] for c in [_cell(b), ""] + ([""] if proxy else [])]])
    at = format_table(rows, ["algorithm", "KL range", *heads])
    return (f"{summary['reward']} reward, budget {summary['token_budget']:,} sampled response tokens per run; KL in "
            f"nats per response (k1 on each run's own samples)\n\n{runs}\n\nreward at matched KL (the monotone "
            f"frontier, read only inside each algorithm's KL range; per nat = (R - R_sft) / KL, R_sft = "
            f"{sft['reward']:.4g})\n\n{at}")


def verdict(summary: dict) -> str:
    """In plain words: which algorithm gives the most reward per nat at matched KL, and by how much."""
    matched = summary["matched"]
    kls, algos = matched["kls"], matched["algos"]
    compared, lines = [], []
    for i, k in enumerate(kls):
        reached = sorted(((m["reward"][i], a) for a, m in algos.items() if m["reward"][i] is not None), reverse=True)
        if len(reached) < 2:
            only = f"only {reached[0][1]}'s frontier reaches it" if reached else "no frontier reaches it"
            lines.append(f"At {k:g} nats {only}, so nothing is compared there.")
            continue
        compared.append(i)
        ranking = ", ".join(f"{a} {r:.3f} ({algos[a]['reward_per_nat'][i]:+.3f}/nat)" for r, a in reached)
        lines.append(f"At {k:g} nats: {ranking}.")
    if not compared:
        head = ("No two frontiers reach a common matched KL, so no algorithm can be called better per nat; widen "
                "the sweep (--frontier-* values) or pick --frontier-matched-kls inside the KL ranges in the table.")
        return " ".join([head] + lines)
    wins = {}
    for i in compared:
        wins.setdefault(matched["best"][i], []).append(kls[i])
    top = max(len(w) for w in wins.values())
    leaders = [a for a, w in wins.items() if len(w) == top]
    where = "; ".join(f"{a} at {', '.join(f'{k:g}' for k in wins[a])} nats" for a in leaders)
    head = (f"At matched KL, {' and '.join(leaders)} {'gives' if len(leaders) == 1 else 'give'} the most reward per "
            f"nat: best at {top} of the {len(compared)} matched KLs that two or more frontiers reach ({where}).")
    return " ".join([head] + lines)


def closest_runs(summary: dict) -> dict:
    """Each algorithm's run nearest to one matched KL (the one most frontiers reach; the middle on a tie),
    with its samples."""
    matched = summary["matched"]
    kls = matched["kls"]
    reach = [sum(m["reward"][i] is not None for m in matched["algos"].values()) for i in range(len(kls))]
    i = max(range(len(kls)), key=lambda j: (reach[j], -abs(j - (len(kls) - 1) / 2)))
    picked = {}
    for algo in matched["algos"]:
        run = min((r for r in summary["runs"] if r["algo"] == algo), key=lambda r: abs(r["kl_to_sft"] - kls[i]))
        picked[algo] = {"value": run["value"], "symbol": run["symbol"], "kl_to_sft": run["kl_to_sft"],
                        "reward": run["reward"], "gold": run["gold"], "samples": run["samples"][:3]}
    return {"matched_kl": kls[i], "runs": picked}


def print_frontier(summary: dict, text: str) -> None:
    print("\n" + text)
    near = summary["samples"]
    print(f"\nsamples of each algorithm's run closest to KL {near['matched_kl']:g} nats")
    print("  sft (start), KL 0: " + " | ".join(summary["sft"]["samples"][:3]))
    for algo, run in near["runs"].items():
        print(f"  {algo}, {run['symbol']} = {run['value']:g}, KL {run['kl_to_sft']:.2f}: " + " | ".join(run["samples"]))
    print("\n" + summary["verdict"])
    print(f"\ntotal {summary['total_seconds']:.0f} s")


def plot_frontier(summary: dict, path, notice: Callable[[str], None] = print) -> pathlib.Path | None:
    """Reward against KL per algorithm: its runs (labelled with the knob) and its monotone frontier, the SFT
    model as a star, the matched KLs dotted; beside it, under a proxy reward, the gold score of the same runs."""
    plt = _pyplot(notice)
    if plt is None:
        return None
    proxy, matched, sft = summary["gold"] is not None, summary["matched"], summary["sft"]
    fig, axes = plt.subplots(1, 2 if proxy else 1, figsize=(13 if proxy else 7, 5), squeeze=False)
    reward_ax = axes[0, 0]
    for algo, m in matched["algos"].items():
        own = [r for r in summary["runs"] if r["algo"] == algo]
        line, = reward_ax.plot(m["frontier_kl"], m["frontier_reward"], marker="", label=algo)
        reward_ax.scatter([r["kl_to_sft"] for r in own], [r["reward"] for r in own], color=line.get_color(), s=18)
        for r in own:
            reward_ax.annotate(f"{r['symbol']}={r['value']:g}", (r["kl_to_sft"], r["reward"]), fontsize=6,
                               textcoords="offset points", xytext=(3, 3), color=line.get_color())
        if proxy:
            kl, gold = through_runs([r["kl_to_sft"] for r in own], [r["gold"] for r in own])
            axes[0, 1].plot(kl, gold, marker="o", ms=3, color=line.get_color(), label=algo)
    panels = [(reward_ax, sft["reward"], f"reward ({summary['reward']}): runs and monotone frontier")]
    if proxy:
        panels.append((axes[0, 1], sft["gold"], "gold (VADER) on the same samples"))
    for ax, start, title in panels:
        ax.scatter([0.0], [start], marker="*", s=120, color="black", label="SFT (start)", zorder=3)
        for k in matched["kls"]:
            ax.axvline(k, color="gray", ls=":", lw=1)
        ax.set_xlabel("KL(π ‖ π_sft), nats per response")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)
