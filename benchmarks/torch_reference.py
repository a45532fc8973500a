"""The same tiny GPT in PyTorch eager, only for side-by-side timings in bench_gpt.py.

`python torch_reference.py check` proves it is the same model before anything is timed:
minirl's default card's weights, copied in, must give minirl's logits.

PyTorch is not a minirl dependency: importing this module fails without it, and
the benchmark then skips the comparison. Shapes, init scale, tied weights, AdamW
with clipping, and KV-cache sampling mirror minirl's so the ratio is like for like.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import numpy as np
import torch
import torch.nn as tnn
import torch.nn.functional as tF

V, BLOCK, L, H, C, HS = 2048, 64, 4, 3, 128, 42
"""The default card; `configure` sets them from minirl's GPTConfig for other shapes."""


def configure(model: dict) -> None:
    global V, BLOCK, L, H, C, HS
    V, BLOCK, L, H, C = (model[k] for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"))
    HS = model["head_size"] or C // H


class Block(tnn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = tnn.LayerNorm(C), tnn.LayerNorm(C)
        self.c_attn, self.c_proj = tnn.Linear(C, 3 * H * HS), tnn.Linear(H * HS, C)
        self.c_fc, self.mlp_proj = tnn.Linear(C, 4 * C), tnn.Linear(4 * C, C)

    def forward(self, x, cache=None, layer=0, t0=0):
        Bx, Tx, _ = x.shape
        qkv = self.c_attn(self.ln_1(x)).view(Bx, Tx, 3, H, HS).permute(2, 0, 3, 1, 4)
        q, k, v = qkv
        if cache is not None:  # (L, 2, B, H, BLOCK, HS): keys and values stored in one copy, as in minirl
            cache[layer, :, :, :, t0:t0 + Tx] = qkv[1:]
            k, v = cache[layer, 0, :, :, :t0 + Tx], cache[layer, 1, :, :, :t0 + Tx]
        causal = Tx > 1
        y = tF.scaled_dot_product_attention(q, k, v, is_causal=causal)
        x = x + self.c_proj(y.transpose(1, 2).reshape(Bx, Tx, H * HS))
        return x + self.mlp_proj(tF.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class TorchGPT(tnn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = tnn.Embedding(V, C), tnn.Embedding(BLOCK, C)
        self.h = tnn.ModuleList(Block() for _ in range(L))
        self.ln_f = tnn.LayerNorm(C)
        for p in self.parameters():
            if p.dim() >= 2:
                tnn.init.normal_(p, std=0.02)

    def forward(self, idx, cache=None, t0=0):
        x = self.wte(idx) + self.wpe(torch.arange(t0, t0 + idx.shape[1], device=idx.device))
        for i, block in enumerate(self.h):
            x = block(x, cache, i, t0)
        return self.ln_f(x) @ self.wte.weight.T


def _timed(fn, repeats, sync):
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


@torch.no_grad()
def _sample(model, prompts, new, use_cache):
    Bp, P = prompts.shape
    tokens = torch.cat([prompts, torch.zeros(Bp, new, dtype=torch.long, device=prompts.device)], 1)
    cache = torch.zeros(L, 2, Bp, H, BLOCK, HS, device=prompts.device) if use_cache else None
    logits = model(tokens[:, :P], cache, 0)[:, -1]
    for t in range(P, P + new):
        probs = torch.softmax(logits, -1)
        tokens[:, t] = torch.multinomial(probs, 1)[:, 0]
        if t + 1 < P + new:
            logits = model(tokens[:, t:t + 1], cache, t)[:, -1] if use_cache else model(tokens[:, :t + 1])[:, -1]
    return tokens


def _gemm_gflops(device, m, k, n, repeats, sync) -> float:
    a, w = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
    return 2 * m * k * n / _timed(lambda: a @ w, max(repeats, 5), sync) / 1e9


def bench_torch(repeats: int, spec: dict) -> dict:
    """Time each device named in spec["devices"] that this PyTorch can use, on spec's shape."""
    configure(spec["model"])
    B, T, new, n_prompts, prompt_len = (spec[k] for k in ("batch", "seq", "new", "prompts", "prompt_len"))
    devices = [d for d in spec["devices"].split(",") if d == "cpu" or torch.cuda.is_available()]
    results = {}
    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        torch.manual_seed(0)
        model = TorchGPT().to(device)
        decay = [p for p in model.parameters() if p.dim() >= 2]
        rest = [p for p in model.parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
                                lr=1e-3, foreach=True)
        x = torch.randint(0, V, (B, T), device=device)
        y = torch.randint(0, V, (B, T), device=device)

        def train_step():
            loss = tF.cross_entropy(model(x).view(-1, V), y.view(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        prompts = torch.randint(0, V, (n_prompts, prompt_len), device=device)
        m, k, n = spec["gemm"]["gpu" if device == "cuda" else "cpu"]
        figures = {"matmul_gflops": _gemm_gflops(device, m, k, n, repeats, sync)}
        if device == "cuda":  # TensorFloat-32: float32 storage, 10-bit-mantissa products on the tensor cores
            torch.backends.cuda.matmul.allow_tf32 = True
            figures["matmul_tf32_gflops"] = _gemm_gflops(device, m, k, n, repeats, sync)
            torch.backends.cuda.matmul.allow_tf32 = False
        n_matmul = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("wpe"))
        results[f"torch-{device}"] = dict(
            figures,
            train_s=_timed(train_step, repeats, sync),
            sample_s=_timed(lambda: _sample(model, prompts, new, True), repeats, sync),
            flops_per_token=6 * n_matmul + 12 * L * H * HS * T,
            parameters=sum(p.numel() for p in model.parameters()),
        )
        if spec.get("recompute", True):
            results[f"torch-{device}"]["recompute_s"] = _timed(lambda: _sample(model, prompts, new, False),
                                                               max(1, repeats // 2), sync)
        del model, opt
    return results


# minirl's parameter names -> TorchGPT's; minirl's Linear keeps W as (in, out) for x @ W, PyTorch's as (out, in)
RENAMES = (("attn.c_attn.", "c_attn."), ("attn.c_proj.", "c_proj."), ("mlp.c_fc.", "c_fc."), ("mlp.c_proj.", "mlp_proj."))
TRANSPOSED = ("c_attn.weight", "c_proj.weight", "c_fc.weight", "mlp_proj.weight")


def load_minirl_state(model: TorchGPT, state: dict) -> None:
    """Give `model` the weights of a minirl GPT's state dict (host arrays); the tied output head comes with wte."""
    loaded = {}
    for name, value in state.items():
        if name == "lm_head.weight":
            continue
        for old, new in RENAMES:
            name = name.replace(old, new)
        tensor = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        loaded[name] = tensor.T.contiguous() if name.endswith(TRANSPOSED) else tensor
    model.load_state_dict(loaded, strict=True)  # a missing or extra name, or a shape, is an error


def check_same_model(atol: float = 1e-5) -> float:
    """The largest logit difference between minirl's default card and TorchGPT given its weights.

    Raises SystemExit when it passes `atol`: the two would not be the same model, and a speed
    ratio between them would mean nothing.
    """
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from minirl import backend
    from minirl.model import GPT, GPTConfig

    backend.use("numpy")
    backend.manual_seed(0)
    ours = GPT(GPTConfig())
    card = ours.config
    if (card.vocab_size, card.block_size, card.n_layer, card.n_head, card.n_embd, card.head_size) != (V, BLOCK, L, H, C, HS):
        raise SystemExit(f"minirl's default card {card} is not the one TorchGPT builds (V={V}, block={BLOCK}, "
                         f"layers={L}, heads={H}, n_embd={C}, head_size={HS}); update torch_reference.py")
    ours.eval()
    idx = np.random.default_rng(0).integers(0, V, size=(2, BLOCK))
    expected = backend.to_numpy(ours(idx).data)  # (2, BLOCK, V)
    theirs = TorchGPT()
    load_minirl_state(theirs, {k: backend.to_numpy(v) for k, v in ours.state_dict().items()})
    with torch.no_grad():
        got = theirs(torch.from_numpy(idx)).numpy()
    err = float(np.abs(got - expected).max())
    if not err <= atol:
        raise SystemExit(f"with minirl's weights, the PyTorch model's logits differ from minirl's by up to {err:.2e} "
                         f"(allowed {atol:g}): they are not the same model, so no speed ratio is printed")
    return err


if __name__ == "__main__":
    if sys.argv[1:] == ["check"]:  # bench_gpt.py runs this once, before timing anything
        print(json.dumps({"logits_max_abs_diff": check_same_model()}))
        sys.exit(0)
    # bench_gpt.py runs this in its own process, so neither library's idle threads slow the other.
    print(json.dumps(bench_torch(int(sys.argv[1]), json.loads(sys.argv[2]))))
