"""The same tiny GPT in PyTorch eager, only for side-by-side timings in bench_gpt.py.

PyTorch is not a minirl dependency: importing this module fails without it, and
the benchmark then skips the comparison. Shapes, init scale, tied weights, AdamW
with clipping, and KV-cache sampling mirror minirl's so the ratio is like for like.
"""

from __future__ import annotations

import json
import sys
import time

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


if __name__ == "__main__":
    # bench_gpt.py runs this in its own process, so neither library's idle threads slow the other.
    print(json.dumps(bench_torch(int(sys.argv[1]), json.loads(sys.argv[2]))))
