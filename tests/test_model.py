"""The GPT: shapes, a whole-model gradient check, overfitting, KV-cache equivalence, and sampling."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minirl import backend, nn, optim
from minirl.model import GPT, GPTConfig, KVCache, positions_from_mask
from minirl.sampling import generate, inverse_cdf, sample_next
from minirl.tensor import no_grad

TINY = dict(vocab_size=23, block_size=12, n_layer=2, n_head=3, n_embd=8)


def tiny_gpt(**overrides):
    backend.manual_seed(0)
    return GPT(GPTConfig(**{**TINY, **overrides}))


def test_config_defaults_and_validation():
    cfg = GPTConfig()
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.head_size) == (4, 3, 128, 64, 42)
    assert GPTConfig(head_size=64).head_size == 64
    with pytest.raises(ValueError, match="n_layer must be a positive integer"):
        GPTConfig(n_layer=0)
    with pytest.raises(ValueError, match="dropout"):
        GPTConfig(dropout=1.5)


def test_parameter_count_matches_the_architecture():
    cfg = GPTConfig(vocab_size=100, block_size=16, n_layer=2, n_head=3, n_embd=12)
    inner, C = 3 * 4, 12
    per_block = 2 * 2 * C + (C * 3 * inner + 3 * inner) + (inner * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    expected = 100 * C + 16 * C + 2 * per_block + 2 * C
    assert GPT(cfg).num_parameters() == expected
    assert GPT(GPTConfig(**{**cfg.to_dict(), "tie_weights": False})).num_parameters() == expected + 100 * C


def test_forward_shapes_and_hidden_states(backend_name):
    model = tiny_gpt()
    ids = np.arange(10).reshape(2, 5)
    assert model(ids).shape == (2, 5, 23)
    assert model.hidden_states(ids).shape == (2, 5, 8)


def test_init_layer_norms_are_identity_maps_and_hidden_states_are_normalised():
    model = tiny_gpt()
    norms = [(name, p) for name, p in model.named_parameters() if ".ln_" in name or name.startswith("ln_")]
    assert len(norms) == 2 * (2 * model.config.n_layer + 1)  # ln_1, ln_2 per block and ln_f, weight and bias
    for name, p in norms:
        np.testing.assert_array_equal(p.numpy(), 1.0 if name.endswith("weight") else 0.0, err_msg=name)
    h = model.hidden_states(np.arange(10).reshape(2, 5)).numpy()  # after ln_f, with unit gain and no shift
    np.testing.assert_allclose(h.mean(-1), 0, atol=1e-5)
    # var/(var + ε): the residual stream starts at N(0, 0.02)-sized embeddings, so ε = 1e-5 leaves 0.95-0.99
    assert np.all(h.var(-1) > 0.9) and np.all(h.var(-1) <= 1.0)


def test_whole_model_gradient_matches_finite_differences(backend_name):
    """Directional derivatives of the float64 loss along random directions in parameter space."""
    with backend.dtype_context(np.float64):
        model = tiny_gpt(tie_weights=True)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 23, (2, 6)), rng.integers(0, 23, (2, 6))
    mask = np.array([[0, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    params = model.parameters()
    model.loss(x, y, mask).backward()
    grad = np.concatenate([backend.to_numpy(p.grad).reshape(-1) for p in params])
    theta = nn.parameters_to_vector(params)
    eps = 1e-6
    for _ in range(4):
        v = rng.standard_normal(theta.shape)
        v_b = backend.to_backend(v)
        nn.vector_to_parameters(theta + eps * v_b, params)
        plus = model.loss(x, y, mask).item()
        nn.vector_to_parameters(theta - eps * v_b, params)
        minus = model.loss(x, y, mask).item()
        numeric = (plus - minus) / (2 * eps)
        assert grad @ v == pytest.approx(numeric, rel=1e-6, abs=1e-8)
    nn.vector_to_parameters(theta, params)


def test_overfits_one_batch():
    model = tiny_gpt(n_embd=24, n_layer=2)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 23, (4, 10))
    y = np.roll(x, -1, axis=1)
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(150):
        loss = model.loss(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_kv_cache_logits_equal_full_recompute_at_every_step(backend_name):
    with backend.dtype_context(np.float64):
        model = tiny_gpt()
    model.eval()
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 23, (3, 11))
    mask = np.ones((3, 11), dtype=bool)
    mask[0, :3] = False  # left padding, as generate() lays prompts out
    mask[2, :1] = False
    tokens_b, mask_b = backend.to_backend(tokens), backend.to_backend(mask)
    P = 4
    with no_grad():
        cache = KVCache(model.config, 3, dtype=np.float64)
        cached = [model(tokens_b[:, :P], key_mask=mask_b[:, :P], positions=positions_from_mask(mask_b[:, :P]),
                        cache=cache).data[:, -1]]
        for t in range(P, 11):
            pos = positions_from_mask(mask_b[:, :t + 1])[:, -1:]
            cached.append(model(tokens_b[:, t:t + 1], key_mask=mask_b[:, :t + 1], positions=pos, cache=cache).data[:, -1])
        for i, t in enumerate(range(P, 12)):
            full = model(tokens_b[:, :t], key_mask=mask_b[:, :t], positions=positions_from_mask(mask_b[:, :t])).data
            np.testing.assert_allclose(backend.to_numpy(cached[i]), backend.to_numpy(full[:, -1]), rtol=1e-5, atol=1e-12)


def test_generate_with_and_without_cache_agree(backend_name):
    model = tiny_gpt()
    prompts = [[1, 2, 3], [4], [5, 6]]
    a = generate(model, prompts, 6, rng=backend.rng(3))
    b = generate(model, prompts, 6, rng=backend.rng(3), use_cache=False)
    np.testing.assert_array_equal(backend.to_numpy(a.tokens), backend.to_numpy(b.tokens))
    np.testing.assert_allclose(backend.to_numpy(a.logprobs), backend.to_numpy(b.logprobs), atol=1e-5)


def test_generate_layout_stops_and_logprobs(backend_name):
    model = tiny_gpt()
    eot = 22
    prompts = [[1, 2, 3], [4], [5, 6]]
    out = generate(model, prompts, 9, temperature=1.7, eot_id=eot, rng=backend.rng(0))
    tokens, resp = backend.to_numpy(out.tokens), backend.to_numpy(out.response_mask)
    attn, lp = backend.to_numpy(out.attention_mask), backend.to_numpy(out.logprobs)
    assert out.prompt_length == 3
    assert tokens[1, :3].tolist() == [eot, eot, 4] and attn[1, :3].tolist() == [False, False, True]
    for row, r in zip(tokens, resp):
        response = row[3:][r[3:]]
        hits = np.flatnonzero(response == eot)
        if hits.size:  # the mask ends at the first EOT, inclusive, and nothing real follows
            assert hits[0] == len(response) - 1
            assert r[3 + hits[0] + 1:].sum() == 0
        assert not r[:3].any()
    # The recorded log-probs are those of the tempered policy that one forward pass recomputes.
    again = model.logprobs(out.tokens, out.attention_mask, temperature=1.7).numpy()
    np.testing.assert_allclose(again[resp], lp[resp], atol=1e-5)
    assert np.all(lp[~resp] == 0)
    assert out.responses()[1] == tokens[1, 3:][resp[1, 3:]].tolist()


def test_generate_errors_are_clear():
    model = tiny_gpt()
    with pytest.raises(ValueError, match=r"prompt length 10 \+ max_new_tokens 5 = 15 exceeds block_size=12"):
        generate(model, [[1] * 10], 5)
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        generate(model, [[1], []], 2)
    with pytest.raises(ValueError, match="token id 99 is out of range for vocab_size=23"):
        generate(model, [[99]], 2)
    with pytest.raises(ValueError, match="longer than block_size=12"):
        model(np.zeros((1, 13), dtype=int))
    with pytest.raises(ValueError, match="temperature must be positive"):
        generate(model, [[1]], 2, temperature=0)


def test_sampling_follows_the_distribution_and_its_filters(backend_name):
    logits = backend.to_backend(np.log(np.array([[0.5, 0.3, 0.15, 0.05]] * 20000)))
    ids, lp = sample_next(logits, rng=backend.rng(0))
    freq = np.bincount(backend.to_numpy(ids), minlength=4) / 20000
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.015)
    np.testing.assert_allclose(backend.to_numpy(lp), np.log([0.5, 0.3, 0.15, 0.05])[backend.to_numpy(ids)], rtol=1e-6)
    top2, _ = sample_next(logits, top_k=2, rng=backend.rng(1))
    assert set(backend.to_numpy(top2).tolist()) == {0, 1}
    nucleus, _ = sample_next(logits, top_p=0.75, rng=backend.rng(2))  # 0.5 + 0.3 reaches 0.75
    assert set(backend.to_numpy(nucleus).tolist()) == {0, 1}
    greedy, _ = sample_next(logits[:5], top_k=1, rng=backend.rng(3))
    assert backend.to_numpy(greedy).tolist() == [0] * 5


@given(st.integers(1, 200), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_inverse_cdf_follows_the_running_sum_and_never_draws_a_zero_weight(backend_name, vocab, rows, seed):
    rng = np.random.default_rng(seed)
    w = rng.random((rows, vocab)).astype(np.float32) * (rng.random((rows, vocab)) < 0.6)  # top-k-like zeros
    w[:, rng.integers(vocab)] += np.float32(0.25)  # every row has some mass
    r = rng.random((rows, 1), dtype=np.float32)
    r[0, 0] = np.nextafter(np.float32(1), np.float32(0))  # u at the very top of the CDF
    ids = backend.to_numpy(inverse_cdf(w, r))  # host inputs are moved to the backend on entry
    rows_ = np.arange(rows)
    assert ids.shape == (rows,) and np.all(w[rows_, ids] > 0)  # a zero-weight token owns no interval
    cdf = np.cumsum(w.astype(np.float64), axis=1)  # the reference: smallest i with cdf[i] > u
    u, tol = r[:, 0] * cdf[:, -1], 1e-5 * cdf[:, -1]
    assert np.all(cdf[rows_, ids] - w[rows_, ids] <= u + tol) and np.all(u < cdf[rows_, ids] + tol)


def test_inverse_cdf_at_block_and_interval_edges(backend_name):
    w = np.zeros((4, 130), np.float32)  # three blocks of 64; mass only at 0, 64 and 129
    w[:, [0, 64, 129]] = 1
    r = np.array([[0.0], [1 / 3], [0.5], [0.999]], np.float32)
    assert backend.to_numpy(inverse_cdf(w, r)).tolist() == [0, 64, 64, 129]  # u = 1 sits on cdf(0): the next mass is 64
    assert backend.to_numpy(inverse_cdf(np.zeros((1, 130), np.float32), r[:1])).tolist() == [129]  # no mass: last id
    with pytest.raises(ValueError, match=r"weights \(B, V\) with V >= 1 and uniforms \(B, 1\); got \(4, 130\) and \(4,\)"):
        inverse_cdf(w, r[:, 0])


def test_inverse_cdf_falls_back_when_round_off_puts_u_past_its_block(backend_name):
    # The block's mass (einsum) and its in-block cumsum add in different orders. Find a row
    # where the mass is the larger and draw a u between the two: no in-block sum exceeds it.
    rng = np.random.default_rng(0)
    for _ in range(2000):
        w = rng.random((1, 64)).astype(np.float32)
        w[0, 60:] = 0  # the fallback must land on the last positive weight, 59
        mass, inner = np.einsum("bk->b", w)[0], np.cumsum(w)[-1]
        if mass > inner:
            break
    else:
        pytest.skip("einsum and cumsum rounded alike on 2000 rows of this platform")
    r = np.float32(inner / mass)
    while np.float32(r * mass) < inner:
        r = np.nextafter(r, np.float32(1))
    assert inner <= np.float32(r * mass) < mass
    assert backend.to_numpy(inverse_cdf(w, np.array([[r]]))).tolist() == [59]


def test_inverse_cdf_never_draws_a_zero_weight_even_from_a_scan_that_dips(monkeypatch):
    real = np.cumsum

    def dipping(a, axis=None):  # a parallel scan's round-off could put a sum below the one before
        c = real(a, axis=axis)
        if c.shape[0] == 64:  # the in-block running sum, (64, B)
            c[1] = c[0] / 2
        return c
    monkeypatch.setattr(np, "cumsum", dipping)
    w = np.zeros((1, 64))
    w[0, [0, 2]] = 1
    assert inverse_cdf(w, np.array([[0.4]])).tolist() == [2]  # u = 0.8 first crosses at the dip, id 1


def test_logprobs_entropy_is_that_of_the_tempered_distribution(backend_name):
    model = tiny_gpt()
    tokens = np.array([[1, 5, 7, 2], [3, 3, 9, 4]])
    logp, ent = model.logprobs(tokens, temperature=0.7, with_entropy=True)
    logits = model(tokens[:, :-1]).numpy().astype(np.float64) / 0.7  # (B, T-1, V)
    log_dist = logits - logits.max(-1, keepdims=True)
    log_dist -= np.log(np.exp(log_dist).sum(-1, keepdims=True))
    expected = -(np.exp(log_dist) * log_dist).sum(-1)
    np.testing.assert_allclose(ent.numpy()[:, 1:], expected, rtol=1e-5)
    assert ent.numpy()[:, 0].tolist() == [0.0, 0.0]  # column 0 has no context
    picked = np.take_along_axis(log_dist, tokens[:, 1:, None], -1)[..., 0]
    np.testing.assert_allclose(logp.numpy()[:, 1:], picked, rtol=1e-5, atol=1e-6)


def test_logprobs_of_a_single_token_and_empty_inputs():
    model = tiny_gpt()
    assert model.logprobs(np.array([[3], [4]])).numpy().tolist() == [[0.0], [0.0]]
    with pytest.raises(ValueError, match="B, T >= 1"):
        model(np.zeros((1, 0), dtype=int))
    with pytest.raises(TypeError, match="must be integers"):
        model(np.zeros((1, 2)))


def test_masked_loss_skips_unscored_columns_and_is_the_same_loss(backend_name):
    """GPT.loss computes logits only from the first column any row counts (an SFT prompt is read,
    never scored): the value and the gradient are those of the full masked cross-entropy."""
    from minirl import functional as F

    backend.set_default_dtype(np.float64)
    model = tiny_gpt()
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 23, (3, 10)), rng.integers(0, 23, (3, 10))
    mask = np.zeros((3, 10), dtype=bool)
    mask[0, 6:9], mask[1, 4:10], mask[2, 7:8] = True, True, True  # the first counted column is 4
    loss = model.loss(x, y, mask)
    loss.backward()
    windowed = {name: backend.to_numpy(p.grad) for name, p in model.named_parameters()}
    model.zero_grad()
    full = F.cross_entropy(model(x), y, mask=mask)
    full.backward()
    assert loss.item() == pytest.approx(full.item(), rel=1e-12)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(windowed[name], backend.to_numpy(p.grad), rtol=1e-9, atol=1e-12, err_msg=name)
    scrambled = y.copy()
    scrambled[:, :4] = (scrambled[:, :4] + 1) % 23  # targets no row counts
    assert model.loss(x, scrambled, mask).item() == loss.item()


def test_logprobs_from_a_start_column_equal_the_full_ones_there(backend_name):
    backend.set_default_dtype(np.float64)
    model = tiny_gpt()
    tokens = np.random.default_rng(1).integers(0, 23, (2, 9))
    attention = np.ones((2, 9), dtype=bool)
    attention[1, :3] = False  # left padding, as a rollout's grid has
    full, full_ent = model.logprobs(tokens, attention, temperature=0.7, with_entropy=True)
    part, part_ent = model.logprobs(tokens, attention, temperature=0.7, with_entropy=True, start=5)
    for a, b in ((full, part), (full_ent, part_ent)):
        a, b = backend.to_numpy(a.data), backend.to_numpy(b.data)
        assert b.shape == (2, 9) and np.all(b[:, :5] == 0)
        np.testing.assert_allclose(b[:, 5:], a[:, 5:], rtol=1e-12)
    assert np.all(backend.to_numpy(model.logprobs(tokens, start=9).data) == 0)  # nothing left to predict
