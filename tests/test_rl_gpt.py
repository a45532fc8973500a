"""RL on a real (tiny) GPT: PPO and REINFORCE raise the VADER sentiment of its samples,
the rollout's masks and rewards line up, and the ledger shows them token by token."""

import json

import numpy as np
import pytest

from minirl import backend
from minirl.checkpoint import CheckpointError
from minirl.data import filter_labels, synthetic_corpus
from minirl.data.sft import SFTDataset
from minirl.data.tokens import TokenStream
from minirl.model import GPT, GPTConfig
from minirl.rl.best_of_n import BestOfNConfig
from minirl.rl.dpo import DPOConfig
from minirl.rl.grpo import GRPOConfig
from minirl.rl.ledger import ledger
from minirl.rl.pg import PGConfig
from minirl.rl.ppo import PPOConfig
from minirl.rl.reward_model import ScalarHeadModel
from minirl.rl.rloo import RLOOConfig
from minirl.rl.rollout import collect_rollout
from minirl.rl.sentiment import vader_reward
from minirl.rl.trainer import RLConfig, train_rl
from minirl.rl.trpo import TRPOConfig
from minirl.tokenizer import Tokenizer
from minirl.train import TrainConfig, train_lm

pytest.importorskip("vaderSentiment", reason="the VADER reward needs vaderSentiment (pip install -e '.[data]')")


@pytest.fixture(scope="module")
def pretrained():
    """A tiny GPT pretrained once on the synthetic tweets (positive, negative and neutral templates),
    then fine-tuned briefly on the positive ones."""
    corpus = synthetic_corpus(600)
    tok = Tokenizer.train(corpus.texts, 320)
    backend.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=24, n_layer=1, n_head=2, n_embd=32))
    train_lm(model, TokenStream.from_texts(corpus.texts, tok, 24),
             TrainConfig(steps=120, batch_size=16, lr=3e-3, warmup_steps=10, eval_interval=0), progress=False)
    positive = filter_labels(corpus, "positive")  # then SFT, as in the pipeline: RL starts from π_ref = SFT
    train_lm(model, SFTDataset.from_texts(positive.texts, tok, 24),
             TrainConfig(steps=20, batch_size=16, lr=1e-3, warmup_steps=0, eval_interval=0), progress=False)
    return tok, model


def copy_of(model):
    twin = GPT(model.config)
    twin.load_state_dict(model.state_dict())
    return twin


def run(tok, ref, config: RLConfig, tmp_path, reward_fn=vader_reward):
    log = tmp_path / "metrics.jsonl"
    history = train_rl(copy_of(ref), ref, [[tok.eot_id]], reward_fn, tokenizer=tok, config=config,
                       log_path=log, progress=False, rng=np.random.default_rng(0))
    assert [json.loads(line)["iteration"] for line in log.read_text().splitlines()] == \
        list(range(1, config.iterations + 1))
    before = np.mean([h["score_mean"] for h in history[:3]])
    after = np.mean([h["score_mean"] for h in history[-3:]])
    return history, before, after


def test_ppo_raises_vader_reward_with_bounded_kl(pretrained, tmp_path):
    tok, ref = pretrained
    config = RLConfig(algo="ppo", iterations=25, batch_size=32, max_new_tokens=12, lr=3e-3,
                      ppo=PPOConfig(kl_coef=0.05, epochs=2, minibatch_size=16))
    history, before, after = run(tok, ref, config, tmp_path)
    print(f"PPO: VADER {before:.3f} -> {after:.3f}, KL to ref {history[-1]['kl_to_ref']:.2f} nats")
    assert after > before + 0.15
    assert history[-1]["kl_to_ref"] < 15.0
    assert history[0]["first_minibatch_approx_kl"] == 0.0 and history[0]["kl_to_ref"] == 0.0
    for key in ("approx_kl", "clipfrac", "entropy", "policy_loss", "kl_to_ref", "score_mean", "response_length"):
        assert np.isfinite(history[-1][key])


def test_reinforce_raises_vader_reward(pretrained, tmp_path):
    tok, ref = pretrained
    config = RLConfig(algo="pg", iterations=25, batch_size=32, max_new_tokens=12, lr=1e-2,
                      pg=PGConfig(kl_coef=0.05, whiten_advantages=True))
    history, before, after = run(tok, ref, config, tmp_path)
    print(f"REINFORCE: VADER {before:.3f} -> {after:.3f}, KL to ref {history[-1]['kl_to_ref']:.2f} nats")
    assert after > before + 0.15


class Recorded:
    """VADER, keeping every batch of scores it hands out (to check the statistics logged about them)."""

    __name__ = "vader_reward"

    def __init__(self):
        self.batches = []

    def __call__(self, texts):
        scores = vader_reward(texts)
        self.batches.append(np.asarray(scores, dtype=np.float64))
        return scores


@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_group_algorithms_raise_vader_reward(pretrained, tmp_path, algo):
    tok, ref = pretrained
    config = RLConfig(algo=algo, iterations=25, batch_size=32, max_new_tokens=12, lr=3e-3 if algo == "grpo" else 2e-2,
                      grpo=GRPOConfig(group_size=4, beta=0.04), rloo=RLOOConfig(k=4, kl_coef=0.05))
    recorded = Recorded()
    history, before, after = run(tok, ref, config, tmp_path, recorded)
    print(f"{algo}: VADER {before:.3f} -> {after:.3f}, KL to ref {history[-1]['kl_to_ref']:.2f} nats")
    assert after > before + 0.15
    assert len(recorded.batches) == 25 and all(len(b) == 32 for b in recorded.batches)
    if algo == "grpo":
        fractions = [float((b.reshape(-1, 4).std(axis=1) == 0).mean()) for b in recorded.batches]  # G in a row
        assert [h["zero_std_group_fraction"] for h in history] == pytest.approx(fractions)
        assert 0 < max(fractions) and min(fractions) < 1  # a case that tells a right count from a wrong one
        assert history[0]["first_update_approx_kl"] == 0.0


def test_trpo_raises_vader_reward_within_its_trust_region(pretrained, tmp_path):
    tok, ref = pretrained
    # batch 64: at 32 the VADER gain ranged 0.00-0.41 over six rollout seeds; at 64, 0.24-0.44
    config = RLConfig(algo="trpo", iterations=16, batch_size=64, max_new_tokens=12,
                      trpo=TRPOConfig(max_kl=0.1, kl_coef=0.05))
    history, before, after = run(tok, ref, config, tmp_path)
    print(f"trpo: VADER {before:.3f} -> {after:.3f}, KL to ref {history[-1]['kl_to_ref']:.2f} nats")
    assert after > before + 0.15
    assert all(h["kl"] <= 0.1 + 1e-9 for h in history if h["accepted"])


def test_dpo_on_judge_labelled_pairs_raises_vader_reward(pretrained, tmp_path):
    tok, ref = pretrained
    policy = copy_of(ref)
    config = RLConfig(algo="dpo", iterations=40, max_new_tokens=12, dpo_pairs=1024,
                      dpo=DPOConfig(beta=0.1, batch_size=32, lr=3e-3, eval_interval=0))
    before = np.mean(vader_reward(sample(policy, tok)))
    history = train_rl(policy, ref, [[tok.eot_id]], vader_reward, tokenizer=tok, config=config,
                       log_path=tmp_path / "dpo.jsonl", progress=False, checkpoint_path=tmp_path / "dpo.npz")
    after = np.mean(vader_reward(sample(policy, tok)))
    print(f"dpo (RLAIF): VADER {before:.3f} -> {after:.3f}, accuracy {history[-1]['accuracy']:.2f}")
    assert len(history) == 40 and (tmp_path / "dpo.npz").exists()
    assert after > before + 0.1


def sample(model, tok):
    out = model.generate([[tok.eot_id]] * 64, 12, eot_id=tok.eot_id, rng=backend.rng(11))
    return [tok.decode([t for t in r if t != tok.eot_id]) for r in out.responses()]


def test_best_of_n_rounds_raise_vader_reward(pretrained, tmp_path):
    tok, ref = pretrained
    config = RLConfig(algo="best_of_n", iterations=4, batch_size=16, max_new_tokens=12,
                      best_of_n=BestOfNConfig(n=8, k=1),
                      sft=TrainConfig(steps=30, batch_size=16, lr=3e-3, warmup_steps=0, eval_interval=0))
    recorded = Recorded()
    history = train_rl(copy_of(ref), ref, [[tok.eot_id]], recorded, tokenizer=tok, config=config,
                       log_path=tmp_path / "m.jsonl", progress=False, rng=np.random.default_rng(0))
    print("best-of-n:", [round(h["score_mean"], 3) for h in history])
    assert len(recorded.batches) == 4 and all(len(b) == 16 * 8 for b in recorded.batches)  # n = 8 per prompt
    best = [b.reshape(16, 8).max(axis=1).mean() for b in recorded.batches]  # each prompt's 8 samples sit in a row
    assert [h["kept_score_mean"] for h in history] == pytest.approx(best)
    assert [h["score_mean"] for h in history] == pytest.approx([b.mean() for b in recorded.batches])
    assert all(b > m + 0.05 for b, m in zip(best, (h["score_mean"] for h in history)))  # the selection matters
    assert history[-1]["score_mean"] > history[0]["score_mean"] + 0.1


def test_best_of_n_rounds_are_iterations_and_samples_stop_at_max_new_tokens(pretrained):
    tok, ref = pretrained
    config = RLConfig(algo="best_of_n", iterations=2, batch_size=4, max_new_tokens=3, best_of_n=BestOfNConfig(n=2),
                      sft=TrainConfig(steps=1, batch_size=4, warmup_steps=0, eval_interval=0))
    recorded = Recorded()
    history = train_rl(copy_of(ref), ref, [[tok.eot_id]], recorded, tokenizer=tok, config=config, progress=False,
                       rng=np.random.default_rng(0))
    assert len(history) == len(recorded.batches) == 2
    assert history[-1]["sampled_tokens"] <= 2 * 4 * 2 * 3  # rounds × prompts × n × max_new_tokens


def test_ppo_with_a_value_model(pretrained, tmp_path):
    tok, ref = pretrained
    value_model = ScalarHeadModel.from_pretrained(ref)
    config = RLConfig(algo="ppo", iterations=8, batch_size=32, max_new_tokens=12, lr=3e-3,
                      ppo=PPOConfig(kl_coef=0.05, epochs=2, minibatch_size=16))
    history = train_rl(copy_of(ref), ref, [[tok.eot_id]], vader_reward, tokenizer=tok, config=config,
                       value_model=value_model, progress=False, rng=np.random.default_rng(0))
    assert all(np.isfinite(h["value_loss"]) and np.isfinite(h["explained_variance"]) for h in history)
    assert history[-1]["value_loss"] < history[0]["value_loss"]  # the critic learns the returns
    assert history[0]["first_minibatch_approx_kl"] == 0.0


def test_reinforce_with_a_learned_value_baseline_trains_the_critic(pretrained):
    tok, ref = pretrained
    config = RLConfig(algo="pg", iterations=8, batch_size=32, max_new_tokens=12, lr=3e-3,
                      pg=PGConfig(kl_coef=0.05, baseline="value"))
    history = train_rl(copy_of(ref), ref, [[tok.eot_id]], vader_reward, tokenizer=tok, config=config,
                       value_model=ScalarHeadModel.from_pretrained(ref), progress=False, rng=np.random.default_rng(0))
    assert history[-1]["value_loss"] < history[0]["value_loss"]


def test_settings_that_cannot_work_are_refused(pretrained, tmp_path):
    tok, ref = pretrained
    with pytest.raises(ValueError, match="kl_target adapts β in the reward, and grpo has none"):
        RLConfig(algo="grpo", kl_target=2.0)
    with pytest.raises(ValueError, match="multiple of the rloo group size 4"):
        RLConfig(algo="rloo", batch_size=6)
    with pytest.raises(ValueError, match="not checkpointed"):
        train_rl(copy_of(ref), ref, [[tok.eot_id]], vader_reward, tokenizer=tok, config=RLConfig(algo="best_of_n"),
                 checkpoint_path=tmp_path / "x.npz", progress=False)
    dropout_policy = GPT(GPTConfig(**{**ref.config.to_dict(), "dropout": 0.1}))
    with pytest.raises(ValueError, match="call policy.eval"):
        collect_rollout(dropout_policy, [[tok.eot_id]], vader_reward, ref_model=ref, decode=tok.decode,
                        eot_id=tok.eot_id, max_new_tokens=2, kl_coef=0.1)


def test_rollout_masks_rewards_and_ledger_line_up(pretrained, backend_name):
    tok, model = pretrained[0], copy_of(pretrained[1])  # the weights moved to the backend under test
    r = collect_rollout(model, [[tok.eot_id], [tok.eot_id] + tok.encode("i love")], vader_reward, ref_model=model,
                        decode=tok.decode, eot_id=tok.eot_id, max_new_tokens=10, kl_coef=0.1, rng=backend.rng(1))
    tokens, mask = backend.to_numpy(r.tokens), backend.to_numpy(r.response_mask)
    for b in range(2):
        cols = np.flatnonzero(mask[b])
        assert cols[0] == r.prompt_length and np.all(np.diff(cols) == 1)  # contiguous, from column P
        eots = np.flatnonzero(tokens[b, cols] == tok.eot_id)
        assert eots.size == 0 or eots[0] == len(cols) - 1  # ends at the first EOT, inclusive
        # the policy is its own reference here: no KL, so the score is the only reward, on the last token
        assert np.all(backend.to_numpy(r.kl)[b] == 0)
        assert backend.to_numpy(r.rewards)[b, cols[-1]] == pytest.approx(backend.to_numpy(r.scores)[b])
    table = ledger(r, decode_token=lambda t: tok.decode([t]), row=1)
    assert "advantage" in table and table.count("\n") == 2 + int(mask[1].sum())
    with pytest.raises(ValueError, match="row 5 is out of range"):
        ledger(r, row=5)


def test_reward_function_errors_reach_the_user(pretrained):
    tok, model = pretrained
    other = GPT(GPTConfig(**{**model.config.to_dict(), "vocab_size": model.config.vocab_size + 1}))
    with pytest.raises(ValueError, match="vocabularies differ"):
        collect_rollout(model, [[tok.eot_id]], vader_reward, ref_model=other, decode=tok.decode, eot_id=tok.eot_id,
                        max_new_tokens=2, kl_coef=0.1)
    with pytest.raises(ValueError, match="non-finite"):
        collect_rollout(model, [[tok.eot_id]] * 2, lambda texts: [float("nan")] * len(texts), ref_model=model,
                        decode=tok.decode, eot_id=tok.eot_id, max_new_tokens=2, kl_coef=0.1)
    with pytest.raises(ValueError, match="exceeds block_size"):
        collect_rollout(model, [[tok.eot_id] * 20], vader_reward, ref_model=model, decode=tok.decode,
                        eot_id=tok.eot_id, max_new_tokens=10, kl_coef=0.1)


def test_rl_stop_and_resume_is_exact(pretrained, tmp_path, backend_name):
    tok, ref = pretrained[0], copy_of(pretrained[1])
    config = RLConfig(algo="ppo", iterations=4, batch_size=8, max_new_tokens=6, lr=3e-3, kl_target=2.0,
                      ppo=PPOConfig(epochs=1, minibatch_size=4))

    def fresh():
        backend.manual_seed(5)
        return copy_of(ref), ScalarHeadModel.from_pretrained(ref)

    def go(policy, value, **kwargs):
        return train_rl(policy, ref, [[tok.eot_id]], vader_reward, tokenizer=tok, config=config, value_model=value,
                        progress=False, **kwargs)

    straight = fresh()
    go(*straight)
    ck, log = tmp_path / "rl.npz", tmp_path / "rl.jsonl"
    go(*fresh(), checkpoint_path=ck, log_path=log, stop_at=2, checkpoint_interval=1)
    backend.manual_seed(99)  # a new process starts elsewhere; the checkpoint brings the RNG back
    resumed = (copy_of(ref), ScalarHeadModel(ref.config))
    assert [h["iteration"] for h in go(*resumed, checkpoint_path=ck, log_path=log)] == [3, 4]
    if "device" in backend.rng_state():  # bit for bit where the device generator is checkpointed (NumPy only)
        for a, b in zip(straight, resumed):
            for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
                np.testing.assert_array_equal(p.numpy(), q.numpy(), err_msg=name)
    assert [json.loads(line)["iteration"] for line in log.read_text().splitlines()] == [1, 2, 3, 4]
    with pytest.raises(CheckpointError, match="other RL settings"):
        train_rl(copy_of(ref), ref, [[tok.eot_id]], vader_reward, tokenizer=tok,
                 config=RLConfig(**{**config.__dict__, "lr": 1e-4}), value_model=ScalarHeadModel(ref.config),
                 progress=False, checkpoint_path=ck)


@pytest.mark.parametrize("algo", ["rloo", "best_of_n"])
def test_a_sampled_token_budget_stops_the_run_once_spent(pretrained, tmp_path, algo):
    tok, ref = pretrained
    config = RLConfig(algo=algo, iterations=50, batch_size=8, max_new_tokens=10, max_sampled_tokens=150,
                      rloo=RLOOConfig(k=2), best_of_n=BestOfNConfig(n=2),
                      sft=TrainConfig(steps=2, batch_size=4, warmup_steps=0, eval_interval=0))
    history = train_rl(copy_of(ref), ref, [[tok.eot_id]], vader_reward, tokenizer=tok, config=config,
                       progress=False, rng=np.random.default_rng(0))
    spent = [h["sampled_tokens"] for h in history]
    assert spent == sorted(spent) and spent[-1] >= 150 > spent[-2]
    assert len(history) < 50
    if algo == "rloo":  # resuming a finished budget runs nothing more
        ck = tmp_path / "rl.npz"
        done = train_rl(copy_of(ref), ref, [[tok.eot_id]], vader_reward, tokenizer=tok, config=config,
                        progress=False, checkpoint_path=ck)
        assert train_rl(copy_of(ref), ref, [[tok.eot_id]], vader_reward, tokenizer=tok, config=config,
                        progress=False, checkpoint_path=ck) == [] and done
