"""Checkpoints: round trip, atomic writes, no pickle, and clear errors for bad or mismatched files."""

import zipfile

import numpy as np
import pytest

from minirl import backend, optim
from minirl.checkpoint import CheckpointError, load_checkpoint, restore, save_checkpoint
from minirl.model import GPT, GPTConfig

CFG = dict(vocab_size=30, block_size=8, n_layer=1, n_head=2, n_embd=8)


def trained_pair(seed=0):
    backend.manual_seed(seed)
    model = GPT(GPTConfig(**CFG))
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    x = np.arange(16).reshape(2, 8) % 30
    for _ in range(2):
        loss = model.loss(x, (x + 1) % 30)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def test_round_trip_restores_everything(tmp_path, backend_name):
    model, opt = trained_pair()
    path = save_checkpoint(tmp_path / "ck.npz", model, step=2, optimizer=opt, tokenizer_ranks="AA== 0\n",
                           extra={"stage": "pretrain"})
    assert not list(tmp_path.glob("*.tmp"))  # written via tmp + rename
    expected_draw = backend.host_rng().random(3)
    ck = load_checkpoint(path)
    assert ck.step == 2 and ck.tokenizer_ranks == "AA== 0\n" and ck.meta["extra"] == {"stage": "pretrain"}
    fresh, fresh_opt = trained_pair(seed=9)
    assert restore(ck, fresh, fresh_opt, tokenizer_ranks="AA== 0\n") == 2
    for (name, a), (_, b) in zip(model.named_parameters(), fresh.named_parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
    for a, b in zip(opt.exp_avg_sq, fresh_opt.exp_avg_sq):
        np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b))
    assert fresh_opt.step_count == 2
    np.testing.assert_array_equal(backend.host_rng().random(3), expected_draw)  # RNG state came back


def test_loads_without_pickle(tmp_path, backend_name):
    model, opt = trained_pair()
    path = save_checkpoint(tmp_path / "ck.npz", model, step=1, optimizer=opt)
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


def test_corrupted_and_foreign_files_are_reported(tmp_path, backend_name):
    model, _ = trained_pair()
    path = save_checkpoint(tmp_path / "ck.npz", model, step=1)
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable minirl checkpoint.*truncated or corrupted"):
        load_checkpoint(tmp_path / "cut.npz")
    np.savez(tmp_path / "other.npz", meta=np.array('{"format": "something-else"}'))
    with pytest.raises(CheckpointError, match="not a minirl checkpoint"):
        load_checkpoint(tmp_path / "other.npz")
    with zipfile.ZipFile(tmp_path / "nometa.npz", "w") as z:
        z.writestr("x.npy", b"junk")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "nometa.npz")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.npz")


def test_mismatched_config_or_tokenizer_is_refused(tmp_path, backend_name):
    model, opt = trained_pair()
    path = save_checkpoint(tmp_path / "ck.npz", model, step=1, optimizer=opt, tokenizer_ranks="AA== 0\n")
    other = GPT(GPTConfig(**{**CFG, "n_embd": 16}))
    with pytest.raises(CheckpointError, match=r"different model config: .*n_embd: checkpoint 8 vs model 16"):
        restore(load_checkpoint(path), other)
    with pytest.raises(CheckpointError, match="different tokenizer"):
        restore(load_checkpoint(path), model, tokenizer_ranks="AQ== 0\n")
    before = {k: v.copy() for k, v in other.state_dict().items()}
    fresh, _ = trained_pair(seed=4)
    weights = {k: v.copy() for k, v in fresh.state_dict().items()}
    with pytest.raises(CheckpointError, match="AdamW, not SGD"):
        restore(load_checkpoint(path), fresh, optim.SGD(fresh.parameters()))
    for k, v in fresh.state_dict().items():  # a refused checkpoint changed nothing
        np.testing.assert_array_equal(backend.to_numpy(v), backend.to_numpy(weights[k]))
    assert before.keys() == other.state_dict().keys()


def test_dropout_is_not_part_of_the_architecture_check(tmp_path, backend_name):
    model, _ = trained_pair()
    path = save_checkpoint(tmp_path / "ck.npz", model, step=1)
    other = GPT(GPTConfig(**{**CFG, "dropout": 0.1}))
    restore(load_checkpoint(path), other)
    for (name, a), (_, b) in zip(model.named_parameters(), other.named_parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=name)
