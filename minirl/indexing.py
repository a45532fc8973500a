"""Differentiable ops that move, select and combine elements: reshape, transpose,
indexing, gather, concatenate, stack, where.

Their backwards route each gradient element back to where it came from: an
inverse permutation, a scatter-add into the positions read, or a split.
"""

from __future__ import annotations

import numpy as np

from minirl import backend
from minirl.tensor import Tensor, as_tensor, as_tensors, unbroadcast

__all__ = ["reshape", "transpose", "getitem", "gather", "concatenate", "stack", "where", "masked_fill"]


def reshape(a, shape) -> Tensor:
    a = as_tensor(a)
    try:
        out = a.data.reshape(shape)
    except ValueError as e:
        raise ValueError(f"cannot reshape a tensor of shape {a.shape} ({a.size} elements) into {tuple(shape)}.") from e

    def _backward(g):
        return (g.reshape(a.shape),)
    return Tensor._make(out, (a,), _backward)


def transpose(a, axes=None) -> Tensor:
    """Permute axes (reverse them when `axes` is None). The gradient applies the inverse permutation."""
    a = as_tensor(a)
    axes = tuple(range(a.ndim))[::-1] if axes is None else tuple(axes)
    try:
        out = a.data.transpose(axes)
    except (ValueError, TypeError) as e:  # checked only on failure: transpose runs many times a step
        if any(not -a.ndim <= ax < a.ndim for ax in axes):
            raise ValueError(f"transpose axes {axes} are out of range for a tensor with {a.ndim} dimensions.") from e
        raise ValueError(f"transpose axes {axes} are not a permutation of the {a.ndim} axes of shape {a.shape}.") from e

    def _backward(g):
        return (g.transpose(tuple(np.argsort([ax % a.ndim for ax in axes]))),)  # the inverse permutation
    return Tensor._make(out, (a,), _backward)


def _index_data(index):
    """Tensors and arrays used as indices become arrays of the active backend."""
    if isinstance(index, tuple):
        return tuple(_index_data(i) for i in index)
    if isinstance(index, Tensor):
        return index.data
    if hasattr(index, "dtype"):
        return backend.to_backend(index)
    return index


def _check_host_index(shape, index) -> None:
    """Range-check the integer arrays of an advanced index given on the host: CuPy would wrap
    an out-of-range one silently (NumPy raises; minirl raises the same ValueError on both)."""
    parts = [p.data if isinstance(p, Tensor) else p for p in (index if isinstance(index, tuple) else (index,))]
    is_mask = [getattr(p, "dtype", None) == bool for p in parts]
    used = sum(np.ndim(p) if m else 0 if p is None or p is Ellipsis else 1 for p, m in zip(parts, is_mask))
    axis = 0
    for p, mask in zip(parts, is_mask):
        if p is Ellipsis:
            axis += len(shape) - used
        elif mask:
            axis += np.ndim(p)
        elif p is not None:
            if isinstance(p, list) or getattr(p, "dtype", None) is not None and p.dtype.kind in "iu":
                n = shape[axis]
                backend.check_range(p, -n, n, f"index {{bad}} is out of range for axis {axis} of size {n}.")
            axis += 1


def getitem(a, index) -> Tensor:
    """Basic and advanced indexing. The gradient scatter-adds, so repeated indices accumulate."""
    a = as_tensor(a)
    if not _is_basic(index):
        _check_host_index(a.shape, index)
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
    a = as_tensor(a)
    axis = axis % a.ndim
    n = a.shape[axis]
    backend.check_range(index.data if isinstance(index, Tensor) else index, -n, n,
                        f"gather: index {{bad}} is out of range for axis {axis} of size {n}.")
    index = _index_data(index)
    xp = backend.get_array_module(a.data)
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
    tensors = [as_tensor(t) for t in tensors]
    xp = backend.get_array_module(tensors[0].data)
    out = xp.concatenate([t.data for t in tensors], axis=axis)
    bounds = np.cumsum([t.shape[axis] for t in tensors])[:-1].tolist()

    def _backward(g):
        return tuple(xp.split(g, bounds, axis=axis))
    return Tensor._make(out, tensors, _backward)


def stack(tensors, axis: int = 0) -> Tensor:
    tensors = [as_tensor(t) for t in tensors]
    xp = backend.get_array_module(tensors[0].data)
    out = xp.stack([t.data for t in tensors], axis=axis)

    def _backward(g):
        return tuple(xp.moveaxis(g, axis, 0))
    return Tensor._make(out, tensors, _backward)


def where(condition, a, b) -> Tensor:
    """Pick `a` where `condition` is true, else `b`; each gets the gradient only where it was picked."""
    a, b = as_tensors(a, b)
    cond = _index_data(condition)
    xp = backend.get_array_module(a.data, b.data)
    if not hasattr(cond, "dtype"):  # a Python bool or list: CuPy's where needs an array (it calls .astype)
        cond = xp.asarray(cond, dtype=bool)
    out = xp.where(cond, a.data, b.data)

    def _backward(g):
        zero = xp.zeros((), dtype=g.dtype)
        return (unbroadcast(xp.where(cond, g, zero), a.shape) if a.requires_grad else None,
                unbroadcast(xp.where(cond, zero, g), b.shape) if b.requires_grad else None)
    return Tensor._make(out, (a, b), _backward)


def masked_fill(a, mask, value: float) -> Tensor:
    """`a` with `value` wherever `mask` is true (e.g. -inf above the causal diagonal)."""
    a = as_tensor(a)
    return where(mask, as_tensor(value, a), a)


def _shape_args(args):
    """``t.reshape(2, 3)`` and ``t.reshape((2, 3))`` alike, as NumPy takes them."""
    return args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args


# Tensor's indexing and shape methods, bound here beside the ops (tensor.py imports no op).
Tensor.__getitem__ = getitem
Tensor.reshape = lambda self, *shape: reshape(self, _shape_args(shape))
Tensor.transpose = Tensor.permute = lambda self, *axes: transpose(self, _shape_args(axes) or None)
Tensor.T = property(lambda self: transpose(self, None))
Tensor.masked_fill = masked_fill
