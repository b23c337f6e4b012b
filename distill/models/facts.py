"""Facts about a model, read without changing it: its task, its output layer and width, its transformer
layers, whether it fits the data, and the module inside a data-parallel wrapper."""

from __future__ import annotations

from typing import Any

from torch import nn
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from distill.core.errors import ConfigError, require

# Where a model's transformer layers are, on ``model.base_model``: Llama, Qwen2, Mistral; GPT-2; BERT,
# RoBERTa; OPT.
LAYER_PATHS = ("layers", "h", "encoder.layer", "decoder.layers")
SUPPORTED = "BERT-family encoders, GPT-2, Llama and Qwen2 decoders"
AUTO_CLASSES = {"causal_lm": AutoModelForCausalLM, "classification": AutoModelForSequenceClassification}


def auto_class(task: str) -> Any:
    """The transformers auto class of a task (``causal_lm`` or ``classification``)."""
    require(task in AUTO_CLASSES, "model task", task, f"must be one of {', '.join(AUTO_CLASSES)}")
    return AUTO_CLASSES[task]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a (Distributed)DataParallel wrapper, or the model itself (FSDP2 does not wrap)."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


def is_adapted(model: nn.Module) -> bool:
    """Whether ``model`` is a peft model (adapters on a base model, :mod:`distill.models.lora`)."""
    return hasattr(model, "get_base_model") and hasattr(model, "peft_config")


def base_of(model: nn.Module) -> nn.Module:
    """The transformers model inside a wrapper (DDP) and inside a peft model, or the model itself."""
    model = unwrap(model)
    return model.get_base_model() if is_adapted(model) else model


def output_layer(model: nn.Module) -> nn.Module | None:
    """The model's output embeddings (an LM head), or None (a classifier, or not a transformers model)."""
    model = unwrap(model)
    return model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_task(model: nn.Module) -> str:
    """``causal_lm`` for a model with an output embedding (an LM head), else ``classification``."""
    return "causal_lm" if output_layer(model) is not None else "classification"


def output_width(model: nn.Module) -> int:
    """Width of the model's logits: the LM head's rows, or the number of classes."""
    head = output_layer(model)
    if head is not None:
        return int(head.weight.shape[0])
    return int(unwrap(model).config.num_labels)


def shared_width(
    teacher: nn.Module, student: nn.Module, tokenizer: PreTrainedTokenizerBase | None, max_padding: int = 1024
) -> int:
    """The logit width teacher and student share; raises one clear error on a real mismatch.

    Models often pad their embedding matrix past the tokenizer's size (Qwen2.5: 151,936 or
    152,064 rows for 151,665 tokens). Such padding rows are never real tokens, so logits are
    sliced to the smaller width when both models cover the tokenizer and neither pads it by
    more than ``max_padding`` rows. Anything else means different vocabularies.
    """
    t, s = output_width(teacher), output_width(student)
    if t == s:
        return s
    n_tok = len(tokenizer) if tokenizer is not None else None
    if n_tok is not None and min(t, s) >= n_tok and max(t, s) - n_tok <= max_padding:
        return min(t, s)
    covers = f" for a tokenizer of {n_tok} tokens" if n_tok is not None else ""
    raise ConfigError(
        f"teacher vocabulary size {t} and student vocabulary size {s} do not match{covers}: pick a model pair that "
        "shares one tokenizer, or set distiller.cross_tokenizer=uld or gold (with the teacher's own tokenizer)"
    )


def check_same_tokenizer(student_tok: PreTrainedTokenizerBase, teacher_tok: PreTrainedTokenizerBase) -> None:
    """Teacher and student must map text to the same ids; one error naming both sizes if not."""
    if student_tok.get_vocab() != teacher_tok.get_vocab():
        raise ConfigError(
            f"teacher tokenizer ({len(teacher_tok)} tokens) and student tokenizer ({len(student_tok)} tokens) "
            "differ: set distiller.cross_tokenizer=uld or gold to distil across tokenizers"
        )


def _config_key(config: PretrainedConfig, canonical: str, node_keys: Any) -> tuple[str, Any]:
    """The name a config node uses for ``canonical`` (e.g. ``n_layer`` for ``num_hidden_layers``)."""
    alias = getattr(config, "attribute_map", {}).get(canonical)
    for name in (alias, canonical):
        if name in (node_keys or ()):
            return name, getattr(config, canonical, None)
    return canonical, getattr(config, canonical, None)


def check_model_fits(model: nn.Module, key: str, max_length: int, node_keys: Any = None) -> None:
    """Refuse, naming the config key, a model with no layers or a context shorter than the data.

    ``key`` is the model's config path (``model.student``); ``node_keys`` the keys its node
    sets, so the message names the one the user wrote (``n_positions`` rather than
    ``max_position_embeddings``).
    """
    config = getattr(model, "config", None)
    if config is None:
        return
    name, layers = _config_key(config, "num_hidden_layers", node_keys)
    require(layers is None or layers > 0, f"{key}.{name}", layers, "a model needs at least one layer")
    name, context = _config_key(config, "max_position_embeddings", node_keys)
    require(
        context is None or context >= max_length,
        f"{key}.{name}",
        context,
        f"the model's context is shorter than data.max_length={max_length}",
    )


def layers_with_name(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The model's transformer layers and their dotted name in ``model.named_modules()``: the first of
    ``base_model.<LAYER_PATHS>`` that is an ``nn.ModuleList`` of ``config.num_hidden_layers`` modules (of the
    model inside a peft model, named as there)."""
    model = base_of(model)
    config = getattr(model, "config", None)
    expected = getattr(config, "num_hidden_layers", None)
    base = getattr(model, "base_model", model)
    names = {id(module): name for name, module in model.named_modules()}
    for path in LAYER_PATHS:
        module: object = base
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.ModuleList) and len(module) > 0 and len(module) == expected:
            return names[id(module)], module
    model_type = getattr(config, "model_type", None)
    raise ConfigError(
        f"{type(model).__name__} (model_type={model_type!r}) is not supported for layer selection: no list of "
        f"{expected} layers at base_model.{{{', '.join(LAYER_PATHS)}}}; supported: {SUPPORTED}"
    )


def layer_list(model: nn.Module) -> nn.ModuleList:
    """The transformer layers of a supported model (e.g. ``model.model.layers`` for Llama)."""
    return layers_with_name(model)[1]


def num_layers(model: nn.Module) -> int:
    """How many transformer layers the model has."""
    return len(layer_list(model))
