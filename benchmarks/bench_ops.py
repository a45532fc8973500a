"""Micro-benchmark: forward and forward+backward time of minirl's fused ops and an MLP.

Shapes are those of the tiny GPT: B=32 sequences of T=64 tokens, n_embd C=128,
n_head 3, vocabulary V=2048, all float32. Every available backend is timed, and
PyTorch eager too when it happens to be importable (it is not a dependency), so
the ratio column says how far minirl is from a tuned framework on the same machine.

    python benchmarks/bench_ops.py [--backends numpy,cupy] [--repeats N] [--quick] [--json PATH]
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmark this checkout, installed or not
import minirl  # noqa: F401,E402  (before numpy: it sets OPENBLAS_THREAD_TIMEOUT, read when OpenBLAS loads)
import numpy as np  # noqa: E402

from minirl import backend  # noqa: E402
from minirl import functional as F  # noqa: E402
from minirl.table import format_table  # noqa: E402
from minirl.tensor import Tensor  # noqa: E402

try:  # PyTorch is timed for comparison when present; it is never a dependency
    import torch
    import torch.nn.functional as TF
except ImportError:
    torch = TF = None

B, T, C, N_HEAD, V = 32, 64, 128, 3, 2048
HS = C // N_HEAD  # head size: 42


@dataclass
class BenchConfig:
    backends: str = field(default="", metadata={"help": "comma-separated, e.g. numpy,cupy; default: every available"})
    repeats: int = field(default=20, metadata={"help": "timed runs per case; the table shows their median"})
    quick: bool = field(default=False, metadata={"help": "2 runs and 1 warm-up: a smoke test, not a measurement"})
    json: str = field(default="", metadata={"help": "also write machine info and results to this JSON file"})


@dataclass
class Case:
    name: str
    shape: str  # the main input's shape, for the table
    leaves: list  # float inputs that get gradients (host float32 arrays)
    consts: list  # token ids and masks: inputs without gradients
    minirl_fn: object  # fn(*leaves, *consts) -> the Tensor to differentiate
    torch_fn: object  # the same computation in PyTorch, so both columns time the same graph


def _cases(rng) -> list[Case]:
    def normal(*shape, std=1.0):
        return (std * rng.standard_normal(shape)).astype(np.float32)

    ids = rng.integers(0, V, size=(B, T))
    mask = (rng.random((B, T)) > 0.1).astype(np.float32)  # ~10% of tokens masked out, as with padding
    qkv = [normal(B, N_HEAD, T, HS) for _ in range(3)]  # (B, nh, T, hs) each
    mlp = [normal(B * T, C), normal(C, 4 * C, std=0.02), normal(4 * C), normal(4 * C, C, std=0.02), normal(C)]
    return [
        Case("matmul", f"({B * T},{C})@({C},{4 * C})", [normal(B * T, C), normal(C, 4 * C)], [],
             lambda x, w: x @ w, lambda x, w: x @ w),
        Case("log_softmax", f"({B * T},{V})", [normal(B * T, V)], [], F.log_softmax, lambda x: x.log_softmax(-1)),
        Case("softmax", f"({B * T},{V})", [normal(B * T, V)], [], F.softmax, lambda x: x.softmax(-1)),
        Case("cross_entropy", f"({B},{T},{V}) masked", [normal(B, T, V)], [ids, mask],
             F.cross_entropy, _torch_cross_entropy),
        Case("layer_norm", f"({B},{T},{C})", [normal(B, T, C), normal(C), normal(C)], [], F.layer_norm,
             lambda x, w, b: TF.layer_norm(x, (C,), w, b)),
        Case("gelu", f"({B},{T},{4 * C})", [normal(B, T, 4 * C)], [], F.gelu,
             lambda x: TF.gelu(x, approximate="tanh")),
        Case("embedding", f"({V},{C})[({B},{T})]", [normal(V, C)], [ids], F.embedding,
             lambda w, i: TF.embedding(i, w)),
        Case("attention", f"({B},{N_HEAD},{T},{HS}) causal", qkv, [], F.scaled_dot_product_attention,
             lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, is_causal=True)),
        Case("mlp", f"({B * T},{C})->{4 * C}->{C}", mlp, [],
             lambda x, w1, b1, w2, b2: F.gelu(x @ w1 + b1) @ w2 + b2,  # (B*T, C) -> (B*T, 4C) -> (B*T, C)
             lambda x, w1, b1, w2, b2: TF.gelu(x @ w1 + b1, approximate="tanh") @ w2 + b2),
    ]


def _torch_cross_entropy(logits, ids, mask):
    """Masked mean NLL, as minirl's cross_entropy computes it."""
    nll = TF.cross_entropy(logits.reshape(-1, V), ids.reshape(-1), reduction="none")
    return (nll * mask.reshape(-1)).sum() / mask.sum()


def _synchronize() -> None:
    """Wait for queued GPU kernels, so the clock measures the work and not its launch."""
    if backend.name() == "cupy":
        backend.xp().cuda.Device().synchronize()


def _time_ms(step, repeats: int, warmup: int, sync) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(1e3 * (time.perf_counter() - start))
    return times


def _measure(fn, leaves, consts, to_device, sync, repeats: int, warmup: int) -> dict:
    """Median and min milliseconds of fn's forward, and of forward+backward with fresh grads."""
    shape = tuple(fn(*leaves, *consts).shape)
    cotangent = to_device(np.random.default_rng(0).standard_normal(shape).astype(np.float32)) if shape else None

    def forward_backward():
        for t in leaves:
            t.grad = None
        fn(*leaves, *consts).backward(cotangent)  # None for a scalar loss: d loss/d loss = 1

    fwd = _time_ms(lambda: fn(*leaves, *consts), repeats, warmup, sync)
    fwdbwd = _time_ms(forward_backward, repeats, warmup, sync)
    return {"fwd_ms": statistics.median(fwd), "fwd_min_ms": min(fwd),
            "fwdbwd_ms": statistics.median(fwdbwd), "fwdbwd_min_ms": min(fwdbwd)}


def _bench_minirl(case: Case, backend_name: str, repeats: int, warmup: int) -> dict:
    with backend.using(backend_name):
        leaves = [Tensor(a, requires_grad=True) for a in case.leaves]
        consts = [backend.to_backend(c) for c in case.consts]
        return _measure(case.minirl_fn, leaves, consts, backend.to_backend, _synchronize, repeats, warmup)


def _bench_torch(case: Case, device: str, repeats: int, warmup: int) -> dict:
    def to_device(a):
        return torch.from_numpy(a).to(device)

    leaves = [to_device(a).requires_grad_() for a in case.leaves]
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    timed = _measure(case.torch_fn, leaves, [to_device(c) for c in case.consts], to_device, sync, repeats, warmup)
    return {f"torch_{key}": value for key, value in timed.items()}


def _machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
            "torch": torch and torch.__version__, "torch_threads": torch and torch.get_num_threads()}


def _parse(argv) -> BenchConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in fields(BenchConfig):
        kind = {"action": "store_true"} if f.default is False else {"type": type(f.default), "default": f.default}
        parser.add_argument(f"--{f.name}", help=f.metadata["help"], **kind)
    return BenchConfig(**vars(parser.parse_args(argv)))


def main(argv=None) -> int:
    cfg = _parse(argv)
    names = [n.strip() for n in cfg.backends.split(",") if n.strip()]
    names = names or ["numpy"] + (["cupy"] if backend.cupy_available() else [])
    for backend_name in names:
        try:
            with backend.using(backend_name):
                pass
        except backend.BackendError as e:
            print(f"bench_ops: {e}", file=sys.stderr)
            return 2
    repeats, warmup = (2, 1) if cfg.quick else (cfg.repeats, 2)

    machine = _machine()
    print("  ".join(f"{k}={v}" for k, v in machine.items() if v is not None))
    print(f"shapes: B={B} T={T} C={C} n_head={N_HEAD} hs={HS} V={V}, float32; "
          f"median of {repeats} runs after {warmup} warm-up\n")
    rng = np.random.default_rng(0)
    cases, results = _cases(rng), []
    for name in names:
        rows = [{"case": c.name, "shape": c.shape, "backend": name, **_bench_minirl(c, name, repeats, warmup)}
                for c in cases]
        device = "cpu" if name == "numpy" else "cuda"
        if torch is not None and (device == "cpu" or torch.cuda.is_available()):
            # torch only after all of minirl: interleaved, NumPy's BLAS threads and torch's
            # OpenMP threads fight over the cores and both sets of timings come out inflated.
            for row, case in zip(rows, cases):
                row.update(_bench_torch(case, device, repeats, warmup))
                row["ratio"] = row["fwdbwd_ms"] / row["torch_fwdbwd_ms"]
        results += rows

    columns = {"case": "case", "shape": "shape", "backend": "backend", "fwd ms": "fwd_ms",
               "fwd+bwd ms": "fwdbwd_ms", "min fwd+bwd ms": "fwdbwd_min_ms"}
    if any("ratio" in r for r in results):
        columns.update({"torch fwd ms": "torch_fwd_ms", "torch fwd+bwd ms": "torch_fwdbwd_ms", "minirl/torch": "ratio"})
    print(format_table([[r.get(key, "-") for key in columns.values()] for r in results], list(columns)))
    for r in results:
        if r["case"] == "matmul":
            flops = 2 * B * T * C * 4 * C  # (B*T, C) @ (C, 4C)
            vs_torch = f", torch {flops / r['torch_fwd_min_ms'] / 1e6:.1f}" if "torch_fwd_min_ms" in r else ""
            print(f"\nmatmul on {r['backend']}, best forward: {flops / r['fwd_min_ms'] / 1e6:.1f} GFLOP/s{vs_torch}")

    if cfg.json:
        with open(cfg.json, "w") as f:
            json.dump({"machine": machine, "results": results}, f, indent=2)
        print(f"wrote {cfg.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
