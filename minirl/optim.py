"""Optimizers (SGD, AdamW), gradient clipping, and learning-rate schedules.

Updates run in place on the parameter arrays, outside the graph.
"""

from __future__ import annotations

import math

from minirl import backend, kernels


class Optimizer:
    """Holds the parameter list and the learning rate; `lr` may be set every step by a schedule."""

    def __init__(self, params, lr: float):
        self.params = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list; pass model.parameters().")
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}.")
        self.lr = lr
        self.step_count = 0

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _state_arrays(self) -> dict[str, list]:
        return {}

    def _hparams(self) -> dict:
        return {"lr": self.lr}

    def state_dict(self) -> dict:
        """``{"step", "hparams", <buffer name>: [one array per parameter]}``, host NumPy copies."""
        state = {"step": self.step_count, "hparams": dict(self._hparams())}
        for key, arrays in self._state_arrays().items():
            state[key] = [backend.to_numpy(a).copy() for a in arrays]
        return state

    def check_state_dict(self, state: dict) -> None:
        """Raise a clear ValueError if `state` cannot be loaded into this optimizer; change nothing."""
        for key, arrays in self._state_arrays().items():
            if key not in state:
                raise ValueError(f"optimizer state has no {key!r} buffers; was it saved by {type(self).__name__}?")
            if len(state[key]) != len(self.params):
                raise ValueError(f"optimizer state has {len(state[key])} {key!r} buffers "
                                 f"but this optimizer has {len(self.params)} parameters.")
            for i, (a, p) in enumerate(zip(state[key], self.params)):
                if tuple(a.shape) != p.shape:
                    raise ValueError(f"optimizer state {key}[{i}] has shape {tuple(a.shape)}, parameter has {p.shape}.")

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict` output; buffer counts and shapes must match the parameters."""
        self.check_state_dict(state)
        for key, arrays in self._state_arrays().items():
            for i, a in enumerate(state[key]):
                arrays[i][...] = backend.to_backend(a, dtype=arrays[i].dtype)
        self.step_count = int(state["step"])
        for k, v in state["hparams"].items():
            setattr(self, k, v)


class SGD(Optimizer):
    """``v ← μ v + g;  θ ← θ - lr · v`` (plain gradient descent when momentum μ = 0)."""

    def __init__(self, params, lr: float = 1e-2, momentum: float = 0.0):
        super().__init__(params, lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}.")
        self.momentum = momentum
        self.velocity = [backend.get_array_module(p.data).zeros_like(p.data) for p in self.params]

    def _state_arrays(self):
        return {"velocity": self.velocity}

    def _hparams(self):
        return {"lr": self.lr, "momentum": self.momentum}

    def step(self) -> None:
        self.step_count += 1
        for p, v in zip(self.params, self.velocity):
            if p.grad is None:
                continue
            if self.momentum:
                v *= self.momentum
                v += p.grad
                p.data -= self.lr * v
            else:
                p.data -= self.lr * p.grad


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Kingma & Ba 2015; Loshchilov & Hutter 2019).

    ``m ← β1 m + (1-β1) g``, ``v ← β2 v + (1-β2) g²``,
    ``θ ← θ - lr·(m̂ / (√v̂ + eps) + λθ)`` with ``m̂ = m/(1-β1^t)``, ``v̂ = v/(1-β2^t)``.

    As in nanoGPT, only parameters with ndim ≥ 2 (matmul weights, embeddings) decay;
    biases and layer-norm gains don't.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params, lr)
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must each be in [0, 1), got {betas}.")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay
        self.exp_avg = [backend.get_array_module(p.data).zeros_like(p.data) for p in self.params]
        self.exp_avg_sq = [backend.get_array_module(p.data).zeros_like(p.data) for p in self.params]

    def _state_arrays(self):
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}

    def _hparams(self):
        return {"lr": self.lr, "betas": list(self.betas), "eps": self.eps, "weight_decay": self.weight_decay}

    def step(self) -> None:
        self.step_count += 1
        beta1, beta2 = self.betas
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if p.grad is None:
                continue
            decay = 1.0 - self.lr * self.weight_decay if self.weight_decay and p.ndim >= 2 else 1.0
            kernels.adamw(p.data, p.grad, m, v, lr=self.lr, beta1=beta1, beta2=beta2, eps=self.eps, decay=decay,
                          step=self.step_count)  # one fused kernel per parameter on a GPU

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.betas = tuple(self.betas)


def minimize_step(optimizer: Optimizer, loss, max_grad_norm: float = 0.0) -> float | None:
    """One optimisation step on `loss`: zero the gradients, backward, clip the global norm to
    `max_grad_norm` (when > 0), update. Returns the norm before clipping as a float (None without
    clipping): the one value it reads back from the device."""
    optimizer.zero_grad()
    loss.backward()
    norm = clip_grad_norm(optimizer.params, max_grad_norm) if max_grad_norm > 0 else None
    optimizer.step()
    return float(norm) if norm is not None else None


def clip_grad_norm(params, max_norm: float):
    """Scale all gradients by ``min(1, max_norm / ‖g‖)``, with ‖g‖ the global L2 norm.

    Returns the norm before clipping, which is worth logging (a spike flags a bad batch), as
    a 0-d float64 array on the gradients' device: ``float(norm)`` when it is logged. Nothing
    here waits for a GPU. Each gradient's ``Σ g²`` comes from `backend.sum_of_squares` (one
    BLAS dot product on NumPy, good to ~1e-5 relative in float32 at a million elements).
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}.")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return backend.xp().zeros((), dtype="float64")
    xp = backend.get_array_module(grads[0])
    total = xp.sqrt(backend.sum_of_squares(grads))
    scale = xp.where(total > max_norm, max_norm / (total + 1e-6), 1.0)  # 1 multiplies every bit back unchanged
    for g in grads:
        g *= scale.astype(g.dtype)
    return total


def _check_schedule(step: int, total_steps: int, warmup_steps: int) -> None:
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}.")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}.")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}.")


def _warmup_then_decay(step, max_lr, total_steps, warmup_steps, min_lr, decay) -> float:
    """Linear warmup over `warmup_steps`, then ``min_lr + (max_lr - min_lr)·decay(progress)``
    with progress going 0 -> 1 until `total_steps`, and min_lr after."""
    _check_schedule(step, total_steps, warmup_steps)
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + (max_lr - min_lr) * decay(progress)


def warmup_cosine(step: int, *, max_lr: float, total_steps: int, warmup_steps: int = 0,
                  min_lr: float = 0.0) -> float:
    """Linear warmup from 0 to max_lr, then a cosine decay to min_lr at total_steps (held after)."""
    return _warmup_then_decay(step, max_lr, total_steps, warmup_steps, min_lr,
                              lambda p: 0.5 * (1.0 + math.cos(math.pi * p)))


def warmup_linear(step: int, *, max_lr: float, total_steps: int, warmup_steps: int = 0,
                  min_lr: float = 0.0) -> float:
    """Linear warmup from 0 to max_lr, then a straight line down to min_lr at total_steps."""
    return _warmup_then_decay(step, max_lr, total_steps, warmup_steps, min_lr, lambda p: 1.0 - p)
