"""The README's set-up commands are exactly what CI runs, and the examples run."""

import importlib.util
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
INSTALL = 'pip install -e ".[dev,data,app,gpt2]"'
TEST = "pytest -q"


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert INSTALL in readme and TEST in readme
    assert INSTALL in ci and TEST in ci


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_xor_example_learns(capsys):
    assert load_example("xor_mlp").main() < 0.01
    assert "1 xor 1" in capsys.readouterr().out


def test_bandit_oracle_example_lands_where_it_says(capsys):
    from minirl.rl.bandit import Bandit, total_variation
    from minirl.rl.grpo import grpo_fixed_point

    example = load_example("bandit_oracle")
    results = example.main(iterations=60)
    bandit = Bandit()
    pi_ref = bandit.distribution(bandit.model())
    pi_star, grpo_point = bandit.optimum(pi_ref), grpo_fixed_point(pi_ref, bandit.rewards, bandit.beta, example.G)
    assert set(results) == {"REINFORCE", "PPO", "RLOO", "TRPO", "GRPO (dr_grpo)"}
    assert total_variation(pi_ref, pi_star) > 0.3  # a policy left untrained is far from both answers
    printed = {}
    for line in capsys.readouterr().out.splitlines():
        cells = line.split()
        for algo in results:
            if line.startswith(algo + " "):
                printed[algo] = [float(c) for c in cells[len(algo.split()):]]  # π (6 numbers), TV to π*, TV to GRPO's
    assert set(printed) == set(results)
    for algo, pi in results.items():
        assert abs(pi.sum() - 1) < 1e-6
        np.testing.assert_allclose(printed[algo][:6], pi, atol=5e-4)  # the table shows the returned π
        np.testing.assert_allclose(printed[algo][6:], [total_variation(pi, pi_star), total_variation(pi, grpo_point)],
                                   rtol=1e-3)
        if algo.startswith("GRPO"):  # lands on its own fixed point, not on π* (0.08 apart)
            assert total_variation(pi, grpo_point) < 0.01 and total_variation(pi, pi_star) > 0.06
        else:  # measured at 60 iterations: 0.001-0.011
            assert total_variation(pi, pi_star) < 0.03, algo


def test_ppo_ledger_example_adds_up(capsys):
    pytest.importorskip("vaderSentiment", reason="the example's reward is VADER (pip install -e '.[data]')")
    row = load_example("ppo_ledger").main(steps=60)
    beta, gamma, lam = row["kl_coef"], row["gamma"], row["lam"]
    rewards, values, advantages = row["rewards"], row["values"], row["advantages"]
    assert len(rewards) >= 2 and np.any(row["kl"] != 0)  # the policy has drifted from π_ref
    np.testing.assert_allclose(row["kl"], row["logprobs"] - row["ref_logprobs"], atol=1e-6)  # k1
    assert rewards.sum() == pytest.approx(row["score"] - beta * row["kl"].sum(), abs=1e-5)  # Σ r_t = R − β·Σ k1
    assert advantages[-1] == pytest.approx(rewards[-1] - values[-1], abs=1e-6)  # A_T = r_T − V(s_T)
    deltas = rewards + gamma * np.append(values[1:], 0.0) - values
    np.testing.assert_allclose(advantages[:-1], deltas[:-1] + gamma * lam * advantages[1:], atol=1e-5)
    np.testing.assert_allclose(row["returns"], advantages + values, atol=1e-6)
    assert "advantage" in capsys.readouterr().out


def test_dpo_implicit_reward_example_recovers_r(capsys):
    result = load_example("dpo_implicit_reward").main(steps=60, n_pairs=4000)
    assert result["pearson"] > 0.95
    assert np.abs(result["implicit"] - result["reward"]).max() < 0.3  # R spans 2.0
    assert 0.5 * np.abs(result["pi"] - result["pi_star"]).sum() < 0.1  # π_θ ≈ π* = π_ref·exp(R/β)/Z
    assert "Pearson" in capsys.readouterr().out


@pytest.mark.parametrize("name, count", [("bandit_oracle", "iterations"), ("dpo_implicit_reward", "steps"),
                                         ("ppo_ledger", "steps"), ("xor_mlp", "steps")])
def test_examples_read_their_count_or_refuse_it_in_one_line(name, count, capsys):
    example = load_example(name)
    assert getattr(example.parse_args(["7"]), count) == 7
    with pytest.raises(SystemExit) as exit_help:
        example.parse_args(["--help"])
    assert exit_help.value.code == 0 and count in capsys.readouterr().out
    for bad in ("0", "-5"):  # a run of no steps would print the untrained model as the result
        with pytest.raises(SystemExit) as refused:
            example.parse_args([bad])
        err = capsys.readouterr().err
        assert refused.value.code == 2 and f"error: {count} must be at least 1, got {bad}" in err
