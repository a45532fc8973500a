"""Fault injection, command level: what `happy_gpt`, `compare`, `pretrain` and `gradcheck` do with bad
input, diverging settings and a busy folder: exit status 2, one clear line, and --out left as it was.

Every run here is a toy (a 1-layer, 16-wide GPT on 300 template documents, a few steps per
stage), so each takes about a second. Item numbers refer to issue 15.
"""

import csv
import json
import re
import shutil

import pytest

from tests.conftest import has_distribution
from minirl import gradcheck, pretrain
from minirl.checkpoint import load_checkpoint, save_checkpoint
from minirl.data import synthetic_corpus
from minirl.examples import compare, frontier, happy_gpt, overoptimization, summarize
from minirl.folder_lock import FolderLock
from minirl.model import GPT, GPTConfig

needs_vader = pytest.mark.skipif(not has_distribution("vaderSentiment"), reason="the reward is VADER: pip install "
                                 "-e '.[data]'")

TOY = ["--quick", "--vocab-size", "300", "--model-n-layer", "1", "--model-n-embd", "16", "--model-n-head", "2",
       "--model-head-size", "8", "--model-block-size", "16", "--pretrain-steps", "4", "--sft-steps", "2",
       "--rl-iterations", "1", "--rl-batch-size", "4", "--rl-max-new-tokens", "4", "--rl-ppo-minibatch-size", "4",
       "--eval-samples", "4"]


@pytest.fixture(scope="module")
def corpus_csv(tmp_path_factory):
    """A labelled CSV of the user's own, with its own column names and label values."""
    path = tmp_path_factory.mktemp("corpus") / "reviews.csv"
    corpus = synthetic_corpus(300)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "body", "sentiment"])
        for i, (text, label) in enumerate(zip(corpus.texts, corpus.labels)):
            writer.writerow([i, text, ("neg", "meh", "pos")[label]])
    return path


def toy_argv(corpus_csv, out, *extra):
    return [*TOY, "--corpus", str(corpus_csv), "--text-column", "body", "--label-column", "sentiment",
            "--positive-label", "pos", "--negative-label", "neg", "--out", str(out), *extra]


@pytest.fixture(scope="module")
def toy_run(corpus_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "out"
    assert happy_gpt.main(toy_argv(corpus_csv, out)) == 0
    return out


def stage_dirs(out, name):
    return sorted(out.glob(f"{name}-*"))


# 1. A labelled CSV of one's own runs, and a missing or wrong label setting is refused before any stage.

@needs_vader
def test_a_labelled_csv_corpus_runs_every_stage(toy_run):
    summary = json.loads((toy_run / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["tokenizer", "pretrain", "sft", "rl_ppo"]


@pytest.mark.parametrize("change, message", [
    # without a label column the file is unlabelled (VADER picks the SFT set), which --reward rm cannot learn from
    (["--label-column", "none", "--reward", "rm"], "learns from human labels"),
    (["--positive-label", "good"], "--positive-label 'good' is not a label"),
    (["--reward", "rm", "--negative-label", "bad"], "--negative-label 'bad' is not a label"),
])
def test_missing_label_settings_are_refused_before_any_stage(corpus_csv, tmp_path, capsys, change, message):
    assert happy_gpt.main(toy_argv(corpus_csv, tmp_path / "out", *change)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, text, message", [
    ("docs.jsonl", '{"text": "i love the new phone"}\n{"text": 5}\n',
     "docs.jsonl, line 2: 'text' holds 5, not a string"),
    ("docs.csv", 'text\ni love the new phone\n"so happy about my coffee\nthe game\n',
     "docs.csv, line 3: a quote opened on this line is never closed"),
])
def test_a_malformed_corpus_file_is_refused_before_any_stage(tmp_path, capsys, name, text, message):
    corpus = tmp_path / name
    corpus.write_text(text)
    assert happy_gpt.main([*TOY, "--corpus", str(corpus), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# 2. A stage whose last update diverges is not marked done, and the error names the setting.

@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_a_diverged_pretrain_stage_is_not_cached_and_names_the_flag(corpus_csv, tmp_path, capsys):
    out = tmp_path / "out"
    assert happy_gpt.main(toy_argv(corpus_csv, out, "--pretrain-steps", "1", "--pretrain-lr", "1e39")) == 2
    err = capsys.readouterr().err
    assert "NaN or inf" in err and "--pretrain-lr 1e+39" in err
    [stage] = stage_dirs(out, "pretrain")
    assert not (stage / "done.json").exists() and not (stage / "ckpt.npz").exists()


@needs_vader
@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_a_diverged_rl_run_writes_no_report(corpus_csv, toy_run, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(toy_run, out)
    (out / "summary.json").unlink()
    assert happy_gpt.main(toy_argv(corpus_csv, out, "--rl-lr", "1e39", "--rl-ppo-epochs", "1")) == 2
    assert "--rl-lr 1e+39" in capsys.readouterr().err
    assert not (out / "summary.json").exists()


# 4. Tracebacks that became messages.

def test_pretrain_says_how_to_resume_after_ctrl_c(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(pretrain, "pretrain", interrupted)
    assert pretrain.main(["--corpus", "synthetic", "--out", str(tmp_path / "out")]) == 130
    assert capsys.readouterr().err.strip() == ("interrupted: rerun the same command to continue from the last "
                                               "checkpoint.")


def test_pretrain_refuses_an_out_that_is_a_file_and_an_infinite_lr(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    assert pretrain.main(["--corpus", "synthetic", "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "mine"
    assert pretrain.main(["--corpus", "synthetic", "--out", str(tmp_path / "out"), "--train-lr", "inf"]) == 2
    assert "--train-lr must be a finite number" in capsys.readouterr().err


def test_gradcheck_refuses_a_negative_seed(capsys):
    with pytest.raises(SystemExit) as exit_:
        gradcheck.main(["--seed", "-1"])
    assert exit_.value.code == 2 and "--seed: must be a non-negative integer" in capsys.readouterr().err


# 7. A failing run leaves earlier reports alone; compare never deletes happy_gpt's plot.

@pytest.mark.parametrize("bad", [["--seed", "-1"], ["--positive-label", "good"]])
def test_a_refused_run_touches_nothing_in_out(corpus_csv, tmp_path, bad):
    out = tmp_path / "out"
    out.mkdir()
    files = {"summary.json": "this run", "summary.previous.json": "the one before", "rl_curves.png": "plot"}
    for name, text in files.items():
        (out / name).write_text(text)
    assert happy_gpt.main(toy_argv(corpus_csv, out, *bad)) == 2
    assert {p.name: p.read_text() for p in out.iterdir()} == files


def test_compare_opening_out_keeps_happy_gpts_plot(tmp_path):
    (tmp_path / "rl_curves.png").write_text("happy_gpt's plot")
    happy_gpt.open_out(str(tmp_path), compare.OUTPUTS)
    assert (tmp_path / "rl_curves.png").read_text() == "happy_gpt's plot"


@needs_vader
def test_ctrl_c_is_one_line_and_the_rerun_reuses_what_finished(corpus_csv, tmp_path, capsys, monkeypatch):
    from minirl.examples import pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        m.setattr(pipeline, "train_rl", interrupted)  # Ctrl-C lands in the RL stage
        assert happy_gpt.main(toy_argv(corpus_csv, out)) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == happy_gpt.INTERRUPTED and "Traceback" not in err
    assert stage_dirs(out, "sft") and not stage_dirs(out, "rl_ppo")[0].joinpath("done.json").exists()
    assert happy_gpt.main(toy_argv(corpus_csv, out)) == 0  # not refused: the folder lock went with the run
    assert re.search(r"^sft +cached", capsys.readouterr().out, re.M)


# 7b. A run never writes over a file it did not write: a folder of someone else's files is refused, and in a
# minirl folder every report a rerun replaces is moved aside first.

MINE = {"metrics.jsonl": "my metrics", "rl_curves.png": "my plot", "summary.json": '{"mine": 1}',
        "report.html": "my page"}


@pytest.mark.parametrize("command, argv", [
    (happy_gpt, TOY), (compare, TOY), (frontier, TOY), (overoptimization, TOY), (summarize, []),
    (pretrain, ["--corpus", "synthetic"]),
])
def test_a_folder_of_someone_elses_files_is_refused(corpus_csv, tmp_path, capsys, command, argv):
    out = tmp_path / "mine"
    out.mkdir()
    for name, text in MINE.items():
        (out / name).write_text(text)
    corpus = [] if command in (summarize, pretrain) else ["--corpus", str(corpus_csv), "--text-column", "body"]
    assert command.main([*argv, *corpus, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out} holds files that no minirl run wrote" in err and "pass another --out" in err
    assert {p.name: p.read_text() for p in out.iterdir()} == MINE  # not even a lock file


@needs_vader
def test_a_rerun_moves_every_report_it_replaces_aside(corpus_csv, toy_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(toy_run, out)
    earlier = {name: (out / name).read_bytes() for name in happy_gpt.OUTPUTS if (out / name).exists()}
    assert set(earlier) >= {"summary.json", "report.html", "metrics.jsonl"}  # rl_curves.png needs matplotlib
    (out / "notes.txt").write_text("mine")
    assert happy_gpt.main(toy_argv(corpus_csv, out)) == 0
    for name, content in earlier.items():
        stem, ext = name.split(".")
        assert (out / f"{stem}.previous.{ext}").read_bytes() == content and (out / name).exists()
    assert (out / "notes.txt").read_text() == "mine"
    statuses = {s["name"]: s["status"] for s in json.loads((out / "summary.json").read_text())["stages"]}
    assert set(statuses.values()) == {"cached"}


# 8. A second run on a busy --out is refused with the first run's pid.

def test_a_second_run_on_the_same_out_is_refused(corpus_csv, tmp_path, capsys):
    out = tmp_path / "out"
    with FolderLock(out) as lock:
        pid = lock.path.read_text().strip()
        assert happy_gpt.main(toy_argv(corpus_csv, out)) == 2
        assert pretrain.main(["--corpus", "synthetic", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count(f"another run (pid {pid}) is using") == 2
    assert sorted(p.name for p in out.iterdir()) == [".minirl.lock"]


# 9. pretrain checks an existing checkpoint before run.json takes the new settings.

def test_pretrain_does_not_rewrite_run_json_before_refusing_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--corpus", "synthetic", "--out", str(out), "--vocab-size", "300", "--model-n-layer", "1",
            "--model-n-embd", "16", "--model-n-head", "2", "--model-block-size", "16", "--train-batch-size", "4",
            "--train-eval-batches", "1", "--samples", "0"]
    assert pretrain.main([*argv, "--train-steps", "2"]) == 0
    original = (out / "run.json").read_text()
    (out / "run.json").unlink()  # e.g. deleted by hand; the checkpoint of the 2-step run stays
    assert pretrain.main([*argv, "--train-steps", "3"]) == 2
    assert "other training settings" in capsys.readouterr().err
    assert not (out / "run.json").exists()
    assert pretrain.main([*argv, "--train-steps", "2"]) == 0
    assert (out / "run.json").read_text() == original


# 11 and 12. Flags: dashes everywhere, no flag that is ignored, ranges named by their flag.

def test_flags_use_dashes_and_name_themselves_in_errors():
    settings, _ = happy_gpt.parse_settings(["--rl-best-of-n-n", "3"], "prog", "")
    assert settings.rl.best_of_n.n == 3
    for ignored_or_misspelt in (["--rl-best_of_n-n", "3"], ["--rl-dpo-steps", "5"], ["--rl-best-of-n-rounds", "5"],
                                ["--rl-best-of-n-max-new-tokens", "7"], ["--rl-dpo-eval-interval", "5"],
                                ["--rl-sft-eval-interval", "5"], ["--rl-sft-eval-batches", "5"],
                                ["--rl-sft-checkpoint-interval", "5"]):
        with pytest.raises(SystemExit):
            happy_gpt.parse_settings(ignored_or_misspelt, "prog", "")
    for argv, flag in ((["--rl-dpo-pairs", "0"], "--rl-dpo-pairs"), (["--rl-ppo-lam", "-5"], "--rl-ppo-lam"),
                       (["--rl-kl-target", "0"], "--rl-kl-target"), (["--prompt-tokens", "-1"], "--prompt-tokens"),
                       (["--rl-ppo-clip-eps", "nan"], "--rl-ppo-clip-eps"),
                       (["--rl-ppo-clip-eps", "1.5"], "--rl-ppo-clip-eps"),
                       (["--rl-grpo-clip-eps", "1"], "--rl-grpo-clip-eps"),
                       (["--pretrain-eval-interval", "-1"], "--pretrain-eval-interval"),
                       (["--model-n-layer", "0"], "--model-n-layer"), (["--model-dropout", "1"], "--model-dropout")):
        with pytest.raises(ValueError, match=f"^{flag} must"):
            happy_gpt.parse_settings(argv, "prog", "")


def test_a_derived_field_follows_the_flags_it_is_derived_from():
    """head_size = n_embd // n_head unless set: the default card's 42 must not stick to a wider model."""
    parse = lambda *argv: happy_gpt.parse_settings(list(argv), "prog", "")[0].model  # noqa: E731
    assert parse().head_size == 42 and parse("--quick").head_size == 32
    assert parse("--model-n-embd", "256", "--model-n-head", "4").head_size == 64
    assert parse("--model-n-embd", "256", "--model-head-size", "48").head_size == 48


def test_help_is_grouped_by_stage_with_the_common_flags_first(capsys):
    with pytest.raises(SystemExit):
        happy_gpt.parse_settings(["--help"], "prog", "")
    text = capsys.readouterr().out
    groups = ["common flags:", "data flags:", "pretrain stage (--pretrain-*):", "sft stage (--sft-*):",
              "rl stage (--rl-*):", "--rl-ppo-* flags:"]
    positions = [text.index(g) for g in groups]
    assert positions == sorted(positions)
    assert len(text.split("\n\n")[0].splitlines()) <= 3  # the usage line, not 150 flags


# 12. A checkpoint with other settings inside an unfinished stage is set aside, and the run goes on.

@needs_vader
def test_an_unfinished_stage_with_a_foreign_checkpoint_is_set_aside(corpus_csv, toy_run, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(toy_run, out)
    [stage] = stage_dirs(out, "pretrain")
    (stage / "done.json").unlink()
    ckpt = load_checkpoint(stage / "ckpt.npz")
    model = GPT(GPTConfig(**ckpt.meta["model_config"]))
    settings = dict(ckpt.meta["extra"]["train_config"], lr=0.5)
    save_checkpoint(stage / "ckpt.npz", model, step=2, extra={"train_config": settings})
    assert happy_gpt.main(toy_argv(corpus_csv, out)) == 0
    notice = capsys.readouterr().out
    assert "stage pretrain" in notice and str(stage / "ckpt.npz") in notice and "other training settings" in notice
    assert (stage / "ckpt.npz.corrupt").exists() and (stage / "done.json").exists()


def rewrite_meta(path, change):
    """Rewrite a checkpoint's meta in place, keeping every array: a crafted but well-formed file."""
    import numpy as np
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    change(meta)
    np.savez(path, **arrays, meta=np.array(json.dumps(meta)))


@needs_vader
def test_an_rl_checkpoint_with_a_malformed_baseline_is_set_aside(corpus_csv, toy_run, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(toy_run, out)
    [stage] = stage_dirs(out, "rl_ppo")
    (stage / "done.json").unlink()
    rewrite_meta(stage / "rl.npz", lambda meta: meta["extra"].update(baseline="high"))
    assert happy_gpt.main(toy_argv(corpus_csv, out)) == 0
    notice = capsys.readouterr().out
    assert "stage rl_ppo" in notice and "baseline" in notice and (stage / "rl.npz.corrupt").exists()


@needs_vader
def test_nan_figures_never_make_a_summary(corpus_csv, toy_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(toy_run, out)
    real = happy_gpt.evaluate_models

    def diverged(*args, **kwargs):
        models = real(*args, **kwargs)
        models["final"]["kl_to_sft"] = float("nan")
        return models
    monkeypatch.setattr(happy_gpt, "evaluate_models", diverged)
    assert happy_gpt.main(toy_argv(corpus_csv, out)) == 2
    assert "final kl_to_sft = nan" in capsys.readouterr().err
    assert not (out / "summary.json").exists() and (out / "summary.previous.json").exists()
