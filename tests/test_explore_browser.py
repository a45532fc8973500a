"""The explorer in a real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium).

A person's path: type a prompt, click Generate, read three answers with their numbers, open the
ledger, step GAE backward, take a PPO step, look at the curves and the reward model; then the
Goodhart lab and Frontier panels, first without their sweep (the command), then over a summary; then
a frontier sweep's folder, which has no RL policy. The numbers on
the page must be the ones the Python API gives for the same seed. Screenshots go to
$MINIRL_SCREENSHOTS (default: the test's tmp folder). Without Chromium the test skips, except
when MINIRL_REQUIRE_BROWSER=1 (set by .ci/run), where a missing browser is a failure.
"""

import math
import os
import pathlib
import shutil

import pytest

from minirl.examples.explorer import Explorer
from minirl.examples.run_folder import RunFolder
from tests.test_explore import make_sweep_folder, write_frontier_summary, write_lab_summary
from tests.test_repo import load_example

pytest.importorskip("flask", reason="the explorer needs Flask (pip install -e '.[app]')")
REQUIRED = os.environ.get("MINIRL_REQUIRE_BROWSER") == "1"


SCREENSHOT = load_example("explore_screenshot")  # its launch and serving drive the page here too


def _browser():
    try:
        return SCREENSHOT.launch()
    except RuntimeError as e:
        if REQUIRED:
            pytest.fail(f"{e}; MINIRL_REQUIRE_BROWSER=1 says this run must have them.")
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def page(request):
    browser = _browser()  # first: without one, skip before the run folder is made
    try:
        explorer = Explorer(RunFolder.open(request.getfixturevalue("tiny_run")))
        with SCREENSHOT.serving(explorer) as url:
            yield browser, url, explorer
    finally:
        browser.quit()


def _shots(tmp_path) -> pathlib.Path:
    folder = pathlib.Path(os.environ.get("MINIRL_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wait(browser, css, count=1, timeout=60):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(browser, timeout).until(
        lambda b: (found := b.find_elements(By.CSS_SELECTOR, css)) and len(found) >= count and found)


def _shown(text: str) -> float:
    return float(text.strip())


def test_a_learner_uses_every_panel(page, tmp_path):
    from selenium.webdriver.common.by import By
    browser, url, explorer = page
    shots = _shots(tmp_path)
    browser.get(url)
    _wait(browser, "#run-info")
    find = browser.find_element

    prompt = find(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("thank you")
    find(By.ID, "length").clear()
    find(By.ID, "length").send_keys("12")
    find(By.ID, "generate").click()
    answers = _wait(browser, ".answer", 3)
    expected = explorer.generate("thank you", temperature=1.0, top_k=0, max_new_tokens=12, seed=0)["answers"]
    assert [a.get_attribute("data-model") for a in answers] == ["pretrained", "sft", "rl"]
    for shown, want in zip(answers, expected):
        assert _shown(shown.find_element(By.CSS_SELECTOR, ".reward").text) == pytest.approx(want["reward"], abs=6e-5)
        assert _shown(shown.find_element(By.CSS_SELECTOR, ".kl").text) == pytest.approx(want["kl_to_sft"], abs=6e-5)
        spans = shown.find_elements(By.CSS_SELECTOR, ".tok")
        assert len(spans) == len(want["tokens"])
        assert f"{want['tokens'][0]['diff']:.4f}" in spans[0].get_attribute("title")
    browser.save_screenshot(str(shots / "explore_generate.png"))

    find(By.ID, "prompt").clear()
    find(By.ID, "generate").click()
    from selenium.webdriver.support.ui import WebDriverWait
    assert "empty" in WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "generate-error").text)
    browser.save_screenshot(str(shots / "explore_error.png"))

    find(By.CSS_SELECTOR, '.tab[data-panel="ledger"]').click()
    find(By.ID, "ledger-run").click()
    _wait(browser, "#ledger-table tr.response")
    want = explorer.ledger(rows=4, seed=0)["rows"][0]["tokens"]
    steps = [c for c in want if c["mask"] == 1]
    for c in steps:
        row = find(By.CSS_SELECTOR, f'#ledger-table tr[data-t="{c["t"]}"]')
        cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
        for i, key in enumerate(["logprob", "ref_logprob", "kl", "reward", "value", "delta", "advantage", "return"]):
            assert _shown(cells[3 + i]) == pytest.approx(c[key], abs=6e-5), (c["t"], key)
    assert find(By.CSS_SELECTOR, "#ledger-table tr.prompt")  # the prompt column is shown, masked out
    find(By.ID, "gae-reset").click()
    find(By.ID, "gae-step").click()
    find(By.ID, "gae-step").click()
    cursor = find(By.CSS_SELECTOR, "#ledger-table tr.cursor")
    assert int(cursor.get_attribute("data-t")) == steps[-2]["t"]  # two steps back from nothing: T, then T−1
    assert f"= {steps[-2]['advantage']:.4f}" in find(By.ID, "gae-eq").text
    pending = browser.find_elements(By.CSS_SELECTOR, "#ledger-table td.pending")
    assert len(pending) == 2 * (len(steps) - 2)  # A_t and R_t of the steps not reached yet
    browser.save_screenshot(str(shots / "explore_ledger.png"))

    find(By.CSS_SELECTOR, '.tab[data-panel="ppo"]').click()
    find(By.ID, "ppo-run").click()
    _wait(browser, "#ppo-summary .stat", 4)
    want = explorer.ppo_step(seed=0, steps=1)
    stats = browser.find_elements(By.CSS_SELECTOR, "#ppo-summary .stat b")
    assert _shown(stats[1].text) == pytest.approx(want["after"]["approx_kl"], abs=6e-5)
    browser.save_screenshot(str(shots / "explore_ppo.png"))

    find(By.CSS_SELECTOR, '.tab[data-panel="curves"]').click()
    charts = _wait(browser, ".chart svg polyline", 6)
    assert len(charts) == 6
    browser.save_screenshot(str(shots / "explore_curves.png"))

    find(By.CSS_SELECTOR, '.tab[data-panel="reward"]').click()
    find(By.ID, "reward-run").click()
    score = _wait(browser, "#reward-out .score")[0]
    text = find(By.ID, "reward-text").get_attribute("value")
    assert _shown(score.text) == pytest.approx(explorer.reward_model(text)["reward"], abs=6e-5)
    browser.save_screenshot(str(shots / "explore_reward.png"))


def test_the_goodhart_lab_panel_draws_every_point_and_shows_samples_on_click(page, tmp_path):
    from selenium.webdriver.common.by import By
    browser, url, explorer = page
    find = browser.find_element
    browser.get(url)
    find(By.CSS_SELECTOR, '.tab[data-panel="lab"]').click()
    command = _wait(browser, "#lab-missing:not(.hidden) #lab-command")[0].text
    assert command == f"python -m minirl.examples.overoptimization --out {explorer.run.path}"
    try:
        summary = write_lab_summary(explorer.run.path)
        browser.get(url)
        find(By.CSS_SELECTOR, '.tab[data-panel="lab"]').click()
        want = explorer.lab()
        bon = sum(len(p["best_of_n"]["points"]) for p in want["proxies"])
        ppo = sum(len(p["ppo"]["points"]) for p in want["proxies"])
        assert len(_wait(browser, "#lab-charts circle.point", 2 * (bon + ppo))) == 2 * (bon + ppo)  # gold and proxy
        charts = browser.find_elements(By.CSS_SELECTOR, "#lab-charts .chart")
        assert len(charts) == 4
        for chart, method in zip(charts[::2], ("best_of_n", "ppo")):  # gold: a fitted curve per proxy, error bars
            curves = [line.get_attribute("points").split() for line in chart.find_elements(By.CSS_SELECTOR, "polyline")]
            assert [len(c) for c in curves] == [len(p[method]["fit_curve"]) for p in want["proxies"]]
            bars = sum(q["gold_stderr"] > 0 for p in want["proxies"] for q in p[method]["points"])
            assert len(chart.find_elements(By.CSS_SELECTOR, "line.err")) == 3 * bars > 0  # a bar and two caps each
        rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                for tr in browser.find_elements(By.CSS_SELECTOR, "#lab-fits tr")[1:]]
        fits = [(p, m) for p in want["proxies"] for m in ("best_of_n", "ppo")]
        assert len(rows) == len(fits)
        for cells, (p, method) in zip(rows, fits):
            fit = p[method]["fit"]
            assert [_shown(c) for c in cells[2:5]] == pytest.approx([fit["alpha"], fit["beta"], fit["r2"]], abs=6e-4)
        shown = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#lab-samples .sample .texts")]
        assert shown == ["\n".join(summary["ppo"]["240"]["evals"][i]["samples"]) for i in (0, 1, 3)]
        point = find(By.CSS_SELECTOR, '#lab-charts circle.point[data-key="ppo-60-2"]')
        point.click()
        _wait(browser, '#lab-charts circle.point.picked[data-key="ppo-60-2"]')
        texts = find(By.CSS_SELECTOR, "#lab-samples .sample .texts")
        assert texts.text == "\n".join(summary["ppo"]["60"]["evals"][2]["samples"])  # the <b> shown as text
        assert not browser.find_elements(By.CSS_SELECTOR, "#lab-samples b")
        assert "iteration 8" in find(By.ID, "lab-samples-title").text
        browser.set_window_size(1400, 2000)  # the whole panel in view, for its screenshot
        find(By.ID, "panel-lab").screenshot(str(_shots(tmp_path) / "explore_lab.png"))
        browser.set_window_size(1400, 1000)
    finally:
        shutil.rmtree(explorer.run.path / "overoptimization", ignore_errors=True)


def test_the_frontier_panel_draws_every_run_and_each_frontier_and_shows_samples_on_click(page, tmp_path):
    from selenium.webdriver.common.by import By
    browser, url, explorer = page
    find = browser.find_element
    browser.get(url)
    find(By.CSS_SELECTOR, '.tab[data-panel="frontier"]').click()
    command = _wait(browser, "#frontier-missing:not(.hidden) #frontier-command")[0].text
    assert command == f"python -m minirl.examples.frontier --out {explorer.run.path}"
    try:
        summary = write_frontier_summary(explorer.run.path, proxy=True)
        browser.get(url)
        find(By.CSS_SELECTOR, '.tab[data-panel="frontier"]').click()
        want = explorer.frontier()
        labels = [r["label"] for a in want["algos"] for r in a["runs"]]
        points = _wait(browser, "#frontier-charts circle.point", 2 * (len(labels) + 1))
        assert len(points) == 2 * (len(labels) + 1)  # every run and the SFT model, on reward and on gold
        assert all(math.isfinite(float(p.get_attribute(xy))) for p in points for xy in ("cx", "cy"))  # KL < 0 too
        reward_chart, gold_chart = browser.find_elements(By.CSS_SELECTOR, "#frontier-charts .chart")
        for chart, line in ((reward_chart, "frontier"), (gold_chart, "gold_line")):
            lines = [p.get_attribute("points").split() for p in chart.find_elements(By.CSS_SELECTOR, "polyline")]
            assert [len(p) for p in lines] == [len(a[line]) for a in want["algos"]]  # one line per algorithm
            assert len(chart.find_elements(By.CSS_SELECTOR, "line.vline")) == len(want["kls"])  # the matched KLs
        tags = [t.text for t in reward_chart.find_elements(By.CSS_SELECTOR, "text.point-tag")]
        assert tags == labels + ["SFT"] and "δ=0.005" in tags
        best = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#frontier-table td.best")]
        by_algo = {a["algo"]: a for a in want["algos"]}
        assert best == [f"★ {by_algo[b]['reward'][i]:.3f}" for i, b in enumerate(want["best"])]
        assert find(By.ID, "frontier-verdict").text == summary["verdict"]
        assert find(By.CSS_SELECTOR, "#frontier-samples .texts").text == "\n".join(summary["sft"]["samples"])
        find(By.CSS_SELECTOR, '#frontier-charts circle.point[data-key="trpo-1"]').click()
        _wait(browser, '#frontier-charts circle.point.picked[data-key="trpo-1"]', 2)  # on both charts
        run = next(r for r in summary["runs"] if r["algo"] == "trpo" and r["value"] == 0.02)
        assert find(By.ID, "frontier-samples-title").text == "trpo, δ = 0.02"
        assert find(By.CSS_SELECTOR, "#frontier-samples .texts").text == "\n".join(run["samples"])  # <b> as text
        assert not browser.find_elements(By.CSS_SELECTOR, "#frontier-samples b")
        shown = find(By.CSS_SELECTOR, "#frontier-samples .sample div").text
        assert f"KL to SFT {run['kl_to_sft']:.2f} nats, reward {run['reward']:.3f}, gold (vader) {run['gold']:.3f}" in shown
        assert f"distinct-2 {run['distinct_2']:.3f}, length {run['response_length']:.1f} tokens" in shown
        find(By.CSS_SELECTOR, '#frontier-algos input[value="ppo"]').click()  # hide one algorithm
        assert len(browser.find_elements(By.CSS_SELECTOR, "#frontier-charts circle.point")) == 2 * (len(labels) - 2)
        browser.set_window_size(1400, 2000)
        find(By.ID, "panel-frontier").screenshot(str(_shots(tmp_path) / "explore_frontier.png"))
        browser.set_window_size(1400, 1000)
    finally:
        shutil.rmtree(explorer.run.path / "frontier", ignore_errors=True)


def test_a_frontier_sweeps_folder_shows_the_command_where_the_rl_policy_is_missing(page, tiny_run, tmp_path):
    from selenium.webdriver.common.by import By
    browser = page[0]
    find = browser.find_element
    folder = tmp_path / "sweep"
    folder.mkdir()
    make_sweep_folder(tiny_run, folder)
    explorer = Explorer(RunFolder.open(folder))
    with SCREENSHOT.serving(explorer) as url:
        browser.get(url)
        from selenium.webdriver.support.ui import WebDriverWait
        WebDriverWait(browser, 30).until(lambda b: "frontier sweep" in b.find_element(By.ID, "run-info").text)
        find(By.ID, "generate").click()
        answers = _wait(browser, ".answer", 2)
        assert [a.get_attribute("data-model") for a in answers] == ["pretrained", "sft"]
        assert find(By.ID, "generate-missing").text == f"No RL policy to answer: {explorer.run.missing_policy}"
        for name in ("ledger", "ppo"):
            find(By.CSS_SELECTOR, f'.tab[data-panel="{name}"]').click()
            assert find(By.ID, f"{name}-error").text == explorer.run.missing_policy
            assert not find(By.ID, f"{name}-form").is_displayed()
        find(By.CSS_SELECTOR, '.tab[data-panel="frontier"]').click()
        assert len(_wait(browser, "#frontier-charts circle.point", 16)) == 16  # 7 runs and SFT, reward and gold


def test_the_screenshot_script_pictures_a_panel_and_refuses_a_bad_folder(tiny_run, tmp_path, capsys):
    _browser().quit()  # without a browser: skip (or fail under MINIRL_REQUIRE_BROWSER=1)
    png = tmp_path / "generate.png"
    assert SCREENSHOT.main([str(tiny_run), "generate", str(png), "--width", "900"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert SCREENSHOT.main([str(tiny_run), "generate", str(png), "--click", "#no-such-thing", "--wait", "1"]) == 2
    assert "nothing on the generate panel matches --click '#no-such-thing'" in capsys.readouterr().err
    assert SCREENSHOT.main([str(tmp_path / "missing"), "generate", str(tmp_path / "x.png")]) == 2
    assert capsys.readouterr().err.startswith("error: no run folder at")
