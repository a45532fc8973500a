"""Fused ops with hand-derived backwards.

A chain of primitives (exp, sum, div, log, ...) would work, but it keeps every
intermediate array alive for the backward pass and walks memory once per op.
These ops compute the forward in a few array passes, keep only what the
derivative needs, and apply the closed-form gradient in one go. They are also
where numerical stability lives: the max-subtraction in log-softmax, the
epsilon in layer norm, the handling of fully masked rows in attention.
"""

from __future__ import annotations

import math

from minirl import backend, kernels
from minirl.tensor import Tensor, as_tensor, is_grad_enabled

__all__ = [
    "log_softmax", "softmax", "cross_entropy", "entropy", "linear", "layer_norm", "gelu",
    "embedding", "scaled_dot_product_attention", "attention_qkv", "log_sigmoid", "dropout",
]


def row_sum(a, axis: int = -1, other=None, out=None):
    """``Σ a`` (or ``Σ a·other``) over `axis`, keeping it as a length-1 axis; written
    into `out` (that shape) when given.

    Over the last axis the backend picks the fastest form (`backend.sum_last_axis`: an
    einsum on NumPy, a reduction on CuPy). Each row's sum reads only that row.
    """
    if axis in (-1, a.ndim - 1):
        if out is None:
            return backend.sum_last_axis(a, other)[..., None]
        backend.sum_last_axis(a, other, out=out[..., 0])
        return out
    total = (a if other is None else a * other).sum(axis=axis, keepdims=True)
    if out is None:
        return total
    out[...] = total
    return out


def column_sum(a):
    """``Σ_rows a`` of an (N, C) array, as a matrix-vector product ``1ᵀa``: the BLAS runs
    it on every core, 2-3× faster than ``a.sum(axis=0)``. The bias gradients use it."""
    return backend.get_array_module(a).ones(a.shape[0], dtype=a.dtype) @ a


def along_axis(kernel, axis: int, *arrays) -> None:
    """Run ``kernel(ax, *arrays)``, a kernel that reduces over axis `ax` and writes into
    output arrays among `arrays`. Along the last axis the rows go to parallel threads
    as (N, V) blocks (`backend.parallel_rows`); along any other axis it runs once."""
    x = arrays[0]
    if x.ndim >= 2 and axis in (-1, x.ndim - 1):
        backend.parallel_rows(lambda *blocks: kernel(-1, *blocks), *(a.reshape(-1, a.shape[-1]) for a in arrays))
    else:
        kernel(axis, *arrays)


def _softmax_rows(ax, x, e, total, shift) -> None:
    """The kernel of `softmax_parts`: fills ``shift = max``, ``e = exp(x - shift)`` and
    ``total = Σ e`` over axis `ax` (`e` may be `x` itself, for an in-place softmax).

    A fully masked row (all -inf) must give e = 0, not NaN: its shift is raised from
    -inf to the lowest finite float, so ``x - shift = -inf`` and ``e = 0``. Any row
    whose max is finite has ``total ≥ 1`` (the max contributes e⁰ = 1), so raising
    total to 1 changes only the all-masked rows, whose total 0 would divide 0 by 0.
    (A row holding +inf or NaN comes out NaN, as it should.)
    """
    xp = backend.get_array_module(x)
    x.max(axis=ax, keepdims=True, out=shift)
    xp.maximum(shift, xp.finfo(shift.dtype).min, out=shift)  # -inf -> lowest finite; NaN stays NaN
    xp.subtract(x, shift, out=e)
    xp.exp(e, out=e)
    row_sum(e, ax, out=total)
    xp.maximum(total, 1, out=total)


def softmax_parts(x, axis: int = -1):
    """``(e, total, shift)`` with ``e = exp(x - shift)`` and ``total = Σ e`` along `axis`.

    Subtracting the row max (`shift`) keeps exp from overflowing. Then
    ``softmax = e / total`` and ``log_softmax = x - shift - log(total)``. `e` is a
    fresh array the caller may overwrite, so each op makes one full-size allocation.
    Along the last axis the rows run in parallel (`along_axis`).

    A row that is entirely -inf (fully masked) has no distribution: we define its
    probs as 0 and its log-probs as -inf (the log of 0), never NaN.
    """
    xp = backend.get_array_module(x)
    e = xp.empty(x.shape, dtype=x.dtype)
    reduced = tuple(1 if i == axis % x.ndim else n for i, n in enumerate(x.shape))
    total, shift = xp.empty(reduced, dtype=x.dtype), xp.empty(reduced, dtype=x.dtype)
    along_axis(_softmax_rows, axis, x, e, total, shift)
    return e, total, shift


def softmax_probs(x, axis: int = -1):
    """softmax(x) along `axis` on a raw array (no graph), via `softmax_parts`."""
    e, total, _ = softmax_parts(x, axis)

    def normalise(ax, e, total):
        e /= total
    along_axis(normalise, axis, e, total)
    return e


def log_softmax(x, axis: int = -1) -> Tensor:
    """``log softmax(x)_i = x_i - log Σ_j exp(x_j)``.

    Fused because the naive chain overflows for logits beyond ~88 in float32.
    Derivative: ``dx = g - softmax(x) · Σ_j g_j``.
    """
    x = as_tensor(x)
    xp = backend.get_array_module(x.data)
    probs, total, shift = softmax_parts(x.data, axis)
    out = xp.empty(x.shape, dtype=probs.dtype)

    def forward(ax, x, probs, total, shift, out):
        probs /= total
        xp.subtract(x, shift, out=out)  # not x - (shift + log total): that rounds away log total at |x| ~ 1e4
        out -= xp.log(total)
    along_axis(forward, axis, x.data, probs, total, shift, out)

    def _backward(g):
        dx = xp.empty(probs.shape, dtype=probs.dtype)

        def backward(ax, g, probs, dx):
            xp.multiply(probs, row_sum(g, ax), out=dx)
            xp.subtract(g, dx, out=dx)
        along_axis(backward, axis, g, probs, dx)
        return (dx,)
    return Tensor._make(out, (x,), _backward)


def softmax(x, axis: int = -1) -> Tensor:
    """``softmax(x)_i = exp(x_i) / Σ_j exp(x_j)``.

    Derivative (Jacobian ``diag(s) - s sᵀ`` applied to g): ``dx = s · (g - Σ_j g_j s_j)``.
    """
    x = as_tensor(x)
    xp = backend.get_array_module(x.data)
    probs = softmax_probs(x.data, axis)

    def _backward(g):
        dx = xp.empty(probs.shape, dtype=probs.dtype)

        def backward(ax, g, probs, dx):
            xp.multiply(g, probs, out=dx)
            xp.subtract(g, row_sum(dx, ax), out=dx)
            dx *= probs
        along_axis(backward, axis, g, probs, dx)
        return (dx,)
    return Tensor._make(probs, (x,), _backward)


def cross_entropy(logits, targets, mask=None, ignore_index: int | None = None,
                  reduction: str = "mean") -> Tensor:
    """Next-token negative log-likelihood, MATH.md §1: ``NLL = -(1/Σm) Σ_t m_t log π(a_t|s_t)``.

    logits: (..., V). targets: (...) integer token ids. mask: (...) 0/1 (or weights)
    marking the tokens that count; positions equal to `ignore_index` count as masked.
    reduction: "mean" over counted tokens, "sum", or "none" (per-token NLL, masked to 0).

    If every token is masked, "mean" returns 0 with zero gradient (nothing to learn
    from) instead of 0/0 = NaN.

    Fused with the gather so the (..., V) log-prob array is never materialised for
    the graph. Derivative w.r.t. the logits: ``(softmax(logits) - onehot(a_t)) · m_t / Σm``.
    Only the row max and the row sum of the softmax are kept: the backward recomputes the
    softmax from the logits (`kernels.scaled_softmax`), one exp pass, instead of holding a
    second (..., V) array from forward to backward (823 MB at GPT-2's 16 × 256 × 50,257).
    """
    logits = as_tensor(logits)
    xp = backend.get_array_module(logits.data)
    given = targets.data if isinstance(targets, Tensor) else targets  # range-checked below if on the host
    t = backend.to_backend(given)
    if t.shape != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: targets have shape {t.shape} but logits {logits.shape} "
                         f"need targets of shape {logits.shape[:-1]}.")
    if t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integer token ids, got dtype {t.dtype}.")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}.")
    w = xp.ones(t.shape, dtype=logits.dtype)
    if mask is not None:
        m = mask.data if isinstance(mask, Tensor) else xp.asarray(mask)
        if m.shape != t.shape:
            raise ValueError(f"cross_entropy: mask has shape {m.shape}, targets {t.shape}; they must match.")
        w = w * m.astype(w.dtype)  # an int or float64 mask must not turn the loss float64
    if ignore_index is not None:
        w = w * (t != ignore_index)
        t = xp.where(t == ignore_index, 0, t)
    V = logits.shape[-1]
    backend.check_range(given, 0, V, f"cross_entropy: target id {{bad}} is out of range for {V} classes (0..{V - 1}).",
                        counted=w)  # masked positions may hold padding ids
    t = xp.clip(t, 0, V - 1)  # masked positions may hold padding ids; they get zero weight anyway

    e, total, shift = softmax_parts(logits.data, -1)  # softmax = e / total
    del e  # the backward recomputes it from the logits
    picked = ((xp.take_along_axis(logits.data, t[..., None], axis=-1) - shift) - xp.log(total))[..., 0]
    nll = xp.where(w != 0, -picked * w, 0)  # (...); a masked -inf logit must not turn 0·inf into NaN
    if reduction == "none":
        out, scale = nll, w
    else:
        denom = w.sum() if reduction == "mean" else xp.ones((), dtype=w.dtype)
        denom = xp.where(denom != 0, denom, 1.0)  # on the device: no host sync
        out, scale = nll.sum() / denom, w / denom

    def _backward(g):
        coef = (g * scale)[..., None]  # (..., 1): upstream gradient times each token's weight
        dlogits = xp.empty(logits.shape, dtype=logits.dtype)
        kernels.scaled_softmax(logits.data.reshape(-1, V), shift.reshape(-1, 1), (coef / total).reshape(-1, 1),
                               dlogits.reshape(-1, V))  # softmax · coef, (N, V)
        at_target = xp.take_along_axis(dlogits, t[..., None], axis=-1) - coef
        xp.put_along_axis(dlogits, t[..., None], at_target, axis=-1)
        return (dlogits,)
    return Tensor._make(out, (logits,), _backward)


CHUNK_SIZE = 1 << 22
"""Elements per chunk of rows in `entropy`: a (rows, V) scratch array of this size at a time."""


def _by_chunks(kernel, *arrays) -> None:
    """``kernel(*chunks)`` on consecutive row chunks of (N, V) arrays, about `CHUNK_SIZE`
    elements each, so a kernel's scratch arrays are chunk-sized, not (N, V)."""
    rows = max(1, CHUNK_SIZE // max(1, arrays[0].shape[-1]))
    for lo in range(0, arrays[0].shape[0], rows):
        kernel(*(a[lo:lo + rows] for a in arrays))


def entropy(logits) -> Tensor:
    """``H(π) = −Σ_v π_v log π_v`` over the last axis, with π = softmax(logits): (..., V) -> (...).

    Fused because the chain ``-(log_softmax(x).exp() * log_softmax(x)).sum(-1)`` keeps four
    (..., V) arrays for backward (411 MB per 512-token row at GPT-2's vocabulary); this keeps
    none, only each row's log Σe^a and H. With ``a = x − max x`` and ``log π = a − log Σe^a``:
    ``H = log Σe^a − Σ_v π_v a_v`` (Σπ = 1), and the derivative, from ``∂π_k/∂x_j = π_k(δ_kj − π_j)``:
    ``dH/dx_j = −π_j (log π_j + H)``. Both directions recompute π chunk by chunk of rows
    (`_by_chunks`), so neither allocates an (..., V) array beyond the gradient itself.
    A −inf (masked) logit has π = 0 and adds 0 (0·log 0 = 0): a is clamped to the lowest
    finite float, so no 0·∞ appears; a fully masked row has entropy 0.
    """
    x = as_tensor(logits)
    xp = backend.get_array_module(x.data)
    if x.ndim == 0:
        raise ValueError("entropy needs logits with a last axis (..., V), got a scalar.")
    V = x.shape[-1]
    x2 = x.data.reshape(-1, V)  # (N, V)
    lowest = xp.finfo(x.dtype).min
    log_total = xp.empty((x2.shape[0], 1), dtype=x.dtype)  # log Σ_v e^{a_v}, kept for backward
    h = xp.empty((x2.shape[0], 1), dtype=x.dtype)

    def forward(x, log_total, h):  # a chunk of rows
        a = x - xp.maximum(x.max(axis=-1, keepdims=True), lowest)  # (n, V)
        xp.maximum(a, lowest, out=a)
        e = xp.exp(a)
        total = xp.maximum(row_sum(e), 1)  # a fully masked row: e = 0, total 1
        xp.log(total, out=log_total)
        xp.subtract(log_total, row_sum(e, -1, a) / total, out=h)  # log Σe^a − Σ π a
    backend.parallel_rows(lambda *blocks: _by_chunks(forward, *blocks), x2, log_total, h)

    def _backward(g):
        dx = xp.empty(x2.shape, dtype=x.dtype)

        def backward(x, log_total, h, g, dx):  # a chunk of rows: dx = −g·π·(log π + H)
            xp.subtract(x, xp.maximum(x.max(axis=-1, keepdims=True), lowest), out=dx)
            xp.maximum(dx, lowest, out=dx)  # a
            p = xp.exp(dx)
            p *= xp.exp(-log_total)  # π
            dx -= log_total - h  # log π + H
            dx *= p
            dx *= -g
        backend.parallel_rows(lambda *blocks: _by_chunks(backward, *blocks), x2, log_total, h,
                              g.reshape(-1, 1).astype(x.dtype, copy=False), dx)
        return (dx.reshape(x.shape),)
    return Tensor._make(h.reshape(x.shape[:-1]), (x,), _backward)


def linear(x, weight, bias=None) -> Tensor:
    """``y = x @ W + b``: (..., in), (in, out), (out,) -> (..., out).

    Fused so the leading dims fold into one (N, in) @ (in, out) GEMM and the bias is
    added in place. ``dx = g Wᵀ``, ``dW = xᵀ g`` (summed over all N rows), ``db = Σ_N g``.
    """
    x, weight = as_tensor(x), as_tensor(weight)
    if x.shape[-1] != weight.shape[0]:
        raise ValueError(f"linear: input has {x.shape[-1]} features (shape {x.shape}) but the weight "
                         f"expects {weight.shape[0]} (shape {weight.shape}).")
    n_in, n_out = weight.shape
    if bias is not None and tuple(bias.shape) != (n_out,):
        raise ValueError(f"linear: bias must have shape ({n_out},), got {tuple(bias.shape)}.")
    x2 = x.data.reshape(-1, n_in)  # (N, in)
    out = backend.gemm(x2, weight.data)  # (N, in) @ (in, out) -> (N, out)
    if bias is not None:
        bias = as_tensor(bias)
        out += bias.data

    def _backward(g):
        g2 = g.reshape(-1, n_out)  # (N, out)
        grads = [(g2 @ weight.data.T).reshape(x.shape) if x.requires_grad else None,
                 x2.T @ g2 if weight.requires_grad else None]
        if bias is not None:
            grads.append(column_sum(g2))
        return tuple(grads)
    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor._make(out.reshape(x.shape[:-1] + (n_out,)), parents, _backward)


def layer_norm(x, weight=None, bias=None, eps: float = 1e-5) -> Tensor:
    """``y = (x - μ) / √(σ² + eps) · w + b`` over the last axis (Ba et al. 2016).

    Fused because the chain (mean, sub, square, mean, add, sqrt, div, mul, add)
    keeps nine arrays for backward. With ``x̂ = (x - μ)·rstd`` and ``d = g·w``:
    ``dx = rstd · (d - mean(d) - x̂ · mean(d · x̂))``, ``dw = Σ g·x̂``, ``db = Σ g``.
    Rows run in parallel (`backend.parallel_rows`), with `row_sum` for the means.
    The forward is ten array calls: in a sampling step the rows are few, and the
    call count, not the arithmetic, is the cost.
    """
    x = as_tensor(x)
    xp = backend.get_array_module(x.data)
    C = x.shape[-1]
    x2 = x.data.reshape(-1, C)  # (N, C) rows
    parents = (x,) if weight is None else (x, as_tensor(weight))
    parents = parents if bias is None else parents + (as_tensor(bias),)
    w = parents[1].data if weight is not None else None
    b = parents[-1].data if bias is not None else None
    out = xp.empty_like(x2)
    keep = is_grad_enabled() and any(p.requires_grad for p in parents)
    xhat = xp.empty_like(x2) if keep else out  # x̂ is kept only for backward
    rstd = xp.empty((x2.shape[0], 1), dtype=x.dtype)

    def forward(x, xhat, rstd, out):
        row_sum(x, out=rstd)
        rstd *= -1.0 / C  # -μ
        xp.add(x, rstd, out=xhat)  # x - μ, scaled to x̂ below
        row_sum(xhat, -1, xhat, out=rstd)  # C·σ²
        rstd += C * eps
        xp.sqrt(rstd, out=rstd)
        xp.divide(math.sqrt(C), rstd, out=rstd)  # rstd = √C / √(C·σ² + C·eps) = 1 / √(σ² + eps)
        xhat *= rstd
        if w is not None:
            xp.multiply(xhat, w, out=out)
        elif keep:  # else x̂ already is the output
            out[...] = xhat
        if b is not None:
            out += b
    backend.parallel_rows(forward, x2, xhat, rstd, out)

    def _backward(g):
        g2 = g.reshape(x2.shape)
        d = xp.empty_like(x2)

        def backward(g, xhat, rstd, d):
            if w is not None:
                xp.multiply(g, w, out=d)
            else:
                d[...] = g
            mean_d_xhat = row_sum(d, -1, xhat) * (1.0 / C)
            d -= row_sum(d) * (1.0 / C)
            d -= xhat * mean_d_xhat
            d *= rstd
        backend.parallel_rows(backward, g2, xhat, rstd, d)
        grads = [d.reshape(x.shape)]
        if weight is not None:
            grads.append(backend.column_dot(g2, xhat))  # Σ_rows g·x̂
        if bias is not None:
            grads.append(column_sum(g2))
        return tuple(grads)
    return Tensor._make(out.reshape(x.shape), parents, _backward)


def gelu(x) -> Tensor:
    """GELU, tanh form (Hendrycks & Gimpel 2016; as in GPT-2):
    ``y = ½x(1 + tanh(u))``, ``u = √(2/π)(x + 0.044715x³)``.

    Computed as ``y = x·σ(2u) = x / (1 + e^{-2u})`` (the same function, since
    ½(1 + tanh u) = σ(2u)), because NumPy's exp is vectorised and its tanh is not.
    Derivative: ``dy/dx = σ + 2x·σ(1 - σ)·√(2/π)(1 + 3·0.044715x²)``, ``σ = σ(2u)``.
    Fused so that nothing but x is kept for the backward, which recomputes σ from it (one
    exp): at GPT-2's shape that is 4·n_embd floats less per token and layer, a sixth of
    the block's activations. Both directions are one kernel each (`kernels.gelu_forward`,
    `kernels.gelu_backward`).
    """
    x = as_tensor(x)
    xp = backend.get_array_module(x.data)
    x2 = x.data.reshape(-1, x.shape[-1]) if x.ndim else x.data.reshape(1, 1)
    out = xp.empty_like(x2)
    kernels.gelu_forward(x2, out)

    def _backward(g):
        d = xp.empty_like(x2)
        kernels.gelu_backward(x2, g.reshape(x2.shape), d)
        return (d.reshape(x.shape),)
    return Tensor._make(out.reshape(x.shape), (x,), _backward)


def embedding(weight, ids) -> Tensor:
    """Row lookup ``out[..., :] = weight[ids[...], :]``: (V, C), (...) -> (..., C).

    The backward sums each row's gradient into the rows that were read, so a token
    that appears twice gets both contributions (`backend.embedding_grad`: a scatter-add
    on NumPy, a one-hot matmul on CuPy, whose scatter-add is not bit-reproducible).
    """
    weight = as_tensor(weight)
    xp = backend.get_array_module(weight.data)
    given = ids.data if isinstance(ids, Tensor) else ids
    ids = backend.to_backend(given)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding: ids must be integers, got dtype {ids.dtype}.")
    ids = ids.astype(xp.int64, copy=False)  # uint16 ids would overflow in the flat index ids·C below
    V, C = weight.shape
    backend.check_range(given, 0, V, f"embedding: id {{bad}} is out of range for a table of {V} rows (0..{V - 1}).")
    out = weight.data[ids]

    def _backward(g):
        return (backend.embedding_grad(ids.reshape(-1), g.reshape(-1, C), V),)  # (N,), (N, C) -> (V, C)
    return Tensor._make(out, (weight,), _backward)


def scaled_dot_product_attention(q, k, v, causal: bool = True, key_mask=None) -> Tensor:
    """``softmax(q kᵀ / √hs + M) v`` (Vaswani et al. 2017), in one op.

    q: (B, nh, Tq, hs); k, v: (B, nh, Tk, hs) -> (B, nh, Tq, hs). With a KV cache
    Tq < Tk: query i sits at absolute position ``Tk - Tq + i``, and `causal` lets it
    see keys at positions ≤ that. `key_mask` (B, Tk) is True for real tokens and
    False for padding. A query that may see no key at all (e.g. a left-pad position)
    outputs zeros, not NaN.

    Fused so the (B, nh, Tq, Tk) score matrix is built once. With P the attention
    probabilities: ``dv = Pᵀg``, ``dP = g vᵀ``, ``dS = P·(dP - Σ_k dP·P)``,
    ``dq = dS k / √hs``, ``dk = dSᵀ q / √hs``.
    """
    q, k, v = as_tensor(q), as_tensor(k), as_tensor(v)
    xp = backend.get_array_module(q.data)
    out, backward = _attention(q.data, k.data, v.data, causal, key_mask)

    def _backward(g):
        dq, dk, dv = (xp.empty(a.shape, dtype=a.dtype) for a in (q.data, k.data, v.data))
        backward(g, dq, dk, dv)
        return dq, dk, dv
    return Tensor._make(out, (q, k, v), _backward)


def attention_qkv(qkv, causal: bool = True, key_mask=None) -> Tensor:
    """`scaled_dot_product_attention` of ``q, k, v = qkv[0], qkv[1], qkv[2]`` for a
    stacked (3, B, nh, T, hs) tensor, as a fused qkv projection produces them.

    The same computation, but the three gradients are written into one array shaped
    (and laid out in memory) like `qkv`: split by indexing, each part would send back
    a zero-filled array of the full size, and the three would then be summed.
    """
    qkv = as_tensor(qkv)
    if qkv.ndim != 5 or qkv.shape[0] != 3:
        raise ValueError(f"attention_qkv expects q, k, v stacked as (3, B, nh, T, hs), got {qkv.shape}.")
    xp = backend.get_array_module(qkv.data)
    out, backward = _attention(qkv.data[0], qkv.data[1], qkv.data[2], causal, key_mask)

    def _backward(g):
        d = xp.empty_like(qkv.data)  # same strides as qkv: the reshape back to (B, T, 3·nh·hs) is free
        backward(g, d[0], d[1], d[2])
        return (d,)
    return Tensor._make(out, (qkv,), _backward)


def _attention(q, k, v, causal: bool, key_mask):
    """The kernel of both attention ops, on arrays: returns the output and a function
    ``backward(g, dq, dk, dv)`` that writes the three gradients into the arrays given."""
    xp = backend.get_array_module(q)
    if q.ndim != 4 or k.shape != v.shape or k.ndim != 4 or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"attention expects q (B, nh, Tq, hs) and k, v (B, nh, Tk, hs); "
                         f"got q {q.shape}, k {k.shape}, v {v.shape}.")
    B, nh, Tq, hs = q.shape
    Tk = k.shape[2]
    scale = 1.0 / math.sqrt(hs)
    causal_ok = None
    if causal and Tq > 1:  # a single query at the end sees every key
        causal_ok = xp.arange(Tk)[None, :] <= xp.arange(Tq)[:, None] + (Tk - Tq)  # (Tq, Tk)
    if key_mask is not None:
        km = (key_mask.data if isinstance(key_mask, Tensor) else xp.asarray(key_mask)).astype(bool, copy=False)
        if km.shape != (B, Tk):
            raise ValueError(f"attention key_mask must have shape (B, Tk) = {(B, Tk)}, got {km.shape}.")
    else:
        km = xp.ones((B, Tk), dtype=bool)
    P = xp.empty((B, nh, Tq, Tk), dtype=q.dtype)  # attention probabilities, kept for backward
    out = xp.empty((B, nh, Tq, hs), dtype=q.dtype)

    def forward(q, k, v, km, P, out):  # a block of the batch
        xp.matmul(q, xp.swapaxes(k, -1, -2), out=P)  # scores (b, nh, Tq, Tk), made probabilities in place
        P *= scale
        blocked = ~km[:, None, None, :] if causal_ok is None else ~(causal_ok & km[:, None, None, :])
        xp.copyto(P, -xp.inf, where=blocked)
        total, shift = xp.empty(P.shape[:-1] + (1,), dtype=P.dtype), xp.empty(P.shape[:-1] + (1,), dtype=P.dtype)
        _softmax_rows(-1, P, P, total, shift)  # in place: this block already runs on its own thread
        P /= total
        xp.matmul(P, v, out=out)
    backend.parallel_rows(forward, q, k, v, km, P, out)

    def backward(g, dq, dk, dv):
        def kernel(q, k, v, P, g, dq, dk, dv):
            xp.matmul(xp.swapaxes(P, -1, -2), g, out=dv)  # (b, nh, Tk, hs)
            dS = g @ xp.swapaxes(v, -1, -2)  # dP, (b, nh, Tq, Tk), turned into dS in place
            dS -= row_sum(dS, -1, P)
            dS *= P
            dS *= scale
            xp.matmul(dS, k, out=dq)
            xp.matmul(xp.swapaxes(dS, -1, -2), q, out=dk)
        backend.parallel_rows(kernel, q, k, v, P, g, dq, dk, dv)
    return out, backward


def log_sigmoid(x) -> Tensor:
    """``log σ(x) = −log(1 + e^{−x})``, the log-likelihood in Bradley–Terry and DPO.

    Fused because the chain overflows: computed as ``min(x, 0) − log(1 + e^{−|x|})``,
    finite for any x. Derivative: ``d/dx log σ(x) = 1 − σ(x) = σ(−x)``.
    """
    x = as_tensor(x)
    xp = backend.get_array_module(x.data)
    e = xp.exp(-xp.abs(x.data))  # in (0, 1]: never overflows
    out = xp.minimum(x.data, 0) - xp.log1p(e)

    def _backward(g):
        sigma_neg = xp.where(x.data >= 0, e / (1 + e), 1 / (1 + e))  # σ(−x), from e = exp(−|x|)
        return (g * sigma_neg,)
    return Tensor._make(out, (x,), _backward)


def dropout(x, p: float, training: bool = True, rng=None) -> Tensor:
    """Inverted dropout (Srivastava et al. 2014): zero each element with probability p
    and scale the survivors by 1/(1-p), so evaluation needs no rescaling.

    Identity when not training or p == 0; RL forward passes rely on that (MATH.md §4).
    """
    x = as_tensor(x)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}.")
    if not training or p == 0.0:
        return x
    rng = rng if rng is not None else backend.device_rng()
    keep = (backend.to_backend(rng.random(x.shape)) >= p).astype(x.dtype) / (1.0 - p)  # a NumPy rng's draws move

    def _backward(g):
        return (g * keep,)
    return Tensor._make(x.data * keep, (x,), _backward)
