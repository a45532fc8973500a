"""Check every op's backward against central finite differences, in float64.

    python -m minirl.gradcheck            # every op, a table, exit code 1 on any failure
    python -m minirl.gradcheck --op gelu  # only ops whose name contains "gelu"

For inputs x and a random cotangent r, the analytic gradient is what backward
gives for ``L = Σ r · f(x)``; the numerical one perturbs each element:
``∂L/∂x_i ≈ (L(x + ε e_i) - L(x - ε e_i)) / 2ε``, with error O(ε²).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from minirl import backend
from minirl import functional as F
from minirl import indexing, ops
from minirl.table import format_table
from minirl.tensor import Tensor


@dataclass
class GradCheckResult:
    max_abs_err: float
    """max over elements of |analytic - numerical|"""
    max_rel_err: float
    """max_abs_err divided by the largest |numerical| gradient (the gradient's scale)"""
    passed: bool
    """every element satisfies |a - n| ≤ atol + rtol·|n|"""


def check_grad(fn: Callable[..., Tensor], inputs: Sequence[np.ndarray], *, eps: float = 1e-6,
               atol: float = 1e-6, rtol: float = 1e-5, seed: int = 0) -> GradCheckResult:
    """Compare backward of ``fn(*inputs)`` with central differences, every input differentiated.

    `inputs` are float64 host arrays; they are moved to the active backend. Integer
    arguments (token ids, indices) belong inside `fn`, not in `inputs`.
    """
    hosts = [np.array(x, dtype=np.float64) for x in inputs]
    tensors = [Tensor(backend.to_backend(x), requires_grad=True) for x in hosts]
    out = fn(*tensors)
    cotangent = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(backend.to_backend(cotangent))
    analytic = [backend.to_numpy(t.grad) if t.grad is not None else np.zeros_like(h)
                for t, h in zip(tensors, hosts)]

    def loss(arrays) -> float:
        value = fn(*[Tensor(backend.to_backend(a)) for a in arrays])
        return float((backend.to_numpy(value.data) * cotangent).sum())

    max_abs, scale, passed = 0.0, 0.0, True
    for k, x in enumerate(hosts):
        numeric = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            plus = [h.copy() for h in hosts]
            minus = [h.copy() for h in hosts]
            plus[k][i] += eps
            minus[k][i] -= eps
            numeric[i] = (loss(plus) - loss(minus)) / (2 * eps)
        err = np.abs(analytic[k] - numeric)
        if err.size:
            max_abs = max(max_abs, float(err.max()))
            scale = max(scale, float(np.abs(numeric).max()))
        passed &= bool(np.all(err <= atol + rtol * np.abs(numeric)))
    return GradCheckResult(max_abs, max_abs / scale if scale > 0 else max_abs, passed)


@dataclass
class Case:
    op: str
    """the op's name, as in ops.__all__ or functional.__all__"""
    fn: Callable[..., Tensor]
    """the differentiable function of the float inputs"""
    shapes: tuple[tuple[int, ...], ...]
    """shapes of the float inputs"""
    positive: bool = False
    """draw inputs in [0.5, 2] instead of N(0, 1) (log, sqrt, pow, division)"""


def _ids(*shape, high: int) -> np.ndarray:
    return np.random.default_rng(1).integers(0, high, size=shape)


CASES: list[Case] = [
    Case("add", ops.add, ((3, 1, 4), (2, 4))),
    Case("sub", ops.sub, ((3, 4), (4,))),
    Case("mul", ops.mul, ((2, 3, 4), (3, 1))),
    Case("div", ops.div, ((3, 4), (1, 4)), positive=True),
    Case("pow", ops.pow, ((3, 4), (3, 4)), positive=True),
    Case("neg", ops.neg, ((2, 3),)),
    Case("exp", ops.exp, ((2, 3),)),
    Case("log", ops.log, ((2, 3),), positive=True),
    Case("tanh", ops.tanh, ((2, 3),)),
    Case("sqrt", ops.sqrt, ((2, 3),), positive=True),
    Case("sum", lambda x: ops.sum(x, axis=(0, 2), keepdims=True), ((2, 3, 4),)),
    Case("mean", lambda x: ops.mean(x, axis=1), ((2, 3, 4),)),
    Case("max", lambda x: ops.max(x, axis=-1), ((3, 5),)),
    Case("matmul", ops.matmul, ((2, 1, 3, 4), (3, 4, 5))),
    Case("matmul", ops.matmul, ((4,), (4, 3))),
    Case("matmul", ops.matmul, ((4,), (4,))),
    Case("reshape", lambda x: indexing.reshape(x, (4, 6)), ((2, 3, 4),)),
    Case("transpose", lambda x: indexing.transpose(x, (2, 0, 1)), ((2, 3, 4),)),
    Case("getitem", lambda x: x[[0, 2, 0], 1:], ((3, 4),)),
    Case("gather", lambda x: indexing.gather(x, _ids(3, 6, high=5), axis=-1), ((3, 5),)),
    Case("concatenate", lambda a, b: indexing.concatenate([a, b], axis=1), ((2, 3), (2, 2))),
    Case("stack", lambda a, b: indexing.stack([a, b], axis=1), ((2, 3), (2, 3))),
    Case("where", lambda a, b: indexing.where(_ids(3, 1, high=2).astype(bool), a, b), ((3, 4), (4,))),
    Case("masked_fill", lambda x: indexing.masked_fill(x, _ids(3, 4, high=2).astype(bool), -1.0), ((3, 4),)),
    Case("clip", lambda x: ops.clip(x, -0.5, 0.5), ((4, 5),)),
    Case("astype", lambda x: ops.astype(x, np.float64), ((2, 3),)),
    Case("log_softmax", lambda x: F.log_softmax(x, axis=-1), ((3, 5),)),
    Case("softmax", lambda x: F.softmax(x, axis=0), ((3, 5),)),
    Case("cross_entropy", lambda x: F.cross_entropy(x, _ids(2, 3, high=5), mask=_ids(2, 3, high=2)), ((2, 3, 5),)),
    Case("cross_entropy", lambda x: F.cross_entropy(x, _ids(4, high=5), ignore_index=2, reduction="sum"), ((4, 5),)),
    Case("entropy", F.entropy, ((2, 3, 5),)),
    Case("linear", F.linear, ((2, 3, 4), (4, 5), (5,))),
    Case("layer_norm", F.layer_norm, ((2, 3, 6), (6,), (6,))),
    Case("gelu", F.gelu, ((3, 4),)),
    Case("embedding", lambda w: F.embedding(w, _ids(2, 5, high=4)), ((4, 3),)),
    Case("scaled_dot_product_attention", F.scaled_dot_product_attention, ((2, 2, 4, 3),) * 3),
    Case("scaled_dot_product_attention",
         lambda q, k, v: F.scaled_dot_product_attention(q, k, v, key_mask=np.array([[0, 1, 1, 1, 1], [1, 1, 1, 1, 0]], bool)),
         ((2, 1, 3, 2), (2, 1, 5, 2), (2, 1, 5, 2))),
    Case("attention_qkv", lambda x: F.attention_qkv(x.transpose(2, 0, 3, 1, 4)), ((2, 4, 3, 2, 3),)),
    Case("log_sigmoid", lambda x: F.log_sigmoid(x * 30.0), ((3, 4),)),
    Case("dropout", lambda x: F.dropout(x, 0.3, training=True, rng=backend.rng(0)), ((3, 4),)),
]


def draw_inputs(case: Case, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if case.positive:
        return [rng.uniform(0.5, 2.0, size=s) for s in case.shapes]
    return [rng.standard_normal(s) for s in case.shapes]


def run(pattern: str = "", seed: int = 0) -> tuple[list[list], bool]:
    """Check every case whose op name contains `pattern`; returns table rows and overall pass."""
    rows, ok = [], True
    for case in CASES:
        if pattern not in case.op:
            continue
        result = check_grad(case.fn, draw_inputs(case, seed), seed=seed)
        ok &= result.passed
        shapes = " ".join("x".join(map(str, s)) or "()" for s in case.shapes)
        rows.append([case.op, shapes, result.max_abs_err, result.max_rel_err, "pass" if result.passed else "FAIL"])
    return rows, ok


def _seed(text: str) -> int:
    """A NumPy seed: a non-negative integer (argparse reports the error as a usage error)."""
    seed = int(text) if text.lstrip("-").isdigit() else -1
    if seed < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return seed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minirl.gradcheck", description=__doc__.split("\n")[0])
    parser.add_argument("--op", default="", help="only check ops whose name contains this")
    parser.add_argument("--seed", type=_seed, default=0, help="seed for the random inputs and cotangent (>= 0)")
    parser.add_argument("--backend", default=None, help="numpy or cupy (default: MINIRL_BACKEND, else numpy)")
    args = parser.parse_args(argv)
    if args.backend:
        try:
            backend.use(args.backend)
        except backend.BackendError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    rows, ok = run(args.op, args.seed)
    if not rows:
        print(f"no op matches {args.op!r}; ops: {', '.join(sorted({c.op for c in CASES}))}", file=sys.stderr)
        return 2
    print(format_table(rows, ["op", "input shapes", "max abs err", "max rel err", "result"]))
    failed = sum(r[-1] == "FAIL" for r in rows)
    print(f"\n{len(rows) - failed} passed, {failed} failed (float64, central differences, backend {backend.name()})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
