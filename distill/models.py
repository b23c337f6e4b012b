"""Model and tokenizer constructors named by the ``model`` config group.

Every constructor takes the shared ``tokenizer`` (the runner passes it), so tiny models built
from a config get the right vocabulary size and special-token ids, and every load error is one
line. ``trust_remote_code`` is off unless a config turns it on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from distill.errors import ConfigError, DistillError, require

TASKS = {"causal_lm": AutoModelForCausalLM, "classification": AutoModelForSequenceClassification}


def _auto_class(task: str):
    require(task in TASKS, "model task", task, f"must be one of {', '.join(TASKS)}")
    return TASKS[task]


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def from_config(
    model_type: str,
    task: str = "causal_lm",
    tokenizer: PreTrainedTokenizerBase | None = None,
    **config: Any,
) -> PreTrainedModel:
    """A randomly initialised model from ``AutoConfig.for_model(model_type, **config)``.

    The tokenizer, when given, sets ``vocab_size`` and the pad/bos/eos ids.
    """
    if tokenizer is not None:
        config.setdefault("vocab_size", len(tokenizer))
        config.setdefault("pad_token_id", tokenizer.pad_token_id)
        config.setdefault("eos_token_id", tokenizer.eos_token_id)
        config.setdefault("bos_token_id", tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id)
    try:
        model_config = AutoConfig.for_model(model_type, **config)
    except ValueError as e:
        raise ConfigError(f"model_type={model_type!r} is invalid: {e}") from None
    return _auto_class(task).from_config(model_config)


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


def pretrained(
    name_or_path: str,
    task: str = "causal_lm",
    tokenizer: PreTrainedTokenizerBase | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    dtype: str | None = None,
    **config_overrides: Any,
) -> PreTrainedModel:
    """``AutoModelFor<task>.from_pretrained`` from a local directory or hub id, safetensors only.

    ``config_overrides`` go to the config (e.g. ``num_labels=2``, or ``num_hidden_layers=6`` to
    keep a model's first six layers). ``dtype`` is e.g. ``bfloat16``; default float32.
    """
    auto = _auto_class(task)
    if _looks_like_path(name_or_path) and not Path(name_or_path).expanduser().exists():
        raise DistillError(f"model path {name_or_path} does not exist")
    try:
        return auto.from_pretrained(
            str(Path(name_or_path).expanduser()) if _looks_like_path(name_or_path) else name_or_path,
            trust_remote_code=trust_remote_code,
            revision=revision,
            use_safetensors=True,
            **({"dtype": dtype} if dtype else {}),
            **config_overrides,
        )
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DistillError(f"could not load model {name_or_path!r}: {first}") from None


def pretrained_tokenizer(
    name_or_path: str, trust_remote_code: bool = False, revision: str | None = None
) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained`` with one-line errors."""
    if _looks_like_path(name_or_path) and not Path(name_or_path).expanduser().exists():
        raise DistillError(f"tokenizer path {name_or_path} does not exist")
    try:
        return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DistillError(f"could not load tokenizer {name_or_path!r}: {first}") from None


def check_same_tokenizer(student_tok: PreTrainedTokenizerBase, teacher_tok: PreTrainedTokenizerBase) -> None:
    """Teacher and student must map text to the same ids; one error naming both sizes if not."""
    if student_tok.get_vocab() != teacher_tok.get_vocab():
        raise ConfigError(
            f"teacher tokenizer ({len(teacher_tok)} tokens) and student tokenizer ({len(student_tok)} tokens) "
            "differ: logit distillation needs one shared vocabulary"
        )
