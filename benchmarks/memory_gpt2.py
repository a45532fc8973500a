"""Memory of a GPT-2 124M PPO run: what minirl holds, by formula, beside what it measures.

    python benchmarks/memory_gpt2.py [--measure 1x512,2x512,2x256] [--budgets 24,80] [--json PATH]

A PPO run holds four models (policy, frozen reference, reward model, value model; the last two
with a scalar head instead of the tied lm_head), AdamW's two moments for the policy and the
value model, their gradients, and what the training forward keeps for the backward pass, the
tape. Everything is float32, 4 bytes a number. P = 124,439,808 parameters (`gpt2_num_parameters`).

The tape, per token, as minirl's ops keep it (model.py, functional.py), for C = n_embd, L layers,
nh heads, a context of T tokens and V = 50,257:
    L·(21·C + nh·T) + 5·C        (+ V for the policy's logits)
per block 19·C of op outputs (ln_1, c_attn 3C, the attention output and its (B, T, C) copy,
c_proj, the residual, ln_2, c_fc 4C, GELU 4C, the MLP's c_proj, the residual), the two layer
norms' x̂ (2·C) and the attention probabilities (nh·T); per model the wte and wpe rows, their
sum, ln_f and its x̂. Cross-entropy and entropy keep no (T, V) array (they recompute the softmax).

The backward pass runs through the value model first, then the policy, freeing each op's
arrays once its gradient has passed on, while the gradients fill in. The peak is the largest of
four moments (`ppo_moments`), for a minibatch of b sequences of T tokens:
    start of the backward pass        S + tape_policy + tape_value
    the value model's wte gradient     S + tape_policy + G + V·C
    the policy's cross-entropy         S + tape_policy + G + logits
    the policy's wte gradient          S + 2·G + 2·V·C + logits
with S = 8·P·4 bytes (4 models + 2 × 2 AdamW moments), G = P·4 bytes (one model's gradients)
and logits = b·(T−1)·V·4 bytes (kept to the end by the entropy statistic). From b = 2 on,
the start of the backward pass is the peak.

--measure runs, for each b x T, a child process that builds the four models and the AdamW,
then one `ppo_update` (1 epoch, one minibatch of all b sequences, 48 response tokens) on random
tokens: it walks the autograd graph just before the backward pass and sums the bytes of every
array the graph holds (the measured tape), and reports its peak RSS (getrusage). The child
uses glibc's malloc with a fixed 128 KiB mmap threshold and minirl's `keep_freed_memory` off,
so freed arrays go back to the OS at once and RSS follows live memory (minirl's default keeps
up to 512 MB of freed memory for reuse: `--default-malloc`). Each GPT-2 measurement needs
about 4 + 1.2·b GB at T = 512.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import minirl  # noqa: F401  (first: it sets OPENBLAS_THREAD_TIMEOUT before numpy loads OpenBLAS)
import numpy as np

from minirl.gpt2 import gpt2_config, gpt2_num_parameters
from minirl.model import GPTConfig
from minirl.table import format_table

FLOAT = 4
GB = 1e9
SIZES = {"gpt2": gpt2_config("gpt2"),
         "tiny": GPTConfig(vocab_size=300, block_size=64, n_layer=2, n_head=2, n_embd=128, head_size=64)}
"""GPT-2 124M (block 1,024, of which TL;DR uses 512), and a tiny model for the tests"""
RESPONSE = 48
"""response tokens per sequence (TL;DR's summaries); the rest of T is prompt"""
GPU_RESERVE = 1.0 * GB
"""CUDA context, cuBLAS workspace and CuPy's pool rounding, set aside on a GPU (an estimate)"""
CPU_RESERVE = 0.5 * GB
"""freed memory that minirl's malloc setting keeps for reuse (up to 512 MB), set aside on a CPU"""


def tape_floats_per_token(cfg: GPTConfig, span: int, logits: bool) -> int:
    """Floats a training forward keeps per token until backward: ``L·(21·C + nh·span) + 5·C``,
    plus V for the policy's logits (see the module docstring for each term)."""
    C, L, nh = cfg.n_embd, cfg.n_layer, cfg.n_head
    return L * (21 * C + nh * span) + 5 * C + (cfg.vocab_size if logits else 0)


def ppo_moments(cfg: GPTConfig, b: int, T: int) -> dict:
    """Bytes held at each candidate peak of one PPO minibatch step of b sequences x T tokens,
    on top of the process's own baseline; `tape` is the two models' tapes alone."""
    P = gpt2_num_parameters(cfg)
    P_value = P + cfg.n_embd + 1  # the scalar head; no lm_head (it is the tied wte anyway)
    S = FLOAT * (2 * P + 2 * P_value + 2 * (P + P_value))  # weights of four models, AdamW m and v of two
    tape_policy = FLOAT * b * (T - 1) * tape_floats_per_token(cfg, T - 1, logits=True)  # logprobs read T-1 positions
    tape_value = FLOAT * b * T * tape_floats_per_token(cfg, T, logits=False)
    G, G_value = FLOAT * P, FLOAT * P_value
    VC, logits = FLOAT * cfg.vocab_size * cfg.n_embd, FLOAT * b * (T - 1) * cfg.vocab_size
    return {"static": S, "tape": tape_policy + tape_value, "moments": {
        "start of the backward pass": S + tape_policy + tape_value,
        "the value model's wte gradient": S + tape_policy + G_value + VC,
        "the policy's cross-entropy": S + tape_policy + G_value + logits,
        "the policy's wte gradient": S + G + G_value + 2 * VC + logits,
    }}


def predicted_peak(cfg: GPTConfig, b: int, T: int) -> tuple[float, str]:
    """The largest moment's bytes and its name."""
    moments = ppo_moments(cfg, b, T)["moments"]
    name = max(moments, key=moments.get)
    return moments[name], name


def largest_minibatch(cfg: GPTConfig, T: int, budget: float, reserve: float, gpu: bool = False) -> int:
    """The most sequences of T tokens whose predicted peak fits in `budget` bytes less `reserve`.

    On a GPU the embedding backward is a one-hot (V, b·T) matmul (`backend.embedding_grad`),
    a transient of one more b·T·V array at the wte-gradient moments."""
    b = 0
    while True:
        moments = ppo_moments(cfg, b + 1, T)["moments"]
        if gpu:
            onehot = FLOAT * (b + 1) * T * cfg.vocab_size
            moments = {k: v + (onehot if "wte" in k else 0) for k, v in moments.items()}
        if max(moments.values()) + reserve > budget:
            return b
        b += 1


def graph_bytes(root, exclude: set) -> int:
    """Bytes of every array the autograd graph under `root` holds: each op's output and the
    arrays its backward closure saved, each memory block once, parameters (`exclude`: ids of
    their arrays) left out."""
    from minirl.tensor import Tensor

    owners, seen, stack = {}, set(), [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            while isinstance(obj.base, np.ndarray):
                obj = obj.base
            if id(obj) not in exclude:
                owners[id(obj)] = obj.nbytes
        elif isinstance(obj, Tensor):
            stack.extend([obj.data, *obj._parents] + ([obj._backward] if obj._backward else []))
        elif callable(obj) and getattr(obj, "__closure__", None):
            stack.extend(cell.cell_contents for cell in obj.__closure__ if _filled(cell))
        elif isinstance(obj, (tuple, list)):
            stack.extend(obj)
    return sum(owners.values())


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(size: str, b: int, T: int) -> dict:
    """Build the four models and the optimizer, run one PPO minibatch step; what it held."""
    from minirl import backend, optim
    from minirl.model import GPT
    from minirl.rl import ppo
    from minirl.rl.reward_model import ScalarHeadModel
    from minirl.rl.rollout import Rollout

    baseline = _rss_bytes()
    cfg = SIZES[size]
    backend.manual_seed(0)
    policy, ref = GPT(cfg).eval(), GPT(cfg).eval()
    reward_model, value_model = ScalarHeadModel(cfg).eval(), ScalarHeadModel(cfg).eval()
    params = policy.parameters() + value_model.parameters()
    opt = optim.AdamW(params, lr=1e-5)
    static = _rss_bytes() - baseline
    rng = np.random.default_rng(0)
    prompt = max(1, T - RESPONSE)
    tokens = rng.integers(0, cfg.vocab_size, (b, T))
    response = np.zeros((b, T), dtype=bool)
    response[:, prompt:] = True
    zeros = np.zeros((b, T), dtype=np.float32)
    rollout = Rollout(tokens=tokens, attention_mask=np.ones((b, T), dtype=bool), response_mask=response,
                      logprobs=zeros, ref_logprobs=zeros, values=zeros, scores=np.ones(b, dtype=np.float32),
                      rewards=np.where(response, 0.01, 0).astype(np.float32), kl=zeros, texts=[""] * b,
                      ended=np.ones(b, dtype=bool), prompt_length=prompt)
    walked = {}
    real_step = optim.minimize_step

    def step_after_walking(optimizer, loss, max_grad_norm=0.0):
        walked["tape"] = graph_bytes(loss, {id(p.data) for p in params + ref.parameters() + reward_model.parameters()})
        return real_step(optimizer, loss, max_grad_norm)
    optim.minimize_step = step_after_walking
    try:
        t0 = time.perf_counter()
        ppo.ppo_update(policy, opt, rollout, ppo.PPOConfig(epochs=1, minibatch_size=b), value_model=value_model)
        seconds = time.perf_counter() - t0
    finally:
        optim.minimize_step = real_step
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return {"baseline": baseline, "static": static, "tape": walked["tape"], "peak": peak, "seconds": seconds}


def measure(size: str, b: int, T: int, default_malloc: bool = False) -> dict:
    """`child` in a fresh process, so its peak RSS is this step's alone."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    if not default_malloc:
        env.update(MALLOC_MMAP_THRESHOLD_="131072", MINIRL_KEEP_FREED_MEMORY="0")
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", f"{size}:{b}x{T}"],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"the {b}x{T} measurement failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse_shapes(spec: str) -> list[tuple[int, int]]:
    shapes = []
    for item in filter(None, spec.split(",")):
        try:
            b, T = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise SystemExit(f"error: --measure takes sequences x tokens, e.g. 1x512,2x256; got {item!r}") from None
        if b < 1 or T < 2:
            raise SystemExit(f"error: --measure {item!r}: need at least 1 sequence of at least 2 tokens")
        shapes.append((b, T))
    return shapes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="gpt2", choices=sorted(SIZES), help="model (default: GPT-2 124M)")
    parser.add_argument("--seq", type=int, default=512, help="tokens per sequence for the budgets (default 512)")
    parser.add_argument("--measure", default="1x512,2x512,2x256",
                        help="sequences x tokens to measure, comma-separated ('' measures nothing)")
    parser.add_argument("--budgets", default="24,80", help="memory budgets in GB: the first a CPU, the rest GPUs")
    parser.add_argument("--default-malloc", action="store_true", help="measure with minirl's malloc setting")
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        size, shape = args.child.split(":")
        (b, T), = parse_shapes(shape)
        print(json.dumps(child(size, b, T)))
        return 0
    cfg = SIZES[args.size]
    shapes = parse_shapes(args.measure)
    if any(T > cfg.block_size for _, T in shapes) or args.seq > cfg.block_size:
        parser.error(f"sequences longer than the model's block_size={cfg.block_size}")
    rows, measured = [], []
    for b, T in shapes:
        m = measure(args.size, b, T, args.default_malloc)
        peak, moment = predicted_peak(cfg, b, T)
        formula = ppo_moments(cfg, b, T)
        measured.append(dict(m, sequences=b, tokens=T, predicted_tape=formula["tape"], predicted_static=formula["static"],
                             predicted_peak=peak + m["baseline"], moment=moment))
        rows.append([f"{b} x {T}", f"{formula['tape'] / GB:.3f}", f"{m['tape'] / GB:.3f}",
                     f"{(peak + m['baseline']) / GB:.2f}", f"{m['peak'] / GB:.2f}",
                     f"{m['peak'] / (peak + m['baseline']):.3f}", moment])
    if rows:
        print(format_table(rows, ["minibatch", "tape GB (formula)", "tape GB (graph)", "peak GB (formula)",
                                  "peak RSS GB", "measured/formula", "peak moment"]))
        print("(peak formula = the process's RSS before the models were built + the largest moment)\n")
    budgets = [float(v) * GB for v in args.budgets.split(",") if v]
    per_seq = ppo_moments(cfg, 1, args.seq)["tape"]
    fits = [{"budget_gb": budget / GB, "device": "cpu" if i == 0 else "gpu",
             "sequences": largest_minibatch(cfg, args.seq, budget, CPU_RESERVE if i == 0 else GPU_RESERVE, gpu=i > 0)}
            for i, budget in enumerate(budgets)]
    static = ppo_moments(cfg, 1, args.seq)["static"]
    print(f"{args.size}: four models and two AdamW states {static / GB:.2f} GB; tape {per_seq / GB:.3f} GB per "
          f"sequence of {args.seq} tokens (policy and value model)")
    for fit in fits:
        reserve = CPU_RESERVE if fit["device"] == "cpu" else GPU_RESERVE
        print(f"largest PPO minibatch in {fit['budget_gb']:g} GB ({fit['device']}, {reserve / GB:g} GB set aside): "
              f"{fit['sequences']} sequences x {args.seq} tokens")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": args.size, "config": cfg.to_dict(), "seq": args.seq, "static_bytes": static,
                       "tape_bytes_per_sequence": per_seq, "measured": measured, "fits": fits,
                       "malloc": "default" if args.default_malloc else "exact"}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
