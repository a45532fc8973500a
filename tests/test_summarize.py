"""`python -m minirl.examples.summarize --quick`, shortened: the report, the stage cache, the prompt masked
in SFT, the value model started from the centred reward model, −1 for a summary without EOT, and the
refusals of bad input."""

import json

import numpy as np
import pytest

from minirl import backend
from minirl.data.sft import SFTDataset
from minirl.data.summaries import sft_examples
from minirl.examples import pipeline, summarize
from minirl.examples.pipeline import load_weights
from minirl.examples.tldr import seed_rl_config
from minirl.gpt2 import load_gpt2
from minirl.gpt2_tokenizer import load_gpt2_tokenizer
from minirl.rl.reward_model import ScalarHeadModel, TokenRewardModel, score
from minirl.rl.rollout import collect_rollout
from minirl.rl.trainer import RLConfig, train_rl
from minirl.tokenizer import Tokenizer

SHORT = ["--sft-steps", "20", "--rm-steps", "10", "--rl-iterations", "2"]
FIGURES = ("reward", "kl_to_sft", "response_length", "ended_fraction")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Two runs of a shortened --quick in one --out; what train_rl was handed is recorded on the way."""
    out = tmp_path_factory.mktemp("summarize") / "out"
    seen = {}
    real_train_rl = pipeline.train_rl

    def spy(policy, ref_model, prompts, reward_fn, *, value_model=None, config, **kwargs):
        seen.update(value_state={k: backend.to_numpy(v).copy() for k, v in value_model.state_dict().items()},
                    reward_fn=reward_fn, config=config, prompts=prompts)
        return real_train_rl(policy, ref_model, prompts, reward_fn, value_model=value_model, config=config, **kwargs)

    argv = ["--quick", "--out", str(out)] + SHORT
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "train_rl", spy)
        first = summarize.run(*summarize.parse_settings(argv))
        second = summarize.run(*summarize.parse_settings(argv))
    return out, first, second, seen


def stage_dir(out, name):
    (folder,) = out.glob(f"{name}-*")
    return folder


def test_the_quick_run_reports_every_figure(quick):
    out, first, _, _ = quick
    summary = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in summary["stages"]] == ["quick_gpt2", "quick_data", "sft", "reward_model", "ppo"]
    assert all(s["status"] == "ran" for s in first["stages"])
    assert set(summary["models"]) == {"sft", "ppo"}
    for figures in summary["models"].values():
        assert all(np.isfinite(figures[k]) for k in FIGURES)
        assert 0 <= figures["ended_fraction"] <= 1 and 1 <= figures["response_length"] <= 16
    assert summary["models"]["sft"]["kl_to_sft"] == pytest.approx(0.0, abs=1e-4)  # the same model: k1 ≡ 0
    assert set(summary["samples"]) == {"post", "reference", "sft", "ppo"}
    assert all(len(texts) == 8 for texts in summary["samples"].values())  # the same 8 held-out posts
    assert all(post.rstrip().endswith("TL;DR:") for post in summary["samples"]["post"])
    assert 0 <= summary["acceptance"]["rm_val_accuracy"] <= 1
    assert (out / "report.html").exists() and (out / "metrics.jsonl").exists()
    stages = {json.loads(line)["stage"] for line in (out / "metrics.jsonl").read_text().splitlines()}
    assert stages == {"sft", "ppo"}


def test_a_second_run_reuses_every_stage(quick):
    _, first, second, _ = quick
    assert [s["status"] for s in second["stages"]] == ["cached"] * 5
    assert second["models"] == first["models"] and second["samples"] == first["samples"]


def test_sft_masks_the_post(quick):
    out = quick[0]
    tok = load_gpt2_tokenizer()
    examples = sft_examples(stage_dir(out, "quick_data") / "sft.jsonl", tok, 48)
    data = SFTDataset(examples, 64, tok.eot_id)
    for i, ex in enumerate(examples):
        assert data.seqs[i, 1:][data.mask[i]].tolist() == list(ex.response_ids)  # the summary and its EOT only
        assert ex.response_ids[-1] == tok.eot_id and not data.mask[i, :len(ex.prompt_ids) - 1].any()


def test_ppo_gets_the_reward_model_on_tokens_and_a_value_model_equal_to_it(quick):
    out, first, _, seen = quick
    rm = ScalarHeadModel.from_pretrained(load_gpt2(stage_dir(out, "quick_gpt2")))
    load_weights(rm, stage_dir(out, "reward_model") / "rm.npz")
    assert isinstance(seen["reward_fn"], TokenRewardModel)
    rm_state = rm.state_dict()
    assert set(seen["value_state"]) == set(rm_state)
    for name, value in seen["value_state"].items():
        np.testing.assert_array_equal(value, backend.to_numpy(rm_state[name]), err_msg=name)
    assert seen["config"].missing_eos_reward == -1.0 and seen["config"].ppo.vf_coef == 0.1
    # centred: post ‖ reference summary ‖ EOT of the SFT training rows average a reward of 0
    tok = load_gpt2_tokenizer()
    examples = sft_examples(stage_dir(out, "quick_data") / "sft.jsonl", tok, 48)
    train_rows, held_out = summarize.split(examples, 0.25, 0, "SFT rows", "--val-fraction")
    assert score(rm, [e.prompt_ids + e.response_ids for e in train_rows[:64]]).mean() == pytest.approx(0, abs=1e-4)
    assert seen["prompts"] == [list(e.prompt_ids) for e in held_out[8:]]  # held-out posts, not the report's 8


def test_a_summary_without_eot_gets_minus_one(quick):
    out = quick[0]
    sft = load_weights(load_gpt2(stage_dir(out, "quick_gpt2")), stage_dir(out, "sft") / "ckpt.npz").eval()
    rm = load_weights(ScalarHeadModel.from_pretrained(sft), stage_dir(out, "reward_model") / "rm.npz")
    tok = load_gpt2_tokenizer()
    prompts = [list(e.prompt_ids) for e in sft_examples(stage_dir(out, "quick_data") / "sft.jsonl", tok, 48)[:8]]
    r = collect_rollout(sft, prompts, TokenRewardModel(rm), ref_model=sft, decode=tok.decode, eot_id=tok.eot_id,
                        max_new_tokens=3, kl_coef=0.02, missing_eos_reward=seed_rl_config().missing_eos_reward,
                        rng=backend.rng(0))
    ended, scores = backend.to_numpy(r.ended), backend.to_numpy(r.scores)
    last = backend.to_numpy(r.rewards)[np.arange(8), r.prompt_length + backend.to_numpy(r.response_mask).sum(1) - 1]
    assert not ended.all()  # 3 tokens are too few for these summaries
    np.testing.assert_allclose(last[~ended], -1.0)  # π = π_ref: no KL, and R itself replaced by −1
    np.testing.assert_allclose(last[ended], scores[ended], rtol=1e-6)
    assert np.all(np.abs(scores[~ended] + 1) > 1e-3)  # what the reward model said was not −1


def fail(capsys, argv) -> str:
    assert summarize.main(argv) == 2
    return capsys.readouterr().err


def inputs(quick, tmp_path, **changes):
    out = quick[0]
    data = stage_dir(out, "quick_data")
    paths = {"--model": str(stage_dir(out, "quick_gpt2")), "--sft-data": str(data / "sft.jsonl"),
             "--comparisons": str(data / "comparisons.jsonl"), "--out": str(tmp_path / "out"), **changes}
    return ["--block-size", "64", "--max-prompt-tokens", "48", "--rl-max-new-tokens", "16"] + \
        [part for flag, value in paths.items() for part in (flag, value)]


def test_a_missing_or_foreign_model_is_refused(quick, tmp_path, capsys):
    assert "GPT-2 folder not found" in fail(capsys, inputs(quick, tmp_path, **{"--model": str(tmp_path / "nope")}))
    folder = tmp_path / "gpt2"
    folder.mkdir()
    (folder / "config.json").write_text((stage_dir(quick[0], "quick_gpt2") / "config.json").read_text())
    assert "model.safetensors is missing" in fail(capsys, inputs(quick, tmp_path, **{"--model": str(folder)}))
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    assert "not a readable safetensors file" in fail(capsys, inputs(quick, tmp_path, **{"--model": str(folder)}))
    assert "--model is required" in fail(capsys, ["--out", str(tmp_path / "o2")])


def test_a_tokenizer_that_does_not_fit_the_model_is_refused(quick, tmp_path, capsys):
    small = tmp_path / "small.tiktoken"
    Tokenizer.train(["a few words to learn a tiny vocabulary from"] * 3, 300).save(small)
    err = fail(capsys, inputs(quick, tmp_path, **{"--tokenizer": str(small)}))
    assert "the tokenizer has 288 ids" in err and "vocab_size 50,257" in err  # the corpus gives only 288


def test_malformed_jsonl_names_the_file_and_line(quick, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a TL;DR:", "label": " b"}\n{"prompt": "a", "label" " b"}\n')
    assert "bad.jsonl, line 2: invalid JSON" in fail(capsys, inputs(quick, tmp_path, **{"--sft-data": str(bad)}))
    bad.write_text('{"prompt": "a", "chosen": " b"}\n')
    assert "bad.jsonl, line 1: needs a non-empty string 'rejected'" in \
        fail(capsys, inputs(quick, tmp_path, **{"--comparisons": str(bad)}))


def test_a_long_prompt_is_refused_with_its_file_and_line(quick, tmp_path, capsys):
    argv = inputs(quick, tmp_path) + ["--max-prompt-tokens", "20", "--truncate", "refuse"]
    assert "sft.jsonl, line 1: the prompt has" in fail(capsys, argv)
    assert not (tmp_path / "out" / "summary.json").exists()


def test_comparisons_with_the_marker_on_the_summary_side_are_refused(quick, tmp_path, capsys):
    moved = tmp_path / "moved.jsonl"
    moved.write_text(json.dumps({"prompt": "SUBREDDIT: r/x\nPOST: long story", "chosen": "TL;DR: good",
                                 "rejected": "TL;DR: bad"}) + "\n")
    assert "moved.jsonl, line 1: the summary starts with 'TL;DR:'" in \
        fail(capsys, inputs(quick, tmp_path, **{"--comparisons": str(moved)}))


def test_dpo_refuses_a_token_reward(quick):
    sft = load_gpt2(stage_dir(quick[0], "quick_gpt2"))
    with pytest.raises(ValueError, match="reads token ids"):
        train_rl(sft, sft, [[0]], TokenRewardModel(ScalarHeadModel.from_pretrained(sft)), tokenizer=None,
                 config=RLConfig(algo="dpo"), progress=False)
