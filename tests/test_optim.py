"""Optimizers against hand-written reference updates, clipping, schedules, and a tiny MLP that learns XOR."""

import math

import numpy as np
import pytest

from minirl import backend, nn, optim
from minirl import functional as F
from minirl.tensor import Tensor


def make_params():
    rng = np.random.default_rng(0)
    return [nn.Parameter(rng.standard_normal((3, 2)), dtype=np.float64),
            nn.Parameter(rng.standard_normal(2), dtype=np.float64)]


def set_grads(params, step):
    for i, p in enumerate(params):
        p.grad = backend.to_backend(np.sin(np.arange(p.size) + step + i).reshape(p.shape))


def test_adamw_matches_reference_update(backend_name):
    params = make_params()
    ref = [p.numpy().copy() for p in params]
    m = [np.zeros_like(r) for r in ref]
    v = [np.zeros_like(r) for r in ref]
    lr, (b1, b2), eps, wd = 0.1, (0.9, 0.95), 1e-8, 0.1
    opt = optim.AdamW(params, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    for t in range(1, 5):
        set_grads(params, t)
        opt.step()
        for i, r in enumerate(ref):
            g = np.sin(np.arange(r.size) + t + i).reshape(r.shape)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            mhat, vhat = m[i] / (1 - b1 ** t), v[i] / (1 - b2 ** t)
            decay = wd * r if r.ndim >= 2 else 0.0  # biases don't decay
            ref[i] = r - lr * (mhat / (np.sqrt(vhat) + eps) + decay)
    for p, r in zip(params, ref):
        np.testing.assert_allclose(p.numpy(), r, rtol=1e-12, atol=1e-12)


def test_sgd_momentum_matches_reference(backend_name):
    params = make_params()
    ref = [p.numpy().copy() for p in params]
    vel = [np.zeros_like(r) for r in ref]
    opt = optim.SGD(params, lr=0.5, momentum=0.9)
    for t in range(3):
        set_grads(params, t)
        opt.step()
        for i in range(2):
            vel[i] = 0.9 * vel[i] + np.sin(np.arange(ref[i].size) + t + i).reshape(ref[i].shape)
            ref[i] = ref[i] - 0.5 * vel[i]
    for p, r in zip(params, ref):
        np.testing.assert_allclose(p.numpy(), r, rtol=1e-12)


def test_state_dict_resume_equals_uninterrupted(backend_name):
    a, b = make_params(), make_params()
    opt_a = optim.AdamW(a, lr=0.05)
    opt_b = optim.AdamW(b, lr=0.05)
    for t in range(3):
        set_grads(a, t), set_grads(b, t)
        opt_a.step(), opt_b.step()
    state = opt_b.state_dict()
    opt_b = optim.AdamW(b, lr=1.0)  # a fresh optimizer, as after a restart
    opt_b.load_state_dict(state)
    assert opt_b.lr == 0.05 and opt_b.step_count == 3
    for t in range(3, 6):
        set_grads(a, t), set_grads(b, t)
        opt_a.step(), opt_b.step()
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy())
    with pytest.raises(ValueError, match="has 2 'exp_avg' buffers but this optimizer has 1"):
        optim.AdamW([a[0]]).load_state_dict(state)


def test_clip_grad_norm_returns_norm_before_clipping():
    params = make_params()
    params[0].grad = np.full((3, 2), 3.0)
    params[1].grad = np.full(2, 4.0)
    norm = optim.clip_grad_norm(params, max_norm=1.0)
    assert norm == pytest.approx(math.sqrt(6 * 9 + 2 * 16))
    after = math.sqrt(sum(float((p.grad ** 2).sum()) for p in params))
    assert after == pytest.approx(1.0, rel=1e-5)
    assert optim.clip_grad_norm(params, max_norm=10.0) == pytest.approx(after)  # below max: untouched
    with pytest.raises(ValueError, match="max_norm must be positive"):
        optim.clip_grad_norm(params, 0.0)


def test_clip_grad_norm_of_float32_gradients_too_large_to_square():
    params = make_params()
    params[0].grad = backend.to_backend(np.full((3, 2), 3e19, np.float32))  # 9e38 per square: past float32's max
    params[1].grad = backend.to_backend(np.full(2, 4e19, np.float32))
    norm = optim.clip_grad_norm(params, max_norm=1.0)
    assert norm == pytest.approx(math.sqrt(6 * 9 + 2 * 16) * 1e19, rel=1e-6)
    after = math.sqrt(sum(float((backend.to_numpy(p.grad).astype(np.float64) ** 2).sum()) for p in params))
    assert after == pytest.approx(1.0, rel=1e-5)


def test_schedules():
    kw = dict(max_lr=1.0, total_steps=110, warmup_steps=10, min_lr=0.1)
    assert optim.warmup_cosine(0, **kw) == pytest.approx(0.1)
    assert optim.warmup_cosine(9, **kw) == pytest.approx(1.0)
    assert optim.warmup_cosine(60, **kw) == pytest.approx(0.55)
    assert optim.warmup_cosine(110, **kw) == pytest.approx(0.1)
    assert optim.warmup_linear(60, **kw) == pytest.approx(0.55)
    assert optim.warmup_linear(35, **kw) == pytest.approx(1.0 - 0.9 * 0.25)
    lrs = [optim.warmup_cosine(s, **kw) for s in range(10, 111)]
    assert all(x >= y for x, y in zip(lrs, lrs[1:]))
    with pytest.raises(ValueError, match="warmup_steps"):
        optim.warmup_cosine(0, max_lr=1.0, total_steps=5, warmup_steps=6)


def test_optimizer_argument_errors():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.AdamW([])
    with pytest.raises(ValueError, match="learning rate must be positive"):
        optim.SGD(make_params(), lr=0)
    with pytest.raises(ValueError, match="betas"):
        optim.AdamW(make_params(), betas=(0.9, 1.0))


class MLP(nn.Module):
    def __init__(self):
        self.fc1 = nn.Linear(2, 16)
        self.fc2 = nn.Linear(16, 2)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


def test_tiny_mlp_learns_xor(backend_name):
    backend.manual_seed(0)
    x = Tensor(np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32))
    y = np.array([0, 1, 1, 0])
    model = MLP()
    opt = optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.0)
    for _ in range(300):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert model(x).numpy().argmax(-1).tolist() == [0, 1, 1, 0]


def test_minimize_step_clips_and_updates():
    p = nn.Parameter(np.array([3.0, 4.0]), dtype=np.float64)
    opt = optim.SGD([p], lr=1.0)
    norm = optim.minimize_step(opt, (p * p).sum() * 0.5, max_grad_norm=1.0)  # gradient = p, norm 5
    assert norm == pytest.approx(5.0)
    np.testing.assert_allclose(p.numpy(), [3.0 - 0.6, 4.0 - 0.8], rtol=1e-5)
    assert optim.minimize_step(opt, p.sum()) is None  # no clipping asked: no norm computed
