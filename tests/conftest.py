"""Shared fixtures: the backend each array test runs on, and hypothesis settings."""

import importlib.metadata
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from minirl import backend
from tests import cupy_standin

# Derandomized, so CI is deterministic; a fixed example budget keeps the suite fast.
settings.register_profile(
    "minirl",
    max_examples=int(os.environ.get("MINIRL_HYPOTHESIS_EXAMPLES", "25")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("minirl")

_CUPY_REASON = "cupy backend unavailable: cupy is not installed or no CUDA GPU is visible"
BACKEND_PARAMS = [
    "numpy",
    "standin",  # the cupy code path on the CPU, through the strict stand-in (tests/cupy_standin)
    pytest.param("cupy", marks=pytest.mark.skipif(not backend.cupy_available(), reason=_CUPY_REASON)),
]


def has_distribution(name: str) -> bool:
    """Whether a PyPI distribution (e.g. a data package) is installed, without importing it."""
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(autouse=True)
def _fresh_state():
    """Every test starts on numpy, seed 0, float32, whatever the last test did."""
    backend.use("numpy")
    backend.manual_seed(0)
    backend.set_default_dtype(np.float32)
    yield
    backend.use("numpy")
    backend.set_default_dtype(np.float32)


@pytest.fixture(params=BACKEND_PARAMS)
def backend_name(request):
    """Run the test once per backend: numpy, the CuPy stand-in, and real cupy (skipped with a
    reason when no GPU is present). Under the stand-in the active backend is "cupy"."""
    if request.param == "standin":
        backend.install_cupy(cupy_standin, cupy_standin.cupyx)
        cupy_standin.counts.reset()
    backend.use("cupy" if request.param == "standin" else request.param)
    yield backend.name()
    backend.use("numpy")
    if request.param == "standin":
        backend.install_cupy(None, None)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished happy_gpt folder, made once per session in ~25 s: a tiny model on the synthetic
    corpus, PPO (so it has a value model) against a learned reward model (so the explorer has all panels)."""
    from minirl.examples import happy_gpt

    out = tmp_path_factory.mktemp("explore") / "run"
    argv = ["--quick", "--corpus", "synthetic", "--vocab-size", "300", "--pretrain-steps", "40", "--sft-steps", "10",
            "--rl-iterations", "3", "--eval-samples", "8", "--reward", "rm", "--rm-pairs", "60", "--rm-steps", "5",
            "--out", str(out)]
    assert happy_gpt.main(argv) == 0
    backend.use("numpy")
    backend.set_default_dtype(np.float32)
    return out


@pytest.fixture(scope="session")
def synthetic_lm():
    """Text for the tests that need some: the synthetic tweets (600, three labels), split 80/20 with seed 0,
    a 320-token BPE trained on the training split, and a tiny GPT pretrained on it once for the session.

    Returns (tokenizer, model, train, val). The model is shared: a test that changes weights works on
    `copy_of(model)`.
    """
    from minirl.data import synthetic_corpus, train_val_split
    from minirl.data.tokens import TokenStream
    from minirl.model import GPT, GPTConfig
    from minirl.tokenizer import Tokenizer
    from minirl.train import TrainConfig, train_lm

    backend.set_default_dtype(np.float32)
    train, val = train_val_split(synthetic_corpus(600), 0.2, seed=0)
    tok = Tokenizer.train(train.texts, 320)
    backend.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=24, n_layer=1, n_head=2, n_embd=32))
    # 300 steps: long enough that 40% of pairs of its samples get different VADER scores (RLAIF needs them)
    train_lm(model, TokenStream.from_texts(train.texts, tok, 24),
             TrainConfig(steps=300, batch_size=16, lr=3e-3, warmup_steps=10, eval_interval=0), progress=False)
    return tok, model, train, val


def copy_of(model):
    """A GPT with the same config and its own copy of the weights."""
    from minirl.model import GPT

    twin = GPT(model.config)
    twin.load_state_dict(model.state_dict())
    return twin
