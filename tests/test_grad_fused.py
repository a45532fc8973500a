"""Float64 finite-difference checks of the fused ops, over hypothesis-drawn shapes, axes and masks.

Every array is split across three threads (backend.parallel_rows), however small, so the
row-parallel kernels are what gets checked."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minirl import backend
from minirl import functional as F
from tests.test_grad_ops import assert_grads, normal, seeds



@pytest.fixture(autouse=True)
def _split_rows_across_threads(monkeypatch):
    monkeypatch.setattr(backend, "PARALLEL_MIN_SIZE", 1)
    previous = backend.num_threads()
    backend.set_num_threads(3)
    yield
    backend.set_num_threads(previous)


shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)


@given(shapes, seeds, st.data(), st.sampled_from([F.log_softmax, F.softmax]))
def test_softmax_family(backend_name, shape, seed, data, op):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    assert_grads(lambda x: op(x, axis=axis), 3 * normal(shape, seed))


@given(hnp.array_shapes(min_dims=1, max_dims=2, max_side=4), st.integers(1, 6), seeds,
       st.sampled_from(["mean", "sum", "none"]), st.booleans(), st.booleans())
def test_cross_entropy(backend_name, lead, vocab, seed, reduction, use_mask, use_ignore):
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, vocab, size=lead)
    mask = (rng.random(lead) < 0.7).astype(np.float64) if use_mask else None
    ignore = int(targets.reshape(-1)[0]) if use_ignore else None
    assert_grads(lambda x: F.cross_entropy(x, targets, mask=mask, ignore_index=ignore, reduction=reduction),
                 normal(lead + (vocab,), seed))


@given(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5), seeds, st.integers(1, 40), st.booleans())
def test_entropy(backend_name, shape, seed, chunk, masked):
    """Chunks of rows as small as one row; with `masked`, some logits are -inf (probability 0)."""
    x = 3 * normal(shape, seed)
    if masked and shape[-1] > 1:
        x[..., 0] = -np.inf  # every row keeps its other logits
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(F, "CHUNK_SIZE", chunk)
        assert_grads(F.entropy, x)


@given(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5), seeds, st.booleans())
def test_layer_norm(backend_name, shape, seed, affine):
    C = shape[-1]
    x = normal(shape, seed) * 2 + 1
    if affine:
        assert_grads(F.layer_norm, x, normal((C,), seed + 1), normal((C,), seed + 2))
    else:
        assert_grads(F.layer_norm, x)


@given(shapes, seeds)
def test_gelu(backend_name, shape, seed):
    assert_grads(F.gelu, 2 * normal(shape, seed))


@given(st.integers(1, 6), st.integers(1, 4), hnp.array_shapes(min_dims=1, max_dims=2, max_side=5), seeds)
def test_embedding_accumulates_repeated_ids(backend_name, vocab, dim, ids_shape, seed):
    ids = np.random.default_rng(seed).integers(0, vocab, size=ids_shape)
    assert_grads(lambda w: F.embedding(w, ids), normal((vocab, dim), seed))


@st.composite
def attention_case(draw):
    B, nh, hs = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 3))
    Tk = draw(st.integers(1, 5))
    Tq = draw(st.integers(1, Tk))  # Tq < Tk is the KV-cache case
    causal = draw(st.booleans())
    key_mask = draw(st.none() | hnp.arrays(bool, (B, Tk)))
    return (B, nh, Tq, hs), (B, nh, Tk, hs), causal, key_mask


@given(attention_case(), seeds)
def test_attention(backend_name, case, seed):
    q_shape, kv_shape, causal, key_mask = case
    assert_grads(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, causal=causal, key_mask=key_mask),
                 normal(q_shape, seed), normal(kv_shape, seed + 1), normal(kv_shape, seed + 2))


@given(attention_case(), seeds)
def test_attention_on_stacked_qkv(backend_name, case, seed):
    (B, nh, _, hs), (_, _, T, _), causal, key_mask = case
    stacked = lambda x: F.attention_qkv(x.transpose(2, 0, 3, 1, 4), causal=causal, key_mask=key_mask)  # noqa: E731
    assert_grads(stacked, normal((B, T, 3, nh, hs), seed))  # laid out as the model's fused projection makes it


@given(shapes, seeds, st.floats(0.0, 0.9))
def test_dropout(backend_name, shape, seed, p):
    assert_grads(lambda x: F.dropout(x, p, training=True, rng=backend.rng(seed)), normal(shape, seed))
