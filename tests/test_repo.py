"""The README's set-up commands are exactly what CI runs, and the examples run."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
INSTALL = 'pip install -e ".[dev,data]"'
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


def test_bandit_oracle_example_runs(capsys):
    results = load_example("bandit_oracle").main(iterations=15)
    assert set(results) == {"REINFORCE", "PPO", "RLOO", "TRPO", "GRPO (dr_grpo)"}
    assert all(abs(pi.sum() - 1) < 1e-6 for pi in results.values())
    assert "TV to π*" in capsys.readouterr().out
