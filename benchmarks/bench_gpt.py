"""Throughput of the tiny GPT on each backend, with PyTorch eager beside it when installed.

    python benchmarks/bench_gpt.py [--shape card|mid|gpt2|gpt2-1024] [--batch B] [--backends numpy,cupy]
                                   [--repeats N] [--rounds R] [--no-recompute] [--quick] [--json PATH]

Measures, on the default card (4 layers, 3 heads, n_embd 128, block 64, vocab 2048) or another
`--shape` (SHAPES below; benchmarks/bench_scaling.py runs them all):
  train     one AdamW step with clipping, batch 32 x 64 tokens on the card: tokens/s and GFLOP/s
  sample    64 prompts x 48 new tokens with the KV cache on the card: new tokens/s
  recompute the same sampling without the cache (whole prefix every step; --no-recompute skips it,
            e.g. at GPT-2's shape where it takes minutes on a CPU)
  matmul    a float32 GEMM, (2048x1024) @ (1024x1024) on a CPU and 8192³ on a GPU: the
            device's practical peak, same run (PyTorch also reports TF32 on a GPU)

With --rounds R, minirl and PyTorch take turns R times (PyTorch first in every other round).
The table gives each figure's median over the rounds, and each ratio its median and range
over them: on a shared machine a neighbour's load drifts over minutes, and taking turns
spreads that drift over both sides instead of landing it on one. Ratios compare the same
device: minirl-numpy with torch-cpu, minirl-cupy with torch-cuda.

Model FLOPs per token follow Kaplan et al. 2020 / nanoGPT's MFU estimate:
6·N (forward + backward through N matmul weights) + 12·n_layer·n_head·head_size·T (attention).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from typing import NamedTuple

import minirl  # noqa: F401  (first: it sets OPENBLAS_THREAD_TIMEOUT before numpy loads OpenBLAS)
import numpy as np

from minirl import backend, optim
from minirl.model import GPT, GPTConfig
from minirl.sampling import generate
from minirl.table import format_table



class Shape(NamedTuple):
    """One model size and the batch it is timed at."""

    model: dict = {}
    """GPTConfig fields that differ from the default card"""
    batch: int = 32
    """training rows"""
    seq: int = 64
    """training tokens per row (at most block_size)"""
    prompts: int = 64
    """sampling rows"""
    new: int = 48
    """tokens sampled per row after a PROMPT_LEN-token prompt"""

    def config(self) -> GPTConfig:
        return GPTConfig(**self.model)


PROMPT_LEN = 8
GPT2_SMALL = dict(vocab_size=50257, n_layer=12, n_head=12, n_embd=768)
SHAPES = {
    "card": Shape(),
    "mid": Shape(dict(vocab_size=8192, block_size=256, n_layer=8, n_head=8, n_embd=512), 16, 256, 32, 48),
    "gpt2": Shape(dict(GPT2_SMALL, block_size=256), 16, 256, 16, 48),
    "gpt2-1024": Shape(dict(GPT2_SMALL, block_size=1024), 4, 1024, 16, 48),
}
"""The card, a middle size, and GPT-2 small's shape (random weights) at contexts 256 and 1024."""
GEMM = {"cpu": (2048, 1024, 1024), "gpu": (8192, 8192, 8192)}
"""(m, k, n) of the peak-FLOP/s matmul: big enough to fill the device, small enough to be quick"""


def _sync():
    if backend.name() == "cupy":
        backend.xp().cuda.Device().synchronize()


def timed(fn, repeats: int) -> float:
    """Median seconds over `repeats` calls, after one warm-up call."""
    fn()
    _sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def flops_per_token(cfg: GPTConfig, n_matmul_params: int, seq: int) -> float:
    return 6 * n_matmul_params + 12 * cfg.n_layer * cfg.n_head * cfg.head_size * seq


def bench_minirl(repeats: int, shape: Shape = SHAPES["card"], recompute: bool = True) -> dict:
    backend.manual_seed(0)
    cfg = shape.config()
    model = GPT(cfg)
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x = backend.to_backend(rng.integers(0, cfg.vocab_size, (shape.batch, shape.seq)))
    y = backend.to_backend(rng.integers(0, cfg.vocab_size, (shape.batch, shape.seq)))

    def train_step():
        loss = model.loss(x, y)
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm(model.parameters(), 1.0)
        opt.step()

    prompts = rng.integers(0, cfg.vocab_size, (shape.prompts, PROMPT_LEN)).tolist()
    sample = lambda cache: generate(model, prompts, shape.new, use_cache=cache, rng=backend.rng(0))  # noqa: E731
    xp = backend.xp()
    m, k, n = GEMM["cpu" if backend.name() == "numpy" else "gpu"]
    a = xp.asarray(rng.standard_normal((m, k)), dtype=xp.float32)
    w = xp.asarray(rng.standard_normal((k, n)), dtype=xp.float32)
    matmul_s = timed(lambda: a @ w, max(repeats, 5))
    del a, w
    n_matmul = model.num_parameters(exclude_embeddings=True)
    figures = {"train_s": timed(train_step, repeats), "sample_s": timed(lambda: sample(True), repeats),
               "matmul_gflops": 2 * m * k * n / matmul_s / 1e9,
               "flops_per_token": flops_per_token(cfg, n_matmul, shape.seq), "parameters": model.num_parameters()}
    if recompute:
        figures["recompute_s"] = timed(lambda: sample(False), max(1, repeats // 2))
    return figures


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def torch_results(repeats: int, shape: Shape = SHAPES["card"], devices: str = "cpu,cuda",
                  recompute: bool = True) -> dict:
    """PyTorch eager on the same shapes, in a child process (torch is optional, never imported here);
    {} if the child fails, after saying why on stderr."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_reference.py")
    spec = dict(shape._asdict(), model=shape.config().to_dict(), prompt_len=PROMPT_LEN, gemm=GEMM, devices=devices,
                recompute=recompute)
    done = subprocess.run([sys.executable, script, str(repeats), json.dumps(spec)], capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        print(f"torch comparison skipped: {why}", file=sys.stderr)
        return {}
    return json.loads(done.stdout.strip().splitlines()[-1])


def torch_model_mismatch() -> str | None:
    """None when PyTorch's GPT, given minirl's weights, gives minirl's logits (checked in a child
    process by `torch_reference.py check`); otherwise why not."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_reference.py")
    done = subprocess.run([sys.executable, script, "check"], capture_output=True, text=True)
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return None


TORCH_DEVICE = {"numpy": "cpu", "cupy": "cuda"}


def bench_round(names: list[str], repeats: int, with_torch: bool, torch_first: bool,
                shape: Shape = SHAPES["card"], recompute: bool = True) -> dict:
    """One round: minirl on each backend, and PyTorch on the same devices in its child process,
    in the order asked."""
    def minirl() -> dict:
        results = {}
        for name in names:
            backend.use(name)
            results[f"minirl-{name}"] = bench_minirl(repeats, shape, recompute)
        backend.use("numpy")
        return results
    devices = ",".join(TORCH_DEVICE[name] for name in names)
    parts = [minirl] + ([lambda: torch_results(repeats, shape, devices, recompute)] if with_torch else [])
    results = {}
    for part in reversed(parts) if torch_first else parts:
        results.update(part())
    return results


def median_over_rounds(rounds: list[dict]) -> dict:
    """Each implementation's figures, each the median of that figure over the rounds it ran in."""
    merged: dict[str, dict[str, list]] = {}
    for results in rounds:
        for name, figures in results.items():
            for key, value in figures.items():
                merged.setdefault(name, {}).setdefault(key, []).append(value)
    return {name: {key: float(np.median(values)) for key, values in figures.items()}
            for name, figures in merged.items()}


SAME_DEVICE = {"torch-cpu": "minirl-numpy", "torch-cuda": "minirl-cupy"}


def ratios_by_round(rounds: list[dict]) -> dict:
    """PyTorch's time over minirl's on the same device (above 1: minirl is faster), one value
    per round that timed both, for training and sampling."""
    ratios = {}
    for torch_name, minirl_name in SAME_DEVICE.items():
        both = [r for r in rounds if torch_name in r and minirl_name in r]
        if both:
            ratios[f"{minirl_name} / {torch_name}"] = {
                key: [r[torch_name][f"{key}_s"] / r[minirl_name][f"{key}_s"] for r in both] for key in ("train", "sample")}
    return ratios


def describe_ratio(values: list[float], rounds: int) -> str:
    """``1.02x`` for a one-round run; else the median and range, ``1.02x (0.98-1.05 over 5 rounds)``,
    saying ``over 4 of 5 rounds`` when some rounds lack one side."""
    if rounds == 1:
        return f"{values[0]:.2f}x"
    counted = f"{len(values)} of {rounds}" if len(values) < rounds else f"{rounds}"
    return f"{np.median(values):.2f}x ({min(values):.2f}-{max(values):.2f} over {counted} rounds)"


def rows_for(name: str, r: dict, shape: Shape = SHAPES["card"]) -> list[list]:
    train_tok_s = shape.batch * shape.seq / r["train_s"]
    achieved = train_tok_s * r["flops_per_token"] / 1e9
    sampled = shape.prompts * shape.new
    speedup = f"{r['recompute_s'] / r['sample_s']:.1f}x faster than recompute" if "recompute_s" in r else ""
    rows = [
        [name, f"train step ({shape.batch}x{shape.seq})", f"{train_tok_s:,.0f} tok/s", f"{r['train_s'] * 1e3:.1f} ms",
         f"{achieved:.1f} GFLOP/s ({100 * achieved / r['matmul_gflops']:.0f}% of matmul)"],
        [name, f"sample, KV cache ({shape.prompts}x{shape.new})", f"{sampled / r['sample_s']:,.0f} tok/s",
         f"{r['sample_s'] * 1e3:.1f} ms", speedup],
    ]
    if "recompute_s" in r:
        rows.append([name, f"sample, recompute ({shape.prompts}x{shape.new})", f"{sampled / r['recompute_s']:,.0f} tok/s",
                     f"{r['recompute_s'] * 1e3:.1f} ms", ""])
    rows.append([name, "float32 matmul peak", f"{r['matmul_gflops']:.1f} GFLOP/s", "", ""])
    if "matmul_tf32_gflops" in r:
        rows.append([name, "TF32 matmul peak", f"{r['matmul_tf32_gflops']:.1f} GFLOP/s", "", ""])
    return rows


def load_backends(spec: str | None) -> list[str] | None:
    """The backends of a --backends list (default: every available one), each loaded once so that
    one that cannot load fails before anything is timed; None, after saying why, if one cannot."""
    names = spec.split(",") if spec else ["numpy"] + (["cupy"] if backend.cupy_available() else [])
    for name in names:
        try:
            backend.use(name)
        except backend.BackendError as e:
            print(f"error: {e}", file=sys.stderr)
            return None
    backend.use("numpy")
    return names


def machine_info(names: list[str]) -> dict:
    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "numpy": np.__version__}
    if "cupy" in names:
        with backend.using("cupy"):
            cupy = backend.xp()
            machine["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
            machine["cupy"] = cupy.__version__
    return machine


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="card", choices=sorted(SHAPES), help="model size and batch (default: card)")
    parser.add_argument("--batch", type=int, default=None,
                        help="training rows instead of the shape's (the context stays the shape's)")
    parser.add_argument("--no-recompute", action="store_true", help="skip the sampling without the KV cache")
    parser.add_argument("--backends", default=None, help="comma list (default: every available backend)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per measurement")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternate minirl and PyTorch this many times; report medians and the ratios' range")
    parser.add_argument("--quick", action="store_true", help="one repetition (a smoke test, not a measurement)")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison even if installed")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.rounds < 1:
        parser.error(f"--repeats and --rounds must be at least 1, got {args.repeats} and {args.rounds}")
    if args.batch is not None and args.batch < 1:
        parser.error(f"--batch must be at least 1, got {args.batch}")
    repeats = 1 if args.quick else args.repeats
    names = load_backends(args.backends)
    if names is None:
        return 2
    with_torch = not args.no_torch and torch_available()
    shape = SHAPES[args.shape] if args.batch is None else SHAPES[args.shape]._replace(batch=args.batch)
    mismatch = torch_model_mismatch() if with_torch else None
    if mismatch is not None:  # a ratio to a different model would mean nothing
        print(f"torch comparison skipped: {mismatch}", file=sys.stderr)
        with_torch = False
    rounds = []
    for i in range(args.rounds):
        rounds.append(bench_round(names, repeats, with_torch, torch_first=i % 2 == 1, shape=shape,
                                  recompute=not args.no_recompute))
        if with_torch and not any(name.startswith("torch") for name in rounds[-1]):
            print(f"(the torch child failed in round {i + 1} of {args.rounds}; later rounds run without it)",
                  file=sys.stderr)
            with_torch = False
    results = median_over_rounds(rounds)
    machine = machine_info(names)
    print(f"machine: {machine['processor']}, {machine['cpu_count']} CPUs, numpy {machine['numpy']}"
          + (f", {machine['gpu']}, cupy {machine['cupy']}" if "gpu" in machine else "") + "\n")
    rows = [row for name, r in results.items() for row in rows_for(name, r, shape)]
    print(format_table(rows, ["impl", "measurement", "throughput", "time", "note"]))
    ratios = ratios_by_round(rounds)
    for pair, values in ratios.items():
        print(f"\n{pair}: train {describe_ratio(values['train'], args.rounds)}, "
              f"sample {describe_ratio(values['sample'], args.rounds)} (above 1: minirl is faster)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "shape": args.shape, "config": shape.config().to_dict(),
                       "batch": [shape.batch, shape.seq], "sampling": [shape.prompts, shape.new], "repeats": repeats,
                       "results": results, "ratios": ratios, "rounds": rounds}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
