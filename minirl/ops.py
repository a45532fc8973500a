"""Primitive differentiable ops. Each backward closure sits right under its forward.

The rules read like a table: for ``y = f(x)`` and upstream gradient ``g = dL/dy``,
each closure returns ``dL/dx = g · dy/dx`` for every input, passed through
`unbroadcast` wherever NumPy broadcasting may have stretched an input.
"""

from __future__ import annotations

import builtins

import numpy as np

from minirl import backend
from minirl.tensor import Tensor, as_tensor, as_tensors, unbroadcast

__all__ = [
    "add", "sub", "mul", "div", "pow", "neg", "exp", "log", "tanh", "sqrt",
    "sum", "mean", "max", "matmul", "clip", "astype",
]


def add(a, b) -> Tensor:
    a, b = as_tensors(a, b)
    out = a.data + b.data

    def _backward(g):
        return unbroadcast(g, a.shape), unbroadcast(g, b.shape)
    return Tensor._make(out, (a, b), _backward)


def sub(a, b) -> Tensor:
    a, b = as_tensors(a, b)
    out = a.data - b.data

    def _backward(g):
        return unbroadcast(g, a.shape), unbroadcast(-g, b.shape)
    return Tensor._make(out, (a, b), _backward)


def mul(a, b) -> Tensor:
    a, b = as_tensors(a, b)
    out = a.data * b.data

    def _backward(g):
        return (unbroadcast(g * b.data, a.shape) if a.requires_grad else None,
                unbroadcast(g * a.data, b.shape) if b.requires_grad else None)
    return Tensor._make(out, (a, b), _backward)


def div(a, b) -> Tensor:
    a, b = as_tensors(a, b)
    out = a.data / b.data

    def _backward(g):  # d(a/b)/da = 1/b,  d(a/b)/db = -a/b² = -out/b
        return (unbroadcast(g / b.data, a.shape) if a.requires_grad else None,
                unbroadcast(-g * out / b.data, b.shape) if b.requires_grad else None)
    return Tensor._make(out, (a, b), _backward)


def pow(a, b) -> Tensor:
    """a ** b. d/da = b·a^(b-1); d/db = a^b·log a (only defined for a > 0)."""
    a, b = as_tensors(a, b)
    out = a.data ** b.data

    def _backward(g):
        xp = backend.get_array_module(out)
        ga = unbroadcast(g * b.data * a.data ** (b.data - 1), a.shape) if a.requires_grad else None
        gb = unbroadcast(g * out * xp.log(a.data), b.shape) if b.requires_grad else None
        return ga, gb
    return Tensor._make(out, (a, b), _backward)


def neg(a) -> Tensor:
    a = as_tensor(a)

    def _backward(g):
        return (-g,)
    return Tensor._make(-a.data, (a,), _backward)


def exp(a) -> Tensor:
    a = as_tensor(a)
    out = backend.get_array_module(a.data).exp(a.data)

    def _backward(g):  # d e^a = e^a
        return (g * out,)
    return Tensor._make(out, (a,), _backward)


def log(a) -> Tensor:
    a = as_tensor(a)
    out = backend.get_array_module(a.data).log(a.data)

    def _backward(g):  # d log a = 1/a
        return (g / a.data,)
    return Tensor._make(out, (a,), _backward)


def tanh(a) -> Tensor:
    a = as_tensor(a)
    out = backend.get_array_module(a.data).tanh(a.data)

    def _backward(g):  # d tanh a = 1 - tanh² a
        return (g * (1 - out * out),)
    return Tensor._make(out, (a,), _backward)


def sqrt(a) -> Tensor:
    a = as_tensor(a)
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
    a = as_tensor(a)
    axes = _axes(axis, a.ndim)
    out = a.data.sum(axis=axes, keepdims=keepdims)

    def _backward(g):  # every summed element gets the gradient of the sum
        xp = backend.get_array_module(g)
        return (xp.broadcast_to(_expand(g, a.shape, axes, keepdims), a.shape),)
    return Tensor._make(out, (a,), _backward)


def mean(a, axis=None, keepdims: bool = False) -> Tensor:
    a = as_tensor(a)
    axes = _axes(axis, a.ndim)
    count = int(np.prod([a.shape[i] for i in axes])) if axes else 1
    return sum(a, axes, keepdims) / count


def max(a, axis=None, keepdims: bool = False) -> Tensor:
    """Maximum over axes. The gradient goes to the arg-max; ties share it equally."""
    a = as_tensor(a)
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
    a, b = as_tensors(a, b)
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
        out = backend.gemm(a.data, b.data)
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
        if a.requires_grad:
            ga = unbroadcast(G @ xp.swapaxes(B, -1, -2), A.shape).reshape(a.shape)
        if b.requires_grad:
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
    out = backend.gemm(a2, b.data).reshape(a.shape[:-1] + (m,))

    def _backward(g):
        g2 = g.reshape(-1, m)  # (N, m)
        ga = (g2 @ b.data.T).reshape(a.shape) if a.requires_grad else None  # (N, m) @ (m, k)
        gb = None
        if b.requires_grad and b.data.flags.f_contiguous and not b.data.flags.c_contiguous:
            # b is a transposed view, e.g. the tied output head wteᵀ: build dL/db in the same
            # layout, so its transpose back (the table's gradient) is contiguous and adds fast
            gb = (g2.T @ a2).T  # ((m, N) @ (N, k))ᵀ
        elif b.requires_grad:
            gb = a2.T @ g2  # (k, N) @ (N, m)
        return ga, gb
    return Tensor._make(out, (a, b), _backward)


def clip(a, lo=None, hi=None) -> Tensor:
    """Clamp to [lo, hi]. The gradient passes where lo ≤ a ≤ hi and is zero outside."""
    a = as_tensor(a)
    if lo is None and hi is None:
        raise ValueError("clip needs at least one of lo and hi.")
    lo, hi = (b if b is None or isinstance(b, (int, float, np.generic)) else backend.to_backend(b)
              for b in (lo, hi))  # array bounds, host ones too, as arrays of the backend
    xp = backend.get_array_module(a.data)
    out = xp.clip(a.data, lo, hi)

    def _backward(g):
        inside = xp.ones(out.shape, dtype=bool)  # the output's shape: an array bound may be larger than `a`
        if lo is not None:
            inside &= a.data >= lo
        if hi is not None:
            inside &= a.data <= hi
        return (unbroadcast(g * inside, a.shape),)  # summed back over the axes the bounds added
    return Tensor._make(out, (a,), _backward)


def astype(a, dtype) -> Tensor:
    a = as_tensor(a)

    def _backward(g):
        return (g.astype(a.dtype),)
    return Tensor._make(a.data.astype(dtype), (a,), _backward)


# Python's operators and Tensor's array methods, bound here beside the ops (tensor.py imports no op).
Tensor.__add__, Tensor.__radd__ = add, lambda self, other: add(other, self)
Tensor.__sub__, Tensor.__rsub__ = sub, lambda self, other: sub(other, self)
Tensor.__mul__, Tensor.__rmul__ = mul, lambda self, other: mul(other, self)
Tensor.__truediv__, Tensor.__rtruediv__ = div, lambda self, other: div(other, self)
Tensor.__pow__, Tensor.__rpow__ = pow, lambda self, base: pow(base, self)
Tensor.__matmul__, Tensor.__rmatmul__ = matmul, lambda self, other: matmul(other, self)
Tensor.__neg__ = neg
Tensor.exp, Tensor.log, Tensor.tanh, Tensor.sqrt = exp, log, tanh, sqrt
Tensor.sum, Tensor.mean, Tensor.max = sum, mean, max
Tensor.clip, Tensor.astype = clip, astype
