"""The engine itself: graph order, accumulation, no_grad, detach, broadcasting, and its errors."""

import weakref

import numpy as np
import pytest

from minirl import indexing
from minirl.backend import to_numpy
from minirl.tensor import Tensor, no_grad, unbroadcast


def test_ten_thousand_op_chain_needs_no_recursion(backend_name):
    x = Tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(to_numpy(x.grad), [1.0001 ** 10_000], rtol=1e-9)


def test_gradient_accumulates_over_every_use(backend_name):
    x = Tensor(np.array([2.0, -1.0]), requires_grad=True)
    y = x * x + x * 3.0 + x.exp().sum()  # uses x four times
    y.sum().backward()
    a = x.numpy()
    np.testing.assert_allclose(to_numpy(x.grad), 2 * a + 3 + 2 * np.exp(a))
    y2 = (x * 2.0).sum()
    y2.backward()  # a second backward adds to .grad, as in PyTorch
    np.testing.assert_allclose(to_numpy(x.grad), 2 * a + 3 + 2 * np.exp(a) + 2)


def test_diamond_graph_counts_each_path_once(backend_name):
    x = Tensor(np.array(3.0), requires_grad=True)
    a = x * 2.0
    b = a + a  # a reached twice from b
    c = b * a
    c.backward()
    # c = (2·2x)·(2x) = 8x², dc/dx = 16x
    assert to_numpy(x.grad) == pytest.approx(48.0)


def test_leaf_gradients_do_not_alias(backend_name):
    x = Tensor(np.ones(3), requires_grad=True)
    y = Tensor(np.ones(3), requires_grad=True)
    (x + y).sum().backward()
    x.grad *= 10  # in-place edits (e.g. grad clipping) must not leak into y.grad
    np.testing.assert_array_equal(to_numpy(y.grad), np.ones(3))


def test_no_grad_builds_no_graph_and_detach_cuts_it(backend_name):
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = x * 2.0
    assert not y.requires_grad and y._parents == () and y._backward is None
    z = (x * 2.0).detach() * x
    z.sum().backward()
    np.testing.assert_array_equal(to_numpy(x.grad), [2.0, 2.0, 2.0])  # only the direct use of x counts


def test_backward_errors_explain_what_to_do(backend_name):
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"non-scalar tensor of shape \(2, 3\).*loss.sum\(\)"):
        (x * 2.0).backward()
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(np.ones(2)).sum().backward()
    with pytest.raises(ValueError, match=r"grad has shape \(3,\)"):
        (x * 2.0).backward(np.ones(3))
    (x * 2.0).backward(np.ones((2, 3)))  # an explicit gradient of the right shape is fine
    np.testing.assert_array_equal(to_numpy(x.grad), np.full((2, 3), 2.0))


def test_matmul_mismatch_names_both_shapes(backend_name):
    a, b = Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"\(2, 3\) @ \(4, 5\)"):
        a @ b
    with pytest.raises(ValueError, match=r"batch dims do not broadcast: \(2, 3, 4\) @ \(5, 4, 2\)"):
        Tensor(np.ones((2, 3, 4))) @ Tensor(np.ones((5, 4, 2)))


def test_shape_errors_are_clear(backend_name):
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 3\) \(6 elements\) into \(4, 2\)"):
        x.reshape(4, 2)
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        x.sum(axis=2)
    with pytest.raises(ValueError, match="not a permutation"):
        x.transpose(0, 0)
    with pytest.raises(TypeError, match="only float tensors can require gradients"):
        Tensor(np.arange(3), requires_grad=True)


def test_unbroadcast_sums_stretched_axes():
    g = np.ones((4, 2, 3))
    assert unbroadcast(g, (2, 3)).tolist() == np.full((2, 3), 4.0).tolist()
    assert unbroadcast(g, (2, 1)).shape == (2, 1) and unbroadcast(g, (2, 1))[0, 0] == 12.0
    assert unbroadcast(g, ()).item() == 24.0


def test_python_scalars_keep_the_tensor_dtype(backend_name):
    x = Tensor(np.ones(3, dtype=np.float32))
    assert (x * 2.0).dtype == np.float32 and (1.0 - x).dtype == np.float32 and (x ** 2).dtype == np.float32
    assert Tensor([1.0, 2.0]).dtype == np.float32  # lists take the default dtype
    assert Tensor(np.ones(2)).dtype == np.float64  # arrays keep theirs (float64 for grad checks)
    assert Tensor([1, 2]).dtype.kind == "i"


def test_operators_and_methods_agree_with_numpy(backend_name):
    a = np.random.default_rng(0).uniform(0.5, 2, size=(3, 4))
    t = Tensor(a)
    np.testing.assert_allclose((2.0 / t).numpy(), 2.0 / a)
    np.testing.assert_allclose((2.0 ** t).numpy(), 2.0 ** a)
    np.testing.assert_allclose((-t + 1).numpy(), 1 - a)
    np.testing.assert_allclose(t.T.numpy(), a.T)
    np.testing.assert_allclose(t.max(axis=0).numpy(), a.max(axis=0))
    np.testing.assert_allclose(t.mean(axis=(0, 1), keepdims=True).numpy(), a.mean(axis=(0, 1), keepdims=True))
    np.testing.assert_allclose(t.clip(0.8, 1.2).numpy(), a.clip(0.8, 1.2))
    np.testing.assert_allclose(indexing.stack([t, t], axis=-1).numpy(), np.stack([a, a], axis=-1))
    assert "requires_grad=True" in repr(Tensor(a, requires_grad=True)) and "shape=(3, 4)" in repr(t)
    assert t.sum().item() == pytest.approx(a.sum())


def test_backward_frees_the_graph_unless_retained(backend_name):
    x = Tensor(np.ones(3), requires_grad=True)
    y = (x * 2.0).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()
    z = (x * 3.0).sum()
    z.backward(retain_graph=True)
    z.backward()
    np.testing.assert_array_equal(to_numpy(x.grad), [2.0 + 6.0] * 3)


def test_backward_releases_each_intermediate_once_it_has_passed_its_gradient_on(backend_name):
    x = Tensor(np.ones(3), requires_grad=True)
    seen = []

    def probe_backward(g):  # runs last: every tensor above the probe has had its turn
        seen.append([ref() is None for ref in refs])
        return (g,)
    probe = Tensor._make(x.data * 1.0, (x,), probe_backward)
    y = probe.exp()
    z = y.exp()
    loss = z.sum()
    refs = [weakref.ref(y), weakref.ref(z)]
    del probe, y, z  # only the graph holds them now
    loss.backward()
    assert seen == [[True, True]]  # freed during the pass, not when it ends
    np.testing.assert_allclose(to_numpy(x.grad), np.exp(np.exp(1.0)) * np.exp(1.0))


def test_integer_tensors_meet_floats_without_truncation():
    assert (Tensor([1, 2, 3]) * 0.5).numpy().tolist() == [0.5, 1.0, 1.5]
    assert (Tensor(np.ones(2, dtype=np.float32)) * np.array(2.0)).dtype == np.float32


def test_more_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"transpose axes \(0, 3\) are out of range"):
        Tensor(np.ones((2, 3))).transpose(0, 3)
    with pytest.raises(ValueError, match="index shape .* must match"):
        indexing.gather(Tensor(np.ones((2, 3))), np.zeros((1, 2), dtype=int), axis=1)
