"""DPO (MATH.md §6): the loss against hand-computed values and finite differences, the masks,
the log 2 invariant, the reference cache, the closed-form oracle (§12), and a run on text."""

import json
import math

import numpy as np
import pytest

from minirl import backend
from minirl.checkpoint import CheckpointError
from minirl.data import PreferencePair, pairs_from_labels
from minirl.gradcheck import check_grad
from minirl.model import GPT, GPTConfig
from minirl.rl.bandit import Bandit
from minirl.rl.dpo import (DPOConfig, dpo_loss, evaluate_dpo, pair_batch, pair_logprobs, sequence_logprobs,
                           train_dpo)
from minirl.tensor import no_grad

# two pairs: h = (−1 − (−1.5)) − (−3 − (−2.5)) = 1 and h = (−2 − (−2)) − (−1 − (−1.5)) = −0.5
POLICY_CHOSEN, POLICY_REJECTED = np.array([-1.0, -2.0]), np.array([-3.0, -1.0])
REF_CHOSEN, REF_REJECTED = np.array([-1.5, -2.0]), np.array([-2.5, -1.5])
LOGPS = (POLICY_CHOSEN, POLICY_REJECTED, REF_CHOSEN, REF_REJECTED)


def softplus(x):
    return math.log1p(math.exp(x))


def test_dpo_loss_matches_hand_computed_values(backend_name):
    beta = 0.5  # βh = 0.5 and −0.25
    loss, stats = dpo_loss(*LOGPS, beta)
    assert loss.item() == pytest.approx((softplus(-0.5) + softplus(0.25)) / 2)
    assert stats["reward_chosen"] == pytest.approx(0.5 * (0.5 + 0.0) / 2)
    assert stats["reward_rejected"] == pytest.approx(0.5 * (-0.5 + 0.5) / 2)
    assert stats["reward_margin"] == pytest.approx(0.125)
    assert stats["accuracy"] == 0.5
    assert stats["logps_chosen"] == -1.5 and stats["logps_rejected"] == -2.0
    eps = 0.1  # −(1−ε) log σ(βh) − ε log σ(−βh) = (1−ε)·softplus(−βh) + ε·softplus(βh)
    smoothed, _ = dpo_loss(*LOGPS, beta, label_smoothing=eps)
    expected = [(1 - eps) * softplus(-bh) + eps * softplus(bh) for bh in (0.5, -0.25)]
    assert smoothed.item() == pytest.approx(np.mean(expected))
    ipo, _ = dpo_loss(*LOGPS, beta, loss_type="ipo")  # (h − 1/(2β))² with 1/(2β) = 1
    assert ipo.item() == pytest.approx(((1.0 - 1.0) ** 2 + (-0.5 - 1.0) ** 2) / 2)


@pytest.mark.parametrize("loss_type, label_smoothing", [("sigmoid", 0.0), ("sigmoid", 0.2), ("ipo", 0.0)])
def test_dpo_loss_gradient_matches_finite_differences(loss_type, label_smoothing, backend_name):
    rng = np.random.default_rng(0)
    inputs = [rng.normal(-5.0, 2.0, size=7) for _ in range(4)]
    result = check_grad(lambda *logps: dpo_loss(*logps, 0.3, loss_type, label_smoothing)[0], inputs)
    assert result.passed, result


def test_at_initialisation_the_sigmoid_loss_is_log_2_and_rewards_are_zero(backend_name):
    same = np.array([-4.0, -7.5, -1.25])
    loss, stats = dpo_loss(same, same - 1.0, same, same - 1.0, beta=0.1)
    assert loss.item() == math.log(2)  # −log σ(0), exactly
    assert stats["reward_chosen"] == stats["reward_rejected"] == stats["reward_margin"] == 0.0


def tiny_gpt(vocab_size=12, block_size=10, seed=0):
    backend.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=2, n_embd=16))


def copy_of(model):
    twin = GPT(model.config)
    twin.load_state_dict(model.state_dict())
    return twin


PAIRS = [PreferencePair([11], [1, 2, 3, 11], [4, 11]), PreferencePair([11, 5, 6], [7, 11], [8, 9, 10, 1, 2, 11]),
         PreferencePair([11, 3], [3], [4, 5])]


def test_sequence_logprobs_count_the_response_tokens_only(backend_name):
    model = tiny_gpt()
    tokens, mask, response = pair_batch(PAIRS, block_size=10)  # (6, T) each
    assert response.sum(axis=1).tolist() == [4, 2, 1, 2, 6, 2]
    with no_grad():
        got = sequence_logprobs(model, tokens, mask, response).numpy()  # (6,)
        for b, p in enumerate(PAIRS + PAIRS):
            seq = p.chosen if b < 3 else p.rejected
            alone = model.logprobs(np.array([seq])).numpy()[0]  # unpadded: column t scores token t
            assert got[b] == pytest.approx(alone[len(p.prompt_ids):].sum(), rel=1e-5)
    with pytest.raises(ValueError, match="marks column 0"):
        sequence_logprobs(model, tokens, mask, mask)


def test_policy_equal_to_reference_gives_log_2_and_the_reference_is_computed_once(tmp_path):
    ref, policy = tiny_gpt(), tiny_gpt()
    # the same batches through two equal models: the same bits, so every h is exactly 0 (accuracy 0:
    # h > 0 nowhere) and the loss is the mean of 90 copies of −log σ(0) = log 2
    stats = evaluate_dpo(policy, PAIRS * 30, *pair_logprobs(ref, PAIRS * 30, 10), DPOConfig())
    assert stats["reward_chosen"] == stats["reward_rejected"] == stats["accuracy"] == 0.0
    assert stats["loss"] == pytest.approx(math.log(2), rel=1e-15)
    calls = []
    original = ref.logprobs
    ref.logprobs = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
    history = train_dpo(policy, ref, PAIRS * 30, DPOConfig(steps=6, batch_size=4, lr=1e-2, eval_interval=3),
                        val_pairs=PAIRS, progress=False, log_path=tmp_path / "dpo.jsonl")
    assert len(calls) == 2 + 1  # 90 training pairs in two batches of 64, 3 validation pairs in one, then never again
    # The training batch pads differently from the cache's batches, which reorders float32 sums:
    # the first step is log 2 up to that round-off.
    assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert abs(history[0]["reward_chosen"]) < 1e-6 and abs(history[0]["reward_rejected"]) < 1e-6
    assert [h["step"] for h in history] == list(range(1, 7))
    assert [json.loads(line)["step"] for line in (tmp_path / "dpo.jsonl").read_text().splitlines()] == list(range(1, 7))
    assert "val_accuracy" in history[2] and "val_accuracy" not in history[3] and "val_accuracy" in history[5]
    again = train_dpo(tiny_gpt(), tiny_gpt(), PAIRS * 30, DPOConfig(steps=6, batch_size=4, lr=1e-2), progress=False)
    assert [h["loss"] for h in again] == [h["loss"] for h in history]  # batches seeded by (seed, step)


BANDIT = Bandit(sharpness=3.0)  # a softer π_ref than the RL oracle's (EOT 0.26, the others 0.13 to 0.15)
EOT, REWARD = BANDIT.eot_id, BANDIT.rewards
bandit_gpt = BANDIT.model


def response_logprobs(model) -> np.ndarray:
    """log π(y) for all six responses, exactly."""
    return np.log(BANDIT.distribution(model))


def bradley_terry_fit(winners, losers, steps=3000):
    """The maximum-likelihood BT rewards of the labelled pairs (gradient ascent, centred)."""
    r = np.zeros(6)
    for _ in range(steps):
        p_wrong = 1.0 / (1.0 + np.exp(r[winners] - r[losers]))
        r += 2.0 * (np.bincount(winners, p_wrong, 6) - np.bincount(losers, p_wrong, 6)) / len(winners)
    return r - r.mean()


def test_dpo_recovers_the_reward_up_to_a_constant_on_the_bandit():
    """Pairs (y1, y2) ~ π_ref × π_ref with y1 ≠ y2 (equal ones state no preference), labelled y1 ≻ y2
    with probability σ(R(y1) − R(y2)). DPO's optimum is β·log(π/π_ref) = R + c (MATH.md §12); on a
    finite sample it is the Bradley–Terry maximum-likelihood fit of the pairs, which tends to R + c.
    Measured: Pearson 0.998, max error 0.07 (0.05 to 0.16 over data seeds 0 to 3)."""
    beta, n_pairs = 0.5, 8000
    ref, policy = bandit_gpt(), bandit_gpt()
    ref_logp = response_logprobs(ref)
    rng = np.random.default_rng(0)
    draws = rng.choice(6, size=(2 * n_pairs, 2), p=np.exp(ref_logp) / np.exp(ref_logp).sum())
    y1, y2 = draws[draws[:, 0] != draws[:, 1]][:n_pairs].T
    first_wins = rng.random(n_pairs) < 1.0 / (1.0 + np.exp(REWARD[y2] - REWARD[y1]))
    winners, losers = np.where(first_wins, y1, y2), np.where(first_wins, y2, y1)
    pairs = [PreferencePair([EOT], [w], [l]) for w, l in zip(winners, losers)]
    train_dpo(policy, ref, pairs, DPOConfig(beta=beta, steps=300, batch_size=512, lr=0.05), progress=False)
    implicit = beta * (response_logprobs(policy) - ref_logp)  # β·log(π/π_ref), one per response
    implicit, target = implicit - implicit.mean(), REWARD - REWARD.mean()
    corr = float(np.corrcoef(implicit, target)[0, 1])
    error = float(np.abs(implicit - target).max())
    mle = bradley_terry_fit(winners, losers)  # what DPO's loss is minimised by on these very pairs
    mle_error, optimisation_error = float(np.abs(mle - target).max()), float(np.abs(implicit - mle).max())
    print(f"DPO bandit: Pearson(β·log π/π_ref, R) = {corr:.4f}; max |error| after centring {error:.3f}, of which "
          f"sampling {n_pairs} pairs accounts for {mle_error:.3f} (the BT maximum-likelihood fit) and "
          f"optimisation for {optimisation_error:.3f} (DPO's distance to that fit)")
    assert corr > 0.98
    assert error < 0.2  # R spans 2.0
    assert optimisation_error < 0.1


def test_dpo_on_label_pairs_raises_held_out_accuracy(synthetic_lm):
    tok, ref, train, val = synthetic_lm
    val_pairs = pairs_from_labels(val, tok, 100, seed=1)
    config = DPOConfig(beta=0.1, steps=40, batch_size=16, lr=3e-4, eval_interval=10)
    history = train_dpo(copy_of(ref), ref, pairs_from_labels(train, tok, 400, seed=0), config, val_pairs=val_pairs,
                        progress=False)
    evals = [h for h in history if "val_accuracy" in h]
    print("DPO on synthetic label pairs: held-out accuracy", [h["val_accuracy"] for h in evals],
          "loss", [round(h["val_loss"], 3) for h in evals],
          f"chosen log-prob {history[0]['logps_chosen']:.1f} -> {history[-1]['logps_chosen']:.1f}")
    assert [h["step"] for h in evals] == [10, 20, 30, 40]
    assert evals[-1]["val_accuracy"] >= max(0.85, evals[0]["val_accuracy"])  # chance is 0.5
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] < math.log(2)
    assert evals[-1]["val_reward_margin"] > 0


def test_dpo_training_resumes_exactly(synthetic_lm, tmp_path):
    tok, ref, train, _ = synthetic_lm
    pairs = pairs_from_labels(train, tok, 100, seed=0)
    config = DPOConfig(beta=0.1, steps=6, batch_size=8, lr=3e-4, eval_interval=0)
    straight = copy_of(ref)
    train_dpo(straight, ref, pairs, config, progress=False)
    ck = tmp_path / "dpo.npz"
    train_dpo(copy_of(ref), ref, pairs, config, progress=False, checkpoint_path=ck, stop_at=3)
    resumed = copy_of(ref)
    history = train_dpo(resumed, ref, pairs, config, progress=False, checkpoint_path=ck)
    assert [h["step"] for h in history] == [4, 5, 6]
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    with pytest.raises(CheckpointError, match="other DPO settings"):
        train_dpo(copy_of(ref), ref, pairs, DPOConfig(beta=0.2, steps=6, batch_size=8), progress=False,
                  checkpoint_path=ck)


def test_bad_settings_and_data_get_clear_errors():
    ref = tiny_gpt()
    with pytest.raises(ValueError, match="beta must be positive"):
        DPOConfig(beta=0.0)
    with pytest.raises(ValueError, match="beta must be positive"):
        dpo_loss(*LOGPS, beta=-1.0)
    with pytest.raises(ValueError, match="unknown DPO loss_type 'hinge'"):
        DPOConfig(loss_type="hinge")
    for eps in (-0.1, 0.5):
        with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 0.5\)"):
            DPOConfig(label_smoothing=eps)
    with pytest.raises(ValueError, match="sigmoid loss only"):
        dpo_loss(*LOGPS, beta=0.1, loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(ValueError, match="one shape"):
        dpo_loss(POLICY_CHOSEN, POLICY_REJECTED[:1], REF_CHOSEN, REF_REJECTED, beta=0.1)
    config = DPOConfig(steps=1, batch_size=2)
    with pytest.raises(ValueError, match="no preference pairs"):
        train_dpo(tiny_gpt(), ref, [], config, progress=False)
    with pytest.raises(ValueError, match="3 of 3 pairs .* identical chosen and rejected"):
        train_dpo(tiny_gpt(), ref, [PreferencePair([11], [1, 11], [1, 11])] * 3, config, progress=False)
    with pytest.raises(ValueError, match="pair 1 has an empty rejected response"):
        train_dpo(tiny_gpt(), ref, [PAIRS[0], PreferencePair([11], [1], [])], config, progress=False)
    with pytest.raises(ValueError, match="pair 0 has an empty prompt"):
        train_dpo(tiny_gpt(), ref, [PreferencePair([], [1], [2])], config, progress=False)
    with pytest.raises(ValueError, match="leaves no room for the response"):
        train_dpo(tiny_gpt(), ref, [PreferencePair([11] * 10, [1], [2])], config, progress=False)
    with pytest.raises(ValueError, match=r"vocabularies differ \(13 vs 12\)"):
        train_dpo(tiny_gpt(vocab_size=13), ref, PAIRS, config, progress=False)
