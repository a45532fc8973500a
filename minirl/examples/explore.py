"""The RLHF explorer: a local page over a finished happy_gpt run, showing its real models' numbers.

    python -m minirl.examples.happy_gpt --quick --out out/happy_gpt    # make a run first
    python -m minirl.examples.explore --out out/happy_gpt              # then open the printed URL

Panels: Generate (the pretrained, SFT and RL models side by side, each token shaded by
log π − log π_ref), Ledger (a rollout token by token, with GAE stepped backward), PPO step
(one real minibatch update on a copy of the policy), Curves (every RL run in the folder),
Reward model (when the run learned one), Goodhart lab (the over-optimisation lab's curves,
when `python -m minirl.examples.overoptimization` has run in the same folder), and Frontier
(every run of `python -m minirl.examples.frontier` on reward against KL, each algorithm's
frontier and the matched KLs). A frontier sweep's folder opens without a happy_gpt run: the
panels that need the RL policy then show the command that makes it. Every number comes from
`explorer.py`, which calls minirl.rl and minirl.sampling (the sweeps', from their
summary.json, by minirl.rl.overoptimization and minirl.rl.frontier); the page only displays
them. It binds 127.0.0.1 and serves its own three files and a JSON API, nothing from the run
folder itself.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from minirl.examples.explorer import Explorer, InputError
from minirl.examples.run_folder import RunFolder, RunFolderError

STATIC = pathlib.Path(__file__).with_name("explore_static")
FILES = {"explore.css": "text/css", "explore.js": "text/javascript", "chart.js": "text/javascript",
         "sweeps.js": "text/javascript"}
"""the only files served, besides index.html"""


def create_app(explorer: Explorer):
    """The Flask app: the page, its assets, and one JSON route per panel."""
    try:
        from flask import Flask, Response, abort, jsonify, request
    except ImportError:
        raise ImportError("the explorer needs Flask: pip install -e '.[app]' (or pip install flask).") from None
    app = Flask("minirl.explore", static_folder=None)

    def page(name: str):
        if name not in FILES and name != "index.html":
            abort(404)
        return Response((STATIC / name).read_bytes(), mimetype=FILES.get(name, "text/html"))

    app.add_url_rule("/", "index", lambda: page("index.html"))
    app.add_url_rule("/static/<name>", "static", page)

    def answer(work):
        try:
            return jsonify(work(request.get_json(silent=True) or {}))
        except InputError as e:
            return jsonify({"error": str(e)}), 400
        except Exception as e:  # the page shows one line; the terminal keeps the details
            app.logger.exception("explorer request failed")
            return jsonify({"error": f"the explorer failed on this request ({type(e).__name__}: {e})."}), 500

    routes = {
        "overview": lambda q: explorer.overview(),
        "generate": lambda q: explorer.generate(q.get("prompt"), q.get("temperature", 1.0), q.get("top_k", 0),
                                                q.get("max_new_tokens", 20), q.get("seed", 0)),
        "ledger": lambda q: explorer.ledger(q.get("rows", 4), q.get("seed", 0), q.get("prompt") or None),
        "ppo_step": lambda q: explorer.ppo_step(q.get("seed", 0), q.get("steps", 1)),
        "curves": lambda q: explorer.curves(),
        "reward_model": lambda q: explorer.reward_model(q.get("text")),
        "lab": lambda q: explorer.lab(),
        "frontier": lambda q: explorer.frontier(),
    }
    for name, work in routes.items():
        app.add_url_rule(f"/api/{name}", name, lambda work=work: answer(work), methods=["GET", "POST"])
    return app


def port_number(text: str) -> int:
    """--port as an argparse type: a TCP port, 1 to 65535 (the socket layer would wrap 99999 to another)."""
    try:
        port = int(text)
    except ValueError:
        port = None
    if port is None or not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {text!r}")
    return port


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minirl.examples.explore", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="out/happy_gpt", help="the happy_gpt output folder to explore")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    parser.add_argument("--port", type=port_number, default=8000, help="port to serve on, 1 to 65535")
    args = parser.parse_args(argv)
    try:
        explorer = Explorer(RunFolder.open(args.out))
        app = create_app(explorer)
    except (RunFolderError, ImportError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding {args.host}: anyone who can reach this machine can use the page.", file=sys.stderr)
    print(f"minirl explorer for {explorer.run.path}: http://{args.host}:{args.port}/  (Ctrl-C stops it)", flush=True)
    app.run(host=args.host, port=args.port, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
