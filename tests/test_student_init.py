"""Students built from their teacher's layers: weights copied by the layer mapping, configs sliced,
nothing shared with the teacher, KV-cache generation and save/load intact."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
)

from distill.core.errors import ConfigError
from distill.models import layer_list, num_layers, select_layers, student_from_teacher

TOKENS = dict(vocab_size=64, bos_token_id=1, eos_token_id=2, pad_token_id=0)
DECODER = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, num_key_value_heads=1, intermediate_size=64)


def bert(**config):
    base = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, num_labels=2)
    drop = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertForSequenceClassification(BertConfig(**TOKENS, **base, **drop, **config))


def gpt2(**config):
    drop = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(GPT2Config(**TOKENS, n_embd=32, n_layer=4, n_head=2, n_positions=64, **drop, **config))


def llama(**config):
    return LlamaForCausalLM(LlamaConfig(**TOKENS, **DECODER, tie_word_embeddings=False, **config))


def qwen2(**config):
    window = dict(use_sliding_window=True, sliding_window=4, max_window_layers=2)
    return Qwen2ForCausalLM(Qwen2Config(**TOKENS, **DECODER, tie_word_embeddings=True, **window, **config))


ARCHS = {"bert": bert, "gpt2": gpt2, "llama": llama, "qwen2": qwen2}
DECODERS = ["gpt2", "llama", "qwen2"]


def build(arch: str, **config):
    torch.manual_seed(0)
    return ARCHS[arch](**config).eval()


def batch() -> dict[str, torch.Tensor]:
    ids = torch.tensor([[1, 5, 9, 13, 17, 21], [1, 7, 11, 0, 0, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def layer_prefix(model) -> str:
    target = layer_list(model)
    return next(name for name, module in model.named_modules() if module is target)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_every_other_copies_the_mapped_layers_and_everything_else(arch):
    teacher = build(arch)
    student = student_from_teacher(teacher, "every_other")
    assert student.config.distill_teacher_layers == [0, 2]
    assert student.config.num_hidden_layers == num_layers(student) == 2
    assert type(student) is type(teacher) and num_layers(teacher) == 4
    for i, j in enumerate([0, 2]):
        s_state, t_state = layer_list(student)[i].state_dict(), layer_list(teacher)[j].state_dict()
        assert s_state.keys() == t_state.keys()
        assert all(torch.equal(s_state[k], t_state[k]) for k in t_state)
    prefix = layer_prefix(teacher) + "."
    t_rest = {k: v for k, v in teacher.state_dict().items() if not k.startswith(prefix)}
    s_rest = {k: v for k, v in student.state_dict().items() if not k.startswith(prefix)}
    assert s_rest.keys() == t_rest.keys() and len(t_rest) >= 3  # embeddings, final norm / pooler, head
    assert all(torch.equal(s_rest[k], t_rest[k]) for k in t_rest)
    assert torch.equal(student.get_input_embeddings().weight, teacher.get_input_embeddings().weight)
    head = "classifier" if arch == "bert" else "lm_head"
    assert torch.equal(getattr(student, head).weight, getattr(teacher, head).weight)
    with torch.no_grad():
        s_out = student(**batch(), output_hidden_states=True)
        t_out = teacher(**batch(), output_hidden_states=True)
    assert len(s_out.hidden_states) == 3 and len(t_out.hidden_states) == 5
    assert torch.equal(s_out.hidden_states[0], t_out.hidden_states[0])


@pytest.mark.parametrize("arch", list(ARCHS))
def test_a_student_with_all_layers_gives_the_teachers_logits(arch):
    teacher = build(arch)
    student = student_from_teacher(teacher, [0, 1, 2, 3])
    with torch.no_grad():
        assert torch.equal(student(**batch()).logits, teacher(**batch()).logits)


def test_first_n_last_n_and_explicit_lists():
    assert select_layers(6, "every_other") == [0, 2, 4]
    assert select_layers(5, "every_other") == [0, 2, 4]
    assert select_layers(6, "first_n", 2) == [0, 1]
    assert select_layers(6, "last_n", 2) == [4, 5]
    assert select_layers(6, [0, 3, 5]) == [0, 3, 5]
    assert select_layers(6, (1,)) == [1]
    teacher = build("llama")
    for layers, n, keep in [("first_n", 3, [0, 1, 2]), ("last_n", 1, [3]), ([1, 3], None, [1, 3])]:
        student = student_from_teacher(teacher, layers, n)
        assert student.config.distill_teacher_layers == keep
        for i, j in enumerate(keep):
            assert torch.equal(layer_list(student)[i].mlp.up_proj.weight, layer_list(teacher)[j].mlp.up_proj.weight)


@pytest.mark.parametrize(
    ("layers", "n", "key"),
    [
        ("every_third", None, "model.student.layers"),
        ("first_n", None, "model.student.n"),
        ("last_n", 0, "model.student.n"),
        ("first_n", 5, "model.student.n"),
        ("first_n", True, "model.student.n"),
        ([], None, "model.student.layers"),
        ([2, 1], None, "model.student.layers"),
        ([1, 1], None, "model.student.layers"),
        ([0, 4], None, "model.student.layers"),
        ([-1], None, "model.student.layers"),
        ([0.5], None, "model.student.layers"),
        (3, None, "model.student.layers"),
    ],
)
def test_bad_selections_name_the_key(layers, n, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        select_layers(4, layers, n)


def test_unsupported_architectures_and_moved_layer_scaling_are_refused():
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=64, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2))
    with pytest.raises(ConfigError, match=r"T5ForConditionalGeneration.*not supported"):
        student_from_teacher(t5)
    scaled = build("gpt2", scale_attn_by_inverse_layer_idx=True)
    with pytest.raises(ConfigError, match="scale_attn_by_inverse_layer_idx"):
        student_from_teacher(scaled, "every_other")
    assert student_from_teacher(scaled, "first_n", 2).config.distill_teacher_layers == [0, 1]


@pytest.mark.parametrize("arch", list(ARCHS))
def test_the_student_shares_no_tensor_with_the_teacher_and_keeps_its_ties(arch):
    teacher = build(arch)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = student_from_teacher(teacher)
    t_ptrs = {p.data_ptr() for p in teacher.parameters()}
    assert not t_ptrs & {p.data_ptr() for p in student.parameters()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    for model in (teacher, student):
        head = model.get_output_embeddings()
        tied = head is not None and head.weight is model.get_input_embeddings().weight
        assert tied == (arch in ("gpt2", "qwen2"))  # BERT's classifier has no LM head; Llama is untied


def test_per_layer_config_lists_and_layer_indices_follow_the_selection():
    teacher = build("qwen2")
    assert teacher.config.layer_types == ["full_attention"] * 2 + ["sliding_attention"] * 2
    student = student_from_teacher(teacher, [1, 2])
    assert student.config.layer_types == ["full_attention", "sliding_attention"]
    attns = [layer.self_attn for layer in layer_list(student)]
    assert [a.layer_idx for a in attns] == [0, 1]
    assert [a.sliding_window for a in attns] == [None, 4]


def test_the_student_keeps_the_teachers_dtype():
    teacher = build("llama").to(torch.bfloat16)
    student = student_from_teacher(teacher)
    assert student.dtype == torch.bfloat16
    assert torch.equal(layer_list(student)[1].self_attn.q_proj.weight, layer_list(teacher)[2].self_attn.q_proj.weight)


@pytest.mark.parametrize("arch", DECODERS)
def test_generation_with_kv_cache_matches_generation_without(arch):
    student = student_from_teacher(build(arch), "every_other")
    prompt = {"input_ids": torch.tensor([[1, 5, 9, 13]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    options = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        cached = student.generate(**prompt, use_cache=True, **options)
        uncached = student.generate(**prompt, use_cache=False, **options)
    assert cached.shape == (1, 10)
    assert torch.equal(cached, uncached)


@pytest.mark.parametrize("arch", ["bert", "qwen2"])
def test_save_and_load_keep_the_record_and_the_outputs(arch, tmp_path):
    student = student_from_teacher(build(arch), "last_n", n=2)
    student.save_pretrained(tmp_path)
    auto = AutoModelForSequenceClassification if arch == "bert" else AutoModelForCausalLM
    loaded = auto.from_pretrained(tmp_path).eval()
    assert loaded.config.distill_teacher_layers == [2, 3]
    assert loaded.config.num_hidden_layers == 2
    with torch.no_grad():
        assert torch.allclose(loaded(**batch()).logits, student(**batch()).logits, atol=1e-6)


def test_hydra_target_with_the_teacher_passed_at_runtime():
    teacher = build("gpt2")
    node = OmegaConf.create({"_target_": "distill.models.student_from_teacher", "layers": [1, 3]})
    student = instantiate(node, teacher=teacher, tokenizer=None)
    assert student.config.distill_teacher_layers == [1, 3]
    node = OmegaConf.create({"_target_": "distill.models.student_from_teacher", "layers": "first_n", "n": 1})
    assert num_layers(instantiate(node, teacher=teacher, tokenizer=None)) == 1
