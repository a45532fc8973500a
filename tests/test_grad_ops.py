"""Float64 finite-difference checks of every primitive op, over hypothesis-drawn shapes and axes."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minirl import indexing, ops
from minirl.gradcheck import check_grad

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
nonscalar_shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)
pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3)
seeds = st.integers(0, 2**32 - 1)


def normal(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape)


def positive(shape, seed):
    return np.random.default_rng(seed).uniform(0.5, 2.0, size=shape)


def assert_grads(fn, *inputs):
    result = check_grad(fn, inputs)
    assert result.passed, f"max abs err {result.max_abs_err:.3e}, rel {result.max_rel_err:.3e}"


@given(pairs, seeds, st.sampled_from(["add", "sub", "mul"]))
def test_broadcasting_arithmetic(backend_name, shapes_pair, seed, op):
    a_shape, b_shape = shapes_pair.input_shapes
    assert_grads(getattr(ops, op), normal(a_shape, seed), normal(b_shape, seed + 1))


@given(pairs, seeds)
def test_div(backend_name, shapes_pair, seed):
    a_shape, b_shape = shapes_pair.input_shapes
    assert_grads(ops.div, normal(a_shape, seed), positive(b_shape, seed + 1))


@given(pairs, seeds, st.floats(-2.5, 2.5).filter(lambda p: abs(p) > 0.1))
def test_pow(backend_name, shapes_pair, seed, exponent):
    a_shape, b_shape = shapes_pair.input_shapes
    assert_grads(ops.pow, positive(a_shape, seed), normal(b_shape, seed + 1))
    assert_grads(lambda a: a ** exponent, positive(a_shape, seed))


@given(shapes, seeds, st.sampled_from(["neg", "exp", "tanh"]))
def test_unary(backend_name, shape, seed, op):
    assert_grads(getattr(ops, op), normal(shape, seed))


@given(shapes, seeds, st.sampled_from(["log", "sqrt"]))
def test_unary_positive_domain(backend_name, shape, seed, op):
    assert_grads(getattr(ops, op), positive(shape, seed))


@st.composite
def shape_and_axes(draw, min_dims=0):
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=3, min_side=1, max_side=4))
    axis = draw(st.none() | hnp.valid_tuple_axes(len(shape), min_size=1)) if shape else None
    if axis is not None and len(axis) == 1 and draw(st.booleans()):
        axis = axis[0]  # a plain int, sometimes negative
    return shape, axis


@given(shape_and_axes(), st.booleans(), seeds, st.sampled_from(["sum", "mean", "max"]))
def test_reductions(backend_name, shape_axis, keepdims, seed, op):
    shape, axis = shape_axis
    assert_grads(lambda x: getattr(ops, op)(x, axis=axis, keepdims=keepdims), normal(shape, seed))


@st.composite
def matmul_shapes(draw):
    n, k, m = (draw(st.integers(1, 4)) for _ in range(3))
    kind = draw(st.sampled_from(["batched", "vector_left", "vector_right", "dot"]))
    if kind == "dot":
        return (k,), (k,)
    if kind == "vector_left":
        return (k,), draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3)) + (k, m)
    if kind == "vector_right":
        return draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3)) + (n, k), (k,)
    batch = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=2, max_side=3))
    return batch.input_shapes[0] + (n, k), batch.input_shapes[1] + (k, m)


@given(matmul_shapes(), seeds)
def test_matmul(backend_name, ab, seed):
    a_shape, b_shape = ab
    assert_grads(ops.matmul, normal(a_shape, seed), normal(b_shape, seed + 1))


@given(nonscalar_shapes, seeds, st.data())
def test_reshape_and_transpose(backend_name, shape, seed, data):
    size = int(np.prod(shape))
    target = data.draw(st.sampled_from([(size,), (1, size), (size, 1), shape[::-1]]))
    assert_grads(lambda x: indexing.reshape(x, target), normal(shape, seed))
    axes = tuple(data.draw(st.permutations(range(len(shape)))))
    assert_grads(lambda x: indexing.transpose(x, axes), normal(shape, seed))


@given(nonscalar_shapes, seeds, st.data())
def test_getitem_basic_and_repeated_advanced(backend_name, shape, seed, data):
    start = data.draw(st.integers(0, shape[0] - 1))
    assert_grads(lambda x: x[start:], normal(shape, seed))
    assert_grads(lambda x: x[..., -1], normal(shape, seed))
    rows = data.draw(st.lists(st.integers(0, shape[0] - 1), min_size=1, max_size=6))
    assert_grads(lambda x: x[np.array(rows)], normal(shape, seed))


@given(nonscalar_shapes, seeds, st.data())
def test_gather_scatter_adds_repeats(backend_name, shape, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    index_shape = list(shape)
    index_shape[axis] = data.draw(st.integers(1, 5))
    index = np.random.default_rng(seed).integers(0, shape[axis], size=index_shape)
    assert_grads(lambda x: indexing.gather(x, index, axis=axis), normal(shape, seed))


@given(nonscalar_shapes, seeds, st.data(), st.integers(1, 3))
def test_concatenate_and_stack(backend_name, shape, seed, data, count):
    axis = data.draw(st.integers(0, len(shape) - 1))
    sizes = data.draw(st.lists(st.integers(1, 3), min_size=count, max_size=count))
    parts = [normal(shape[:axis] + (n,) + shape[axis + 1:], seed + i) for i, n in enumerate(sizes)]
    assert_grads(lambda *xs: indexing.concatenate(xs, axis=axis), *parts)
    same = [normal(shape, seed + i) for i in range(count)]
    assert_grads(lambda *xs: indexing.stack(xs, axis=axis), *same)


@given(hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3, max_side=3), seeds)
def test_where_and_masked_fill(backend_name, three, seed):
    c_shape, a_shape, b_shape = three.input_shapes
    cond = np.random.default_rng(seed).random(c_shape) < 0.5
    assert_grads(lambda a, b: indexing.where(cond, a, b), normal(a_shape, seed), normal(b_shape, seed + 1))
    full = np.broadcast_shapes(c_shape, a_shape)
    mask = np.random.default_rng(seed).random(full) < 0.5
    assert_grads(lambda a: indexing.masked_fill(a, mask, -3.0), normal(full, seed))


@given(shapes, seeds, st.floats(-1.0, 0.0), st.floats(0.1, 1.0))
def test_clip(backend_name, shape, seed, lo, width):
    # Keep inputs a finite-difference step away from the kinks at lo and hi.
    x = normal(shape, seed)
    x = np.where(np.abs(x - lo) < 1e-3, lo + 0.01, x)
    x = np.where(np.abs(x - lo - width) < 1e-3, lo + width + 0.01, x)
    assert_grads(lambda t: ops.clip(t, lo, lo + width), x)
