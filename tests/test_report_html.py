"""report.html: the run's numbers, escaped samples, inlined plots, and nothing fetched from elsewhere."""

import base64
import json
import re

from minirl.examples.report_html import MODEL_COLUMNS, _number, write_report_html

PNG = b"\x89PNG\r\n\x1a\n" + b"not really an image, only bytes to find again"


def summary():
    figures = lambda k: {"reward": 0.1 * k, "vader": 0.2 * k, "fraction_positive": 0.25 * k, "kl_to_sft": 1.5 * k,
                         "distinct_1": 0.61 + k, "distinct_2": 0.83 + k, "response_length": 11.0 + k,
                         "val_ppl": 40.25 + k}
    return {"config": {"run": {"algo": "ppo", "reward": "vader", "seed": 0, "eval_samples": 8, "out": "o"},
                       "rl": {"kl_coef": 0.05}},
            "stages": [{"name": "pretrain", "status": "ran", "seconds": 12.5}], "eval_seconds": 3.25,
            "total_seconds": 20.0, "models": {"pretrained": figures(1), "sft": figures(2), "final": figures(3)},
            "acceptance": {"vader_gain_over_sft": 0.125, "kl_to_sft": 4.5},
            "samples": {"pretrained": ["plain text"], "sft": ["<script>alert(1)</script> & see http://x.io"],
                        "final": ['a "quoted" <b>tag</b>']}}


def external_urls(page):
    """Every src= or href= that points outside the page (data: URIs and #anchors are inside)."""
    return [u for u in re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page, re.I)
            if not u.startswith(("data:", "#"))]


def test_page_holds_every_model_row_escaped_samples_and_no_external_url(tmp_path):
    s = summary()
    page = write_report_html(s, tmp_path).read_text()
    assert (tmp_path / "report.html").exists() and not list(tmp_path.glob("*.tmp"))
    for figures in s["models"].values():
        for key, _ in MODEL_COLUMNS:
            assert f'<td class="num">{_number(figures[key])}</td>' in page, key
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; see http://x.io" in page
    assert "a &quot;quoted&quot; &lt;b&gt;tag&lt;/b&gt;" in page
    assert "python -m minirl.examples.explore --out " + str(tmp_path) in page
    assert "0.125" in page and "12.5" in page and "kl_coef = 0.05" in page
    assert external_urls(page) == [] and "<link" not in page
    assert "No plots" in page


def test_plot_is_inlined_when_it_exists(tmp_path):
    (tmp_path / "rl_curves.png").write_bytes(PNG)
    page = write_report_html(summary(), tmp_path).read_text()
    assert f'src="data:image/png;base64,{base64.b64encode(PNG).decode()}"' in page
    assert external_urls(page) == []


def test_a_run_writes_report_html_with_its_own_numbers(tiny_run):
    s = json.loads((tiny_run / "summary.json").read_text())
    page = (tiny_run / "report.html").read_text()
    for figures in s["models"].values():
        for key, _ in MODEL_COLUMNS:
            assert f'<td class="num">{_number(figures[key])}</td>' in page, key
    assert (tiny_run / "rl_curves.png").exists()  # matplotlib is installed here, so the plot is written by default
    assert base64.b64encode((tiny_run / "rl_curves.png").read_bytes()).decode() in page
    assert external_urls(page) == []


def test_an_earlier_runs_page_is_moved_aside_when_a_run_starts(tmp_path):
    from minirl.examples.happy_gpt import open_out

    (tmp_path / "report.html").write_text("the earlier run's page")
    open_out(str(tmp_path))
    assert not (tmp_path / "report.html").exists()
    assert (tmp_path / "report.previous.html").read_text() == "the earlier run's page"
