"""How throughput grows with model size: bench_gpt's measurements at every shape in its SHAPES.

    python benchmarks/bench_scaling.py [--shapes card,mid,gpt2,gpt2-1024] [--backends numpy,cupy]
                                       [--repeats N] [--no-torch] [--json PATH] [--plot PATH]

For each shape (the default card, an 8-layer 512-wide middle size, and GPT-2 small's shape at
contexts 256 and 1024, all with random weights) it times minirl on each backend and PyTorch
eager on the same devices, one shape at a time, and prints training and KV-cache sampling
tokens/s against the parameter count. The model's FLOP/s is given as a share of the float32
matmul peak measured on the same device in the same run. With --plot (needs matplotlib) it
draws tokens/s against parameters, one line per implementation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_gpt  # noqa: E402  (beside this file; it imports minirl first, as it must)
from minirl import backend  # noqa: E402
from minirl.table import format_table  # noqa: E402


def measure(shapes: list[str], names: list[str], repeats: int, with_torch: bool, save=None) -> dict:
    """{shape: {impl: figures}}: every shape on the GPU first (minirl, then PyTorch), then on
    the CPU, each figure printed as it comes and `save(results)` called after each, so a run
    stopped early keeps what it measured. Sampling is timed with the KV cache only."""
    results: dict = {}
    for name in sorted(names, key=lambda n: n != "cupy"):
        for shape_name in shapes:
            shape = bench_gpt.SHAPES[shape_name]
            backend.use(name)
            measured = {f"minirl-{name}": bench_gpt.bench_minirl(repeats, shape, recompute=False)}
            backend.use("numpy")
            if with_torch:
                measured.update(bench_gpt.torch_results(repeats, shape, bench_gpt.TORCH_DEVICE[name], recompute=False))
            results.setdefault(shape_name, {}).update(measured)
            for row in rows({shape_name: measured}):
                print("  ".join(row), flush=True)
            if save:
                save(results)
    return results


def rows(results: dict) -> list[list]:
    table = []
    for shape_name, by_impl in results.items():
        shape = bench_gpt.SHAPES[shape_name]
        for impl, r in by_impl.items():
            train_tok_s = shape.batch * shape.seq / r["train_s"]
            model_gflops = train_tok_s * r["flops_per_token"] / 1e9
            table.append([shape_name, f"{r['parameters'] / 1e6:.1f} M", impl, f"{train_tok_s:,.0f}",
                          f"{shape.prompts * shape.new / r['sample_s']:,.0f}",
                          f"{model_gflops:,.0f} ({100 * model_gflops / r['matmul_gflops']:.0f}%)"])
    return table


def plot(results: dict, path: str) -> bool:
    """tokens/s against parameters, log-log, training and sampling side by side; False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    impls = sorted({impl for by_impl in results.values() for impl in by_impl})
    for ax, (key, title) in zip(axes, [("train", "training tokens/s"), ("sample", "KV-cache sampling tokens/s")]):
        for impl in impls:
            points = []
            for shape_name, by_impl in results.items():
                if impl in by_impl:
                    shape, r = bench_gpt.SHAPES[shape_name], by_impl[impl]
                    tokens = shape.batch * shape.seq if key == "train" else shape.prompts * shape.new
                    points.append((r["parameters"], tokens / r[f"{key}_s"]))
            points.sort()
            ax.plot(*zip(*points), marker="o", label=impl)
        ax.set(xscale="log", yscale="log", xlabel="parameters", title=title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("tokens / s")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default=",".join(bench_gpt.SHAPES), help="comma list from bench_gpt.SHAPES")
    parser.add_argument("--backends", default=None, help="comma list (default: every available backend)")
    parser.add_argument("--repeats", type=int, default=2, help="timed repetitions per measurement")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch even if installed")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--plot", default=None, help="draw tokens/s against parameters into this PNG")
    args = parser.parse_args(argv)
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = [s for s in shapes if s not in bench_gpt.SHAPES]
    if unknown or not shapes:
        parser.error(f"--shapes: unknown {', '.join(map(repr, unknown)) or 'empty list'}; "
                     f"choose from {', '.join(bench_gpt.SHAPES)}")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    names = bench_gpt.load_backends(args.backends)
    if names is None:
        return 2
    machine = bench_gpt.machine_info(names)

    def save(results: dict) -> None:
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"machine": machine, "repeats": args.repeats,
                           "shapes": {s: bench_gpt.SHAPES[s]._asdict() for s in shapes}, "results": results}, f,
                          indent=2)
    results = measure(shapes, names, args.repeats, not args.no_torch and bench_gpt.torch_available(), save)
    print()
    print(format_table(rows(results), ["shape", "params", "impl", "train tok/s", "sample tok/s",
                                       "model GFLOP/s (% of matmul peak)"]))
    if args.plot and not plot(results, args.plot):
        print("plot skipped: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
