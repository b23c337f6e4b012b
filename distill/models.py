"""Model and tokenizer constructors named by the ``model`` config group, and facts about a model.

Every constructor takes the shared ``tokenizer`` (the runner passes it), so tiny models built
from a config get the right vocabulary size and special-token ids, and every load error is one
line. ``trust_remote_code`` is off unless a config turns it on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as transformers_logging

from distill.errors import ConfigError, DistillError, require

log = logging.getLogger(__name__)

AUTO_CLASSES = {"causal_lm": AutoModelForCausalLM, "classification": AutoModelForSequenceClassification}


def _auto_class(task: str):
    require(task in AUTO_CLASSES, "model task", task, f"must be one of {', '.join(AUTO_CLASSES)}")
    return AUTO_CLASSES[task]


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
        config.setdefault(
            "bos_token_id", tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        )
    try:
        model_config = AutoConfig.for_model(model_type, **config)
    except ValueError as e:
        raise ConfigError(f"model_type={model_type!r} is invalid: {e}") from None
    return _auto_class(task).from_config(model_config)


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


@dataclass
class Loaded:
    """A checkpoint loaded by :func:`load_pretrained`: the model, the parameter names initialised fresh
    (absent from the checkpoint, e.g. a new classification head) and the checkpoint tensors left unused."""

    model: PreTrainedModel
    fresh: list[str]
    unused: list[str]


def _not_a_load_report(record: logging.LogRecord) -> bool:
    return "LOAD REPORT" not in record.getMessage()


@contextlib.contextmanager
def _quiet_load_report() -> Iterator[None]:
    """Drop transformers' own multi-line load report (we log one line instead). A filter, not a level:
    transformers 5 runs extra checks, with their own warnings, when that logger's level is raised."""
    logger = transformers_logging.get_logger("transformers.modeling_utils")
    logger.addFilter(_not_a_load_report)
    try:
        yield
    finally:
        logger.removeFilter(_not_a_load_report)


def load_pretrained(
    name_or_path: str,
    task: str = "causal_lm",
    trust_remote_code: bool = False,
    revision: str | None = None,
    dtype: str | None = None,
    **config_overrides: Any,
) -> Loaded:
    """``AutoModelFor<task>.from_pretrained`` (safetensors only) with what it initialised fresh.

    Uses ``output_loading_info=True``: ``missing_keys`` are the fresh parameters, ``unexpected_keys``
    the unused checkpoint tensors. Errors are one line.
    """
    auto = _auto_class(task)
    local = _looks_like_path(name_or_path)
    if local and not Path(name_or_path).expanduser().exists():
        raise DistillError(f"model path {name_or_path} does not exist")
    try:
        with _quiet_load_report():
            model, info = auto.from_pretrained(
                str(Path(name_or_path).expanduser()) if local else name_or_path,
                trust_remote_code=trust_remote_code,
                revision=revision,
                use_safetensors=True,
                output_loading_info=True,
                **({"dtype": dtype} if dtype else {}),
                **config_overrides,
            )
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DistillError(f"could not load model {name_or_path!r}: {first}") from None
    except RuntimeError as e:
        if "mismatch" not in str(e):
            raise
        raise DistillError(
            f"could not load model {name_or_path!r}: some checkpoint tensors have other shapes than its config "
            "(num_labels?); set ignore_mismatched_sizes: true on the model node to initialise them fresh"
        ) from None
    fresh = set(info["missing_keys"]) | {m[0] for m in info.get("mismatched_keys", ())}
    return Loaded(model, sorted(fresh), sorted(info["unexpected_keys"]))


def compact_names(names: list[str], limit: int = 6) -> str:
    """``["classifier.bias", "classifier.weight"]`` -> ``"classifier.{bias,weight}"``; at most ``limit`` groups."""
    groups: dict[str, list[str]] = {}
    for name in names:
        module, _, leaf = name.rpartition(".")
        groups.setdefault(module, []).append(leaf)
    parts = [
        f"{module}.{{{','.join(leaves)}}}" if len(leaves) > 1 else (f"{module}.{leaves[0]}" if module else leaves[0])
        for module, leaves in groups.items()
    ]
    more = f", ... ({len(names)} tensors)" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


def load_summary(name_or_path: str, loaded: Loaded) -> str:
    """One line: what was initialised fresh and how many checkpoint tensors went unused."""
    unused = loaded.unused and f"; {len(loaded.unused)} checkpoint tensors unused ({compact_names(loaded.unused, 2)})"
    return f"{name_or_path}: initialised fresh (not in the checkpoint): {compact_names(loaded.fresh)}{unused or ''}"


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
    keep a model's first six layers). ``dtype`` is e.g. ``bfloat16``; default float32. Weights the
    checkpoint lacks (a new head) are listed in one log line instead of transformers' load report.
    """
    loaded = load_pretrained(name_or_path, task, trust_remote_code, revision, dtype, **config_overrides)
    if loaded.fresh:
        log.warning("%s", load_summary(name_or_path, loaded))
    return loaded.model


def pretrained_dir(name_or_path: str, revision: str | None = None, **_: Any) -> Path | None:
    """Where :func:`pretrained` reads ``name_or_path``'s files from, without loading the model: the
    local directory, or the hub snapshot already in the local cache (None if it is not there)."""
    if _looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser()
        return path if path.is_dir() else None
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name_or_path, revision=revision, local_files_only=True))
    except Exception:  # not in the local cache (or offline): the caller loads the model instead
        return None


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


# ----------------------------------------------------------------------------- facts about a model


def model_task(model: nn.Module) -> str:
    """``causal_lm`` for a model with an output embedding (an LM head), else ``classification``."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return "causal_lm" if head is not None else "classification"


def output_width(model: nn.Module) -> int:
    """Width of the model's logits: the LM head's rows, or the number of classes."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        return int(head.weight.shape[0])
    return int(model.config.num_labels)


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
        f"teacher vocabulary size {t} and student vocabulary size {s} do not match{covers}: "
        "teacher and student must share one tokenizer (pick a model pair from the same family)"
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
