"""The backend layer's fused kernels against their formulas, in both of their forms.

On every backend the public functions are checked against float64 references written
straight from the docstrings. On the CuPy stand-in the kernels take their GPU path, and
the stand-in runs each ElementwiseKernel's C source as NumPy statements, so a wrong
formula in a GPU kernel fails here on every CI run, not only on a machine with a GPU.
"""

import math
import numpy as np
import pytest

from minirl import backend, kernels

host = backend.to_numpy


def gelu_reference(x):
    u = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    return 0.5 * x * (1 + np.tanh(u))


def gelu_slope_reference(x):
    u = math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)
    du = math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x ** 2)
    return 0.5 * (1 + np.tanh(u)) + 0.5 * x * (1 - np.tanh(u) ** 2) * du


def adamw_reference(p, g, m, v, lr, beta1, beta2, eps, decay, step):
    """Kingma & Ba's update with decoupled decay, written the long way in float64."""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    m_hat, v_hat = m / (1 - beta1 ** step), v / (1 - beta2 ** step)
    return p * decay - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def case(seed=0, shape=(7, 33)):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) * scale for scale in (3.0, 1.0, 0.1, 0.01)]


def test_gelu_kernels_match_the_formula(backend_name):
    x = np.concatenate([case()[0], np.array([[-30.0, -10.2, 0.0, 10.2, 30.0] + [0.5] * 28])])  # exp(-2u) overflows left
    x32 = backend.to_backend(x, dtype=np.float32)
    out, d = (backend.xp().empty_like(x32) for _ in range(2))
    kernels.gelu_forward(x32, out)
    np.testing.assert_allclose(host(out), gelu_reference(x), rtol=2e-6, atol=2e-6)
    g = np.random.default_rng(1).standard_normal(x.shape)
    kernels.gelu_backward(x32, backend.to_backend(g, dtype=np.float32), d)
    np.testing.assert_allclose(host(d), g * gelu_slope_reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("decay", [1.0, 1 - 1e-3 * 0.1])
def test_adamw_kernel_matches_the_long_way(backend_name, decay):
    p, g, m, v = case()
    v = np.abs(v)
    hp = dict(lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8, decay=decay, step=7)
    want = adamw_reference(p, g, m, v, **hp)
    arrays = [backend.to_backend(a, dtype=np.float32) for a in (p, g, m, v)]
    kernels.adamw(*arrays, **hp)
    for got, expected in zip([arrays[0], arrays[2], arrays[3]], want):
        np.testing.assert_allclose(host(got), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-6), (np.float64, 1e-13)])
def test_scaled_softmax_is_c_times_the_softmax(backend_name, dtype, tol):
    x = case(4, (5, 9))[0]
    x[1, :4] = -np.inf  # masked logits get probability 0
    x[2] = -np.inf  # a fully masked row: its shift is the lowest finite float, its sum 1 (as softmax_parts makes them)
    c = np.random.default_rng(5).standard_normal((5, 1))
    shift = np.maximum(x.max(-1, keepdims=True), np.finfo(dtype).min)
    total = np.maximum(np.exp(x - shift).sum(-1, keepdims=True), 1)
    out = backend.xp().empty(x.shape, dtype=dtype)
    kernels.scaled_softmax(*(backend.to_backend(a, dtype=dtype) for a in (x, shift, c / total)), out)
    expected = c * np.exp(x - shift) / total
    np.testing.assert_allclose(host(out), expected, rtol=tol, atol=tol)
    assert (host(out)[1, :4] == 0).all() and (host(out)[2] == 0).all()


def test_every_cuda_kernel_computes_its_formula_in_float64(backend_name):
    """On the stand-in the kernels take their ElementwiseKernel path, whose C source the
    stand-in runs as NumPy: in float64 the formula itself is checked, to round-off."""
    if backend.name() != "cupy":
        pytest.skip("the CUDA source runs only on the cupy backend (the stand-in or a GPU)")
    x, g, m, v = (backend.to_backend(a) for a in case(3))
    out, d = (backend.xp().empty_like(x) for _ in range(2))
    kernels.gelu_forward(x, out)
    np.testing.assert_allclose(host(out), gelu_reference(host(x)), rtol=1e-9, atol=1e-9)  # reference cancels for x ≪ 0
    kernels.gelu_backward(x, g, d)
    np.testing.assert_allclose(host(d), host(g) * gelu_slope_reference(host(x)), rtol=1e-10, atol=1e-14)
    p, v = x.copy(), backend.xp().abs(v)
    hp = dict(lr=3e-4, beta1=0.9, beta2=0.999, eps=1e-8, decay=1 - 3e-4 * 0.01, step=3)
    want = adamw_reference(*(host(a) for a in (p, g, m, v)), **hp)
    kernels.adamw(p, g, m, v, **hp)
    for got, expected in zip((p, m, v), want):
        np.testing.assert_allclose(host(got), expected, rtol=1e-12)
    assert {name for _, name in kernels._compiled} >= {"gelu_forward", "gelu_backward", "adamw"}
