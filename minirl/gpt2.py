"""OpenAI's GPT-2 in minirl: the model cards, and weights in and out of a Hugging Face folder.

minirl's `GPT` is already GPT-2's architecture (Radford et al. 2019), detail for detail:
- biases in every Linear and LayerNorm (`bias=True`);
- GELU in its tanh form, ``½x(1 + tanh(√(2/π)(x + 0.044715x³)))`` (`functional.gelu`),
  which is Hugging Face's "gelu_new";
- layer norm with ε = 1e-5, before attention and MLP (pre-LN), and once more at the end (`ln_f`);
- learned positions, 1,024 of them (`wpe`, `block_size`);
- the output head tied to the token embedding (`tie_weights`);
- heads 64 wide, attention scores scaled by 1/√64;
- initialisation N(0, 0.02) for every weight and embedding, the residual projections
  (`attn.c_proj`, `mlp.c_proj`) at N(0, (0.02/√(2·n_layer))²), biases 0, LayerNorm gains 1.
Dropout is 0 here (GPT-2 trained with 0.1): RL's ρ ≡ 1 invariant needs deterministic forwards.

A Hugging Face GPT-2 folder is `config.json` plus `model.safetensors`, read with the
`safetensors` package's NumPy API (no PyTorch, no pickle). Its Conv1D layers store
weights as (in, out), as minirl's `Linear` does, so they are copied unchanged; only an
untied `lm_head.weight`, a torch `nn.Linear` stored (out, in) = (V, C), is transposed.
Each block's causal-mask buffers (`attn.bias`, `attn.masked_bias`) are not weights and are
skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from minirl import backend
from minirl.model import GPT, GPTConfig

# name: (n_layer, n_head, n_embd); every size has 64-wide heads and 1,024 positions.
GPT2_SIZES = {
    "gpt2": (12, 12, 768),  # 124M
    "gpt2-medium": (24, 16, 1024),  # 355M
    "gpt2-large": (36, 20, 1280),  # 774M
    "gpt2-xl": (48, 25, 1600),  # 1.56B
}
GPT2_VOCAB_SIZE = 50257  # 50,000 merges + 256 bytes + <|endoftext|>
_MASK_BUFFERS = (".attn.bias", ".attn.masked_bias")


def gpt2_config(size: str = "gpt2", **changes) -> GPTConfig:
    """The GPTConfig of a GPT-2 size ("gpt2" is the 124M model); `changes` override fields."""
    if size not in GPT2_SIZES:
        raise ValueError(f"unknown GPT-2 size {size!r}; choose one of {', '.join(GPT2_SIZES)}.")
    n_layer, n_head, n_embd = GPT2_SIZES[size]
    card = dict(vocab_size=GPT2_VOCAB_SIZE, block_size=1024, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                head_size=64, dropout=0.0, bias=True, tie_weights=True)
    return GPTConfig(**{**card, **changes})


def gpt2_num_parameters(config: GPTConfig) -> int:
    """Parameters of a tied GPT-2: ``V·C + P·C + L·(12C² + 13C) + 2C`` (heads of width C/nh).

    Per block: c_attn C·3C + 3C, c_proj C² + C, c_fc C·4C + 4C, mlp c_proj 4C·C + C, two
    LayerNorms 4C; ln_f 2C. For the 124M card that is 124,439,808.
    """
    V, P, L, C = config.vocab_size, config.block_size, config.n_layer, config.n_embd
    return V * C + P * C + L * (12 * C * C + 13 * C) + 2 * C


def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError("GPT-2 weights are read with the safetensors package: pip install safetensors "
                          "(or minirl's gpt2 extra: pip install -e \".[gpt2]\").") from None
    return safetensors.numpy


def config_from_hf(hf: dict, source: str = "config.json") -> GPTConfig:
    """A GPTConfig from a Hugging Face GPT-2 `config.json`, refusing any setting minirl's GPT lacks."""
    if hf.get("model_type", "gpt2") != "gpt2":
        raise ValueError(f"{source}: model_type is {hf.get('model_type')!r}; only GPT-2 checkpoints load here.")
    unsupported = {
        "activation_function": (hf.get("activation_function", "gelu_new"), ("gelu_new", "gelu_pytorch_tanh")),
        "layer_norm_epsilon": (hf.get("layer_norm_epsilon", 1e-5), (1e-5,)),
        "n_inner": (hf.get("n_inner"), (None, 4 * hf.get("n_embd", 0))),
        "scale_attn_weights": (hf.get("scale_attn_weights", True), (True,)),
        "scale_attn_by_inverse_layer_idx": (hf.get("scale_attn_by_inverse_layer_idx", False), (False,)),
    }
    for key, (value, allowed) in unsupported.items():
        if value not in allowed:
            raise ValueError(f"{source}: {key} = {value!r}, but minirl's GPT-2 supports only {allowed}.")
    try:
        return GPTConfig(vocab_size=hf["vocab_size"], block_size=hf.get("n_positions", hf.get("n_ctx")),
                         n_layer=hf["n_layer"], n_head=hf["n_head"], n_embd=hf["n_embd"],
                         head_size=hf["n_embd"] // hf["n_head"], dropout=0.0, bias=True,
                         tie_weights=hf.get("tie_word_embeddings", True))
    except KeyError as e:
        raise ValueError(f"{source} has no {e.args[0]!r}; is it a GPT-2 config.json?") from None


def config_to_hf(config: GPTConfig) -> dict:
    """The Hugging Face `config.json` of a minirl GPT (which must have GPT-2's head layout)."""
    if config.n_head * config.head_size != config.n_embd or not config.bias:
        raise ValueError(f"GPT-2 needs n_head·head_size = n_embd and biases; this model has {config.n_head}·"
                         f"{config.head_size} vs {config.n_embd}, bias={config.bias}.")
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
            "vocab_size": config.vocab_size, "n_positions": config.block_size, "n_ctx": config.block_size,
            "n_layer": config.n_layer, "n_head": config.n_head, "n_embd": config.n_embd, "n_inner": None,
            "layer_norm_epsilon": 1e-5, "initializer_range": 0.02, "resid_pdrop": config.dropout,
            "embd_pdrop": config.dropout, "attn_pdrop": 0.0, "tie_word_embeddings": config.tie_weights,
            "bos_token_id": GPT2_VOCAB_SIZE - 1, "eos_token_id": GPT2_VOCAB_SIZE - 1}


def state_from_hf(tensors: dict, config: GPTConfig) -> dict:
    """Hugging Face tensor names -> minirl parameter names (`transformer.` prefix optional)."""
    state = {}
    for name, array in tensors.items():
        if name.endswith(_MASK_BUFFERS):
            continue  # the causal mask, rebuilt by attention itself
        short = name.removeprefix("transformer.")
        if short == "lm_head.weight":
            if config.tie_weights:
                continue  # a copy of wte, written by some exporters
            array = array.T  # nn.Linear (V, C) -> minirl Linear (C, V)
        state[short] = array
    return state


def state_to_hf(model: GPT) -> dict:
    """minirl parameters -> Hugging Face names, float32 NumPy arrays (the inverse of `state_from_hf`)."""
    tensors = {}
    for name, array in model.state_dict().items():
        array = np.ascontiguousarray(backend.to_numpy(array), dtype=np.float32)
        if name == "lm_head.weight":
            tensors[name] = np.ascontiguousarray(array.T)  # (C, V) -> nn.Linear's (V, C)
        else:
            tensors[f"transformer.{name}"] = array
    return tensors


def load_gpt2(folder: str | Path) -> GPT:
    """A GPT with the weights of a local Hugging Face GPT-2 folder (config.json + model.safetensors)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"GPT-2 folder not found: {folder}; pass the folder holding config.json and "
                                "model.safetensors (e.g. a download of openai-community/gpt2).")
    weights, config_file = folder / "model.safetensors", folder / "config.json"
    if not weights.is_file():
        pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt*")]
        hint = (f" It holds {', '.join(pickled)}: pickle files, which minirl never loads (unpickling runs code). "
                "Download model.safetensors from the same model page instead, or convert it once with "
                "transformers: `GPT2LMHeadModel.from_pretrained(DIR).save_pretrained(DIR, "
                "safe_serialization=True)`.") if pickled else ""
        raise FileNotFoundError(f"{weights} is missing.{hint}")
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} is missing; it comes with model.safetensors on the model page.")
    try:
        hf = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_file}, line {e.lineno}: invalid JSON ({e.msg}).") from None
    config = config_from_hf(hf, str(config_file))
    try:
        tensors = _safetensors_numpy().load_file(str(weights))
    except Exception as e:  # safetensors raises its own error types for a foreign or truncated file
        if isinstance(e, ImportError):
            raise
        raise ValueError(f"{weights} is not a readable safetensors file ({e}); download it again.") from None
    model = GPT(config)
    try:
        model.load_state_dict(state_from_hf(tensors, config))
    except ValueError as e:
        raise ValueError(f"{weights} does not match {config_file}: {e}") from None
    return model


def save_gpt2(model: GPT, folder: str | Path) -> Path:
    """Write `model` as a Hugging Face GPT-2 folder (config.json + model.safetensors) that both
    `load_gpt2` and transformers' `GPT2LMHeadModel.from_pretrained` read."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hf = config_to_hf(model.config)
    tmp = folder / "model.safetensors.tmp"
    _safetensors_numpy().save_file(state_to_hf(model), str(tmp), metadata={"format": "pt"})
    tmp.replace(folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(hf, indent=2) + "\n", encoding="utf-8")
    return folder



def load_gpt2_with_tokenizer(folder: str | Path, tokenizer: str | Path | None = None):
    """(GPT, Tokenizer) of a Hugging Face GPT-2 folder, the tokenizer checked against the model.

    The tokenizer comes from `tokenizer` if given (see `load_gpt2_tokenizer`), else from the
    folder's own vocab.json + merges.txt, else from the packaged GPT-2 files.
    """
    from minirl.gpt2_tokenizer import check_vocabulary, load_gpt2_tokenizer

    model = load_gpt2(folder)
    if tokenizer is None and (Path(folder) / "vocab.json").is_file():
        tokenizer = folder
    tok = load_gpt2_tokenizer(tokenizer)
    check_vocabulary(tok, model.config.vocab_size, str(folder))
    return model, tok
