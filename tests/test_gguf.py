"""Checkpoints as GGUF files: a tiny Llama written with the ``gguf`` package here, loaded, converted to
safetensors once, and loaded from that cache after; missing files and packages are one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import distill.models.gguf as gguf_module
from distill.core.errors import ConfigError
from distill.models import from_config, pretrained, pretrained_tokenizer

gguf = pytest.importorskip("gguf")
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tiny_llama(tok):
    torch.manual_seed(0)
    return from_config("llama", tokenizer=tok, num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                       tie_word_embeddings=False)  # fmt: skip


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's order of the rotary halves in q and k (transformers undoes it when it reads the file)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model, tok, path: Path) -> None:
    c = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(c.num_hidden_layers)
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    rope = getattr(c, "rope_parameters", None) or {}
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(c, "rope_theta", 10000.0))))
    writer.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    writer.add_vocab_size(c.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([tok.convert_ids_to_tokens(i) for i in range(len(tok))])
    special = set(tok.all_special_ids)
    writer.add_token_types([3 if i in special else 1 for i in range(len(tok))])
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    writer.add_eos_token_id(tok.eos_token_id)
    writer.add_bos_token_id(tok.eos_token_id)
    writer.add_pad_token_id(tok.pad_token_id)
    writer.add_chat_template(CHAT_TEMPLATE)
    names = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    for key, value in model.state_dict().items():
        w = value.float().numpy()
        if key == "model.embed_tokens.weight":
            writer.add_tensor("token_embd.weight", w)
        elif key == "model.norm.weight":
            writer.add_tensor("output_norm.weight", w)
        elif key == "lm_head.weight":
            writer.add_tensor("output.weight", w)
        elif key.startswith("model.layers."):
            i, rest = key.removeprefix("model.layers.").split(".", 1)
            part = rest.removesuffix(".weight")
            if part == "self_attn.q_proj":
                w = _permute(w, c.num_attention_heads)
            elif part == "self_attn.k_proj":
                w = _permute(w, c.num_key_value_heads)
            writer.add_tensor(f"blk.{i}.{names[part]}.weight", w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_a_gguf_file_loads_converts_once_and_reloads_from_the_cache(tok, tmp_path, monkeypatch):
    original = tiny_llama(tok)
    write_gguf(original, tok, tmp_path / "tiny.gguf")
    loaded = pretrained(str(tmp_path), gguf_file="tiny.gguf")
    ids = torch.tensor([tok("12+34=46", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, original(input_ids=ids).logits, atol=1e-5, rtol=1e-5)
    assert loaded.config.to_dict().get("quantization_config") is None  # a plain model: it saves and trains

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(gguf_module, "_convert", no_conversion)
    again = pretrained(str(tmp_path), gguf_file="tiny.gguf")  # from <cache>/gguf/<key>
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), loaded.state_dict().values()))
    tokenizer = pretrained_tokenizer(str(tmp_path), gguf_file="tiny.gguf")
    assert all(tokenizer.convert_tokens_to_ids(t) == i for t, i in tok.get_vocab().items())  # the same ids
    assert tokenizer.eos_token_id == tok.eos_token_id and tokenizer.chat_template == CHAT_TEMPLATE


def test_a_missing_file_or_package_is_one_line(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"gguf_file='nope.gguf' is invalid: .*nope.gguf does not exist"):
        pretrained(str(tmp_path), gguf_file="nope.gguf")
    with pytest.raises(ConfigError, match=r"needs the package 'no_such_package': pip install no_such_package"):
        pretrained("package:no_such_package")
    real = gguf_module.importlib.util.find_spec
    monkeypatch.setattr(gguf_module.importlib.util, "find_spec", lambda name: None if name == "gguf" else real(name))
    with pytest.raises(ConfigError, match=r"needs the package 'gguf': pip install gguf"):
        pretrained(str(tmp_path), gguf_file="any.gguf")
