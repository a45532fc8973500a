"""Every op's forward value against an independent NumPy formula.

The finite-difference checks prove only that an op's backward matches its own forward:
a forward that computes the wrong thing (masked_fill filling the complement of its mask)
passes them. This table pins each op's value, and a test fails when an op is added to
an ``__all__`` without a row here.
"""

import numpy as np
import pytest

from minirl import backend, indexing, ops
from minirl import functional as F
from minirl.tensor import Tensor
from tests.test_forward import naive_attention, ref_log_softmax

MASK = np.array([[True, False, False, True], [False, False, True, False], [True, True, False, False]])  # (3, 4)
IDS = np.array([[4, 0, 0, 2, 1, 4], [3, 3, 1, 0, 2, 2], [0, 1, 2, 3, 4, 0]])  # (3, 6), ids into 5 columns
TARGETS = np.array([[1, 4, 0], [2, 2, 3]])  # (2, 3)
TOKEN_MASK = np.array([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # (2, 3)
KEY_MASK = np.array([[False, True, True, True, True], [True, True, True, True, False]])  # (2, 5)


def ref_cross_entropy(logits, targets, mask):
    nll = -np.take_along_axis(ref_log_softmax(logits), targets[..., None], -1)[..., 0]
    return (nll * mask).sum() / mask.sum()


def ref_layer_norm(x, w, b):
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b


def ref_dropout(x):
    keep = backend.to_numpy(backend.rng(0).random(x.shape)) >= 0.3  # the same draws as the op's rng
    return np.where(keep, x / 0.7, 0.0)


# (op name, minirl on Tensors, NumPy on arrays, input shapes, inputs positive)
CASES = [
    ("add", ops.add, np.add, [(3, 1, 4), (2, 4)], False),
    ("sub", ops.sub, np.subtract, [(3, 4), (4,)], False),
    ("mul", ops.mul, np.multiply, [(2, 3, 4), (3, 1)], False),
    ("div", ops.div, np.divide, [(3, 4), (1, 4)], True),
    ("pow", ops.pow, np.power, [(3, 4), (3, 4)], True),
    ("neg", ops.neg, np.negative, [(2, 3)], False),
    ("exp", ops.exp, np.exp, [(2, 3)], False),
    ("log", ops.log, np.log, [(2, 3)], True),
    ("tanh", ops.tanh, np.tanh, [(2, 3)], False),
    ("sqrt", ops.sqrt, np.sqrt, [(2, 3)], True),
    ("sum", lambda x: ops.sum(x, axis=(0, 2), keepdims=True), lambda x: x.sum(axis=(0, 2), keepdims=True),
     [(2, 3, 4)], False),
    ("sum", ops.sum, np.sum, [(2, 3)], False),
    ("mean", lambda x: ops.mean(x, axis=1), lambda x: x.mean(axis=1), [(2, 3, 4)], False),
    ("max", lambda x: ops.max(x, axis=-1), lambda x: x.max(axis=-1), [(3, 5)], False),
    ("max", lambda x: ops.max(x, axis=0, keepdims=True), lambda x: x.max(axis=0, keepdims=True), [(3, 5)], False),
    ("matmul", ops.matmul, np.matmul, [(2, 1, 3, 4), (3, 4, 5)], False),
    ("matmul", ops.matmul, np.matmul, [(4,), (4, 3)], False),
    ("matmul", ops.matmul, np.matmul, [(5, 4), (4,)], False),
    ("clip", lambda x: ops.clip(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), [(4, 5)], False),
    ("clip", lambda x: ops.clip(x, lo=0.2), lambda x: np.maximum(x, 0.2), [(4, 5)], False),
    ("astype", lambda x: ops.astype(x, np.float32), lambda x: x.astype(np.float32), [(2, 3)], False),
    ("reshape", lambda x: indexing.reshape(x, (4, 6)), lambda x: x.reshape(4, 6), [(2, 3, 4)], False),
    ("transpose", lambda x: indexing.transpose(x, (2, 0, 1)), lambda x: x.transpose(2, 0, 1), [(2, 3, 4)], False),
    ("getitem", lambda x: x[[0, 2, 0], 1:], lambda x: x[[0, 2, 0], 1:], [(3, 4)], False),
    ("getitem", lambda x: x[1, ::2], lambda x: x[1, ::2], [(3, 4)], False),
    ("gather", lambda x: indexing.gather(x, IDS, axis=-1), lambda x: np.take_along_axis(x, IDS, -1), [(3, 5)], False),
    ("concatenate", lambda a, b: indexing.concatenate([a, b], axis=1), lambda a, b: np.concatenate([a, b], 1),
     [(2, 3), (2, 2)], False),
    ("stack", lambda a, b: indexing.stack([a, b], axis=1), lambda a, b: np.stack([a, b], 1), [(2, 3), (2, 3)], False),
    ("where", lambda a, b: indexing.where(MASK, a, b), lambda a, b: np.where(MASK, a, b), [(3, 4), (4,)], False),
    ("masked_fill", lambda x: indexing.masked_fill(x, MASK, -7.0), lambda x: np.where(MASK, -7.0, x), [(3, 4)], False),
    ("log_softmax", lambda x: F.log_softmax(x, axis=0), lambda x: ref_log_softmax(x, 0), [(3, 5)], False),
    ("softmax", F.softmax, lambda x: np.exp(ref_log_softmax(x)), [(3, 5)], False),
    ("cross_entropy", lambda x: F.cross_entropy(x, TARGETS, mask=TOKEN_MASK),
     lambda x: ref_cross_entropy(x, TARGETS, TOKEN_MASK), [(2, 3, 5)], False),
    ("entropy", F.entropy, lambda x: -(np.exp(ref_log_softmax(x)) * ref_log_softmax(x)).sum(-1), [(2, 3, 5)], False),
    ("linear", F.linear, lambda x, w, b: x @ w + b, [(2, 3, 4), (4, 5), (5,)], False),
    ("layer_norm", F.layer_norm, ref_layer_norm, [(2, 3, 6), (6,), (6,)], False),
    ("gelu", F.gelu, lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))), [(3, 4)], False),
    ("embedding", lambda w: F.embedding(w, IDS[:2, :4]), lambda w: w[IDS[:2, :4]], [(5, 3)], False),
    ("scaled_dot_product_attention", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, key_mask=KEY_MASK),
     lambda q, k, v: naive_attention(q, k, v, True, KEY_MASK), [(2, 2, 3, 4), (2, 2, 5, 4), (2, 2, 5, 4)], False),
    ("attention_qkv", lambda x: F.attention_qkv(x, causal=False), lambda x: naive_attention(*x, False, None),
     [(3, 2, 2, 4, 3)], False),
    ("log_sigmoid", F.log_sigmoid, lambda x: -np.log1p(np.exp(-x)), [(3, 4)], False),
    ("dropout", lambda x: F.dropout(x, 0.3, training=True, rng=backend.rng(0)), ref_dropout, [(6, 7)], False),
]


def test_every_public_op_has_a_forward_reference():
    public = set(ops.__all__) | set(indexing.__all__) | set(F.__all__)
    assert public == {name for name, *_ in CASES}


@pytest.mark.parametrize("name, op, reference, shapes, positive", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_forward_value_matches_numpy(backend_name, name, op, reference, shapes, positive):
    rng = np.random.default_rng(7)
    inputs = [rng.uniform(0.5, 2.0, s) if positive else rng.standard_normal(s) * 2 for s in shapes]
    got = op(*[Tensor(backend.to_backend(x)) for x in inputs])
    expected = np.asarray(reference(*inputs))
    assert got.shape == expected.shape, name
    assert got.dtype == expected.dtype, name
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12, err_msg=name)
