"""Modules: containers of Parameters, with state dicts and train/eval modes.

A Module finds its parameters by walking its attributes in the order they were
assigned (Parameters, sub-Modules, and lists or tuples of Modules), so names
such as ``h.0.attn.c_attn.weight`` are stable and need no registration calls.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from minirl import backend
from minirl import functional as F
from minirl.tensor import Tensor


class Parameter(Tensor):
    """A leaf Tensor that an optimizer updates. Created on the active backend with the default dtype."""

    __slots__ = ()

    def __init__(self, data, dtype=None):
        super().__init__(data, requires_grad=True, dtype=dtype or backend.default_dtype())
        self.data = self.data.copy()  # own the buffer: optimizer steps must not write into the caller's array


def _normal(shape, std: float) -> Parameter:
    """Draw on the host generator, so initial weights are identical on NumPy and CuPy."""
    return Parameter(backend.host_rng().normal(0.0, std, size=shape))


def _uniform(shape, bound: float) -> Parameter:
    return Parameter(backend.host_rng().uniform(-bound, bound, size=shape))


class Module:
    """Base class. Subclasses assign Parameters and Modules as attributes and define `forward`."""

    training: bool = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward().")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def _children(self) -> Iterator[tuple[str, object]]:
        for key, value in vars(self).items():
            if isinstance(value, (Parameter, Module)):
                yield key, value
            elif isinstance(value, (list, tuple)) and value and all(isinstance(m, Module) for m in value):
                for i, m in enumerate(value):
                    yield f"{key}.{i}", m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter) pairs, each parameter once, in assignment order."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            path, module = stack.pop()
            children = list(module._children())
            for key, value in reversed(children):  # reversed, so the stack pops them in order
                name = f"{path}.{key}" if path else key
                if isinstance(value, Module):
                    stack.append((name, value))
            for key, value in children:
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{path}.{key}" if path else key), value

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def modules(self) -> Iterator[Module]:
        stack = [self]
        while stack:
            module = stack.pop()
            yield module
            stack.extend(m for _, m in reversed(list(module._children())) if isinstance(m, Module))

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> Module:
        """Training mode: dropout active. Returns self, for chaining."""
        for m in self.modules():
            m.training = mode
        return self

    def eval(self) -> Module:
        """Evaluation mode: dropout off (RL forward passes need this for ρ ≡ 1 at the first step)."""
        return self.train(False)

    def state_dict(self) -> dict:
        """{name: array copy} of every parameter, on the active backend."""
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays (either backend, any float dtype) into the parameters.

        Every problem is collected first and reported together: missing keys, unexpected
        keys (when `strict`), and shape mismatches. Nothing is modified if any is found.
        """
        params = dict(self.named_parameters())
        missing = sorted(set(params) - set(state))
        unexpected = sorted(set(state) - set(params))
        mismatched = [f"{k}: checkpoint {tuple(np.shape(state[k]))} vs model {params[k].shape}"
                      for k in params if k in state and tuple(np.shape(state[k])) != params[k].shape]
        problems = []
        if missing and strict:
            problems.append(f"missing keys: {', '.join(missing)}")
        if unexpected and strict:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        if mismatched:
            problems.append("shape mismatches: " + "; ".join(mismatched))
        if problems:
            raise ValueError(f"cannot load state dict into {type(self).__name__}: " + ". ".join(problems)
                             + ". Was it saved from a model with a different config?")
        for k, p in params.items():
            if k in state:
                p.data = backend.to_backend(state[k], dtype=p.dtype).copy()  # never alias the caller's arrays


class Linear(Module):
    """``y = x @ weight + bias``: (..., in_features) -> (..., out_features).

    The weight is stored (in, out), as in picoGPT, so the forward is one matmul
    with no transpose. Default init U(±1/√in), as in PyTorch; with `std` given,
    weight ~ N(0, std²) and bias = 0, as in GPT-2.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, std: float | None = None):
        if std is None:
            bound = 1.0 / math.sqrt(in_features)
            self.weight = _uniform((in_features, out_features), bound)
            self.bias = _uniform((out_features,), bound) if bias else None
        else:
            self.weight = _normal((in_features, out_features), std)
            self.bias = Parameter(np.zeros(out_features)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)  # (..., in), (in, out) -> (..., out)


class Embedding(Module):
    """A lookup table: integer ids (...) -> vectors (..., embedding_dim). Init N(0, 1)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, std: float = 1.0):
        self.weight = _normal((num_embeddings, embedding_dim), std)

    def forward(self, ids):
        return F.embedding(self.weight, ids)


class LayerNorm(Module):
    """Layer normalisation over the last axis, with a learned gain (ones) and bias (zeros)."""

    def __init__(self, normalized_shape: int, eps: float = 1e-5, bias: bool = True):
        self.weight = Parameter(np.ones(normalized_shape))
        self.bias = Parameter(np.zeros(normalized_shape)) if bias else None
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, self.weight, self.bias, self.eps)


class Dropout(Module):
    """Inverted dropout with probability p; the identity in eval mode."""

    def __init__(self, p: float = 0.1):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout probability must be in [0, 1), got {p}.")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)


def parameters_to_vector(parameters) -> object:
    """Concatenate parameters into one flat array (the θ of TRPO's conjugate gradient)."""
    xp = backend.xp()
    return xp.concatenate([p.data.reshape(-1) for p in parameters])


def vector_to_parameters(vector, parameters) -> None:
    """Write a flat array back into the parameters, in the order of `parameters`."""
    parameters = list(parameters)
    total = sum(p.size for p in parameters)
    if vector.shape != (total,):
        raise ValueError(f"vector has shape {vector.shape}, but the parameters hold {total} values.")
    offset = 0
    for p in parameters:
        p.data = vector[offset:offset + p.size].reshape(p.shape).astype(p.dtype)
        offset += p.size
