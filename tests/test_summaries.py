"""TL;DR data files: the release layouts, the prompt masked in SFT, long prompts cut from the left or
refused, bad lines named, and the seed's PPO settings."""

import json

import numpy as np
import pytest

from minirl.data.summaries import comparison_pairs, fit_prompt, load_comparisons, sft_dataset, write_synthetic_tldr
from minirl.examples.tldr import SummarizeData, seed_rl_config
from minirl.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_synthetic_tldr(tmp_path_factory.mktemp("tldr"), n=16)


@pytest.fixture(scope="module")
def tok(files):
    rows = [json.loads(line) for line in files[0].read_text().splitlines()]
    return Tokenizer.train([r["prompt"] + r["label"] for r in rows], 300)


def test_sft_rows_count_only_the_summary(files, tok):
    data = sft_dataset(files[0], tok, block_size=200, max_prompt_tokens=150)
    first = json.loads(files[0].read_text().splitlines()[0])
    prompt, summary = tok.encode(first["prompt"]), tok.encode(first["label"], eot=True)
    P, R = len(prompt), len(summary)
    assert data.seqs[0, :P + R].tolist() == prompt + summary
    assert data.mask[0].tolist() == [False] * (P - 1) + [True] * R + [False] * (200 - P - R + 1)
    assert data.seqs[0, 1:][data.mask[0]].tolist() == summary  # the targets counted are the summary and EOT


def test_a_long_prompt_keeps_its_end_or_is_refused(files, tok):
    ids = list(range(10))
    assert fit_prompt(ids, 4, "left", "x") == [6, 7, 8, 9] and fit_prompt(ids, 10, "refuse", "x") == ids
    with pytest.raises(ValueError, match="f.jsonl, line 3: the prompt has 10 tokens"):
        fit_prompt(ids, 4, "refuse", "f.jsonl, line 3")
    data = sft_dataset(files[0], tok, block_size=40, max_prompt_tokens=12)
    tail = tok.encode(json.loads(files[0].read_text().splitlines()[0])["prompt"])[-12:]
    assert data.seqs[0, :12].tolist() == tail  # "TL;DR:" is still there, right before the summary
    with pytest.raises(ValueError, match=r"sft.jsonl, line 1: the prompt has \d+ tokens"):
        sft_dataset(files[0], tok, block_size=40, max_prompt_tokens=12, truncate="refuse")


def test_comparisons_become_pairs_that_fit_the_block(files, tok):
    pairs = comparison_pairs(files[1], tok, block_size=48, max_prompt_tokens=40)
    assert len(pairs) == 16 == len(load_comparisons(files[1]))
    assert all(len(p.chosen) <= 48 and len(p.rejected) <= 48 for p in pairs)
    full = comparison_pairs(files[1], tok, block_size=200, max_prompt_tokens=150)
    assert all(p.chosen_ids[-1] == tok.eot_id for p in full)


@pytest.mark.parametrize("line, message", [('{"prompt": "a", "label": "b"}\n{"prompt": "a" "label"}', "line 2: invalid JSON"),
                                           ('["prompt", "label"]', "line 1: expected a JSON object"),
                                           ('{"prompt": "a", "summary": "b"}', "line 1: needs a non-empty string 'label'"),
                                           ('{"prompt": "a", "label": 3}', "line 1: .*, but its 'label' is 3"),
                                           ("\n\n", "holds no records")])
def test_malformed_jsonl_names_the_file_and_line(tmp_path, tok, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(line)
    with pytest.raises(ValueError, match=f"bad.jsonl.*{message}"):
        sft_dataset(path, tok, block_size=40, max_prompt_tokens=20)


def test_the_seed_ppo_settings():
    rl = seed_rl_config()
    ppo = rl.ppo
    assert (rl.algo, ppo.kl_coef, ppo.clip_eps, ppo.epochs, ppo.gamma, ppo.lam, ppo.vf_coef) == \
        ("ppo", 0.02, 0.2, 2, 1.0, 0.95, 0.1)
    assert (rl.missing_eos_reward, rl.missing_eos_penalty) == (-1.0, 0.0)  # R replaced by −1, not R − 1
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        SummarizeData(block_size=64, max_prompt_tokens=64)
    assert np.isclose(1 - ppo.clip_eps, 0.8) and np.isclose(1 + ppo.clip_eps, 1.2)
