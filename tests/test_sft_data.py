"""SFT data: the response mask at the prompt/response boundary and at EOT, truncation, and
that `train_lm` learns from it unchanged."""

import numpy as np
import pytest

from minirl import backend
from minirl import functional as F
from minirl.data import SFTDataset, SFTExample, filter_labels, synthetic_corpus
from minirl.model import GPT, GPTConfig
from minirl.tokenizer import Tokenizer
from minirl.train import TrainConfig, evaluate, train_lm

EOT, PAD = 9, 0


def one_row(example, block_size):
    data = SFTDataset([example], block_size, pad_id=PAD)
    x, y, mask = data.sample(np.random.default_rng(0), 1)
    return backend.to_numpy(x)[0], backend.to_numpy(y)[0], backend.to_numpy(mask)[0]


def test_mask_starts_at_the_last_prompt_token_and_ends_at_eot(backend_name):
    x, y, mask = one_row(SFTExample([EOT, 1, 2], [3, 4, EOT]), block_size=8)
    np.testing.assert_array_equal(x, [EOT, 1, 2, 3, 4, EOT, PAD, PAD])
    np.testing.assert_array_equal(y, [1, 2, 3, 4, EOT, PAD, PAD, PAD])
    np.testing.assert_array_equal(mask, [0, 0, 1, 1, 1, 0, 0, 0])
    first, last = np.flatnonzero(mask)[[0, -1]]
    assert x[first] == 2 and y[first] == 3  # reads the last prompt token, predicts the first response token
    assert y[first - 1] == 2  # the prediction of the last prompt token does not count
    assert y[last] == EOT and x[last] == 4  # the EOT prediction counts: the model learns to stop
    assert y[last + 1] == PAD  # nothing after EOT counts


def test_a_row_that_fills_the_block_exactly_and_one_that_overflows():
    x, y, mask = one_row(SFTExample([EOT], [1, 2, 3, EOT]), block_size=4)  # 5 tokens = block_size + 1
    np.testing.assert_array_equal(y, [1, 2, 3, EOT])
    np.testing.assert_array_equal(mask, [1, 1, 1, 1])
    x, y, mask = one_row(SFTExample([EOT, 5], [1, 2, 3, 4, EOT]), block_size=4)  # truncated: EOT is cut
    np.testing.assert_array_equal(x, [EOT, 5, 1, 2])
    np.testing.assert_array_equal(y, [5, 1, 2, 3])
    np.testing.assert_array_equal(mask, [0, 1, 1, 1])
    x, y, mask = one_row(SFTExample([EOT, 5, 6, 7], [1, EOT]), block_size=4)  # only one response token fits
    np.testing.assert_array_equal(mask, [0, 0, 0, 1])
    assert y[3] == 1


def test_bad_examples_are_refused():
    with pytest.raises(ValueError, match="no examples"):
        SFTDataset([], 8, PAD)
    with pytest.raises(ValueError, match="empty response"):
        SFTDataset([SFTExample([EOT], [])], 8, PAD)
    with pytest.raises(ValueError, match="empty prompt"):
        SFTDataset([SFTExample([], [1])], 8, PAD)
    with pytest.raises(ValueError, match="no room for a response"):
        SFTDataset([SFTExample([EOT, 1, 2, 3, 4], [5])], 4, PAD)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(synthetic_corpus(300).texts, 300)


def test_from_texts_builds_eot_prompts_and_drops_texts_with_no_response(tokenizer):
    tok = tokenizer
    texts = ["i love my coffee", "hi", "so happy about the game!"]
    ids = tok.encode_batch(texts)
    k = len(ids[1])  # "hi" has exactly k tokens: nothing left for a response
    data = SFTDataset.from_texts(texts, tok, block_size=24, prompt_tokens=k)
    assert len(data) == 2 and data.pad_id == tok.eot_id
    row = data.seqs[0]
    expected = [tok.eot_id] + ids[0] + [tok.eot_id]
    np.testing.assert_array_equal(row[:len(expected)], expected)
    np.testing.assert_array_equal(np.flatnonzero(data.mask[0]), np.arange(k, len(expected) - 1))
    assert data.n_response_tokens == sum(len(i) - k + 1 for i in (ids[0], ids[2]))
    full = SFTDataset.from_texts(texts, tok, block_size=24)  # prompt = [EOT] only: every text token counts
    assert full.mask[1].sum() == len(ids[1]) + 1
    with pytest.raises(ValueError, match="no SFT examples from 1 texts"):
        SFTDataset.from_texts(["hi"], tok, block_size=24, prompt_tokens=k)
    with pytest.raises(ValueError, match="no SFT examples from 0 texts"):
        SFTDataset.from_texts([], tok, block_size=24)
    with pytest.raises(ValueError, match="prompt_tokens must be in"):
        SFTDataset.from_texts(texts, tok, block_size=4, prompt_tokens=4)


def test_sample_is_deterministic_and_shaped_like_a_token_stream(tokenizer):
    data = SFTDataset.from_texts(synthetic_corpus(30).texts, tokenizer, block_size=16)
    x, y, mask = data.sample(np.random.default_rng(3), 5)
    x2, _, mask2 = data.sample(np.random.default_rng(3), 5)
    assert x.shape == y.shape == mask.shape == (5, 16) and mask.dtype == bool
    np.testing.assert_array_equal(backend.to_numpy(x), backend.to_numpy(x2))
    np.testing.assert_array_equal(backend.to_numpy(mask), backend.to_numpy(mask2))
    np.testing.assert_array_equal(backend.to_numpy(x)[:, 1:], backend.to_numpy(y)[:, :-1])


def test_the_masked_loss_is_the_mean_nll_of_response_tokens_only(tokenizer):
    """Vectorised masked cross-entropy against a naive loop over (row, t) with log_softmax."""
    backend.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    data = SFTDataset.from_texts(synthetic_corpus(30).texts, tokenizer, block_size=16, prompt_tokens=2)
    x, y, mask = data.sample(np.random.default_rng(0), 4)
    logp = F.log_softmax(model(x)).numpy()  # (B, T, V)
    y, mask = backend.to_numpy(y), backend.to_numpy(mask)
    terms = [-logp[b, t, y[b, t]] for b in range(4) for t in range(16) if mask[b, t]]
    assert model.loss(x, y, mask).item() == pytest.approx(np.mean(terms), rel=1e-5)


def test_sft_through_train_lm_lowers_the_masked_loss(tokenizer):
    positive = filter_labels(synthetic_corpus(300), "positive")
    data = SFTDataset.from_texts(positive.texts, tokenizer, block_size=16, prompt_tokens=1)
    backend.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    before = evaluate(model, data, batch_size=16, batches=4)
    history = train_lm(model, data, TrainConfig(steps=40, batch_size=16, lr=1e-2, warmup_steps=5, eval_interval=0),
                       val_data=data, progress=False)
    assert history[-1]["val_loss"] < 0.5 * before
