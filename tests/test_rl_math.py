"""The RL math against definitions, hand-computed cases and slow reference loops."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minirl import backend
from minirl.gradcheck import check_grad
from minirl.rl.advantages import RunningMeanBaseline, discounted_returns, gae, whiten
from minirl.rl.kl import AdaptiveKLController, kl_penalty
from minirl.rl.losses import (bradley_terry_loss, entropy, explained_variance, masked_mean, pg_loss,
                              ppo_policy_loss, ppo_value_loss)
from minirl.rl.rewards import check_scores, last_token_index, token_rewards
from minirl.tensor import Tensor

host = backend.to_numpy  # results come back from the device explicitly: CuPy refuses np.asarray


def test_kl_estimators_match_their_definitions_and_expectations(backend_name):
    rng = np.random.default_rng(0)
    logp, ref = np.log(rng.dirichlet(np.ones(6))), np.log(rng.dirichlet(np.ones(6)))
    l = ref - logp
    k = {kind: host(kl_penalty(*map(backend.to_backend, (logp, ref)), kind)) for kind in ("k1", "k2", "k3")}
    np.testing.assert_allclose(k["k1"], -l)
    np.testing.assert_allclose(k["k2"], 0.5 * l ** 2)
    np.testing.assert_allclose(k["k3"], np.expm1(l) - l)
    p = np.exp(logp)
    kl = float((p * (logp - ref)).sum())  # KL(π ‖ π_ref), exactly, over the whole vocabulary
    assert (p * k["k1"]).sum() == pytest.approx(kl)  # k1 and k3 are unbiased
    assert (p * k["k3"]).sum() == pytest.approx(kl)
    assert (p * k["k2"]).sum() != pytest.approx(kl)  # k2 is not
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'"):
        kl_penalty(logp, ref, "k4")


@given(st.lists(st.floats(-20, 20), min_size=1, max_size=20), st.lists(st.floats(-20, 20), min_size=1, max_size=20))
def test_k3_and_k2_are_never_negative_but_k1_can_be(a, b):
    n = min(len(a), len(b))
    logp, ref = np.array(a[:n]), np.array(b[:n])
    assert np.all(kl_penalty(logp, ref, "k3") >= -1e-12)
    assert np.all(kl_penalty(logp, ref, "k2") >= 0)
    assert kl_penalty(np.array([0.0]), np.array([1.0]), "k1")[0] < 0


def test_k3_on_tensors_is_differentiable():
    ref = np.random.default_rng(1).standard_normal(5)
    assert check_grad(lambda lp: kl_penalty(lp, ref, "k3"), [np.random.default_rng(2).standard_normal(5)]).passed


def test_adaptive_kl_controller_follows_ziegler():
    ctl = AdaptiveKLController(kl_coef=0.1, target=6.0, horizon=1000)
    assert ctl.update(12.0, 100) == pytest.approx(0.1 * (1 + 0.2 * 0.1))  # error clipped at +0.2
    assert ctl.update(5.4, 100) == pytest.approx(0.1 * 1.02 * (1 - 0.1 * 0.1))
    with pytest.raises(ValueError, match="non-finite"):
        ctl.update(float("nan"), 1)
    low = AdaptiveKLController(kl_coef=0.1, target=6.0, horizon=1000)
    assert low.update(0.0, 100) == pytest.approx(0.1 * (1 - 0.2 * 0.1))  # error clipped at −0.2
    for bad in (dict(kl_coef=-0.1, target=6.0), dict(kl_coef=0.1, target=0.0), dict(kl_coef=0.1, target=6.0, horizon=0)):
        with pytest.raises(ValueError, match="needs kl_coef >= 0, target > 0 and horizon > 0"):
            AdaptiveKLController(**bad)


def test_kl_penalty_defaults_to_k1_and_names_the_estimators():
    logp, ref = np.array([-1.0, -2.0]), np.array([-1.5, -1.0])
    np.testing.assert_array_equal(kl_penalty(logp, ref), logp - ref)
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'; choose one of k1, k2, k3"):
        kl_penalty(logp, ref, "k4")


@st.composite
def ragged(draw):
    """Rewards, values and a mask whose rows have prompt padding, a response, gaps and tail padding."""
    B, T = draw(st.integers(1, 4)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    mask = rng.random((B, T)) < draw(st.floats(0.2, 1.0))
    return rng.standard_normal((B, T)), rng.standard_normal((B, T)), mask


def reference_steps(row_mask):
    return [t for t, m in enumerate(row_mask) if m]


@given(ragged(), st.floats(0.5, 1.0))
def test_discounted_returns_match_a_slow_loop(backend_name, data, gamma):
    rewards, _, mask = data
    got = host(discounted_returns(backend.to_backend(rewards), mask, gamma))  # a host mask is moved on entry
    for b in range(rewards.shape[0]):
        steps = reference_steps(mask[b])
        for i, t in enumerate(steps):
            expected = sum(gamma ** j * rewards[b, s] for j, s in enumerate(steps[i:]))
            assert got[b, t] == pytest.approx(expected, abs=1e-9)
        assert np.all(got[b][~mask[b]] == 0)


@given(ragged(), st.floats(0.5, 1.0), st.floats(0.0, 1.0))
def test_gae_matches_the_backward_loop(backend_name, data, gamma, lam):
    rewards, values, mask = data
    adv, ret = map(host, gae(backend.to_backend(rewards), values, mask, gamma, lam))  # host values and mask
    for b in range(rewards.shape[0]):
        steps = reference_steps(mask[b])
        next_adv, next_value = 0.0, 0.0
        for t in reversed(steps):  # A_t = δ_t + γλ A_{t+1},  δ_t = r_t + γ V(s_{t+1}) − V(s_t)
            delta = rewards[b, t] + gamma * next_value - values[b, t]
            next_adv = delta + gamma * lam * next_adv
            next_value = values[b, t]
            assert adv[b, t] == pytest.approx(next_adv, abs=1e-9)
            assert ret[b, t] == pytest.approx(next_adv + values[b, t], abs=1e-9)
        assert np.all(adv[b][~mask[b]] == 0)


def test_gae_with_lambda_one_is_return_minus_value(backend_name):
    rng = np.random.default_rng(0)
    rewards, values = rng.standard_normal((3, 7)), rng.standard_normal((3, 7))
    mask = np.ones((3, 7), dtype=bool)
    mask[:, :2] = False
    adv, _ = gae(rewards, values, mask, gamma=0.9, lam=1.0)
    np.testing.assert_allclose(host(adv), np.where(mask, host(discounted_returns(rewards, mask, 0.9)) - values, 0),
                               atol=1e-12)


def test_whiten_over_masked_tokens_only(backend_name):
    x = np.array([[100.0, 1.0, 2.0, 3.0], [100.0, 100.0, 4.0, 5.0]])
    mask = x < 50
    w = host(whiten(backend.to_backend(x), mask))
    assert w[mask].mean() == pytest.approx(0.0, abs=1e-9) and w[mask].std() == pytest.approx(1.0, rel=1e-6)
    assert np.all(w[~mask] == 0)
    assert np.all(np.sign(host(whiten(x, mask, shift_mean=False))[mask]) == 1)
    assert np.all(host(whiten(x, np.zeros_like(mask))) == 0)


def test_running_mean_baseline(backend_name):
    base = RunningMeanBaseline(momentum=0.5)
    assert base.update(backend.to_backend(np.array([1.0, 3.0]))) == 0.0
    assert base.update(backend.to_backend(np.array([5.0]))) == 2.0
    assert base.value == pytest.approx(3.5)


def ppo_case(ratio, advantage, eps=0.2):
    logp = Tensor(np.array([[math.log(ratio)]]), requires_grad=True)
    loss, stats = ppo_policy_loss(logp, np.zeros((1, 1)), np.array([[advantage]]), np.ones((1, 1)), eps)
    loss.backward()
    return loss.item(), float(host(logp.grad)[0, 0]), stats


@pytest.mark.parametrize("ratio,advantage,expected_loss,clipped", [
    (1.5, 2.0, -1.2 * 2.0, True),   # A > 0, ρ above 1+ε: the gain is capped, no gradient
    (0.5, 2.0, -0.5 * 2.0, False),  # A > 0, ρ below 1−ε: unclipped, the gradient pushes ρ up
    (0.5, -2.0, 0.8 * 2.0, True),   # A < 0, ρ below 1−ε: capped, no gradient
    (1.5, -2.0, 1.5 * 2.0, False),  # A < 0, ρ above 1+ε: unclipped, the gradient pushes ρ down
])
def test_ppo_clip_in_all_four_cases(ratio, advantage, expected_loss, clipped, backend_name):
    loss, grad, stats = ppo_case(ratio, advantage)
    assert loss == pytest.approx(expected_loss)
    assert (grad == 0) == clipped
    if not clipped:
        assert grad == pytest.approx(-advantage * ratio)  # d(−A ρ)/d log π = −A ρ
    assert stats["clipfrac"] == 1.0


def test_ppo_first_minibatch_invariant_is_exact(backend_name):
    rng = np.random.default_rng(0)
    old = rng.standard_normal((4, 6)).astype(np.float32)
    adv, mask = rng.standard_normal((4, 6)).astype(np.float32), rng.random((4, 6)) < 0.7
    loss, stats = ppo_policy_loss(Tensor(old.copy(), requires_grad=True), old, adv, mask)
    assert stats["approx_kl"] == 0.0 and stats["clipfrac"] == 0.0 and stats["ratio_mean"] == 1.0
    assert loss.item() == pytest.approx(-float((adv * mask).sum() / mask.sum()), rel=1e-6)


def test_asymmetric_clip(backend_name):
    _, stats = ppo_policy_loss(Tensor(np.log([[1.25, 0.85]])), np.zeros((1, 2)), np.ones((1, 2)), np.ones((1, 2)),
                               clip_eps=0.1, clip_eps_high=0.3)
    assert stats["clipfrac"] == 0.5  # 1.25 is inside (0.9, 1.3); 0.85 is below 0.9


def test_clipped_value_loss_by_hand(backend_name):
    values = Tensor(np.array([[1.0, 0.0, 3.0]]), requires_grad=True)
    old, returns, mask = np.array([[0.0, 0.0, 2.9]]), np.array([[2.0, -1.0, 0.0]]), np.array([[1, 1, 0]])
    loss, stats = ppo_value_loss(values, old, returns, mask, clip_eps_v=0.2)
    # token 0: unclipped (1−2)² = 1, clipped (0.2−2)² = 3.24 -> 3.24; token 1: both 1 -> 1; token 2 masked
    assert loss.item() == pytest.approx(0.5 * (3.24 + 1.0) / 2)
    assert stats["value_clipfrac"] == 0.5
    loss.backward()
    assert host(values.grad)[0, 0] == 0.0  # the clipped branch was taken: V gets no gradient there


def test_bradley_terry_loss_and_gradient(backend_name):
    r_w, r_l = np.array([2.0, -1.0, 0.5]), np.array([1.0, 0.0, 0.5])
    loss, stats = bradley_terry_loss(Tensor(r_w), Tensor(r_l), margin=0.5)
    d = r_w - r_l - 0.5
    assert loss.item() == pytest.approx(np.mean(np.log1p(np.exp(-d))))
    assert stats["accuracy"] == pytest.approx(1 / 3)
    result = check_grad(lambda a, b: bradley_terry_loss(a, b, margin=0.5, center_coef=0.1)[0], [r_w, r_l])
    assert result.passed
    chosen = Tensor(r_w, requires_grad=True)
    bradley_terry_loss(chosen, Tensor(r_l))[0].backward()
    np.testing.assert_allclose(host(chosen.grad), -1 / (1 + np.exp(r_w - r_l)) / 3)  # −σ(−d)/N


def test_pg_loss_entropy_and_explained_variance(backend_name):
    logp = Tensor(np.array([[-1.0, -2.0, -3.0]]), requires_grad=True)
    loss, _ = pg_loss(logp, np.array([[2.0, 1.0, 5.0]]), np.array([[1, 1, 0]]))
    assert loss.item() == pytest.approx(-(-1.0 * 2 + -2.0 * 1) / 2)
    loss.backward()
    np.testing.assert_allclose(host(logp.grad), [[-1.0, -0.5, 0.0]])
    assert entropy(Tensor(np.zeros((2, 3, 5))), np.ones((2, 3))).item() == pytest.approx(math.log(5))
    returns = np.array([[1.0, 2.0, 3.0, 4.0]])
    assert explained_variance(returns, returns, np.ones((1, 4))) == 1.0
    assert explained_variance(np.full((1, 4), 2.5), returns, np.ones((1, 4))) == pytest.approx(0.0)
    assert host(masked_mean(np.ones((2, 2)), np.zeros((2, 2)))) == 0.0


@pytest.mark.parametrize("on_host", [False, True])
def test_token_rewards_put_the_score_on_the_last_response_token(backend_name, on_host):
    mask = np.array([[0, 1, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=bool)
    logp = np.log(np.full((3, 5), 0.5))
    ref = np.log(np.full((3, 5), 0.25))
    move = (lambda a: a) if on_host else backend.to_backend  # host inputs are moved on entry
    rewards, kl = token_rewards(move(np.array([1.0, 2.0, 3.0])), backend.to_backend(logp), move(ref), move(mask),
                                kl_coef=0.1,
                                ended=move(np.array([True, False, False])), missing_eos_penalty=-1.0)
    rewards, kl = backend.to_numpy(rewards), backend.to_numpy(kl)
    k1 = math.log(2)
    np.testing.assert_allclose(kl, np.where(mask, k1, 0))
    np.testing.assert_allclose(rewards[0], [0, -0.1 * k1, -0.1 * k1, 1.0 - 0.1 * k1, 0])
    np.testing.assert_allclose(rewards[1], [0, 0, 2.0 - 1.0 - 0.1 * k1, 0, 0])  # no EOT: penalised
    assert np.all(rewards[2] == 0)  # an empty response gets nothing
    assert backend.to_numpy(last_token_index(backend.to_backend(mask))).tolist() == [3, 2, -1]



def test_a_missing_eot_can_replace_the_score(backend_name):
    """The TL;DR seed's rule: R' = R if the response ended with EOT, else missing_eos_reward (not R + it)."""
    mask = np.array([[1, 1, 0], [1, 1, 1]], dtype=bool)
    logp = np.log(np.full((2, 3), 0.5))
    ended = np.array([True, False])
    rewards, _ = token_rewards(np.array([3.0, 7.0]), logp, logp, mask, kl_coef=0.1, ended=ended,
                               missing_eos_reward=-1.0)
    np.testing.assert_allclose(backend.to_numpy(rewards), [[0, 3.0, 0], [0, 0, -1.0]])  # KL 0: π = π_ref
    added, _ = token_rewards(np.array([3.0, 7.0]), logp, logp, mask, kl_coef=0.1, ended=ended, missing_eos_penalty=-1.0)
    assert backend.to_numpy(added)[1, 2] == 6.0  # the additive penalty is kept as it was

def test_reward_function_output_is_checked():
    assert check_scores([1, 2.5], 2) == [1.0, 2.5]
    with pytest.raises(ValueError, match="returned 1 scores for 2 responses"):
        check_scores([1.0], 2)
    with pytest.raises(ValueError, match=r"non-finite scores \(NaN or inf\) for responses \[1\]"):
        check_scores([1.0, float("nan")], 2)
    with pytest.raises(ValueError, match="sequence of numbers"):
        check_scores(["good", "bad"], 2)


def test_losses_refuse_mismatched_shapes(backend_name):
    with pytest.raises(ValueError, match=r"pg_loss: inputs must share one shape, got logprobs \(2, 3\), advantages \(2,\)"):
        pg_loss(Tensor(np.zeros((2, 3))), np.zeros(2), np.ones((2, 3)))
    with pytest.raises(ValueError, match="bradley_terry_loss"):
        bradley_terry_loss(Tensor(np.zeros(3)), Tensor(np.zeros(4)))
