"""Fused elementwise kernels: the backend layer's hot loops, one call on either backend.

A GPT step spends most of its GPU time not in arithmetic but in launching kernels:
each NumPy-style array operation is one launch, and an AdamW update written as array
operations is eleven launches per parameter. On CuPy each function here is one
``cupy.ElementwiseKernel``, written from the formula in its docstring, that reads and
writes every element once. On NumPy (and on any array module without
``ElementwiseKernel``) the same function runs the formula as a short sequence of
in-place ufuncs, row-parallel where that pays (`backend.parallel_rows`).

The callers (the fused ops in `functional`, the optimizers in `optim`) call these
functions and never learn which form ran. The two forms agree to float32 round-off,
not bit for bit: CUDA contracts a·b + c into one fused multiply-add.
"""

from __future__ import annotations

import math

from minirl import backend

GELU_C = math.sqrt(2.0 / math.pi)
GELU_A = 0.044715
_compiled: dict = {}


def _fused(xp, name: str, in_params: str, out_params: str, operation: str):
    """The compiled ElementwiseKernel `name` of array module `xp`, or None where it has none."""
    make = getattr(xp, "ElementwiseKernel", None)
    if make is None:
        return None
    key = (xp.__name__, name)
    if key not in _compiled:
        _compiled[key] = make(in_params, out_params, operation, f"minirl_{name}")
    return _compiled[key]


def gelu_forward(x, out) -> None:
    """GELU, tanh form: ``out = x / s`` with ``s = 1 + e^{-2u}``, ``u = √(2/π)(x + 0.044715x³)``.

    (½x(1 + tanh u) = x·σ(2u) = x/s.) Both are (N, C).
    """
    xp = backend.get_array_module(x)
    kernel = _fused(xp, "gelu_forward", "T x", "T out", f"""
        out = x / ((T)1 + exp(x * ((T)({-2 * GELU_C!r}) + (T)({-2 * GELU_C * GELU_A!r}) * x * x)));""")
    if kernel is not None:
        kernel(x, out)
        return

    def rows(x, out):
        xp.multiply(x, x, out=out)  # out: x² -> -2u -> s = 1 + exp(-2u) -> x / s, in place
        out *= -2.0 * GELU_C * GELU_A
        out += -2.0 * GELU_C
        out *= x
        with backend.ignore_overflow():  # exp(-2u) = inf for x < -10.1 in float32: y = x/inf = -0, as it should
            xp.exp(out, out=out)
        out += 1.0
        xp.divide(x, out, out=out)
    backend.parallel_rows(rows, x, out)


def gelu_backward(x, g, d) -> None:
    """``d = g · (σ + 2x·σ(1 - σ)·√(2/π)(1 + 3·0.044715x²))`` with ``σ = 1/s = σ(2u)``:
    the GELU derivative times the upstream gradient `g`, σ recomputed from x (one exp).
    All three are (N, C)."""
    xp = backend.get_array_module(x)
    kernel = _fused(xp, "gelu_backward", "T x, T g", "T d", f"""
        T sig = (T)1 / ((T)1 + exp(x * ((T)({-2 * GELU_C!r}) + (T)({-2 * GELU_C * GELU_A!r}) * x * x)));
        T slope = x * ((T)({2 * GELU_C!r}) + (T)({6 * GELU_C * GELU_A!r}) * x * x) * sig;
        d = g * (slope - slope * sig + sig);""")
    if kernel is not None:
        kernel(x, g, d)
        return
    sig = xp.empty_like(x)

    def rows(x, g, d, sig):
        xp.multiply(x, x, out=sig)  # sig: x² -> -2u -> 1 + exp(-2u) -> σ(2u), as in gelu_forward
        sig *= -2.0 * GELU_C * GELU_A
        sig += -2.0 * GELU_C
        sig *= x
        with backend.ignore_overflow():
            xp.exp(sig, out=sig)
        sig += 1.0
        xp.reciprocal(sig, out=sig)
        xp.multiply(x, x, out=d)  # d: 2x·√(2/π)(1 + 3a·x²) -> ·σ(1-σ) -> + σ -> ·g
        d *= 2.0 * GELU_C * 3 * GELU_A
        d += 2.0 * GELU_C
        d *= x
        d *= sig
        d -= d * sig
        d += sig
        d *= g
    backend.parallel_rows(rows, x, g, d, sig)


def scaled_softmax(x, shift, scale, out) -> None:
    """``out = e^{x - shift} · scale``: with shift the row max and ``scale = c / Σ e^{x - shift}``,
    c times the row's softmax. x and out are (N, V); shift and scale are (N, 1).

    The cross-entropy backward recomputes the softmax with it from the logits instead of
    keeping an (N, V) array of probabilities from the forward. A -inf logit gives 0.
    """
    xp = backend.get_array_module(x)
    kernel = _fused(xp, "scaled_softmax", "T x, T shift, T scale", "T out", """
        out = exp(x - shift) * scale;""")
    if kernel is not None:
        kernel(x, shift, scale, out)
        return

    def rows(x, shift, scale, out):
        xp.subtract(x, shift, out=out)
        xp.exp(out, out=out)
        out *= scale
    backend.parallel_rows(rows, x, shift, scale, out)


def adamw(p, g, m, v, *, lr: float, beta1: float, beta2: float, eps: float, decay: float, step: int) -> None:
    """One AdamW update of parameter `p` in place, with its moments `m` and `v`:

    ``m ← β1·m + (1-β1)·g``, ``v ← β2·v + (1-β2)·g²``,
    ``p ← p·decay - lr·m̂ / (√v̂ + eps)``, ``m̂ = m/(1-β1^t)``, ``v̂ = v/(1-β2^t)``,

    where ``decay = 1 - lr·λ`` (decoupled weight decay; 1 for no decay) and t = `step`.
    √v̂ is computed as √v / √(1-β2^t), as PyTorch does.
    """
    xp = backend.get_array_module(p)
    step_size = lr / (1.0 - beta1 ** step)
    inv_sqrt_bias2 = 1.0 / math.sqrt(1.0 - beta2 ** step)
    kernel = _fused(xp, "adamw", "T g, float64 beta1, float64 beta2, float64 step_size, float64 inv_sqrt_bias2, "
                    "float64 eps, float64 decay", "T p, T m, T v", """
        T m1 = (T)beta1 * m + (T)(1.0 - beta1) * g;
        T v1 = (T)beta2 * v + (T)(1.0 - beta2) * (g * g);
        m = m1;
        v = v1;
        p = p * (T)decay - (T)step_size * m1 / (sqrt(v1) * (T)inv_sqrt_bias2 + (T)eps);""")
    if kernel is not None:
        kernel(g, beta1, beta2, step_size, inv_sqrt_bias2, eps, decay, p, m, v)
        return
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    update = xp.multiply(g, g)  # a scratch array, reused in place for the rest of the update
    update *= 1.0 - beta2
    v += update
    xp.sqrt(v, out=update)
    update *= inv_sqrt_bias2
    update += eps
    xp.divide(m, update, out=update)
    update *= step_size  # lr · m̂ / (√v̂ + eps)
    if decay != 1.0:
        p *= decay
    p -= update
