"""`python -m minirl.pretrain` end to end on the synthetic corpus: files, resume, and refusals."""

import json

import pytest

from minirl.pretrain import main

ARGS = ["--corpus", "synthetic", "--vocab-size", "300", "--model-block-size", "16", "--model-n-layer", "1",
        "--model-n-embd", "16", "--model-n-head", "2", "--train-steps", "6", "--train-batch-size", "4",
        "--train-eval-interval", "3", "--train-warmup-steps", "2", "--samples", "1", "--sample-tokens", "8"]


def test_pretrain_writes_resumable_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(ARGS + ["--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} >= {"ckpt.npz", "tokenizer.tiktoken", "metrics.jsonl", "run.json"}
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["steps"] == 6 and summary["val_loss"] > 0
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert main(ARGS + ["--out", str(out)]) == 0  # a finished run resumes to nothing new
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 6


def test_pretrain_refuses_mixed_settings_and_bad_input(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(ARGS + ["--out", str(out)]) == 0
    assert main(ARGS + ["--out", str(out), "--train-steps", "7"]) == 2
    assert "train.steps 6 -> 7" in capsys.readouterr().err
    assert main(ARGS + ["--corpus", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "x")]) == 2
    assert "unknown corpus" in capsys.readouterr().err
    assert main(ARGS + ["--out", str(tmp_path / "x")]) == 0  # a failed start leaves nothing that blocks a rerun
    assert main(ARGS + ["--out", str(tmp_path / "y"), "--backend", "tpu"]) == 2
    assert "unknown backend 'tpu'" in capsys.readouterr().err


def test_the_model_vocabulary_is_the_tokenizers_and_has_no_flag_of_its_own(capsys):
    with pytest.raises(SystemExit):  # the tokenizer sets it, so a flag would be silently overridden
        main(ARGS + ["--model-vocab-size", "600"])
    assert "unrecognized arguments: --model-vocab-size 600" in capsys.readouterr().err
