"""The statistics in happy_gpt's report, against hand counts and exact answers."""

import math
import types

import numpy as np
import pytest

from minirl import backend
from minirl.data.sft import SFTDataset, SFTExample
from minirl.examples.report import distinct_n, perplexity, sample_statistics, side_by_side
from minirl.model import GPT, GPTConfig
from minirl.rl.bandit import Bandit
from tests.conftest import has_distribution


def test_distinct_n_counts_unique_word_ngrams():
    texts = ["a b a b", "a b c"]  # unigrams a b a b a b c; bigrams ab ba ab ab bc
    assert distinct_n(texts, 1) == pytest.approx(3 / 7)
    assert distinct_n(texts, 2) == pytest.approx(3 / 5)
    assert distinct_n(["one"], 2) == 0.0 and distinct_n([], 1) == 0.0


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    model = GPT(GPTConfig(vocab_size=37, block_size=8, n_layer=1, n_head=1, n_embd=8))
    model.wte.weight.data[...] = 0  # tied head: every logit is 0, so π is uniform over 37 tokens
    data = SFTDataset([SFTExample([0], [5, 6, 7]), SFTExample([0, 1], [2, 3, 4, 5, 6])], block_size=8, pad_id=0)
    assert perplexity(model, data, batch_size=1) == pytest.approx(37.0, rel=1e-5)


def test_perplexity_counts_only_response_tokens_of_ragged_rows():
    backend.set_default_dtype(np.float64)
    backend.manual_seed(2)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8))
    model.wte.weight.data[...] = np.random.default_rng(0).normal(0, 1.0, model.wte.weight.shape)  # far from uniform
    examples = [SFTExample([3], [5, 6, 7]), SFTExample([0, 1, 2, 9], [2, 3]), SFTExample([4, 4], [8, 1, 10, 0, 6])]
    data = SFTDataset(examples, block_size=8, pad_id=0)
    nll, count = 0.0, 0
    for ex in examples:  # by hand: each unpadded sequence alone, log π(a_t | s_t) of its response tokens only
        seq = list(ex.prompt_ids + ex.response_ids)
        logits = model(np.array([seq[:-1]])).numpy()[0]  # (len - 1, V)
        logp = logits - logits.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        for t in range(len(ex.prompt_ids) - 1, len(seq) - 1):  # position t predicts seq[t + 1], a response token
            nll -= logp[t, seq[t + 1]]
            count += 1
    assert count == 10
    expected = math.exp(nll / count)
    for batch_size in (1, 2, 3):
        assert perplexity(model, data, batch_size=batch_size) == pytest.approx(expected, rel=1e-9)
    assert abs(expected - 11) > 2  # far from uniform, where any averaging of the tokens gives 11


@pytest.mark.skipif(not has_distribution("vaderSentiment"), reason="the report also scores with VADER ('.[data]')")
def test_the_kl_to_sft_estimate_matches_the_exact_kl_on_the_bandit():
    bandit = Bandit(sharpness=2.0)
    ref, policy = bandit.model(), bandit.model()
    backend.manual_seed(3)
    policy.wte.weight.data += backend.to_backend(np.random.default_rng(1).normal(size=policy.wte.weight.shape)
                                                 .astype(np.float32))
    pi, pi_ref = bandit.distribution(policy), bandit.distribution(ref)
    exact = float(np.sum(pi * np.log(pi / pi_ref)))  # KL(π ‖ π_ref) over the six one-token responses
    tokenizer = types.SimpleNamespace(eot_id=bandit.eot_id, decode=bandit.decode)
    n = 4000
    stats = sample_statistics(policy, ref, [[bandit.eot_id]] * n, tokenizer, bandit.reward_fn, max_new_tokens=1,
                              seed=0)
    log_ratio = np.log(pi / pi_ref)
    sigma = math.sqrt(float(np.sum(pi * (log_ratio - exact) ** 2)) / n)
    assert exact > 0.05
    assert abs(stats["kl_to_sft"] - exact) < 4 * sigma
    assert stats["reward"] == pytest.approx(float(np.sum(pi * bandit.rewards)), abs=4 * bandit.rewards.std() / n ** 0.5)
    assert stats["response_length"] == 1.0


def test_side_by_side_wraps_each_column():
    text = side_by_side(["short", "a " * 30], ["x", "y"], ("left", "right"), width=20)
    lines = text.splitlines()
    assert lines[0].startswith("left") and "| right" in lines[0]
    assert all(len(line.split("|")[0]) <= 21 for line in lines[2:])
    assert sum(1 for line in lines if line.strip().startswith("a a")) >= 3  # the long text wrapped


def test_side_by_side_keeps_every_word_of_both_columns_on_its_own_side():
    left = ["the quick brown fox jumps over the lazy dog", "short"]
    right = ["a long reply that must wrap onto several lines of the right column", "ok then"]
    text = side_by_side(left, right, ("before", "after"), width=16)
    lines = text.splitlines()[2:]
    assert all("|" in line for line in lines)
    lefts = [line.split(" | ")[0].rstrip() if " | " in line else line.rstrip(" |") for line in lines]
    rights = [line.split(" | ", 1)[1] if " | " in line else "" for line in lines]
    assert " ".join(" ".join(lefts).split()) == " ".join(" ".join(left).split())
    assert " ".join(" ".join(rights).split()) == " ".join(" ".join(right).split())
    assert all(len(cell) <= 16 for cell in lefts + rights)
