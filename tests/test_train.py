"""The training loop: it learns, and stopping then resuming gives the uninterrupted parameters."""

import json

import numpy as np
import pytest

from minirl import backend
from minirl.data import synthetic_corpus
from minirl.data.tokens import TokenStream
from minirl.model import GPT, GPTConfig
from minirl.tokenizer import Tokenizer
from minirl.checkpoint import CheckpointError
from minirl.train import TrainConfig, train_lm


@pytest.fixture(scope="module")
def stream():
    corpus = synthetic_corpus(300)
    tok = Tokenizer.train(corpus.texts, 300)
    return tok, TokenStream.from_texts(corpus.texts, tok, block_size=16)


def fresh_model(tok):
    backend.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))


CONFIG = TrainConfig(steps=12, batch_size=4, lr=1e-2, warmup_steps=3, eval_interval=0, checkpoint_interval=0)


def test_loss_goes_down(stream, backend_name):
    tok, data = stream
    history = train_lm(fresh_model(tok), data, TrainConfig(steps=40, batch_size=8, lr=1e-2, warmup_steps=5),
                       val_data=data, progress=False)
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]
    assert "val_loss" in history[-1] and history[-1]["tokens_per_s"] > 0


def test_stop_and_resume_is_exact(stream, tmp_path, backend_name):
    tok, data = stream
    straight = fresh_model(tok)
    train_lm(straight, data, CONFIG, progress=False)

    ck, log_path = tmp_path / "ck.npz", tmp_path / "metrics.jsonl"
    first = fresh_model(tok)
    train_lm(first, data, CONFIG, checkpoint_path=ck, tokenizer=tok, stop_at=5, progress=False, log_path=log_path)
    with open(log_path, "a") as f:  # a killed run may have logged steps it never checkpointed, and half a line
        f.write('{"step": 6, "loss": 1.0}\n{"step": 7, "lo')
    backend.manual_seed(123)  # a new process would start with other RNG state
    resumed = GPT(first.config)
    log = train_lm(resumed, data, CONFIG, checkpoint_path=ck, tokenizer=tok, progress=False, log_path=log_path)
    assert [m["step"] for m in log] == list(range(6, 13))
    logged = [json.loads(line)["step"] for line in log_path.read_text().splitlines()]
    assert logged == list(range(1, 13))
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)


def test_token_stream_errors(stream, backend_name):
    tok, _ = stream
    with pytest.raises(ValueError, match="empty corpus"):
        TokenStream.from_texts([], tok, 16)
    with pytest.raises(ValueError, match="fewer than block_size \\+ 1 = 17"):
        TokenStream.from_texts(["hi"], tok, 16)
    with pytest.raises(ValueError, match="steps must be positive"):
        TrainConfig(steps=0)


def test_resume_with_other_settings_is_refused(stream, tmp_path, backend_name):
    tok, data = stream
    ck = tmp_path / "ck.npz"
    train_lm(fresh_model(tok), data, CONFIG, checkpoint_path=ck, tokenizer=tok, stop_at=2, progress=False)
    changed = TrainConfig(**{**CONFIG.__dict__, "lr": 0.5})
    with pytest.raises(CheckpointError, match="other training settings .*lr: 0.01 -> 0.5"):
        train_lm(fresh_model(tok), data, changed, checkpoint_path=ck, tokenizer=tok, progress=False)


def test_a_diverged_loss_stops_before_it_can_overwrite_the_checkpoint(stream, tmp_path, backend_name):
    tok, data = stream
    ck = tmp_path / "ck.npz"
    model = fresh_model(tok)
    train_lm(model, data, CONFIG, checkpoint_path=ck, tokenizer=tok, stop_at=2, progress=False)
    saved = ck.read_bytes()

    class Poisoned:  # the weights blow up right after the resume
        def sample(self, rng, batch_size):
            model.wte.weight.data[:] = np.nan
            return data.sample(rng, batch_size)

    with pytest.raises(FloatingPointError, match="loss is nan at step 3"):
        train_lm(model, Poisoned(), CONFIG, checkpoint_path=ck, tokenizer=tok, progress=False)
    assert ck.read_bytes() == saved
