"""Forward values against plain NumPy reference formulas, including the numerically nasty cases."""

import math

import numpy as np
import pytest

from minirl import functional as F
from minirl.backend import to_numpy as backend_to_numpy
from minirl.tensor import Tensor, no_grad


def ref_log_softmax(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def test_log_softmax_and_softmax_match_reference(backend_name):
    x = np.random.default_rng(0).standard_normal((4, 7)) * 3
    np.testing.assert_allclose(F.log_softmax(Tensor(x), axis=0).numpy(), ref_log_softmax(x, 0), atol=1e-12)
    np.testing.assert_allclose(F.softmax(Tensor(x)).numpy(), np.exp(ref_log_softmax(x)), atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_stay_finite(backend_name, dtype):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, 1e4]], dtype=dtype)
    out = F.log_softmax(Tensor(x)).numpy()
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[0], [0.0, -2e4, -1e4], rtol=1e-6)
    np.testing.assert_allclose(out[2], [-math.log(3)] * 3, rtol=1e-6)
    logits = Tensor(x, requires_grad=True)
    loss = F.cross_entropy(logits, np.array([0, 1, 2]))
    loss.backward()
    assert np.isfinite(loss.item()) and np.all(np.isfinite(logits.grad))
    np.testing.assert_allclose(loss.item(), (0.0 + 2e4 + math.log(3)) / 3, rtol=1e-6)


def test_fully_masked_softmax_row_is_zero_not_nan(backend_name):
    x = np.array([[-np.inf, -np.inf, -np.inf], [0.0, -np.inf, 0.0]])
    t = Tensor(x, requires_grad=True)
    probs = F.softmax(t)
    np.testing.assert_array_equal(probs.numpy()[0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(probs.numpy()[1], [0.5, 0.0, 0.5])
    assert np.all(F.log_softmax(Tensor(x)).numpy()[0] == -np.inf)  # log 0, by definition
    (probs * Tensor(np.ones_like(x))).sum().backward()
    assert not np.any(np.isnan(t.grad))


def test_cross_entropy_reference_mask_and_reductions(backend_name):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((2, 5, 7))
    targets = rng.integers(0, 7, size=(2, 5))
    mask = np.array([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]], dtype=np.float64)
    nll = -np.take_along_axis(ref_log_softmax(logits), targets[..., None], -1)[..., 0]
    got = F.cross_entropy(Tensor(logits), targets, mask=mask)
    np.testing.assert_allclose(got.item(), (nll * mask).sum() / mask.sum(), rtol=1e-12)
    got_sum = F.cross_entropy(Tensor(logits), targets, mask=mask, reduction="sum")
    np.testing.assert_allclose(got_sum.item(), (nll * mask).sum(), rtol=1e-12)
    per_token = F.cross_entropy(Tensor(logits), targets, mask=mask, reduction="none").numpy()
    np.testing.assert_allclose(per_token, nll * mask, rtol=1e-12)
    ignored = np.where(mask == 1, targets, -100)
    np.testing.assert_allclose(F.cross_entropy(Tensor(logits), ignored, ignore_index=-100).item(),
                               got.item(), rtol=1e-12)


def test_cross_entropy_fully_masked_is_zero_with_zero_grad(backend_name):
    logits = Tensor(np.random.default_rng(0).standard_normal((2, 3, 4)), requires_grad=True)
    mask = np.zeros((2, 3))
    loss = F.cross_entropy(logits, np.zeros((2, 3), dtype=int), mask=mask)
    loss.backward()
    assert loss.item() == 0.0
    assert np.all(logits.grad == 0)
    row_masked = np.array([[1, 1, 1], [0, 0, 0]])
    loss = F.cross_entropy(Tensor(logits.data), np.zeros((2, 3), dtype=int), mask=row_masked)
    assert np.isfinite(loss.item())


def test_cross_entropy_bad_inputs_explain_themselves(backend_name):
    logits = Tensor(np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match=r"target id 9 is out of range for 5 classes"):
        F.cross_entropy(logits, np.full((2, 3), 9))
    with pytest.raises(ValueError, match=r"targets have shape \(3,\)"):
        F.cross_entropy(logits, np.zeros(3, dtype=int))
    with pytest.raises(TypeError, match="integer token ids"):
        F.cross_entropy(logits, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(logits, np.zeros((2, 3), dtype=int), reduction="avg")


def test_layer_norm_and_gelu_match_formulas(backend_name):
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((3, 4, 8)), rng.standard_normal(8), rng.standard_normal(8)
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b
    np.testing.assert_allclose(F.layer_norm(Tensor(x), Tensor(w), Tensor(b)).numpy(), ref, atol=1e-12)
    gelu = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(F.gelu(Tensor(x)).numpy(), gelu, atol=1e-12)
    # the same formula when a gradient is to come (the op then keeps 1 + e^{-2u} for backward)
    np.testing.assert_allclose(F.gelu(Tensor(x, requires_grad=True)).numpy(), gelu, atol=1e-12)


def naive_attention(q, k, v, causal, key_mask):
    B, nh, Tq, hs = q.shape
    Tk = k.shape[2]
    out = np.zeros_like(q)
    for b in range(B):
        for h in range(nh):
            for i in range(Tq):
                visible = [j for j in range(Tk) if (not causal or j <= Tk - Tq + i)
                           and (key_mask is None or key_mask[b, j])]
                if not visible:
                    continue  # nothing to attend to: defined as a zero output
                s = np.array([q[b, h, i] @ k[b, h, j] / np.sqrt(hs) for j in visible])
                p = np.exp(s - s.max())
                p /= p.sum()
                out[b, h, i] = sum(pj * v[b, h, j] for pj, j in zip(p, visible))
    return out


def test_gelu_gives_the_same_bits_with_and_without_a_gradient(backend_name):
    # Sampling runs the model under no_grad and the RL losses rerun it with gradients; PPO's
    # first ratio is exactly 1 only if both passes agree to the last bit.
    x = np.random.default_rng(4).standard_normal((64, 40)).astype(np.float32) * 4
    kept = F.gelu(Tensor(x, requires_grad=True))
    with no_grad():
        lean = F.gelu(Tensor(x, requires_grad=True))
    assert kept.requires_grad and not lean.requires_grad
    np.testing.assert_array_equal(lean.numpy(), kept.numpy())


@pytest.mark.parametrize("rows", [6, 4096])  # 4096 x 16 = 65,536 elements: the row-parallel path
@pytest.mark.parametrize("affine", ["both", "weight", "bias", "neither"])
def test_layer_norm_without_gradients_matches_the_kept_graph(backend_name, affine, rows):
    # With nothing to differentiate, layer_norm writes x̂ straight into its output buffer
    # instead of keeping it; both paths must give the same bits.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((rows, 16)).astype(np.float32)
    w = rng.standard_normal(16).astype(np.float32) if affine in ("both", "weight") else None
    b = rng.standard_normal(16).astype(np.float32) if affine in ("both", "bias") else None
    params = [None if p is None else Tensor(p) for p in (w, b)]
    kept = F.layer_norm(Tensor(x, requires_grad=True), *params)
    with no_grad():
        lean = F.layer_norm(Tensor(x, requires_grad=True), *params)
    assert kept.requires_grad and not lean.requires_grad
    np.testing.assert_array_equal(lean.numpy(), kept.numpy())
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    ref = ref * (1 if w is None else w) + (0 if b is None else b)
    np.testing.assert_allclose(lean.numpy(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("Tq", [1, 3, 5])
def test_attention_matches_naive_loop(backend_name, causal, Tq):
    rng = np.random.default_rng(3)
    q = rng.standard_normal((2, 3, Tq, 4))
    k, v = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 5, 4))
    key_mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=bool)  # row 0 left-padded
    got = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), causal=causal, key_mask=key_mask)
    np.testing.assert_allclose(got.numpy(), naive_attention(q, k, v, causal, key_mask), atol=1e-12)
    assert not np.any(np.isnan(got.numpy()))


def test_stacked_qkv_attention_is_attention_of_its_three_parts(backend_name):
    rng = np.random.default_rng(4)
    qkv = rng.standard_normal((3, 2, 3, 5, 4))
    key_mask = np.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=bool)
    got = F.attention_qkv(Tensor(qkv), key_mask=key_mask)
    np.testing.assert_allclose(got.numpy(), naive_attention(*qkv, True, key_mask), atol=1e-12)
    with pytest.raises(ValueError, match=r"stacked as \(3, B, nh, T, hs\), got \(2, 2, 3, 5, 4\)"):
        F.attention_qkv(Tensor(qkv[:2]))


def test_embedding_lookup_and_range_error(backend_name):
    w = np.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(F.embedding(Tensor(w), np.array([[3, 0]])).numpy(), w[[[3, 0]]])
    with pytest.raises(ValueError, match="id 4 is out of range for a table of 4 rows"):
        F.embedding(Tensor(w), np.array([1, 4]))


def test_dropout_scales_survivors_and_is_identity_in_eval(backend_name):
    x = Tensor(np.ones((200, 200)))
    y = F.dropout(x, 0.25, training=True).numpy()
    assert set(np.unique(y)) <= {0.0, 1 / 0.75}
    assert abs((y == 0).mean() - 0.25) < 0.01
    assert F.dropout(x, 0.25, training=False) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        F.dropout(x, 1.0)


def test_embedding_gradient_is_right_for_small_integer_ids(backend_name):
    w = Tensor(np.zeros((2048, 64)), requires_grad=True)
    F.embedding(w, np.array([[2000, 5]], dtype=np.uint16)).sum().backward()
    rows = np.flatnonzero(backend_to_numpy(w.grad).sum(axis=1))
    assert rows.tolist() == [5, 2000]


def test_linear_checks_bias_shape_and_gelu_is_quiet_for_very_negative_inputs(backend_name):
    with pytest.raises(ValueError, match=r"bias must have shape \(5,\)"):
        F.linear(Tensor(np.ones((2, 4))), Tensor(np.ones((4, 5))), Tensor(np.ones((1, 5))))
    with np.errstate(over="raise"):
        out = F.gelu(Tensor(np.array([-50.0, -10.0, 0.0, 10.0], dtype=np.float32))).numpy()
    np.testing.assert_allclose(out, [0.0, 0.0, 0.0, 10.0], atol=1e-6)
