"""The per-token ledger of one PPO rollout: where every token's reward and advantage come from.

    python examples/ppo_ledger.py [STEPS]

A tiny GPT learns the synthetic tweets (π_ref), then a few steps of fine-tuning on the
positive ones move it away (π_θ, standing in for a policy some PPO iterations in: at the
very first iteration π_old = π_ref and every KL term is 0). One rollout is priced as
`collect_rollout` prices it for PPO (MATH.md §3, §4), and one response is printed row by row:

    k1_t = log π_old(a_t|s_t) − log π_ref(a_t|s_t)       the KL estimate (unbiased, can be < 0)
    r_t  = −β·k1_t + [t = T]·R(x, y)                     R: VADER's score, paid on the last token
    δ_t  = r_t + γ·V(s_{t+1}) − V(s_t),  V(s_{T+1}) = 0  the TD residual
    A_t  = δ_t + γλ·A_{t+1}                              GAE (Schulman et al. 2016)
    R_t  = A_t + V(s_t)                                  the value target (the "returns")

So the rewards sum to R − β·Σ_t k1_t, and the last token's advantage is r_T − V(s_T). V comes
from a value model (`ScalarHeadModel`) started from π_ref with a fresh head: untrained, it is
noise of order 1, and GAE is exactly as above anyway.
"""

import argparse

import numpy as np

from minirl import backend
from minirl.data import filter_labels, synthetic_corpus
from minirl.data.sft import SFTDataset
from minirl.data.tokens import TokenStream
from minirl.model import GPT, GPTConfig
from minirl.rl.advantages import gae
from minirl.rl.ledger import ledger
from minirl.rl.reward_model import ScalarHeadModel
from minirl.rl.rollout import collect_rollout
from minirl.rl.sentiment import vader_reward
from minirl.tokenizer import Tokenizer
from minirl.train import TrainConfig, train_lm

KL_COEF, GAMMA, LAM = 0.1, 1.0, 0.95  # β, γ, λ


def pretrained_pair(steps: int):
    """(tokenizer, π_ref, π_θ): a GPT pretrained on the synthetic tweets, and its fine-tune on the positive ones."""
    corpus = synthetic_corpus(600)
    tok = Tokenizer.train(corpus.texts, 320)
    backend.manual_seed(0)
    ref = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=24, n_layer=1, n_head=2, n_embd=32))
    train_lm(ref, TokenStream.from_texts(corpus.texts, tok, 24),
             TrainConfig(steps=steps, batch_size=16, lr=3e-3, warmup_steps=10, eval_interval=0), progress=False)
    policy = GPT(ref.config)
    policy.load_state_dict(ref.state_dict())
    train_lm(policy, SFTDataset.from_texts(filter_labels(corpus, "positive").texts, tok, 24),
             TrainConfig(steps=max(1, steps // 6), batch_size=16, lr=1e-3, warmup_steps=0, eval_interval=0),
             progress=False)
    return tok, ref.eval(), policy.eval()


def main(steps: int = 300) -> dict:
    """Print the ledger of one response; return its columns (response tokens only) and β, γ, λ, R."""
    tok, ref, policy = pretrained_pair(steps)
    value_model = ScalarHeadModel.from_pretrained(ref).eval()
    rollout = collect_rollout(policy, [[tok.eot_id]] * 8, vader_reward, ref_model=ref, decode=tok.decode,
                              eot_id=tok.eot_id, max_new_tokens=12, kl_coef=KL_COEF, kl_estimator="k1",
                              value_model=value_model, rng=backend.rng(0))
    scores, ended = backend.to_numpy(rollout.scores), backend.to_numpy(rollout.ended)
    row = int(np.argmax(np.where(ended, scores, -np.inf)))  # the best-scored response that emitted EOT
    print(f"response {row}: {rollout.texts[row]!r}\n")
    print(ledger(rollout, decode_token=lambda t: tok.decode([t]), row=row, gamma=GAMMA, lam=LAM))
    advantages, returns = gae(rollout.rewards, rollout.values, rollout.response_mask, GAMMA, LAM)
    mask = backend.to_numpy(rollout.response_mask)[row].astype(bool)
    cols = {name: backend.to_numpy(a)[row][mask] for name, a in (
        ("tokens", rollout.tokens), ("logprobs", rollout.logprobs), ("ref_logprobs", rollout.ref_logprobs),
        ("kl", rollout.kl), ("rewards", rollout.rewards), ("values", rollout.values),
        ("advantages", advantages), ("returns", returns))}
    R, kl_sum = float(rollout.scores[row]), float(cols["kl"].sum())
    print(f"\nΣ r_t = {cols['rewards'].sum():.4f} = R − β·Σ k1_t = {R:.4f} − {KL_COEF}·({kl_sum:.4f})")
    A_T, r_T, V_T = cols["advantages"][-1], cols["rewards"][-1], cols["values"][-1]
    print(f"A_T = {A_T:.4f} = r_T − V(s_T) = {r_T:.4f} − ({V_T:.4f})")
    return {**cols, "score": R, "kl_coef": KL_COEF, "gamma": GAMMA, "lam": LAM}


def parse_args(argv=None) -> argparse.Namespace:
    """The command line: an optional count of pretraining steps of π_ref, at least 1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("steps", nargs="?", type=int, default=300, help="pretraining steps of π_ref (default: 300)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"steps must be at least 1, got {args.steps}")
    return args


if __name__ == "__main__":
    main(parse_args().steps)
