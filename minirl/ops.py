"""Primitive differentiable ops. Each backward closure sits right under its forward.

The rules read like a table: for ``y = f(x)`` and upstream gradient ``g = dL/dy``,
each closure returns ``dL/dx = g · dy/dx`` for every input, passed through
`unbroadcast` wherever NumPy broadcasting may have stretched an input.
"""

from __future__ import annotations

import builtins

import numpy as np

from minirl import backend
from minirl.tensor import Tensor, unbroadcast

__all__ = [
    "add", "sub", "mul", "div", "pow", "neg", "exp", "log", "tanh", "sqrt",
    "sum", "mean", "max", "matmul", "reshape", "transpose", "getitem", "gather",
    "concatenate", "stack", "where", "masked_fill", "clip", "astype",
]


def _lift(x, like: Tensor | None = None) -> Tensor:
    """Tensors pass through; scalars meeting a float tensor take its dtype (no silent upcast to float64)."""
    if isinstance(x, Tensor):
        return x
    if like is not None and like.dtype.kind == "f" and (np.isscalar(x) or np.ndim(x) == 0):
        return Tensor(backend.xp().asarray(x, dtype=like.dtype))
    return Tensor(x)


def _binary(a, b) -> tuple[Tensor, Tensor]:
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    return _lift(a, like), _lift(b, like)


def _need(t: Tensor) -> bool:
    return t.requires_grad


def add(a, b) -> Tensor:
    a, b = _binary(a, b)
    out = a.data + b.data

    def _backward(g):
        return unbroadcast(g, a.shape), unbroadcast(g, b.shape)
    return Tensor._make(out, (a, b), _backward)


def sub(a, b) -> Tensor:
    a, b = _binary(a, b)
    out = a.data - b.data

    def _backward(g):
        return unbroadcast(g, a.shape), unbroadcast(-g, b.shape)
    return Tensor._make(out, (a, b), _backward)


def mul(a, b) -> Tensor:
    a, b = _binary(a, b)
    out = a.data * b.data

    def _backward(g):
        return (unbroadcast(g * b.data, a.shape) if _need(a) else None,
                unbroadcast(g * a.data, b.shape) if _need(b) else None)
    return Tensor._make(out, (a, b), _backward)


def div(a, b) -> Tensor:
    a, b = _binary(a, b)
    out = a.data / b.data

    def _backward(g):  # d(a/b)/da = 1/b,  d(a/b)/db = -a/b² = -out/b
        return (unbroadcast(g / b.data, a.shape) if _need(a) else None,
                unbroadcast(-g * out / b.data, b.shape) if _need(b) else None)
    return Tensor._make(out, (a, b), _backward)


def pow(a, b) -> Tensor:
    """a ** b. d/da = b·a^(b-1); d/db = a^b·log a (only defined for a > 0)."""
    a, b = _binary(a, b)
    out = a.data ** b.data

    def _backward(g):
        xp = backend.get_array_module(out)
        ga = unbroadcast(g * b.data * a.data ** (b.data - 1), a.shape) if _need(a) else None
        gb = unbroadcast(g * out * xp.log(a.data), b.shape) if _need(b) else None
        return ga, gb
    return Tensor._make(out, (a, b), _backward)


def neg(a) -> Tensor:
    a = _lift(a)

    def _backward(g):
        return (-g,)
    return Tensor._make(-a.data, (a,), _backward)


def exp(a) -> Tensor:
    a = _lift(a)
    out = backend.get_array_module(a.data).exp(a.data)

    def _backward(g):  # d e^a = e^a
        return (g * out,)
    return Tensor._make(out, (a,), _backward)


def log(a) -> Tensor:
    a = _lift(a)
    out = backend.get_array_module(a.data).log(a.data)

    def _backward(g):  # d log a = 1/a
        return (g / a.data,)
    return Tensor._make(out, (a,), _backward)


def tanh(a) -> Tensor:
    a = _lift(a)
    out = backend.get_array_module(a.data).tanh(a.data)

    def _backward(g):  # d tanh a = 1 - tanh² a
        return (g * (1 - out * out),)
    return Tensor._make(out, (a,), _backward)


def sqrt(a) -> Tensor:
    a = _lift(a)
    out = backend.get_array_module(a.data).sqrt(a.data)

    def _backward(g):  # d √a = 1 / (2√a)
        return (g / (2 * out),)
    return Tensor._make(out, (a,), _backward)


def _axes(axis, ndim: int) -> tuple[int, ...]:
    """Normalise an axis argument (None, int, or tuple; negatives allowed) to sorted positive axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    for ax in axes:
        if not -ndim <= ax < builtins.max(ndim, 1):
            raise ValueError(f"axis {ax} is out of range for a tensor with {ndim} dimensions.")
    return tuple(sorted(ax % builtins.max(ndim, 1) for ax in axes))


def _expand(g, shape, axes, keepdims):
    """Re-insert reduced axes so a reduction's gradient broadcasts back over its input."""
    if not keepdims:
        g = g.reshape(tuple(1 if i in axes else n for i, n in enumerate(shape)))
    return g


def sum(a, axis=None, keepdims: bool = False) -> Tensor:
    a = _lift(a)
    axes = _axes(axis, a.ndim)
    out = a.data.sum(axis=axes, keepdims=keepdims)

    def _backward(g):  # every summed element gets the gradient of the sum
        xp = backend.get_array_module(g)
        return (xp.broadcast_to(_expand(g, a.shape, axes, keepdims), a.shape),)
    return Tensor._make(out, (a,), _backward)


def mean(a, axis=None, keepdims: bool = False) -> Tensor:
    a = _lift(a)
    axes = _axes(axis, a.ndim)
    count = int(np.prod([a.shape[i] for i in axes])) if axes else 1
    return sum(a, axes, keepdims) / count


def max(a, axis=None, keepdims: bool = False) -> Tensor:
    """Maximum over axes. The gradient goes to the arg-max; ties share it equally."""
    a = _lift(a)
    axes = _axes(axis, a.ndim)
    out = a.data.max(axis=axes, keepdims=keepdims)

    def _backward(g):
        winners = a.data == _expand(out, a.shape, axes, keepdims)
        share = winners / winners.sum(axis=axes, keepdims=True)
        return ((_expand(g, a.shape, axes, keepdims) * share).astype(a.dtype),)
    return Tensor._make(out, (a,), _backward)


def matmul(a, b) -> Tensor:
    """Batched matrix product with broadcast batch dims: (..., n, k) @ (..., k, m) -> (..., n, m).

    A 1-D operand is treated as a row (left) or column (right) vector, as in NumPy.
    d/da = g @ bᵀ and d/db = aᵀ @ g, summed over any broadcast batch dims.
    """
    a, b = _binary(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul needs at least 1-D operands, got shapes {a.shape} and {b.shape}; use * for scalars.")
    if a.shape[-1] != b.shape[0 if b.ndim == 1 else -2]:
        raise ValueError(
            f"matmul shape mismatch: {a.shape} @ {b.shape}; the last dim of the left operand "
            f"({a.shape[-1]}) must equal the {'only' if b.ndim == 1 else 'second-to-last'} dim "
            f"of the right operand ({b.shape[0 if b.ndim == 1 else -2]})."
        )
    if a.ndim > 2 and b.ndim == 2:
        return _matmul_folded(a, b)
    try:
        out = a.data @ b.data
    except ValueError as e:  # incompatible batch dims
        raise ValueError(f"matmul batch dims do not broadcast: {a.shape} @ {b.shape}.") from e

    def _backward(g):
        xp = backend.get_array_module(g)
        A = a.data[None, :] if a.ndim == 1 else a.data  # (..., n, k)
        B = b.data[:, None] if b.ndim == 1 else b.data  # (..., k, m)
        G = g
        if b.ndim == 1:
            G = G[..., None]  # restore the column the vector's matmul removed
        if a.ndim == 1:
            G = xp.expand_dims(G, -2)  # (..., n, m)
        ga = gb = None
        if _need(a):
            ga = unbroadcast(G @ xp.swapaxes(B, -1, -2), A.shape).reshape(a.shape)
        if _need(b):
            gb = unbroadcast(xp.swapaxes(A, -1, -2) @ G, B.shape).reshape(b.shape)
        return ga, gb
    return Tensor._make(out, (a, b), _backward)


def _matmul_folded(a: Tensor, b: Tensor) -> Tensor:
    """(..., n, k) @ (k, m), the Linear-layer case, as one (N, k) @ (k, m) GEMM.

    NumPy would loop over the leading dims and, in backward, build a (..., k, m)
    stack of weight gradients only to sum it; folding them into the rows instead
    makes each of forward, d/da and d/db a single BLAS call.
    """
    k, m = b.shape
    a2 = a.data.reshape(-1, k)  # (N, k)
    out = (a2 @ b.data).reshape(a.shape[:-1] + (m,))

    def _backward(g):
        g2 = g.reshape(-1, m)  # (N, m)
        ga = (g2 @ b.data.T).reshape(a.shape) if _need(a) else None  # (N, m) @ (m, k)
        gb = a2.T @ g2 if _need(b) else None  # (k, N) @ (N, m)
        return ga, gb
    return Tensor._make(out, (a, b), _backward)


def reshape(a, shape) -> Tensor:
    a = _lift(a)
    try:
        out = a.data.reshape(shape)
    except ValueError as e:
        raise ValueError(f"cannot reshape a tensor of shape {a.shape} ({a.size} elements) into {tuple(shape)}.") from e

    def _backward(g):
        return (g.reshape(a.shape),)
    return Tensor._make(out, (a,), _backward)


def transpose(a, axes=None) -> Tensor:
    """Permute axes (reverse them when `axes` is None). The gradient applies the inverse permutation."""
    a = _lift(a)
    if axes is not None and any(not -a.ndim <= ax < a.ndim for ax in axes):
        raise ValueError(f"transpose axes {tuple(axes)} are out of range for a tensor with {a.ndim} dimensions.")
    axes = tuple(range(a.ndim))[::-1] if axes is None else tuple(ax % builtins.max(a.ndim, 1) for ax in axes)
    if sorted(axes) != list(range(a.ndim)):
        raise ValueError(f"transpose axes {axes} are not a permutation of the {a.ndim} axes of shape {a.shape}.")
    inverse = tuple(np.argsort(axes))

    def _backward(g):
        return (g.transpose(inverse),)
    return Tensor._make(a.data.transpose(axes), (a,), _backward)


def _index_data(index):
    """Tensors and arrays used as indices become arrays of the active backend."""
    if isinstance(index, tuple):
        return tuple(_index_data(i) for i in index)
    if isinstance(index, Tensor):
        return index.data
    if hasattr(index, "dtype"):
        return backend.to_backend(index)
    return index


def getitem(a, index) -> Tensor:
    """Basic and advanced indexing. The gradient scatter-adds, so repeated indices accumulate."""
    a = _lift(a)
    index = _index_data(index)
    out = a.data[index]

    def _backward(g):
        full = backend.get_array_module(g).zeros_like(a.data)
        if _is_basic(index):  # slices and ints never repeat a position: plain assignment
            full[index] = g
        else:
            backend.scatter_add(full, index, g)
        return (full,)
    return Tensor._make(out, (a,), _backward)


def _is_basic(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (slice, int, np.integer)) for p in parts)


def gather(a, index, axis: int = -1) -> Tensor:
    """``out[..., i, ...] = a[..., index[..., i, ...], ...]`` along `axis` (take_along_axis).

    Used to pick the log-prob of each chosen token. The backward scatter-adds `g`
    into the positions that were read.
    """
    a = _lift(a)
    index = _index_data(index)
    xp = backend.get_array_module(a.data)
    axis = axis % a.ndim
    if index.ndim != a.ndim or any(n != m for d, (n, m) in enumerate(zip(index.shape, a.shape)) if d != axis):
        raise ValueError(f"gather along axis {axis}: index shape {index.shape} must match the tensor's "
                         f"shape {a.shape} in every other axis.")
    out = xp.take_along_axis(a.data, index, axis=axis)

    def _backward(g):
        full = xp.zeros_like(a.data)
        positions = list(xp.ogrid[tuple(slice(n) for n in index.shape)])
        positions[axis] = index
        backend.scatter_add(full, tuple(positions), g)
        return (full,)
    return Tensor._make(out, (a,), _backward)


def concatenate(tensors, axis: int = 0) -> Tensor:
    tensors = [_lift(t) for t in tensors]
    xp = backend.get_array_module(tensors[0].data)
    out = xp.concatenate([t.data for t in tensors], axis=axis)
    bounds = np.cumsum([t.shape[axis] for t in tensors])[:-1].tolist()

    def _backward(g):
        return tuple(xp.split(g, bounds, axis=axis))
    return Tensor._make(out, tensors, _backward)


def stack(tensors, axis: int = 0) -> Tensor:
    tensors = [_lift(t) for t in tensors]
    xp = backend.get_array_module(tensors[0].data)
    out = xp.stack([t.data for t in tensors], axis=axis)

    def _backward(g):
        return tuple(xp.moveaxis(g, axis, 0))
    return Tensor._make(out, tensors, _backward)


def where(condition, a, b) -> Tensor:
    """Pick `a` where `condition` is true, else `b`; each gets the gradient only where it was picked."""
    a, b = _binary(a, b)
    cond = _index_data(condition)
    xp = backend.get_array_module(a.data, b.data)
    out = xp.where(cond, a.data, b.data)

    def _backward(g):
        zero = xp.zeros((), dtype=g.dtype)
        return (unbroadcast(xp.where(cond, g, zero), a.shape) if _need(a) else None,
                unbroadcast(xp.where(cond, zero, g), b.shape) if _need(b) else None)
    return Tensor._make(out, (a, b), _backward)


def masked_fill(a, mask, value: float) -> Tensor:
    """`a` with `value` wherever `mask` is true (e.g. -inf above the causal diagonal)."""
    a = _lift(a)
    return where(mask, _lift(value, a), a)


def clip(a, lo=None, hi=None) -> Tensor:
    """Clamp to [lo, hi]. The gradient passes where lo ≤ a ≤ hi and is zero outside."""
    a = _lift(a)
    if lo is None and hi is None:
        raise ValueError("clip needs at least one of lo and hi.")
    xp = backend.get_array_module(a.data)
    out = xp.clip(a.data, lo, hi)

    def _backward(g):
        inside = xp.ones(a.shape, dtype=bool)
        if lo is not None:
            inside &= a.data >= lo
        if hi is not None:
            inside &= a.data <= hi
        return (unbroadcast(g * inside, a.shape),)  # array bounds may have broadcast `a`
    return Tensor._make(out, (a,), _backward)


def astype(a, dtype) -> Tensor:
    a = _lift(a)

    def _backward(g):
        return (g.astype(a.dtype),)
    return Tensor._make(a.data.astype(dtype), (a,), _backward)
