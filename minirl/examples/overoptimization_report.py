"""The over-optimisation lab's tables, verdicts and plot (numbers from `minirl.rl.overoptimization`)."""

from __future__ import annotations

import pathlib
from typing import Callable

import numpy as np

from minirl.examples.report import _pyplot, save_figure
from minirl.rl.overoptimization import gold_curve
from minirl.table import format_table


def _fit_cells(fit: dict | None) -> list:
    if fit is None:
        return ["-", "-", "-", "-"]
    return [fit["alpha"], fit["beta"], fit["r2"], fit["peak_d"] if fit["peak_d"] is not None else "none"]


def verdicts(summary: dict) -> list[str]:
    """One plain sentence per proxy and method: did the gold score fall, and how far did it go?"""
    lines = []
    for size, bon in summary["best_of_n"].items():
        top = int(np.argmax(bon["gold"]))
        lines.append(f"best-of-n, {size} pairs: up to n={bon['n'][-1]} (KL {bon['kl'][-1]:.2f} nats) the gold score "
                     + (f"peaked at n={bon['n'][top]} and fell beyond its error bars." if bon["gold_falls"]
                        else "did not fall beyond its error bars."))
    for size, ppo in summary["ppo"].items():
        evals = ppo["evals"]
        top = max(evals, key=lambda e: e["gold"])
        lines.append(f"PPO, {size} pairs: up to KL {ppo['max_kl']:.2f} nats (iteration {evals[-1]['iteration']}) the "
                     "gold score " + (f"peaked at KL {top['kl']:.2f} and fell beyond its error bars."
                                      if ppo["gold_falls"] else "did not fall beyond its error bars."))
    return lines


def print_lab(summary: dict) -> None:
    proxies = summary["proxies"]
    rows = [[size, p["train_pairs"], p["val_accuracy"], *_fit_cells(summary["best_of_n"][size]["fit"]),
             *_fit_cells(summary["ppo"][size]["fit"])] for size, p in proxies.items()]
    print("\n" + format_table(rows, ["label set", "pairs kept", "RM val acc", "bon α", "bon β", "bon R²",
                                     "bon peak d", "RL α", "RL β", "RL R²", "RL peak d"]))
    print("(fits of Δgold = gold − gold(SFT): best-of-n d(α − βd), RL d(α − β log d), d = √KL)")
    for size, bon in summary["best_of_n"].items():
        print(f"\nbest-of-n against the {size}-pair proxy (mean ± s.e. over seeds)")
        print(format_table([[n, kl, f"{g:+.3f} ± {ge:.3f}", f"{p:+.3f} ± {pe:.3f}"] for n, kl, g, ge, p, pe in
                            zip(bon["n"], bon["kl"], bon["gold"], bon["gold_stderr"], bon["proxy"],
                                bon["proxy_stderr"])], ["n", "KL", "gold (VADER)", "proxy"]))
    for size, ppo in summary["ppo"].items():
        print(f"\nPPO against the {size}-pair proxy (β = {summary['lab']['kl_coef']})")
        print(format_table([[e["iteration"], e["kl"], e["d"], e["proxy"], f"{e['gold']:+.3f} ± {e['gold_stderr']:.3f}",
                             e["length"], e["distinct_2"]] for e in ppo["evals"]],
                           ["iteration", "KL", "d", "proxy", "gold (VADER)", "length", "distinct-2"]))
    largest = list(summary["ppo"])[-1]
    evals = summary["ppo"][largest]["evals"]
    print(f"\nsamples of PPO against the {largest}-pair proxy at three KLs")
    for e in (evals[0], evals[len(evals) // 2], evals[-1]):
        print(f"  KL {e['kl']:.2f}: " + " | ".join(e["samples"][:3]))
    print()
    for line in verdicts(summary):
        print(line)


def plot_lab(bon: dict, ppo: dict, path, notice: Callable[[str], None] = print) -> pathlib.Path | None:
    """Gold and proxy against d = √KL, best-of-n (top) and PPO (bottom), with the fitted gold curves."""
    plt = _pyplot(notice)
    if plt is None:
        return None
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    for size, curve in bon.items():
        d, gold = np.array(curve["d"]), np.array(curve["gold"])
        line = axes[0, 0].errorbar(d, gold - gold[0], yerr=curve["gold_stderr"], marker="o", ms=3, ls="none",
                                   label=f"{size} pairs")
        grid = np.linspace(0, d.max(), 100)
        fit = curve["fit"]
        axes[0, 0].plot(grid, gold_curve(grid, fit["alpha"], fit["beta"], "bon"), color=line[0].get_color())
        axes[0, 1].errorbar(d, curve["proxy"], yerr=curve["proxy_stderr"], marker="o", ms=3, label=f"{size} pairs")
    for size, run in ppo.items():
        d = np.array([e["d"] for e in run["evals"]])
        gold = np.array([e["gold"] for e in run["evals"]])
        line = axes[1, 0].errorbar(d, gold - gold[0], yerr=[e["gold_stderr"] for e in run["evals"]], marker="o",
                                   ms=3, ls="none", label=f"{size} pairs")
        if run["fit"] is not None:
            grid = np.linspace(1e-3, d.max(), 100)
            axes[1, 0].plot(grid, gold_curve(grid, run["fit"]["alpha"], run["fit"]["beta"], "rl"),
                            color=line[0].get_color())
        axes[1, 1].plot(d, [e["proxy"] for e in run["evals"]], marker="o", ms=3, label=f"{size} pairs")
    titles = (("best-of-n: Δgold (VADER), fit d(α − βd)", "best-of-n: proxy reward model"),
              ("PPO: Δgold (VADER), fit d(α − β log d)", "PPO: proxy reward model"))
    for row, pair in zip(axes, titles):
        for ax, title in zip(row, pair):
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("d = √KL(π ‖ π_sft)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    return save_figure(fig, path)
