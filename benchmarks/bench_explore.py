"""How long the explorer takes to answer a Generate request (three models), through its Flask app.

    python benchmarks/bench_explore.py --out out/happy_gpt          # a finished happy_gpt run
    python benchmarks/bench_explore.py --out out/happy_gpt --requests 20 --json bench_explore.json

Each request asks the pretrained, SFT and RL models to continue the same prompt with the run's
response length (RLConfig.max_new_tokens), then scores each answer: R(x, y), and log π and
log π_ref of every token. The app is called in-process (Flask's test client), so the figure
is the explorer's own work plus JSON, without the network. A run whose models seldom emit
<|endoftext|> early (a briefly trained one) gives the slowest case: every answer runs to full length.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from minirl.examples.explore import create_app
from minirl.examples.explorer import Explorer
from minirl.examples.run_folder import RunFolder, RunFolderError


def measure(out: str, requests: int, prompt: str) -> dict:
    explorer = Explorer(RunFolder.open(out))
    client = create_app(explorer).test_client()
    length = min(explorer.run.rl["max_new_tokens"], explorer.run.models["rl"].config.block_size - 16)
    body = {"prompt": prompt, "temperature": 1.0, "top_k": 0, "max_new_tokens": length}
    client.post("/api/generate", json={**body, "seed": 10_000})  # warm-up: first-call allocations
    seconds, tokens = [], []
    for seed in range(requests):
        t0 = time.perf_counter()
        answer = client.post("/api/generate", json={**body, "seed": seed})
        seconds.append(time.perf_counter() - t0)
        if answer.status_code != 200:
            raise RuntimeError(f"the explorer refused the request: {answer.get_json()}")
        tokens.append(sum(len(a["tokens"]) for a in answer.get_json()["answers"]))
    config = explorer.run.models["rl"].config
    return {"run": str(explorer.run.path), "n_layer": config.n_layer, "n_embd": config.n_embd,
            "parameters": explorer.run.models["rl"].num_parameters(), "max_new_tokens": length,
            "requests": requests, "median_s": statistics.median(seconds), "max_s": max(seconds),
            "mean_tokens_per_request": statistics.mean(tokens)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="out/happy_gpt", help="a finished happy_gpt output folder")
    parser.add_argument("--requests", type=int, default=10, help="timed requests (after one warm-up)")
    parser.add_argument("--prompt", default="thank you")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    if args.requests < 1:
        print("error: --requests must be at least 1.", file=sys.stderr)
        return 2
    try:
        result = measure(args.out, args.requests, args.prompt)
    except RunFolderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{result['parameters']:,}-parameter GPT ({result['n_layer']} layers, {result['n_embd']} wide), "
          f"{result['max_new_tokens']} new tokens per model: a Generate request for three models took "
          f"{result['median_s'] * 1000:.0f} ms (median of {result['requests']}, slowest "
          f"{result['max_s'] * 1000:.0f} ms), {result['mean_tokens_per_request']:.0f} response tokens in all")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
