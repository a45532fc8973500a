"""The reward-versus-KL frontier: the matched-KL reading against hand-computed cases, and
`python -m minirl.examples.frontier` end to end on the synthetic corpus with tiny stages."""

import json
import shutil

import pytest

from tests.conftest import has_distribution
from minirl.examples import frontier as frontier_cmd
from minirl.examples.frontier_report import verdict
from minirl.rl.frontier import best_at, frontier, reward_at_kl, reward_per_nat, through_runs

# Four runs, given out of KL order. The run at KL 9 earns less than the one at KL 4, so the frontier holds 0.5 there:
#   KL      1    4    9    12
#   R      0.2  0.5  0.4  0.8
#   R̃      0.2  0.5  0.5  0.8     (running best)
# R(2) = 0.2 + (2 − 1)/(4 − 1)·0.3 = 0.3;  R(10) = 0.5 + (10 − 9)/(12 − 9)·0.3 = 0.6;  none below 1 or above 12.
KLS, REWARDS = [9.0, 1.0, 12.0, 4.0], [0.4, 0.2, 0.8, 0.5]


def test_the_frontier_is_the_running_best_in_kl_order():
    k, r = frontier(KLS, REWARDS)
    assert k.tolist() == [1.0, 4.0, 9.0, 12.0]
    assert r.tolist() == pytest.approx([0.2, 0.5, 0.5, 0.8])


def test_reward_at_matched_kl_is_read_off_the_frontier_only_inside_its_range():
    assert reward_at_kl(KLS, REWARDS, [0.5, 1.0, 2.0, 10.0, 12.0, 13.0]) == \
        pytest.approx([None, 0.2, 0.3, 0.6, 0.8, None])


def test_runs_at_the_same_kl_keep_the_best_and_one_run_is_a_point():
    k, r = frontier([2.0, 2.0, 5.0], [0.3, 0.7, 0.6])
    assert k.tolist() == [2.0, 5.0] and r.tolist() == pytest.approx([0.7, 0.7])
    assert reward_at_kl([3.0], [0.4], [2.9, 3.0, 3.1]) == [None, pytest.approx(0.4), None]


def test_gold_goes_through_the_runs_without_the_running_best():
    """Under a proxy the gold score may fall with KL (over-optimisation); its reading must show the fall."""
    k, gold = through_runs(KLS, REWARDS)
    assert k.tolist() == [1.0, 4.0, 9.0, 12.0] and gold.tolist() == pytest.approx([0.2, 0.5, 0.4, 0.8])
    assert through_runs([3.0, 3.0], [0.2, 0.6])[1].tolist() == pytest.approx([0.4])  # a shared KL: the mean


def test_reward_per_nat_and_the_best_algorithm():
    assert reward_per_nat(0.3, 0.1, 2.0) == pytest.approx(0.1)
    assert reward_per_nat(None, 0.1, 2.0) is None
    assert best_at({"pg": 0.3, "ppo": None, "dpo": 0.5}) == "dpo"
    assert best_at({"pg": 0.3, "ppo": None}) is None  # alone at that KL: compared with nothing
    assert best_at({"pg": None}) is None
    with pytest.raises(ValueError, match="above 0"):
        reward_per_nat(0.3, 0.1, 0.0)


@pytest.mark.parametrize("kls,rewards,message", [
    ([1.0, 2.0], [0.1], "one KL per value"), ([], [], "at least one run"),
    ([1.0, float("nan")], [0.1, 0.2], "finite"),
])
def test_a_malformed_frontier_is_refused(kls, rewards, message):
    with pytest.raises(ValueError, match=message):
        frontier(kls, rewards)


def _run(algo, value, kl, reward, gold=None):
    return {"algo": algo, "value": value, "symbol": "β", "kl_to_sft": kl, "reward": reward, "gold": gold,
            "samples": [f"{algo} {value}"]}


def test_matched_kl_and_the_verdict_on_a_hand_computed_sweep():
    """ppo: R(2) = 0.3, R(10) = 0.6 (the case above); dpo: R(2) = 0.2 + (2 − 1)/(3 − 1)·0.4 = 0.4, none at 10.
    Per nat over R_sft = 0.1: ppo (0.3 − 0.1)/2 = 0.1 and (0.6 − 0.1)/10 = 0.05; dpo (0.4 − 0.1)/2 = 0.15."""
    runs = [_run("ppo", v, k, r, gold=r) for v, k, r in zip([0.1, 0.2, 0.3, 0.4], KLS, REWARDS)]
    runs += [_run("dpo", 0.5, 1.0, 0.2, gold=0.1), _run("dpo", 0.1, 3.0, 0.6, gold=0.3)]
    matched = frontier_cmd.matched_kl(runs, {"reward": 0.1}, [2.0, 10.0], proxy=True)
    assert matched["algos"]["ppo"]["reward"] == pytest.approx([0.3, 0.6])
    assert matched["algos"]["ppo"]["reward_per_nat"] == pytest.approx([0.1, 0.05])
    assert matched["algos"]["dpo"]["reward"] == [pytest.approx(0.4), None]
    assert matched["algos"]["dpo"]["reward_per_nat"] == [pytest.approx(0.15), None]
    assert matched["algos"]["dpo"]["kl_range"] == [1.0, 3.0]
    # gold through the runs, not made monotone: ppo's gold at 10 is 0.4 + (10 − 9)/(12 − 9)·(0.8 − 0.4)
    assert matched["algos"]["ppo"]["gold"] == pytest.approx([0.3, 0.4 + 0.4 / 3])
    assert matched["algos"]["dpo"]["gold"] == [pytest.approx(0.2), None]
    assert frontier_cmd.matched_kl(runs, {"reward": 0.1}, [2.0], proxy=False)["algos"]["ppo"]["gold"] is None
    assert matched["best"] == ["dpo", None]  # ppo alone at 10 nats is best at nothing
    said = verdict({"matched": matched})
    assert said.startswith("At matched KL, dpo gives the most reward per nat: best at 1 of the 1 matched KLs")
    assert "At 2 nats: dpo 0.400 (+0.150/nat), ppo 0.300 (+0.100/nat)." in said
    assert "At 10 nats only ppo's frontier reaches it" in said


def test_the_verdict_says_so_when_no_two_frontiers_meet():
    runs = [_run("ppo", 0.1, 1.0, 0.2), _run("ppo", 0.2, 2.0, 0.3), _run("dpo", 0.1, 5.0, 0.2),
            _run("dpo", 0.2, 6.0, 0.3)]
    said = verdict({"matched": frontier_cmd.matched_kl(runs, {"reward": 0.1}, [1.5, 5.5], proxy=False)})
    assert said.startswith("No two frontiers reach a common matched KL")


@pytest.mark.parametrize("flags,message", [
    (["--frontier-best-of-n", "2,x"], "--frontier-best-of-n '2,x' must be comma-separated whole numbers n >= 1"),
    (["--frontier-dpo", "0.1,0"], "--frontier-dpo '0.1,0' must be comma-separated positive βs"),
    (["--frontier-trpo", "0.01,0"], "--frontier-trpo '0.01,0' must be comma-separated positive δs"),
    (["--frontier-ppo", "-0.1"], "--frontier-ppo '-0.1' must be comma-separated βs >= 0"),
    (["--frontier-matched-kls", "2,0"], "--frontier-matched-kls '2,0' must be comma-separated KLs above 0"),
    (["--frontier-algos", "ppo,sac"], "unknown --frontier-algos sac"),
    (["--frontier-token-budget", "0"], "--frontier-token-budget"),
])
def test_bad_sweep_flags_are_named_with_the_fix_before_anything_runs(tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    assert frontier_cmd.main(["--quick", "--corpus", "synthetic", "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


needs_vader = pytest.mark.skipif(not has_distribution("vaderSentiment"),
                                 reason="needs the data extra: pip install -e '.[data]'")

TINY = ["--quick", "--corpus", "synthetic", "--pretrain-steps", "30", "--pretrain-batch-size", "8",
        "--sft-steps", "10", "--sft-batch-size", "8", "--rm-steps", "8", "--rm-pairs", "120", "--reward", "rlaif",
        "--eval-samples", "16", "--rl-batch-size", "16", "--rl-max-new-tokens", "12", "--rl-ppo-epochs", "1",
        "--frontier-token-budget", "300", "--frontier-dpo-steps", "2", "--frontier-matched-kls", "0.05,0.2,1"]
RUN_FIELDS = {"algo", "knob", "symbol", "value", "reward", "gold", "kl_to_sft", "response_length", "distinct_2",
              "fraction_positive", "samples", "seconds", "sampled_tokens", "iterations", "stage"}
MATCHED_FIELDS = {"frontier_kl", "frontier_reward", "kl_range", "reward", "reward_per_nat", "gold"}
KNOBS = {"pg": "pg.kl_coef", "ppo": "ppo.kl_coef", "grpo": "grpo.beta", "rloo": "rloo.kl_coef",
         "trpo": "trpo.max_kl", "best_of_n": "best_of_n.n", "dpo": "dpo.beta"}


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("frontier") / "out"
    assert frontier_cmd.main([*TINY, "--out", str(out)]) == 0
    return out, json.loads((out / "frontier" / "summary.json").read_text())


@needs_vader
def test_the_quick_sweep_reports_every_field(sweep_run, capsys):
    out, summary = sweep_run
    assert set(summary) == {"config", "frontier_config", "reward", "gold", "token_budget", "dpo_steps", "sft", "runs",
                            "matched", "verdict", "samples", "stages", "plot", "table", "total_seconds"}
    assert summary["reward"] == "rlaif" and summary["gold"] == "vader"
    assert summary["token_budget"] == 300 and summary["dpo_steps"] == 2
    assert summary["sft"]["kl_to_sft"] == pytest.approx(0.0, abs=1e-6)
    runs = summary["runs"]
    quick = frontier_cmd.QUICK_FRONTIER
    assert [(r["algo"], r["value"]) for r in runs] == [(a, v) for a in KNOBS for v in quick.values(a)]
    for r in runs:
        assert set(r) == RUN_FIELDS and r["knob"] == KNOBS[r["algo"]], r["algo"]
        assert r["sampled_tokens"] >= 300 and r["iterations"] >= 1 and r["seconds"] > 0
        assert isinstance(r["gold"], float) and r["gold"] != r["reward"]  # VADER beside the proxy, same samples
        assert 0 < r["distinct_2"] <= 1 and 0 < r["response_length"] <= 12 and len(r["samples"]) == 6
    assert len({r["stage"] for r in runs}) == len({r["kl_to_sft"] for r in runs}) == len(runs)  # each measured apart
    matched = summary["matched"]
    assert matched["kls"] == [0.05, 0.2, 1.0] and list(matched["algos"]) == list(KNOBS)
    for algo, m in matched["algos"].items():
        own = [r["kl_to_sft"] for r in runs if r["algo"] == algo]
        assert set(m) == MATCHED_FIELDS and m["kl_range"] == [min(own), max(own)]
        assert m["frontier_reward"] == sorted(m["frontier_reward"])  # monotone
        for k, reward, per_nat, gold in zip(matched["kls"], m["reward"], m["reward_per_nat"], m["gold"]):
            inside = min(own) <= k <= max(own)
            assert (reward is not None) == inside == (gold is not None), (algo, k)
            if inside:
                assert per_nat == pytest.approx((reward - summary["sft"]["reward"]) / k)
    assert len(matched["best"]) == 3
    assert summary["verdict"].startswith(("At matched KL, ", "No two frontiers"))
    near = summary["samples"]
    assert near["matched_kl"] in matched["kls"] and set(near["runs"]) == set(KNOBS)
    assert all(len(s["samples"]) == 3 for s in near["runs"].values())
    table = (out / "frontier" / "table.txt").read_text()
    for header in ("KL to SFT", "gold (VADER)", "distinct-2", "R @ 0.2", "per nat @ 1", "gold @ 0.05"):
        assert header in table
    stages = [s["name"] for s in summary["stages"]]
    assert stages[:4] == ["tokenizer", "pretrain", "sft", "reward_rlaif"]
    assert stages[4:] == [n for a in KNOBS for _ in quick.values(a) for n in (f"frontier_{a}", "frontier_eval")]
    if summary["plot"] is not None:
        assert (out / "frontier" / "frontier.png").stat().st_size > 0


@needs_vader
def test_a_rerun_reuses_every_stage_and_gives_the_same_figures(sweep_run):
    out, summary = sweep_run
    assert frontier_cmd.main([*TINY, "--out", str(out)]) == 0
    again = json.loads((out / "frontier" / "summary.json").read_text())
    assert {s["status"] for s in again["stages"]} == {"cached"}
    assert again["runs"] == summary["runs"] and again["matched"] == summary["matched"]
    assert again["verdict"] == summary["verdict"]


@needs_vader
def test_a_killed_sweep_resumes_to_the_uninterrupted_figures(sweep_run, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(sweep_run[0], out)
    for stage in [*out.glob("frontier_*-*")]:
        shutil.rmtree(stage)
    evaluate = frontier_cmd.evaluate
    seen = []

    def killed_at_the_third_evaluation(*args, **kwargs):
        seen.append(1)
        if len(seen) == 3:
            raise KeyboardInterrupt  # pg's two runs measured, ppo's first trained but not measured
        return evaluate(*args, **kwargs)
    monkeypatch.setattr(frontier_cmd, "evaluate", killed_at_the_third_evaluation)
    assert frontier_cmd.main([*TINY, "--out", str(out), "--frontier-algos", "pg,ppo"]) == 130  # Ctrl-C
    assert not (out / "frontier" / "summary.json").exists()
    monkeypatch.setattr(frontier_cmd, "evaluate", evaluate)
    assert frontier_cmd.main([*TINY, "--out", str(out), "--frontier-algos", "pg,ppo"]) == 0
    resumed = json.loads((out / "frontier" / "summary.json").read_text())
    statuses = [(s["name"], s["status"]) for s in resumed["stages"][4:]]
    assert statuses == [("frontier_pg", "cached"), ("frontier_eval", "cached")] * 2 + \
        [("frontier_ppo", "cached"), ("frontier_eval", "ran"), ("frontier_ppo", "ran"), ("frontier_eval", "ran")]
    timeless = lambda runs: [{k: v for k, v in r.items() if k != "seconds"} for r in runs]  # noqa: E731
    assert timeless(resumed["runs"]) == timeless(r for r in sweep_run[1]["runs"] if r["algo"] in ("pg", "ppo"))


@needs_vader
def test_a_vader_sweep_has_no_gold_and_one_panel(sweep_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(sweep_run[0], out)
    argv = [a for a in TINY if a not in ("--reward", "rlaif")]
    assert frontier_cmd.main([*argv, "--out", str(out), "--frontier-algos", "pg,dpo"]) == 0
    summary = json.loads((out / "frontier" / "summary.json").read_text())
    assert summary["gold"] is None and summary["sft"]["gold"] is None
    assert all(r["gold"] is None for r in summary["runs"])
    assert all(m["gold"] is None for m in summary["matched"]["algos"].values())
    assert "gold" not in (out / "frontier" / "table.txt").read_text()
    assert [s["status"] for s in summary["stages"][:3]] == ["cached"] * 3
