"""The per-token ledger: one rollout row as PPO sees it, token by token.

    print(ledger(rollout, decode_token=lambda t: tokenizer.decode([t])))

Columns: the token, log π_old, log π_ref, the KL term k(t), the reward r_t, the value
V(s_t), the TD residual δ_t, the GAE advantage A_t, and the mask m_t. Reading it is the
quickest way to see an off-by-one at the prompt/response boundary or at EOT.
"""

from __future__ import annotations

from typing import Callable

from minirl import backend
from minirl.rl.advantages import gae, td_residuals
from minirl.rl.rollout import Rollout
from minirl.table import format_table


def ledger(rollout: Rollout, decode_token: Callable[[int], str] = str, row: int = 0, gamma: float = 1.0,
           lam: float = 0.95, include_prompt: bool = False) -> str:
    """A plain-text table of one row of `rollout` (response tokens only, unless `include_prompt`)."""
    if not 0 <= row < rollout.tokens.shape[0]:
        raise ValueError(f"row {row} is out of range for a rollout of {rollout.tokens.shape[0]} sequences.")
    xp = backend.get_array_module(rollout.rewards)
    values = rollout.values if rollout.values is not None else xp.zeros_like(rollout.rewards)
    deltas = td_residuals(rollout.rewards, values, rollout.response_mask, gamma)
    advantages, _ = gae(rollout.rewards, values, rollout.response_mask, gamma, lam)
    cols = [backend.to_numpy(a[row]) for a in (rollout.tokens, rollout.logprobs, rollout.ref_logprobs, rollout.kl,
                                                  rollout.rewards, values, deltas, advantages, rollout.response_mask)]
    tokens, logp, ref, kl, rewards, v, delta, adv, mask = cols
    rows = []
    for t in range(len(tokens)):
        if not mask[t] and not (include_prompt and t < rollout.prompt_length):
            continue
        rows.append([t, repr(decode_token(int(tokens[t]))), float(logp[t]), float(ref[t]), float(kl[t]),
                     float(rewards[t]), float(v[t]), float(delta[t]), float(adv[t]), int(mask[t])])
    header = ["t", "token", "logprob", "ref_logprob", "kl", "reward", "value", "delta", "advantage", "mask"]
    return f"score R = {float(rollout.scores[row]):.4g}\n" + format_table(rows, header)
