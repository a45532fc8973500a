"""TRPO (MATH.md §4, §12): conjugate gradient, Gauss–Newton Fisher-vector products, the trust
region, and the closed-form oracle on the one-step bandit GPT of `test_rl_oracle.py`."""

import numpy as np
import pytest

from minirl import backend, nn, optim
from minirl.model import GPT, GPTConfig
from minirl.rl.reward_model import ScalarHeadModel
from minirl.rl.rollout import collect_rollout
from minirl.rl.trpo import (TRPOConfig, backtracking_line_search, conjugate_gradient, gauss_newton_fvp,
                            mean_kl, policy_log_dist, policy_logits, trpo_update)
from minirl.tensor import no_grad
from tests.test_rl_oracle import BETA, EOT, REWARD, TV_TOLERANCE, bandit_gpt, distribution

TAU = 0.7  # a sampling temperature ≠ 1, so the 1/τ in J is exercised


def bandit_rollout(policy, ref, rng, batch=256):
    return collect_rollout(policy, [[EOT]] * batch, lambda texts: [REWARD[int(t)] if t else REWARD[EOT] for t in texts],
                           ref_model=ref, decode=lambda ids: str(ids[0]) if ids else "", eot_id=EOT,
                           max_new_tokens=1, kl_coef=BETA, kl_estimator="k1", rng=rng)


def tv(p, q):
    return 0.5 * float(np.abs(p - q).sum())


def test_conjugate_gradient_solves_an_spd_system():
    rng = np.random.default_rng(0)
    n = 20
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    A = Q @ np.diag(np.linspace(1, 100, n)) @ Q.T  # SPD, condition number 100
    b = rng.normal(size=n)
    calls = []
    x, residual = conjugate_gradient(lambda v: calls.append(1) or A @ v, b, iters=n, residual_tol=1e-10)
    exact = np.linalg.solve(A, b)
    print(f"CG, n={n}, κ=100: relative error {np.linalg.norm(x - exact) / np.linalg.norm(exact):.1e} "
          f"after {len(calls)} products, residual {residual:.1e}")
    assert len(calls) <= n and residual <= 1e-10
    assert np.linalg.norm(x - exact) <= 1e-9 * np.linalg.norm(exact)
    assert np.linalg.norm(b - A @ x) <= 1e-9 * np.linalg.norm(b)  # the true residual, not CG's recursive one
    # With k distinct eigenvalues CG is exact after k products: F + λI of a 6-token bandit has 6.
    calls.clear()
    B = Q[:, :3] @ np.diag([1.0, 5.0, 30.0]) @ Q[:, :3].T + 0.1 * np.eye(n)  # eigenvalues {0.1, 1.1, 5.1, 30.1}
    x, residual = conjugate_gradient(lambda v: calls.append(1) or B @ v, b, iters=n, residual_tol=1e-10)
    assert len(calls) == 4 and np.allclose(B @ x, b, atol=1e-9)
    assert conjugate_gradient(lambda v: A @ v, np.zeros(n))[1] == 0.0


def fvp_at(policy, tokens, attention, mask, temperature, dtype):
    """`trpo_update`'s Fisher-vector product at the policy's weights cast to `dtype` (float32: rounded)."""
    params = policy.parameters()
    for p in params:
        p.data = p.data.astype(dtype)
    with backend.dtype_context(dtype):
        logits = policy_logits(policy, tokens, attention, temperature)
        fvp = gauss_newton_fvp(logits, lambda: policy_logits(policy, tokens, attention, temperature), params, mask,
                               (float(np.finfo(dtype).eps) / 100) ** (1 / 3))
    return lambda v: backend.to_numpy(fvp(backend.xp().asarray(v, dtype=dtype))).astype(np.float64)


@pytest.mark.parametrize("temperature", [1.0, TAU])
def test_gauss_newton_fvp_matches_the_exact_fisher_matrix(temperature):
    """The Hessian of KL̄ at θ_old is ``F = E_{y~π}[∇log π(y) ∇log π(y)ᵀ]``; on the bandit there is one
    state, so F is built exactly by enumerating the six tokens, in float64."""
    tokens = np.array([[EOT, 0]])
    policy = bandit_gpt()
    params = policy.parameters()
    with backend.dtype_context(np.float64):
        for p in params:
            p.data = p.data.astype(np.float64)
        log_dist = policy_log_dist(policy, tokens, np.ones_like(tokens), temperature)  # (1, 1, 6)
        pi, rows = np.exp(log_dist.data[0, 0]), []
        for y in range(6):
            policy.zero_grad()
            policy_log_dist(policy, tokens, np.ones_like(tokens), temperature)[0, 0, y].backward()
            rows.append(np.concatenate([p.grad.reshape(-1) for p in params]))
    J = np.array(rows)  # (6, N): ∇log π(y)
    fisher = J.T @ (pi[:, None] * J)  # (N, N)
    rng, errors = np.random.default_rng(1), {}
    vectors = [rng.normal(size=fisher.shape[0]) for _ in range(3)] + [J.T @ rng.normal(size=6)]
    for dtype in (np.float64, np.float32):
        fvp = fvp_at(policy, tokens, np.ones_like(tokens), np.ones((1, 1)), temperature, dtype)
        errors[dtype.__name__] = max(np.linalg.norm(fvp(v) - fisher @ v) / np.linalg.norm(fisher @ v) for v in vectors)
    print(f"τ={temperature}: Fv vs exact F·v, worst relative error:", {k: f"{e:.1e}" for k, e in errors.items()})
    assert errors["float64"] < 1e-7 and errors["float32"] < 5e-4


PROMPTS = [[EOT], [EOT, 2], [EOT, 3, 4]] * 8  # three prompt lengths, so the batch is left-padded


def tiny_gpt(seed) -> GPT:
    backend.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=6, block_size=8, n_layer=1, n_head=2, n_embd=16))


def tokens_reward(texts):
    return [t.split().count("0") - 0.3 * len(t.split()) for t in texts]


def multi_token_rollout(policy, ref, rng, reward_fn=tokens_reward, kl_coef=0.1, value_model=None):
    return collect_rollout(policy, PROMPTS, reward_fn, ref_model=ref, decode=lambda ids: " ".join(map(str, ids)),
                           eot_id=EOT, max_new_tokens=3, kl_coef=kl_coef, temperature=TAU, rng=rng,
                           value_model=value_model)


def prefix_log_dists(model, rollout) -> dict:
    """``log π(·|s_t)`` at every response token, one unpadded prefix at a time (log-softmax in float64):
    an independent path past the batching, padding, positions and grid shift of `trpo_update`."""
    tokens, attention, response = (backend.to_numpy(a) for a in (rollout.tokens, rollout.attention_mask,
                                                                   rollout.response_mask))
    out = {}
    with no_grad():
        for b, t in zip(*np.nonzero(response)):
            prefix = tokens[b, :t][attention[b, :t].astype(bool)]
            logits = model(prefix[None]).numpy()[0, -1].astype(np.float64) / TAU
            out[b, t] = logits - np.logaddexp.reduce(logits)
    return out


def kl_gradient_difference_fvp(policy, tokens, attention, mask, temperature):
    """The slow reference: ``Fv ≈ (∇KL̄(θ + εv) − ∇KL̄(θ − εv)) / 2ε`` in float64, two forward and two
    backward passes per product (`trpo_update`'s product before the Gauss–Newton form); it errs ~1e-8."""
    params, xp = policy.parameters(), backend.xp()
    for p in params:
        p.data = p.data.astype(np.float64)
    theta = nn.parameters_to_vector(params)
    with backend.dtype_context(np.float64):
        old_log_dist = policy_log_dist(policy, tokens, attention, temperature).data

    def kl_grad(th):
        nn.vector_to_parameters(th, params)
        with backend.dtype_context(np.float64):
            kl, _ = mean_kl(policy_log_dist(policy, tokens, attention, temperature), old_log_dist, mask)
            policy.zero_grad()
            kl.backward()
        return backend.to_numpy(xp.concatenate([p.grad.reshape(-1) for p in params]))

    def fvp(v):  # v: a host float64 vector
        eps = float(np.finfo(np.float64).eps) ** (1 / 3) * (1 + float(xp.linalg.norm(theta))) / np.linalg.norm(v)
        v = xp.asarray(v)
        return (kl_grad(theta + eps * v) - kl_grad(theta - eps * v)) / (2 * eps)
    return fvp


def test_gauss_newton_fvp_matches_differences_of_kl_gradients_on_a_gpt(backend_name):
    """Many states, left padding, ragged response masks and τ ≠ 1: the product against the old, slow one."""
    ref, policy = tiny_gpt(3), tiny_gpt(3)
    rollout = multi_token_rollout(policy, ref, backend.rng(4))
    tokens, attention, mask = rollout.tokens, rollout.attention_mask, rollout.response_mask[:, 1:]
    assert 0 < float(rollout.ended.mean()) < 1
    start = policy.state_dict()
    reference = kl_gradient_difference_fvp(policy, tokens, attention, mask, TAU)
    rng, errors = np.random.default_rng(0), {}
    vectors = [rng.normal(size=sum(p.size for p in policy.parameters())) for _ in range(3)]
    exact = [reference(v) for v in vectors]
    for dtype in (np.float64, np.float32):
        policy.load_state_dict(start)
        fvp = fvp_at(policy, tokens, attention, mask, TAU, dtype)
        errors[dtype.__name__] = max(np.linalg.norm(fvp(v) - e) / np.linalg.norm(e) for v, e in zip(vectors, exact))
    print("GPT: Gauss–Newton Fv vs differences of ∇KL̄, worst relative error:",
          {k: f"{e:.1e}" for k, e in errors.items()})
    assert errors["float64"] < 1e-6 and errors["float32"] < 5e-4


def test_accepted_steps_stay_inside_the_trust_region(backend_name):
    ref, policy = tiny_gpt(3), tiny_gpt(3)
    rng, config = backend.rng(4), TRPOConfig(max_kl=0.02, kl_coef=0.1, temperature=TAU)
    ratios = []
    for _ in range(8):
        rollout = multi_token_rollout(policy, ref, rng)
        assert 0 < float(rollout.ended.mean()) < 1  # some responses stop at EOT: ragged response masks
        before = prefix_log_dists(policy, rollout)
        stats = trpo_update(policy, rollout, config)
        after = prefix_log_dists(policy, rollout)
        kl = np.mean([(np.exp(before[k]) * (before[k] - after[k])).sum() for k in before])
        assert stats["accepted"] and abs(stats["surrogate_before"]) < 1e-6  # ρ ≡ 1 at θ_old; whitened A
        assert stats["surrogate_after"] > stats["surrogate_before"]
        assert 0 < stats["kl"] <= config.max_kl and kl <= config.max_kl * (1 + 1e-4)
        assert kl == pytest.approx(stats["kl"], rel=1e-4, abs=1e-8)
        ratios.append(stats["kl"] / config.max_kl)
    print("accepted KL̄ / δ per update:", np.round(ratios, 3))
    assert np.median(ratios) > 0.2  # the bound holds because the step is sized to it, not because it is tiny


def test_trpo_converges_to_the_kl_regularised_optimum():
    """With β·k1 in the reward, the optimum of E[R] − β·KL(π‖π_ref) is π* ∝ π_ref·exp(R/β). TRPO steps to
    KL̄ ≈ δ every update however small the true gradient is, so with a fixed δ = 0.01 it hovers at TV ≈ 0.04;
    δ shrinks geometrically from 0.02 to 1e-4 (the trust-region analogue of a decaying learning rate)."""
    ref, policy = bandit_gpt(), bandit_gpt()
    pi_ref = distribution(ref)
    p = pi_ref * np.exp(REWARD / BETA)
    target = p / p.sum()
    rng, steps = backend.rng(2), 80
    for step in range(steps):
        config = TRPOConfig(max_kl=0.02 * (1e-4 / 0.02) ** (step / (steps - 1)), kl_coef=BETA)
        before = distribution(policy)
        stats = trpo_update(policy, bandit_rollout(policy, ref, rng), config)
        after = distribution(policy)  # one state: KL̄ is KL(π_before‖π_after), here from float32 log-probs
        kl = (before * np.log(before / after)).sum()
        assert stats["kl"] <= config.max_kl and stats["kl"] == pytest.approx(kl, rel=1e-3, abs=5e-7)
    final = tv(distribution(policy), target)
    print(f"TRPO: TV(π, π*) {tv(pi_ref, target):.3f} -> {final:.4f}")
    assert final < TV_TOLERANCE


def test_trpo_with_a_value_model_fits_it():
    ref, policy = tiny_gpt(3), tiny_gpt(3)
    backend.manual_seed(5)
    value_model = ScalarHeadModel(ref.config)
    value_opt = optim.AdamW(value_model.parameters(), lr=3e-3, weight_decay=0.0)
    rollout = multi_token_rollout(policy, ref, backend.rng(6), value_model=value_model)
    stats = trpo_update(policy, rollout, TRPOConfig(max_kl=0.01, temperature=TAU, value_epochs=10), value_model,
                        value_opt)
    assert stats["accepted"] and stats["value_loss_last"] < stats["value_loss"]
    with pytest.raises(ValueError, match="value_optimizer"):
        trpo_update(policy, rollout, TRPOConfig(), value_model)
    with pytest.raises(ValueError, match="exactly when"):
        trpo_update(policy, rollout, TRPOConfig())


def test_no_step_is_taken_without_an_improving_direction():
    ref, policy = tiny_gpt(3), tiny_gpt(3)
    start = policy.state_dict()
    rollout = multi_token_rollout(policy, ref, backend.rng(7), reward_fn=lambda texts: [1.0] * len(texts), kl_coef=0.0)
    stats = trpo_update(policy, rollout, TRPOConfig(temperature=TAU))  # constant R: every advantage is 0, g = 0
    assert not stats["accepted"] and stats["kl"] == 0.0 and stats["step_size"] == 0.0
    for name, value in policy.state_dict().items():
        np.testing.assert_array_equal(value, start[name])
        assert value.dtype == start[name].dtype
    # A line search whose every candidate fails (here: L never improves) keeps θ_old.
    theta, search = backtracking_line_search(lambda th: (0.0, 0.0), np.zeros(3), np.ones(3), 0.0, 0.01, iters=5)
    assert not search["accepted"] and search["backtracks"] == 5 and not theta.any()
    theta, search = backtracking_line_search(lambda th: (1.0, th[0]), np.zeros(3), np.ones(3), 0.0, 0.01, iters=10)
    assert search["accepted"] and search["backtracks"] == 7 and theta[0] == 0.5 ** 7  # 2⁻⁷ ≤ 0.01 < 2⁻⁶


@pytest.mark.parametrize("bad, match", [
    ({"max_kl": 0.0}, "max_kl"), ({"max_kl": -0.01}, "max_kl"), ({"cg_iters": 0}, "cg_iters"),
    ({"backtrack_iters": 0}, "backtrack_iters"), ({"backtrack_ratio": 1.0}, "backtrack_ratio"),
    ({"cg_damping": -1.0}, "cg_damping"), ({"fvp_eps": 0.0}, "fvp_eps"), ({"temperature": 0.0}, "temperature"),
    ({"kl_estimator": "k4"}, "kl_estimator"),
])
def test_bad_config_is_a_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        TRPOConfig(**bad)


def test_dropout_in_training_mode_is_refused():
    ref = tiny_gpt(3)
    backend.manual_seed(3)
    policy = GPT(GPTConfig(vocab_size=6, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.1))
    rollout = multi_token_rollout(policy.eval(), ref, backend.rng(8))
    with pytest.raises(ValueError, match="policy.eval"):
        trpo_update(policy.train(), rollout, TRPOConfig(temperature=TAU))
