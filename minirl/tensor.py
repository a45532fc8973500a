"""The autograd Tensor: an array, its gradient, its parents, and a backward closure.

Each op (in `ops.py` and `functional.py`) computes its output array, then defines
``_backward(g)`` right underneath: given the gradient ``g`` of the loss with respect
to the output, it returns one gradient per parent (or None where a parent needs
none). `Tensor.backward` orders the graph with an iterative depth-first search,
so a chain of 10,000 ops needs no recursion, and sums the gradients of a tensor
that is used more than once.

Only leaf tensors created with ``requires_grad=True`` (parameters, inputs) keep
their ``.grad`` after backward; gradients of intermediate tensors are freed as soon
as they have been passed on, and each op's closure (with the arrays it saved) is
dropped once it has run, which is what keeps training memory flat. So is the
intermediate tensor itself, with its output array, unless the caller still holds it:
memory falls through the backward pass instead of staying at the forward's peak.

Python's operators and the array-style methods (``a + b``, ``a @ w``, ``a.sum(-1)``,
``a[i]``, ``a.reshape(...)``) are bound to Tensor at the end of `ops.py` and
`indexing.py`, next to the ops they call, as HIPS autograd binds them to its ArrayBox.
So this file imports neither and the layers run one way, backend → tensor → ops;
`import minirl` (which any ``import minirl.x`` runs first) loads both, so every
Tensor has its operators.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import numpy as np

from minirl import backend

_grad_enabled = True


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Build no graph inside the block: rollouts, evaluation, optimizer updates."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    return _grad_enabled


def unbroadcast(grad, shape: tuple[int, ...]):
    """Sum `grad` down to `shape`, undoing NumPy broadcasting.

    If ``y = f(x)`` broadcast x from `shape` to ``grad.shape``, each element of x
    was used along the broadcast axes, so its gradient is the sum over them.
    Every broadcasting op routes its gradients through here.
    """
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, n in enumerate(shape) if n == 1 and grad.shape[i + lead] != 1
    )
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


def _as_array(data, dtype=None):
    """Any array-like to an array of the active backend.

    Python floats and lists of floats take the default dtype (float32); arrays keep
    their own dtype, so float64 inputs stay float64 for gradient checks.
    """
    if isinstance(data, Tensor):
        data = data.data
    xp = backend.xp()
    if dtype is not None:
        return backend.to_backend(data, dtype=dtype)
    if backend.get_array_module(data) is xp and hasattr(data, "dtype"):
        return data
    if hasattr(data, "dtype"):  # an array of the other backend, or a NumPy scalar
        return backend.to_backend(data)
    arr = np.asarray(data)
    if arr.dtype.kind == "f" or arr.dtype.kind == "O":
        arr = arr.astype(backend.default_dtype())
    return backend.to_backend(arr)


def _freed_backward(g):
    raise RuntimeError("backward() through a graph that was already used for backward and freed; "
                       "call the first backward with retain_graph=True to go through it twice.")


class Tensor:
    """An n-dimensional array that records how it was computed, for reverse-mode autodiff."""

    __slots__ = ("data", "grad", "requires_grad", "_parents", "_backward", "__weakref__")
    __array_ufunc__ = None  # so `ndarray * Tensor` defers to Tensor.__rmul__ instead of making an object array

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data = _as_array(data, dtype)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents: tuple[Tensor, ...] = ()
        self._backward: Callable | None = None
        if self.requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"only float tensors can require gradients; got dtype {self.data.dtype}. "
                "Cast with .astype(np.float32) first."
            )

    @staticmethod
    def _make(data, parents: Sequence[Tensor], backward: Callable) -> Tensor:
        """Wrap an op's output; record parents and closure only if a gradient can flow."""
        out = Tensor.__new__(Tensor)
        if type(data) is not np.ndarray:  # a full reduction yields a NumPy scalar
            data = backend.get_array_module(data).asarray(data)
        out.data, out.grad = data, None
        out.requires_grad = _grad_enabled and any(p.requires_grad for p in parents)
        out._parents = tuple(parents) if out.requires_grad else ()
        out._backward = backward if out.requires_grad else None
        return out

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        flag = ", requires_grad=True" if self.requires_grad else ""
        body = np.array2string(self.numpy(), precision=4, threshold=20, separator=", ")
        return f"Tensor({body}, shape={self.shape}, dtype={self.dtype}{flag})"

    def numpy(self) -> np.ndarray:
        """A host NumPy copy of the data (a download from the GPU on cupy)."""
        return backend.to_numpy(self.data)

    def item(self) -> float:
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}.")
        return self.data.reshape(-1)[0].item()

    def detach(self) -> Tensor:
        """The same data, cut from the graph: gradients stop here (the sg(·) of MATH.md)."""
        return Tensor(self.data)

    def zero_grad(self) -> None:
        self.grad = None

    def _topological_order(self) -> list[Tensor]:
        """Every tensor this one depends on, parents before children, without recursion.

        The depth-first search keeps an explicit stack of (node, next-parent-index);
        a node is emitted once all its parents are. Parents are a tuple, so the order
        (and hence floating-point summation order) is deterministic.
        """
        order, visited = [], set()
        stack = [(self, 0)]
        while stack:
            node, i = stack.pop()
            if i == 0:
                if id(node) in visited:
                    continue
                visited.add(id(node))
            if i < len(node._parents):
                stack.append((node, i + 1))
                parent = node._parents[i]
                if id(parent) not in visited:
                    stack.append((parent, 0))
            else:
                order.append(node)
        return order

    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into the ``.grad`` of every leaf that requires it.

        `grad` is the upstream gradient; it may be omitted only for a one-element
        tensor such as a loss, where it is 1. The graph's saved arrays are released as
        the pass goes, so memory does not hold two steps' activations at once; pass
        ``retain_graph=True`` to call backward through the same graph again.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the "
                "computation had requires_grad=True, or it ran inside no_grad()."
            )
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() on a non-scalar tensor of shape {self.shape} needs an explicit "
                    "gradient of the same shape: reduce it first (e.g. loss.sum() or .mean()), "
                    "or call backward(grad)."
                )
            grad = backend.xp().ones_like(self.data)
        else:
            grad = _as_array(grad, dtype=self.data.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"backward(grad): grad has shape {grad.shape}, tensor has {self.shape}.")
        grads = {id(self): grad}
        order = self._topological_order()
        while order:  # popped, not iterated: a node that has passed its gradient on is freed at once
            node = order.pop()
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._backward is None:  # a leaf: keep the gradient, in a buffer of its own
                if node.grad is None:
                    node.grad = g.astype(node.data.dtype, copy=True)
                else:
                    node.grad += g
                continue
            for parent, pg in zip(node._parents, node._backward(g)):
                if pg is None or not parent.requires_grad:
                    continue
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg
            if not retain_graph:  # drop the closure (and the arrays it saved) and the parents
                node._parents, node._backward = (), _freed_backward


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """Tensors pass through; anything else is wrapped. A scalar meeting a float tensor
    takes its dtype, so ``x * 0.5`` stays float32 instead of silently becoming float64."""
    if isinstance(x, Tensor):
        return x
    if like is not None and like.dtype.kind == "f" and (np.isscalar(x) or np.ndim(x) == 0):
        return Tensor(backend.xp().asarray(x, dtype=like.dtype))
    return Tensor(x)


def as_tensors(a, b) -> tuple[Tensor, Tensor]:
    """Both operands of a binary op as Tensors, scalars taking the dtype of the other side."""
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    return as_tensor(a, like), as_tensor(b, like)
