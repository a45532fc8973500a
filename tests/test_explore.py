"""The explorer's numbers (minirl.examples.explorer) and its Flask app, on a tiny finished run and on a
frontier sweep's folder made from its stages."""

import json
import math
import pathlib
import re
import shutil
import threading

import numpy as np
import pytest

from minirl.examples.explore import create_app, main
from minirl.examples.explorer import Explorer, InputError
from minirl.examples.frontier import matched_kl
from minirl.examples.frontier_report import closest_runs, verdict
from minirl.examples.overoptimization_report import verdicts
from minirl.examples.run_folder import RunFolder, RunFolderError
from minirl.rl.overoptimization import best_of_n_means, fit_gold_curve, gold_falls

pytest.importorskip("flask", reason="the explorer needs Flask (pip install -e '.[app]')")


@pytest.fixture(scope="module")
def explorer(tiny_run):
    return Explorer(RunFolder.open(tiny_run))


def test_generate_answers_side_by_side(explorer):
    out = explorer.generate("I love", temperature=1.0, top_k=0, max_new_tokens=12, seed=3)
    assert [a["model"] for a in out["answers"]] == ["pretrained", "sft", "rl"]
    for a in out["answers"]:
        diffs = [t["logprob"] - t["ref_logprob"] for t in a["tokens"]]
        np.testing.assert_allclose([t["diff"] for t in a["tokens"]], diffs, atol=1e-6)
        assert a["kl_to_sft"] == pytest.approx(sum(diffs), abs=1e-4)  # k1 summed over the response
        assert a["reward"] == pytest.approx(explorer.run.reward_fn([a["text"]])[0], abs=1e-6)
        assert 1 <= len(a["tokens"]) <= 12
    sft = out["answers"][1]
    assert sft["kl_to_sft"] == 0 and all(t["diff"] == 0 for t in sft["tokens"])  # π_ref against itself
    again = explorer.generate("I love", temperature=1.0, top_k=0, max_new_tokens=12, seed=3)
    assert again == out  # same seed, same answers


@pytest.mark.parametrize("kwargs, words", [
    ({"prompt": ""}, "empty"), ({"prompt": "   "}, "empty"), ({"prompt": "x" * 201}, "characters"),
    ({"prompt": 42}, "must be text"), ({"prompt": "hi", "temperature": 0}, "temperature"),
    ({"prompt": "hi", "temperature": "hot"}, "temperature must be a number"), ({"prompt": "hi", "top_k": 2.5}, "top-k"),
    ({"prompt": "hi", "max_new_tokens": 0}, "length"), ({"prompt": "hi " * 60, "max_new_tokens": 20}, "context"),
])
def test_generate_refuses_bad_input_with_a_sentence(explorer, kwargs, words):
    with pytest.raises(InputError, match=words):
        explorer.generate(**kwargs)


def test_ledger_adds_up_and_shows_the_masks(explorer):
    out = explorer.ledger(rows=3, seed=1)
    beta, gamma_lam = out["kl_coef"], out["gamma_lam"]
    assert out["has_value_model"] and len(out["rows"]) == 3
    for row in out["rows"]:
        cells = row["tokens"]
        assert cells[0]["kind"] == "prompt" and cells[0]["mask"] == 0 and "reward" not in cells[0]
        steps = [c for c in cells if c["mask"] == 1]
        kinds = [c["kind"] for c in cells]
        assert kinds == ["prompt"] * out["prompt_length"] + ["response"] * len(steps) + ["padding"] * (
            len(cells) - out["prompt_length"] - len(steps))  # padding only after the response ends
        k1 = np.array([c["logprob"] - c["ref_logprob"] for c in steps])
        np.testing.assert_allclose([c["kl"] for c in steps], k1, atol=1e-6)
        r = np.array([c["reward"] for c in steps])
        assert r.sum() == pytest.approx(row["score"] - beta * k1.sum(), abs=1e-5)  # Σ r_t = R − β·Σ k1
        v = np.array([c["value"] for c in steps])
        np.testing.assert_allclose([c["delta"] for c in steps], r + out["gamma"] * np.append(v[1:], 0) - v, atol=1e-5)
        adv = np.array([c["advantage"] for c in steps])
        np.testing.assert_allclose(adv, [c["delta"] + gamma_lam * c["next_advantage"] for c in steps], atol=1e-5)
        assert [c["next_t"] for c in steps] == [c["t"] for c in steps[1:]] + [None]
        assert steps[-1]["next_advantage"] == 0  # A_{T+1} = 0: the recursion starts at the last token
        np.testing.assert_allclose([c["return"] for c in steps], adv + v, atol=1e-5)


def test_ppo_step_starts_at_ratio_one_and_its_shares_sum_to_the_batch_figures(explorer):
    before = {k: v.copy() for k, v in explorer.run.models["rl"].state_dict().items()}
    out = explorer.ppo_step(seed=0, steps=3)
    assert out["first_step"]["approx_kl"] == 0 and out["first_step"]["clipfrac"] == 0  # π_θ = π_old: ρ ≡ 1
    cells = [c for row in out["rows"] for c in row["tokens"]]
    assert len(cells) == out["tokens"]
    assert sum(c["loss_share"] for c in cells) == pytest.approx(out["after"]["policy_loss"], abs=1e-5)
    assert sum(c["kl_share"] for c in cells) == pytest.approx(out["after"]["approx_kl"], abs=1e-6)
    assert np.mean([c["outside_clip"] for c in cells]) == pytest.approx(out["after"]["clipfrac"], abs=1e-6)
    assert any(abs(c["ratio"] - 1) > 1e-4 for c in cells)  # three steps moved the copy
    for c in cells:
        assert c["ratio"] == pytest.approx(np.exp(c["new_logprob"] - c["old_logprob"]), rel=1e-4)
        assert not c["clip_binds"] or c["outside_clip"]
    after = explorer.run.models["rl"].state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)  # the run's own policy is untouched


def test_curves_and_reward_model(explorer):
    curves = explorer.curves()
    (name, run), = curves["runs"].items()
    assert name.startswith("rl_ppo-") and [p[0] for p in run["score_mean"]] == [1, 2, 3]
    assert len(run["explained_variance"]) == 3 and curves["reward_vs_kl"] == []
    out = explorer.reward_model("thank you so much")
    assert out["reward"] == pytest.approx(explorer.run.reward_fn(["thank you so much"])[0])
    assert 0 <= out["health"]["pair_accuracy"] <= 1
    with pytest.raises(InputError, match="1 to 200 characters"):
        explorer.reward_model("")


def test_a_missing_or_unfinished_run_names_the_stage_and_the_command(tmp_path):
    with pytest.raises(RunFolderError, match=r"no run folder at .*nowhere.*python -m minirl.examples.happy_gpt --out"):
        RunFolder.open(tmp_path / "nowhere")
    partial = tmp_path / "partial"
    (partial / "tokenizer-abc").mkdir(parents=True)
    (partial / "tokenizer-abc" / "done.json").write_text("{}")
    with pytest.raises(RunFolderError, match=r"the pretrain stage has not finished \(finished: tokenizer\)"):
        RunFolder.open(partial)
    (partial / "compare").mkdir()
    (partial / "compare" / "summary.json").write_text("{}")
    with pytest.raises(RunFolderError, match="holds a compare run but no happy_gpt run"):
        RunFolder.open(partial)


def test_a_summary_from_before_a_field_was_removed_still_opens(tiny_run):
    path = tiny_run / "summary.json"
    original = path.read_text()
    old = json.loads(original)
    old["config"]["rl"]["best_of_n"].update(rounds=2, max_new_tokens=48)  # fields removed as flags that did nothing
    try:
        path.write_text(json.dumps(old))
        assert Explorer(RunFolder.open(tiny_run)).overview()["algo"] == "ppo"
    finally:
        path.write_text(original)


def test_cli_refuses_a_bad_folder_in_one_line(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no run folder at") and "--quick" in err and "Traceback" not in err
    (tmp_path / "afile").write_text("")
    assert main(["--out", str(tmp_path / "afile")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "afile is a file, not a folder" in err and "happy_gpt --out" not in err


@pytest.mark.parametrize("port", ["-1", "0", "65536", "99999"])
def test_cli_refuses_a_port_outside_1_to_65535(tmp_path, capsys, port):
    with pytest.raises(SystemExit):  # before the folder is opened: the message is about --port alone
        main(["--out", str(tmp_path / "missing"), "--port", port])
    assert f"argument --port: must be a port number from 1 to 65535, got '{port}'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def client(explorer):
    return create_app(explorer).test_client()


def test_app_serves_only_its_own_files(client, tiny_run):
    page = client.get("/").data.decode()
    assert "Generate" in page
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', page)
    assert "/static/explore.js" in assets and len(assets) >= 4
    for asset in assets:  # every script and stylesheet the page names is served
        assert client.get(asset).status_code == 200, asset
    for path in ["/static/../explorer.py", "/static/summary.json", "/static/%2e%2e%2fexplore.py", "/summary.json",
                 f"/static/{tiny_run}/summary.json", "/static/index.html/../../run_folder.py", "/api/nothing"]:
        assert client.get(path).status_code == 404, path


def test_app_answers_bad_input_with_a_message_and_concurrent_requests_in_turn(client):
    bad = client.post("/api/generate", json={"prompt": "", "temperature": 1})
    assert bad.status_code == 400 and "empty" in bad.get_json()["error"]
    assert client.post("/api/generate", data="not json").status_code == 400
    results = []

    def ask(seed):
        results.append(client.post("/api/generate", json={"prompt": "hello", "max_new_tokens": 8, "seed": seed}))
    threads = [threading.Thread(target=ask, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200] * 4
    assert all(len(r.get_json()["answers"]) == 3 for r in results)


def test_the_speed_benchmark_runs(tiny_run, capsys):
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_explore.py"
    spec = importlib.util.spec_from_file_location("bench_explore", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--out", str(tiny_run), "--requests", "1"]) == 0
    assert "a Generate request for three models took" in capsys.readouterr().out


def write_lab_summary(folder) -> dict:
    """<folder>/overoptimization/summary.json with the fields `overoptimization.run_lab` writes, its
    numbers made by the lab's own functions from made-up scores: two proxies, best-of-n up to n = 8
    over two seeds, PPO evaluated four times. One sample carries HTML, which the page must show as text."""
    rng = np.random.default_rng(0)
    ns, proxies, bon, ppo = [1, 2, 4, 8], {}, {}, {}
    for k, size in enumerate(["60", "240"]):
        runs = []
        for _ in range(2):
            gold = rng.normal(size=32)
            runs.append(best_of_n_means(gold * (k + 1) + rng.normal(size=32), gold, ns))
        gold, proxy = (np.array([r[key] for r in runs]) for key in ("gold", "proxy"))
        gold_se, proxy_se = gold.std(axis=0, ddof=1) / math.sqrt(2), proxy.std(axis=0, ddof=1) / math.sqrt(2)
        d = np.sqrt(runs[0]["kl"])
        bon[size] = {"n": ns, "kl": runs[0]["kl"], "d": d.tolist(), "gold": gold.mean(0).tolist(),
                     "gold_stderr": gold_se.tolist(), "proxy": proxy.mean(0).tolist(),
                     "proxy_stderr": proxy_se.tolist(),
                     "fit": fit_gold_curve(d, gold.mean(0) - gold.mean(0)[0], "bon"),
                     "gold_falls": gold_falls(gold.mean(0), gold_se)}
        kls = [0.0, 2.0 + k, 6.0 + 2 * k, 12.0 + 3 * k]
        golds = [0.1, 0.3 + 0.1 * k, 0.35, 0.2 - 0.05 * k]
        evals = [{"iteration": 4 * i, "kl": kl, "d": math.sqrt(kl), "proxy": 0.5 + i * (k + 1), "gold": g,
                  "gold_stderr": 0.02, "length": 12.0 + i, "distinct_2": 0.9 - 0.2 * i,
                  "samples": [f"proxy {size}, evaluation {i}, sample {j}" + (" <b>not bold</b>" if j == 0 else "")
                              for j in range(4)]} for i, (kl, g) in enumerate(zip(kls, golds))]
        ppo[size] = {"evals": evals, "fit": fit_gold_curve([e["d"] for e in evals], np.array(golds) - golds[0], "rl"),
                     "max_kl": max(kls), "gold_falls": gold_falls(golds, [0.02] * 4)}
        proxies[size] = {"train_pairs": int(size) - 5, "val_accuracy": 0.6 + 0.1 * k, "stage": f"reward_rlaif-{k}"}
    summary = {"config": {}, "lab": {"label_sets": "60,240", "bon_pool": 32, "bon_max_n": 8, "seeds": 2,
                                     "ppo_iterations": 12, "eval_every": 4, "kl_coef": 0.0},
               "proxies": proxies, "best_of_n": bon, "ppo": ppo, "stages": [], "plot": None}
    (folder / "overoptimization").mkdir(exist_ok=True)
    (folder / "overoptimization" / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


@pytest.fixture
def lab_summary(tiny_run):
    """The lab's summary in the shared run folder for one test, removed after it."""
    yield write_lab_summary(tiny_run)
    shutil.rmtree(tiny_run / "overoptimization")


def test_the_lab_panel_without_the_lab_gives_its_command(client, tiny_run):
    out = client.post("/api/lab").get_json()
    assert out == {"available": False, "command": f"python -m minirl.examples.overoptimization --out {tiny_run}"}


def test_the_lab_panel_gives_the_summary_its_fitted_curves_and_verdicts(client, lab_summary):
    out = client.post("/api/lab").get_json()
    assert out["available"] and [p["size"] for p in out["proxies"]] == ["60", "240"]
    for p in out["proxies"]:
        bon, ppo = lab_summary["best_of_n"][p["size"]], lab_summary["ppo"][p["size"]]
        assert p["train_pairs"] == lab_summary["proxies"][p["size"]]["train_pairs"]
        points = p["best_of_n"]["points"]
        for key in ("n", "kl", "d", "gold", "gold_stderr", "proxy", "proxy_stderr"):
            assert [q[key] for q in points] == bon[key], key
        assert [q["delta_gold"] for q in points] == pytest.approx(np.subtract(bon["gold"], bon["gold"][0]))
        assert [q["samples"] for q in p["ppo"]["points"]] == [e["samples"] for e in ppo["evals"]]
        assert [q["delta_gold"] for q in p["ppo"]["points"]] == pytest.approx([e["gold"] - 0.1 for e in ppo["evals"]])
        for method, raw, form in (("best_of_n", bon, lambda d, a, b: d * (a - b * d)),
                                  ("ppo", ppo, lambda d, a, b: d * (a - b * np.log(d)) if d > 0 else 0.0)):
            fit, curve = p[method]["fit"], np.array(p[method]["fit_curve"])
            assert fit == raw["fit"] and p[method]["gold_falls"] == raw["gold_falls"]
            d_max = max(bon["d"]) if method == "best_of_n" else ppo["max_kl"] ** 0.5
            assert curve[0, 0] == 0 and curve[-1, 0] == pytest.approx(d_max) and len(curve) > 20
            np.testing.assert_allclose(curve[:, 1], [form(d, fit["alpha"], fit["beta"]) for d in curve[:, 0]],
                                       rtol=1e-9, atol=1e-12)  # the paper's forms, written out here
    assert out["verdicts"] == verdicts(lab_summary) and out["kl_coef"] == 0.0
    assert out["samples_at"] == {"size": "240", "points": [0, 1, 3]}  # first, middle, last evaluation


def test_the_lab_panel_sends_a_flat_fit_as_null_and_a_broken_summary_as_one_sentence(client, tiny_run, lab_summary):
    path = tiny_run / "overoptimization" / "summary.json"
    lab_summary["ppo"]["60"]["fit"]["r2"] = float("nan")  # what fit_gold_curve gives when gold never moved
    path.write_text(json.dumps(lab_summary))
    answer = client.post("/api/lab")
    assert b"NaN" not in answer.data and answer.get_json()["proxies"][0]["ppo"]["fit"]["r2"] is None
    command = f"python -m minirl.examples.overoptimization --out {tiny_run}"
    for missing, broken in (("'240'", {**lab_summary, "ppo": {"60": lab_summary["ppo"]["60"]}}),
                            ("'lab'", {k: v for k, v in lab_summary.items() if k != "lab"})):
        path.write_text(json.dumps(broken))
        answer = client.post("/api/lab")
        assert answer.status_code == 400
        assert answer.get_json()["error"] == (f"{path} cannot be read (KeyError: {missing}); "
                                              f"rerun `{command}` to rewrite it.")
    path.write_text("{not json")
    assert "cannot be read (JSONDecodeError" in client.post("/api/lab").get_json()["error"]


FRONTIER_RUNS = {"ppo": ("ppo.kl_coef", "β", [(0.2, 1.5, 0.45), (0.05, 5.0, 0.7), (0.0, 12.0, 0.65)]),
                 "trpo": ("trpo.max_kl", "δ", [(0.005, -0.05, 0.26), (0.02, 6.0, 0.6)]),
                 "best_of_n": ("best_of_n.n", "n", [(4, 9.0, 0.8), (8, 7.0, 0.75)])}
"""algorithm -> (knob, symbol, [(value, KL, reward)]): PPO's β = 0 run is dominated (more KL, less reward);
TRPO's δ = 0.005 run has a k1 KL just below 0, as a run that barely moved can"""


def write_frontier_summary(folder, proxy: bool = True, config: dict | None = None, stages=()) -> dict:
    """<folder>/frontier/summary.json with the fields `frontier.run_frontier` writes, its numbers made by the
    sweep's own functions (`matched_kl`, `verdict`, `closest_runs`) from the made-up runs of FRONTIER_RUNS;
    under a proxy reward each run also has a gold score. One sample carries HTML, which the page must show
    as text."""
    sft = {"reward": 0.25, "gold": 0.1 if proxy else None, "kl_to_sft": 0.0, "response_length": 20.0,
           "distinct_2": 0.9, "fraction_positive": 0.5, "samples": ["sft sample 0", "sft sample 1"]}
    runs = []
    for algo, (knob, symbol, values) in FRONTIER_RUNS.items():
        for j, (value, kl, reward) in enumerate(values):
            runs.append({"algo": algo, "knob": knob, "symbol": symbol, "value": value, "reward": reward,
                         "gold": 0.3 + 0.05 * j - 0.01 * kl if proxy else None, "kl_to_sft": kl,
                         "response_length": 18.0 + j, "distinct_2": 0.8 - 0.1 * j, "fraction_positive": 0.7,
                         "samples": [f"{algo} {symbol}={value:g}, sample {i}" + (" <b>not bold</b>" if i == 0 else "")
                                     for i in range(3)],
                         "seconds": 1.0, "sampled_tokens": 1000 + j, "iterations": 5, "stage": f"frontier_{algo}-{j}"})
    summary = {"config": config or {}, "frontier_config": {}, "reward": "rlaif" if proxy else "vader",
               "gold": "vader" if proxy else None, "token_budget": 30000, "dpo_steps": 10, "sft": sft, "runs": runs,
               "matched": matched_kl(runs, sft, [2.0, 4.0, 8.0], proxy)}
    summary.update(verdict=verdict(summary), samples=closest_runs(summary), stages=list(stages), plot=None,
                   table=None, total_seconds=1.0)
    (folder / "frontier").mkdir(exist_ok=True)
    (folder / "frontier" / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


@pytest.fixture(params=[True, False], ids=["proxy", "vader"])
def frontier_summary(tiny_run, request):
    """The frontier sweep's summary in the shared run folder for one test (with and without gold), removed after."""
    yield write_frontier_summary(tiny_run, proxy=request.param)
    shutil.rmtree(tiny_run / "frontier")


def test_the_frontier_panel_without_the_sweep_gives_its_command(client, tiny_run):
    out = client.post("/api/frontier").get_json()
    assert out == {"available": False, "command": f"python -m minirl.examples.frontier --out {tiny_run}"}


def test_the_frontier_panel_gives_every_run_each_frontier_and_the_matched_kls(client, frontier_summary):
    out = client.post("/api/frontier").get_json()
    proxy, matched = frontier_summary["gold"] is not None, frontier_summary["matched"]
    assert out["available"] and out["gold"] == frontier_summary["gold"] and out["kls"] == [2.0, 4.0, 8.0]
    assert [a["algo"] for a in out["algos"]] == list(FRONTIER_RUNS) and out["best"] == matched["best"]
    assert out["verdict"] == frontier_summary["verdict"] and out["sft"]["samples"] == frontier_summary["sft"]["samples"]
    for a in out["algos"]:
        knob, symbol, values = FRONTIER_RUNS[a["algo"]]
        assert a["symbol"] == symbol and [r["label"] for r in a["runs"]] == [f"{symbol}={v:g}" for v, _, _ in values]
        assert [(r["kl_to_sft"], r["reward"]) for r in a["runs"]] == [(kl, reward) for _, kl, reward in values]
        sent = [r for r in frontier_summary["runs"] if r["algo"] == a["algo"]]
        assert [r["samples"] for r in a["runs"]] == [r["samples"] for r in sent]
        assert [r["distinct_2"] for r in a["runs"]] == [r["distinct_2"] for r in sent]
        m = matched["algos"][a["algo"]]
        assert a["frontier"] == [list(p) for p in zip(m["frontier_kl"], m["frontier_reward"])]
        assert (a["reward"], a["reward_per_nat"], a["kl_range"]) == (m["reward"], m["reward_per_nat"], m["kl_range"])
        if proxy:  # gold through the runs in KL order, not made monotone
            assert a["gold_line"] == sorted([r["kl_to_sft"], r["gold"]] for r in sent) and a["gold"] == m["gold"]
        else:
            assert a["gold_line"] == [] and a["gold"] is None
    ppo = out["algos"][0]
    assert ppo["frontier"] == [[1.5, 0.45], [5.0, 0.7], [12.0, 0.7]]  # the β = 0 run is dominated


def test_the_frontier_panel_refuses_a_broken_summary_in_one_sentence(client, tiny_run, frontier_summary):
    path = tiny_run / "frontier" / "summary.json"
    command = f"python -m minirl.examples.frontier --out {tiny_run}"
    trpo = frontier_summary["matched"]["algos"]["trpo"]
    for why, broken in (
            ("KeyError: 'matched'", {k: v for k, v in frontier_summary.items() if k != "matched"}),
            ("ValueError: matched.algos.trpo.reward has 2 values for 3 matched KLs",
             {**frontier_summary, "matched": {**frontier_summary["matched"], "algos": {
                 **frontier_summary["matched"]["algos"], "trpo": {**trpo, "reward": trpo["reward"][:2]}}}}),
            ("ValueError: runs has dpo, which matched.algos lacks",
             {**frontier_summary, "runs": frontier_summary["runs"] + [{**frontier_summary["runs"][0], "algo": "dpo"}]}),
            ("KeyError: 'samples'", {**frontier_summary, "runs": [
                {k: v for k, v in frontier_summary["runs"][0].items() if k != "samples"}]})):
        path.write_text(json.dumps(broken))
        answer = client.post("/api/frontier")
        assert answer.status_code == 400
        assert answer.get_json()["error"] == f"{path} cannot be read ({why}); rerun `{command}` to rewrite it."
    path.write_text("{not json")
    assert "cannot be read (JSONDecodeError" in client.post("/api/frontier").get_json()["error"]


def make_sweep_folder(tiny_run, folder):
    """A frontier sweep's --out: the tiny run's tokenizer, pretraining, SFT and reward stages (copied) and a
    frontier/summary.json naming them, but no happy_gpt summary and no rl_* stage."""
    happy = json.loads((tiny_run / "summary.json").read_text())
    stages = [s for s in happy["stages"] if not s["name"].startswith("rl_")]
    for stage in stages:
        shutil.copytree(tiny_run / pathlib.Path(stage["dir"]).name, folder / pathlib.Path(stage["dir"]).name)
    return write_frontier_summary(folder, config=happy["config"], stages=stages)


@pytest.fixture(scope="module")
def sweep_folder(tiny_run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sweep") / "run"
    folder.mkdir()
    make_sweep_folder(tiny_run, folder)
    return folder


def test_a_frontier_sweeps_folder_opens_without_an_rl_policy(sweep_folder, tiny_run):
    run = RunFolder.open(sweep_folder)
    assert sorted(run.models) == ["pretrained", "sft"] and run.value_model is None
    assert run.reward_model is not None  # the sweep's learned reward, as the tiny run's
    command = f"python -m minirl.examples.happy_gpt --out {sweep_folder}"
    assert run.missing_policy == (f"{sweep_folder} holds a frontier sweep but no happy_gpt RL policy: run `{command}` "
                                  "with the sweep's flags (it reuses the tokenizer, pretraining and SFT it shares), "
                                  "then reload the page.")
    client = create_app(Explorer(run)).test_client()
    overview = client.post("/api/overview").get_json()
    assert overview["missing_policy"] == run.missing_policy and overview["models"] == {}
    answers = client.post("/api/generate", json={"prompt": "I love", "max_new_tokens": 6}).get_json()["answers"]
    assert [a["model"] for a in answers] == ["pretrained", "sft"]
    for name in ("ledger", "ppo_step"):
        answer = client.post(f"/api/{name}")
        assert answer.status_code == 400 and answer.get_json()["error"] == run.missing_policy
    assert client.post("/api/frontier").get_json()["available"]
    assert client.post("/api/reward_model", json={"text": "thanks"}).status_code == 200


def test_curves_label_a_sweeps_runs_by_their_knob_and_leave_them_unticked_beside_others(sweep_folder, tiny_run):
    rl_dir = next(tiny_run.glob("rl_ppo-*"))
    for name in ("frontier_ppo-1", "frontier_trpo-0"):  # two of the sweep's runs, with the tiny run's log
        shutil.copytree(rl_dir, sweep_folder / name, dirs_exist_ok=True)
    curves = Explorer(RunFolder.open(sweep_folder)).curves()
    assert curves["labels"] == {"frontier_ppo-1": "frontier: ppo β=0.05", "frontier_trpo-0": "frontier: trpo δ=0.005"}
    assert curves["shown"] == ["frontier_ppo-1", "frontier_trpo-0"]  # nothing else to show: the sweep's runs
    assert [p[0] for p in curves["runs"]["frontier_ppo-1"]["score_mean"]] == [1, 2, 3]
    shutil.copytree(rl_dir, sweep_folder / rl_dir.name)
    try:
        curves = Explorer(RunFolder.open(sweep_folder)).curves()
        assert curves["shown"] == [rl_dir.name] and curves["labels"][rl_dir.name] == "happy_gpt: ppo"
    finally:
        for name in ("frontier_ppo-1", "frontier_trpo-0", rl_dir.name):
            shutil.rmtree(sweep_folder / name)


def test_a_sweeps_folder_with_a_broken_summary_names_the_sweeps_command(tmp_path):
    (tmp_path / "frontier").mkdir()
    (tmp_path / "frontier" / "summary.json").write_text("{}")
    with pytest.raises(RunFolderError, match=r"frontier/summary.json cannot be read \('config'\); rerun "
                                             r"`python -m minirl.examples.frontier --out "):
        RunFolder.open(tmp_path)
