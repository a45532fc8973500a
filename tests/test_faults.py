"""Fault injection, library level: crafted checkpoints, diverged weights, bad files, nonsense settings.

Each test names the item of issue 15 it keeps fixed. The commands' side of the same faults
(exit status, what is left in --out) is in `test_faults_runs.py`.
"""

import dataclasses
import json
import math
import os
import zipfile

import numpy as np
import pytest

from minirl import backend, ops, optim
from minirl.checkpoint import CheckpointError, NonFiniteError, load_checkpoint, restore, save_checkpoint
from minirl.data import load_text_file
from minirl.examples.pipeline import DataConfig
from minirl.examples.stages import StageCache, write_atomic
from minirl.folder_lock import FolderBusyError, FolderLock, ForeignFolderError
from minirl.model import GPT, GPTConfig
from minirl.pretrain import load_pretrained
from minirl.rl.ppo import PPOConfig
from minirl.rl.rlaif import score_judge
from minirl.rl.trainer import RLConfig
from minirl.sampling import sample_next
from minirl.tensor import Tensor
from minirl.tokenizer import Tokenizer, load_ranks, ranks_to_text, save_ranks
from minirl.train import TrainConfig

CARD = GPTConfig(vocab_size=300, block_size=8, n_layer=1, n_head=2, n_embd=16, head_size=8)


def trained(seed=0):
    """A tiny GPT and its AdamW after one step, so every optimizer buffer is non-zero."""
    backend.manual_seed(seed)
    model = GPT(CARD)
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    x = backend.to_backend(np.arange(16).reshape(2, 8) % 300)
    model.loss(x, x).backward()
    opt.step()
    return model, opt


def snapshot(model, opt):
    return ({k: v.copy() for k, v in model.state_dict().items()},
            {k: ([a.copy() for a in v] if isinstance(v, list) else v) for k, v in opt.state_dict().items()})


def assert_unchanged(model, opt, before):
    weights, state = snapshot(model, opt)
    assert all(np.array_equal(weights[k], before[0][k]) for k in weights)
    assert state["step"] == before[1]["step"] and state["hparams"] == before[1]["hparams"]
    assert all(np.array_equal(a, b) for k, v in state.items() if isinstance(v, list) for a, b in zip(v, before[1][k]))


# 2. Non-finite weights are never checkpointed, and a stage holding them is never marked done.

def test_non_finite_weights_are_refused_and_the_last_checkpoint_kept(tmp_path):
    model, opt = trained()
    path = save_checkpoint(tmp_path / "ckpt.npz", model, step=1, optimizer=opt)
    good = path.read_bytes()
    model.wte.weight.data[0, 0] = np.inf
    with pytest.raises(NonFiniteError, match="wte.weight"):
        save_checkpoint(path, model, step=2, optimizer=opt)
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]


def write_raw_checkpoint(path, arrays: dict, meta: dict):
    """An .npz laid out as save_checkpoint lays it out, with whatever arrays and meta a test wants."""
    np.savez(path, **arrays, meta=np.array(json.dumps(meta)))


def test_a_diverged_checkpoint_is_set_aside_not_resumed_or_marked_done(tmp_path):
    model, _ = trained()
    cache = StageCache(tmp_path, notice=lambda message: notices.append(message))
    notices = []
    stage = cache.stage("pretrain", {"steps": 1})
    arrays = {f"model/{k}": np.full_like(v, np.nan) for k, v in model.state_dict().items()}
    meta = {"format": "minirl-checkpoint", "version": 1, "step": 1, "rng": backend.rng_state(),
            "model_config": CARD.to_dict(), "extra": {}}
    write_raw_checkpoint(stage.path("ckpt.npz"), arrays, meta)  # as an older minirl wrote it
    with pytest.raises(FloatingPointError, match="not marked done"):
        cache.finish(stage, ["ckpt.npz"], {})
    assert not stage.path("done.json").exists()
    assert not cache.is_done(stage, ["ckpt.npz"], resumable=["ckpt.npz"])
    assert stage.path("ckpt.npz.corrupt").exists() and not stage.path("ckpt.npz").exists()
    assert "NaN or inf" in notices[0] and "pretrain" in notices[0]


@pytest.mark.parametrize("marker", ["{", "[]", '{"sha256": 5, "info": {}}', '{"sha256": {}}'])
def test_an_unreadable_done_json_is_named_and_the_stage_recomputed(tmp_path, marker):
    notices = []
    cache = StageCache(tmp_path, notice=notices.append)
    stage = cache.stage("tokenizer", {"vocab_size": 300})
    stage.path("tokenizer.tiktoken").write_text("ranks")
    cache.finish(stage, ["tokenizer.tiktoken"], {})
    assert cache.is_done(stage, ["tokenizer.tiktoken"])
    stage.path("done.json").write_text(marker)
    assert not cache.is_done(stage, ["tokenizer.tiktoken"])
    assert f"{stage.path('done.json')} is unreadable" in notices[0] and "checksum" not in notices[0]
    assert "tokenizer.tiktoken cannot be checked" in notices[0] and "recomputing" in notices[0]
    assert stage.path("done.json.corrupt").read_text() == marker
    assert stage.path("tokenizer.tiktoken.corrupt").read_text() == "ranks"


# 3. NaN rewards cannot become DPO preferences.

def test_a_judge_refuses_nan_scores():
    judge = score_judge(lambda texts: [math.nan if t == "bad" else 1.0 for t in texts])
    with pytest.raises(ValueError, match="finite scores"):
        judge("", "bad", "good")
    with pytest.raises(ValueError, match="finite scores"):
        judge("", "good", "bad")
    assert judge("", "good", "fine") == 0


# 4. A CSV cell over csv.field_size_limit() is a message naming the file and line.

def test_an_overlong_csv_field_names_the_file_and_line(tmp_path):
    path = tmp_path / "corpus.csv"
    path.write_text('text,label\nfine,1\n"' + "x" * 200_000 + '",0\n')
    with pytest.raises(ValueError, match=r"corpus\.csv, line 3: not valid CSV .*quote"):  # where the field starts
        load_text_file(path, label_column="label")


# 5. restore validates everything first and raises CheckpointError only.

@pytest.mark.parametrize("damage", ["string weight", "rng", "optimizer step", "optimizer hparams", "meta step",
                                    "model_config", "nan moment"])
def test_a_crafted_checkpoint_changes_nothing_and_raises_checkpoint_error(tmp_path, damage):
    source, source_opt = trained(seed=1)
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "ckpt.npz", source, step=1, optimizer=source_opt))
    if damage == "string weight":
        ckpt.model_state["wte.weight"] = np.full(ckpt.model_state["wte.weight"].shape, "x")
    elif damage == "rng":
        ckpt.meta["rng"]["host"] = {"bit_generator": "PCG64", "state": "not a state"}
    elif damage == "optimizer step":
        ckpt.optimizer_state["step"] = "three"
    elif damage == "optimizer hparams":
        ckpt.optimizer_state["hparams"] = {"lr": 1e-3, "params": []}  # would overwrite the parameter list
    elif damage == "meta step":
        ckpt.meta["step"] = [1]
    elif damage == "model_config":
        ckpt.meta["model_config"] = "big"
    else:
        ckpt.optimizer_state["exp_avg_sq"][0][...] = np.nan
    model, opt = trained(seed=2)
    before = snapshot(model, opt)
    rng_before = backend.rng_state()
    with pytest.raises(CheckpointError):
        restore(ckpt, model, opt)
    assert_unchanged(model, opt, before)
    assert backend.rng_state() == rng_before


def test_a_header_that_claims_petabytes_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as z:
        with z.open("meta.npy", "w") as f:
            np.lib.format.write_array(f, np.array(json.dumps({"format": "minirl-checkpoint", "step": 0})))
        with z.open("model/wte.weight.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (10**15,)})
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(path)


# 6. A pretrained checkpoint whose stored tokenizer does not fit its model is refused.

def test_load_pretrained_refuses_a_tokenizer_of_another_size(tmp_path):
    model, _ = trained()
    other = Tokenizer.train(["a small corpus of words, words and more words"] * 4, 280)
    assert other.vocab_size != CARD.vocab_size
    save_checkpoint(tmp_path / "ckpt.npz", model, step=1, tokenizer_ranks=ranks_to_text(other.ranks))
    with pytest.raises(CheckpointError, match="280 tokens but its model has 300"):
        load_pretrained(tmp_path)


# 8. Two runs on one folder: a lock, stale locks taken over, and temporary files of their own.

def test_a_second_run_on_a_locked_folder_is_refused_and_a_stale_lock_is_taken_over(tmp_path):
    with FolderLock(tmp_path):
        with pytest.raises(FolderBusyError, match=rf"another run \(pid {os.getpid()}\)"):
            FolderLock(tmp_path).acquire()
    (tmp_path / ".minirl.lock").write_text("4194999\n")  # a killed run's pid; no process holds the flock
    notices = []
    with FolderLock(tmp_path, notice=notices.append):
        pass
    assert "4194999" in notices[0] and "taking the lock over" in notices[0]


@pytest.mark.parametrize("sign, minirl", [
    ({".minirl.lock": ""}, True),
    ({"pretrain-0123456789/settings.json": "{}"}, True),  # a stage folder, finished or not
    ({"summary.json": '{"config": {}}'}, True),
    ({"frontier/summary.json": '{"config": {}}'}, True),
    ({}, True),  # an empty folder
    ({"summary.json": '{"loss": 1}'}, False),  # a summary.json minirl did not write
    ({"pretrain-0123456789/notes.txt": ""}, False),
    ({"notes.txt": ""}, False),
])
def test_the_lock_takes_an_empty_or_minirl_folder_and_refuses_one_of_other_files(tmp_path, sign, minirl):
    for name, text in sign.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    if minirl:
        FolderLock(tmp_path).acquire().release()
        return
    with pytest.raises(ForeignFolderError, match=f"{tmp_path} holds files that no minirl run wrote"):
        FolderLock(tmp_path).acquire()
    assert not (tmp_path / ".minirl.lock").exists()


def test_atomic_writes_do_not_share_a_temporary_name(tmp_path):
    model, opt = trained()
    for name in ("ckpt.npz", "done.json", "tokenizer.tiktoken"):
        (tmp_path / f"{name}.tmp").mkdir()  # what another writer's temporary file would be called
    save_checkpoint(tmp_path / "ckpt.npz", model, step=1, optimizer=opt)
    write_atomic(tmp_path / "done.json", "{}")
    save_ranks({bytes([b]): b for b in range(256)}, tmp_path / "tokenizer.tiktoken")
    assert load_checkpoint(tmp_path / "ckpt.npz").step == 1
    assert len(load_ranks(tmp_path / "tokenizer.tiktoken")) == 256
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["ckpt.npz", "done.json",
                                                                         "tokenizer.tiktoken"]


# 10. clip's backward with an array bound that broadcasts the input to a larger shape.

def test_clip_gradient_when_the_bound_broadcasts_the_input():
    a = Tensor(np.array([0.5, -2.0, 3.0]), requires_grad=True)
    lo = np.zeros((2, 3))
    lo[1, 0] = 1.0  # row 1 clips a[0] from below
    out = ops.clip(a, lo, 2.0)
    assert out.shape == (2, 3)
    out.sum().backward()
    np.testing.assert_array_equal(a.grad, [1.0, 0.0, 0.0])


# 11. Nonsense settings are refused where every command gets them: the config dataclasses.

@pytest.mark.parametrize("make", [
    lambda: TrainConfig(eval_interval=-1), lambda: TrainConfig(checkpoint_interval=-5),
    lambda: TrainConfig(grad_clip=-1.0), lambda: TrainConfig(weight_decay=math.nan),
    lambda: TrainConfig(lr=math.inf), lambda: RLConfig(kl_target=0.0), lambda: RLConfig(dpo_pairs=0),
    lambda: PPOConfig(lam=-5.0), lambda: PPOConfig(clip_eps=math.nan), lambda: DataConfig(prompt_tokens=-1),
])
def test_nonsense_settings_are_refused(make):
    with pytest.raises(ValueError, match="must"):
        make()


def test_a_nan_temperature_is_refused_before_sampling():
    with pytest.raises(ValueError, match="temperature must be positive"):
        sample_next(backend.to_backend(np.zeros((1, 5), dtype=np.float32)), temperature=math.nan)


# 12. Messages that help: a non-UTF-8 corpus, a garbage rank file.

def test_a_latin1_corpus_names_the_file_the_line_and_the_fix(tmp_path):
    path = tmp_path / "tweets.txt"
    path.write_bytes("first line\ncaf\u00e9 au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"tweets\.txt, line 2, column 4: byte 0xe9 is not UTF-8.*iconv"):
        load_text_file(path)


def test_a_garbage_rank_file_names_the_file(tmp_path):
    path = tmp_path / "tokenizer.tiktoken"
    path.write_bytes(b"QQ== 0\n\xff\xfe garbage\n")
    with pytest.raises(ValueError, match=r"tokenizer\.tiktoken, line 2: byte 0xff is not ASCII"):
        load_ranks(path)


def test_configs_still_build_with_their_defaults():
    for config in (TrainConfig(), RLConfig(), PPOConfig(), DataConfig()):
        assert dataclasses.asdict(config)


# The house: progress bars by tqdm, and no tensor <-> ops import circle.

def test_progress_bars_are_tqdm_and_show_the_metric():
    import io

    from tqdm import tqdm

    from minirl.progress import Progress
    out = io.StringIO()
    bar = Progress(range(3), "pretrain", file=out)
    for _ in bar:
        bar.set(loss=1.23456)
    assert isinstance(bar.bar, tqdm)
    assert "pretrain" in out.getvalue() and "3/3" in out.getvalue() and "loss=1.235" in out.getvalue()


def test_tensor_imports_neither_ops_nor_indexing():
    import ast
    import pathlib

    import minirl.tensor
    tree = ast.parse(pathlib.Path(minirl.tensor.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert not imported & {"ops", "indexing"}
    assert (Tensor(np.ones(2)) * 2 + 1).sum().item() == 6.0  # the operators are bound all the same
