"""The CuPy code path, run on the strict stand-in: host inputs, range checks, sync budgets,
the top-k partition, row sums and the embedding backward (issue 14's findings)."""

import pathlib
import re
import tomllib

import numpy as np
import pytest

from minirl import backend, indexing, ops
from minirl import functional as F
from minirl.model import GPT, GPTConfig
from minirl.rl.losses import masked_mean, ppo_policy_loss, ppo_value_loss
from minirl.sampling import generate, sample_next
from minirl.tensor import Tensor
from minirl.train import TrainConfig, train_lm
from tests import cupy_standin as cp

host = backend.to_numpy
ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture
def standin():
    backend.install_cupy(cp, cp.cupyx)
    backend.use("cupy")
    cp.counts.reset()
    yield cp.counts
    backend.use("numpy")
    backend.install_cupy(None, None)


def test_public_helpers_take_host_arrays(standin):
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    bounds = np.array([1.0, 1.5, 2.0])
    assert host(ops.clip(x, None, bounds).data).tolist() == [[0.0, 1.0, 2.0], [1.0, 1.5, 2.0]]
    assert float(masked_mean(np.ones((2, 3)), np.array([[1, 0, 0], [0, 0, 0]]))) == 1.0
    mask, zeros = np.ones((2, 3)), np.zeros((2, 3))
    _, stats = ppo_policy_loss(Tensor(zeros, requires_grad=True), zeros, np.ones((2, 3)), mask)
    assert stats["approx_kl"] == 0.0 and stats["clipfrac"] == 0.0
    _, v_stats = ppo_value_loss(Tensor(zeros, requires_grad=True), zeros, np.ones((2, 3)), mask)
    assert v_stats["value_clipfrac"] == 0.0
    y = F.dropout(Tensor(np.ones((50, 50))), 0.5, rng=np.random.default_rng(0))  # a NumPy generator
    assert set(np.unique(host(y.data)).tolist()) <= {0.0, 2.0}
    ids, _ = sample_next(backend.to_backend(np.zeros((3, 5))), rng=np.random.default_rng(0))
    assert host(ids).shape == (3,)


def test_where_and_masked_fill_take_bool_and_list_conditions(standin):
    a, b = Tensor(np.ones(3)), Tensor(np.zeros(3))
    assert host(indexing.where(True, a, b).data).tolist() == [1.0, 1.0, 1.0]
    assert host(indexing.where([True, False, True], a, b).data).tolist() == [1.0, 0.0, 1.0]
    assert host(a.masked_fill([False, True, False], -1.0).data).tolist() == [1.0, -1.0, 1.0]


def test_out_of_range_host_ids_are_refused_before_they_can_wrap(standin):
    table = Tensor(np.zeros((4, 3)), requires_grad=True)
    with pytest.raises(ValueError, match="id 4 is out of range for a table of 4 rows"):
        F.embedding(table, np.array([1, 4]))
    with pytest.raises(ValueError, match="gather: index 3 is out of range for axis 1 of size 3"):
        indexing.gather(table, np.array([[0], [3], [1], [2]]), axis=1)
    with pytest.raises(ValueError, match="index 7 is out of range for axis 0 of size 4"):
        table[np.array([0, 7])]
    with pytest.raises(ValueError, match="target id 5 is out of range for 3 classes"):
        F.cross_entropy(table, np.array([0, 1, 2, 5]))
    model = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=4))
    with pytest.raises(ValueError, match="token id 12 is out of range for vocab_size=10"):
        model(np.array([[1, 12]]))
    with pytest.raises(ValueError, match="prompt 1: token id 10 is out of range"):
        generate(model, [[1], [2, 10]], 2)


def test_top_k_partitions_the_small_side(standin):
    logits = backend.to_backend(np.random.default_rng(0).standard_normal((4, 2048)).astype(np.float32))
    standin.reset()
    ids, _ = sample_next(logits, top_k=5, rng=backend.rng(0))
    assert standin.calls["partition"] == 1 and standin.sorts == 0  # CuPy sorts whole rows once kth >= 1024
    assert standin.syncs == 0  # the filter is written with copyto, not a boolean-mask assignment
    top5 = np.argsort(host(logits), axis=-1)[:, -5:]
    assert all(i in row for i, row in zip(host(ids).tolist(), top5.tolist()))


def test_row_sums_use_no_einsum_on_cupy(standin):
    x = Tensor(np.random.default_rng(0).standard_normal((4, 6, 8)), requires_grad=True)
    w, b = Tensor(np.ones(8), requires_grad=True), Tensor(np.zeros(8), requires_grad=True)
    standin.reset()
    (F.layer_norm(x, w, b) * F.softmax(x) + F.log_softmax(x)).sum().backward()
    assert standin.calls["einsum"] == 0  # CuPy re-parses einsum subscripts on every call


def test_embedding_backward_is_a_matmul_on_cupy_and_matches_numpy(standin):
    ids = np.array([[3, 1, 3], [0, 3, 2]])
    g = np.random.default_rng(0).standard_normal((2, 3, 5))
    table = Tensor(np.zeros((4, 5)), requires_grad=True)
    standin.reset()
    F.embedding(table, ids).backward(g)
    assert standin.calls["scatter_add"] == 0  # CuPy's scatter-add uses atomics: not bit-reproducible
    expected = np.zeros((4, 5))
    np.add.at(expected, ids, g)
    np.testing.assert_allclose(host(table.grad), expected, rtol=1e-12)


class _Tokens:
    """Random ids for a default-card model, as TokenStream.sample returns them."""

    def sample(self, rng, batch_size):
        window = rng.integers(0, 2048, size=(batch_size, 65))
        return backend.to_backend(window[:, :-1]), backend.to_backend(window[:, 1:]), None


def test_a_default_card_training_step_reads_the_device_once(standin):
    model = GPT(GPTConfig())  # the default card: 2,048 tokens, 64 positions, 4 layers of 128
    steps = 3
    standin.reset()
    history = train_lm(model, _Tokens(), TrainConfig(steps=steps, batch_size=2, warmup_steps=0, eval_interval=0,
                                                      checkpoint_interval=0), progress=False)
    assert len(history) == steps and all(np.isfinite(h["loss"]) and h["grad_norm"] > 0 for h in history)
    assert standin.syncs == steps, standin.sync_kinds  # the logged loss and grad norm, read together


class _MaskedTokens(_Tokens):
    """SFT rows: a host mask that scores no prompt column (the loss then skips the first 10)."""

    def sample(self, rng, batch_size):
        x, y, _ = super().sample(rng, batch_size)
        mask = np.ones(x.shape, dtype=bool)
        mask[:, :10] = False
        return x, y, mask


def test_an_sft_step_with_a_host_mask_reads_the_device_once(standin):
    model = GPT(GPTConfig())
    standin.reset()
    history = train_lm(model, _MaskedTokens(), TrainConfig(steps=2, batch_size=2, warmup_steps=0, eval_interval=0,
                                                            checkpoint_interval=0), progress=False)
    assert len(history) == 2 and standin.syncs == 2, standin.sync_kinds


def test_sampling_reads_the_device_once_every_few_tokens(standin):
    model = GPT(GPTConfig())
    new_tokens = 32
    standin.reset()
    gen = generate(model, [[1, 2, 3], [4]], new_tokens, eot_id=0)
    assert gen.tokens.shape[1] <= 3 + new_tokens
    assert standin.syncs <= new_tokens // backend.poll_interval(), standin.sync_kinds


def test_each_cuda_major_has_its_extra_and_the_readme_says_which():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["gpu-cuda12"] == ["cupy-cuda12x"] and extras["gpu-cuda13"] == ["cupy-cuda13x"]
    assert not any("cupy" in dep for name, deps in extras.items() if not name.startswith("gpu-") for dep in deps)
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"gpu-cuda13.*gpu-cuda12", readme, re.S) and "nvidia-smi" in readme
