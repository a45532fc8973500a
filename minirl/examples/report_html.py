"""report.html: one finished run on one static page that opens from disk with no server and no network.

Everything is inline: the CSS in a <style> block, each PNG plot as a base64 data URI. Every
string from the run (samples, settings, stage names) is HTML-escaped, because a sample is
model output and may hold anything, `<script>` included.
"""

from __future__ import annotations

import base64
import html
import pathlib

from minirl.atomic import write_atomic

MODEL_COLUMNS = (("reward", "reward"), ("vader", "VADER"), ("fraction_positive", "frac. positive"),
                 ("kl_to_sft", "KL to SFT"), ("distinct_1", "distinct-1"), ("distinct_2", "distinct-2"),
                 ("response_length", "length"), ("val_ppl", "val ppl"))
"""(key in summary["models"][name], column heading), in the order of the end-of-run table"""

PLOTS = (("rl_curves.png", "RL curves: reward, KL, entropy and length against iteration"),)
"""(file in the run folder, caption): embedded when the file exists"""

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; } td, th { padding: .25em .7em; border: 1px solid #ddd; }
th { background: #f4f4f4; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.samples td { vertical-align: top; width: 33%; font-size: .9em; }
code { background: #f4f4f4; padding: .1em .3em; } img { max-width: 100%; } .note { color: #666; font-size: .9em; }
details pre { background: #f8f8f8; padding: .5em; overflow-x: auto; font-size: .85em; }
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _number(value) -> str:
    """The same figures as the terminal table: 4 significant digits, ints as they are."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _e(value)
    return str(value) if isinstance(value, int) else f"{value:.4g}"


def _table(rows, headings) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headings)
    body = "".join("<tr>" + "".join(f'<td class="num">{_number(c)}</td>' if isinstance(c, (int, float))
                                    and not isinstance(c, bool) else f"<td>{_e(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _settings(config: dict) -> str:
    """The headline settings in a table, and every setting, per section, folded away."""
    run = config.get("run", {})
    rows = [[key, run[key]] for key in ("algo", "reward", "backend", "seed", "eval_samples", "out") if key in run]
    sections = "".join(f"<details><summary>{_e(name)}</summary><pre>"
                       + _e("\n".join(f"{k} = {v!r}" for k, v in fields.items())) + "</pre></details>"
                       for name, fields in config.items() if isinstance(fields, dict))
    return _table(rows, ("setting", "value")) + sections


def _stages(summary: dict) -> str:
    rows = [[s.get("name", ""), s.get("status", ""), s.get("seconds", 0.0)] for s in summary.get("stages", [])]
    rows.append(["evaluation", "ran", summary.get("eval_seconds", 0.0)])
    rows.append(["total", "", summary.get("total_seconds", 0.0)])
    return _table(rows, ("stage", "status", "seconds"))


def _models(summary: dict, columns=MODEL_COLUMNS, names: dict | None = None) -> str:
    run = summary.get("config", {}).get("run", {})
    names = names or {"pretrained": "pretrained", "sft": "SFT (positive tweets)",
                      "final": f"{run.get('algo', 'RL')} on {run.get('reward', 'reward')}"}
    rows = [[names.get(name, name)] + [m.get(key, "") for key, _ in columns]
            for name, m in summary.get("models", {}).items()]
    return _table(rows, ["model"] + [h for _, h in columns])


def _samples(samples: dict) -> str:
    """Row i holds every model's i-th sample, all from the same prompt and sampling seed."""
    names = list(samples)
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    rows = "".join("<tr>" + "".join(f"<td>{_e(samples[n][i]) if i < len(samples[n]) else ''}</td>" for n in names)
                   + "</tr>" for i in range(max((len(v) for v in samples.values()), default=0)))
    return f'<table class="samples"><tr>{head}</tr>{rows}</table>'


def _plots(out: pathlib.Path) -> str:
    figures = []
    for name, caption in PLOTS:
        path = out / name
        if path.exists():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            figures.append(f'<figure><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
                           f"<figcaption>{_e(caption)}</figcaption></figure>")
    if not figures:
        return '<p class="note">No plots: matplotlib is not installed (pip install matplotlib), or the run ' \
               "logged no curves.</p>"
    return "".join(figures)


def render(summary: dict, out, *, title: str | None = None, columns=MODEL_COLUMNS, names: dict | None = None,
           note: str | None = None, explorable: bool = True) -> str:
    """The page for a run folder `out` whose summary.json holds `summary`, as one HTML string.

    happy_gpt's page by default; another command names its own `title`, model-table `columns`
    ((key, heading) pairs), model `names` and the `note` under that table, and says whether
    the explorer page (`explorable`) can open its folder."""
    out = pathlib.Path(out)
    run = summary.get("config", {}).get("run", {})
    title = title or f"minirl happy_gpt: {run.get('algo', 'RL')} on {run.get('reward', 'reward')}"
    note = note or (f"{run.get('eval_samples', '')} samples per model, same prompts and seed; KL in nats per "
                    "response; val ppl on held-out positive tweets.")
    acceptance = [[key, value] for key, value in summary.get("acceptance", {}).items()]
    explore = f"python -m minirl.examples.explore --out {out}"
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p>To explore this run interactively (generate, the ledger, a PPO step): <code>{_e(explore)}</code></p>'
        if explorable else "",
        "<h2>Settings</h2>", _settings(summary.get("config", {})),
        "<h2>Stage timings</h2>", _stages(summary),
        "<h2>Models</h2>", _models(summary, columns, names),
        f'<p class="note">{_e(note)}</p>',
        "<h2>Acceptance</h2>", _table(acceptance, ("figure", "value")),
        "<h2>Samples</h2>", _samples(summary.get("samples", {})),
        "<h2>Curves</h2>", _plots(out),
        "</body></html>", ""])


def write_report_html(summary: dict, out, **page) -> pathlib.Path:
    """Write `<out>/report.html` atomically, so a reader never sees half a page; `page` goes to `render`."""
    path = pathlib.Path(out) / "report.html"
    write_atomic(path, render(summary, out, **page))
    return path
