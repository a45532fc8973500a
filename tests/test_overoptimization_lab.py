"""`python -m minirl.examples.overoptimization --quick`, end to end on the synthetic corpus with tiny stages."""

import json
import shutil

import pytest

from tests.conftest import has_distribution
from minirl.examples import overoptimization
from minirl.rl.overoptimization import best_of_n_kl

pytestmark = pytest.mark.skipif(not has_distribution("vaderSentiment"),
                                reason="needs the data extra: pip install -e '.[data]'")

TINY = ["--quick", "--corpus", "synthetic", "--pretrain-steps", "30", "--pretrain-batch-size", "8",
        "--sft-steps", "10", "--sft-batch-size", "8", "--rm-steps", "8", "--lab-label-sets", "60,120,180",
        "--lab-bon-pool", "32", "--lab-bon-max-n", "16", "--lab-ppo-iterations", "2", "--lab-eval-every", "1",
        "--rl-ppo-epochs", "1", "--eval-samples", "16", "--rl-batch-size", "16", "--rl-max-new-tokens", "12"]
EVAL_FIELDS = {"iteration", "kl", "d", "proxy", "gold", "gold_stderr", "length", "distinct_2", "samples"}
FIT_FIELDS = {"form", "alpha", "beta", "r2", "rmse", "points", "peak_d"}


@pytest.fixture(scope="module")
def lab_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lab") / "out"
    assert overoptimization.main([*TINY, "--out", str(out)]) == 0
    return out, json.loads((out / "overoptimization" / "summary.json").read_text())


def test_the_quick_lab_reports_every_field(lab_run):
    out, summary = lab_run
    assert list(summary["proxies"]) == ["60", "120", "180"]
    for size in ("60", "120", "180"):
        assert summary["proxies"][size]["train_pairs"] >= 18
        bon = summary["best_of_n"][size]
        assert bon["n"] == [1, 2, 4, 8, 16]
        assert bon["kl"] == pytest.approx(best_of_n_kl(bon["n"]).tolist())
        assert len(bon["gold"]) == len(bon["gold_stderr"]) == len(bon["proxy"]) == len(bon["proxy_stderr"]) == 5
        assert bon["proxy"][-1] > bon["proxy"][0]  # the best of 16 by the proxy scores higher on the proxy
        assert set(bon["fit"]) == FIT_FIELDS and bon["fit"]["form"] == "bon"
        ppo = summary["ppo"][size]
        assert [e["iteration"] for e in ppo["evals"]] == [0, 1, 2]
        assert all(set(e) == EVAL_FIELDS for e in ppo["evals"])
        assert ppo["evals"][0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the SFT model against itself
        assert set(ppo["fit"]) == FIT_FIELDS and ppo["fit"]["form"] == "rl"
        assert isinstance(ppo["gold_falls"], bool) and ppo["max_kl"] > 0
    assert summary["lab"]["kl_coef"] == 0.0
    if summary["plot"] is not None:
        assert (out / "overoptimization" / "overoptimization.png").stat().st_size > 0


def test_a_rerun_reuses_every_stage_and_gives_the_same_curves(lab_run, capsys):
    out, summary = lab_run
    assert overoptimization.main([*TINY, "--out", str(out)]) == 0
    again = json.loads((out / "overoptimization" / "summary.json").read_text())
    assert {s["status"] for s in again["stages"]} == {"cached"}
    assert again["ppo"] == summary["ppo"] and again["best_of_n"] == summary["best_of_n"]
    assert "did not fall" in capsys.readouterr().out or "fell beyond" in capsys.readouterr().out


@pytest.mark.parametrize("flags,message", [
    (["--lab-bon-pool", "8"], "--lab-bon-pool 8 is smaller than --lab-bon-max-n 16"),
    (["--lab-bon-max-n", "12"], "--lab-bon-max-n must be a power of two"),
    (["--lab-label-sets", "40,x"], "--lab-label-sets '40,x' must be comma-separated"),
])
def test_bad_lab_flags_are_named_with_the_fix(tmp_path, capsys, flags, message):
    assert overoptimization.main([*TINY, "--out", str(tmp_path / "out"), *flags]) == 2
    assert message in capsys.readouterr().err


def test_a_label_set_of_too_many_ties_names_the_lab_flag(lab_run, capsys):
    """Stages before the proxies are cached in the fixture's folder, so only the failing proxy runs."""
    assert overoptimization.main([*TINY, "--out", str(lab_run[0]), "--lab-label-sets", "20"]) == 2
    err = capsys.readouterr().err
    assert "label set of 20 pairs: only" in err and "raise --lab-label-sets." in err


def test_a_killed_ppo_stage_resumes_to_the_uninterrupted_evaluations(lab_run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(lab_run[0], out)
    for stage in out.glob("overopt_ppo-*"):
        shutil.rmtree(stage)
    measure = overoptimization.measure

    def killed_at_the_last_evaluation(policy, base, proxy_fn, max_new_tokens, seed, iteration):
        if iteration == 2:
            raise KeyboardInterrupt  # after iteration 2's checkpoint, before its evaluation
        return measure(policy, base, proxy_fn, max_new_tokens, seed, iteration)
    monkeypatch.setattr(overoptimization, "measure", killed_at_the_last_evaluation)
    assert overoptimization.main([*TINY, "--out", str(out)]) == 130  # Ctrl-C: one line, status 130
    monkeypatch.setattr(overoptimization, "measure", measure)
    assert overoptimization.main([*TINY, "--out", str(out)]) == 0
    resumed = json.loads((out / "overoptimization" / "summary.json").read_text())
    assert [s["status"] for s in resumed["stages"] if s["name"] == "overopt_ppo"] == ["resumed", "ran", "ran"]
    assert resumed["ppo"] == lab_run[1]["ppo"]
