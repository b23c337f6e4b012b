"""Model and tokenizer constructors named by the ``model`` config group: built from a config, or loaded
from a hub id or a local directory.

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

from transformers import (
    AutoConfig,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as transformers_logging

from distill.core.errors import ConfigError, DistillError, first_line
from distill.models.facts import auto_class
from distill.models.gguf import gguf_checkpoint, package_dir

log = logging.getLogger(__name__)


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
    return auto_class(task).from_config(model_config)


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
    gguf_file: str | None = None,
    **config_overrides: Any,
) -> Loaded:
    """``AutoModelFor<task>.from_pretrained`` (safetensors only) with what it initialised fresh.

    Uses ``output_loading_info=True``: ``missing_keys`` are the fresh parameters, ``unexpected_keys``
    the unused checkpoint tensors. Errors are one line. With ``gguf_file``, the GGUF file in
    ``name_or_path`` converted once to safetensors (:mod:`distill.models.gguf`).
    """
    auto = auto_class(task)
    name_or_path = checkpoint_path(name_or_path, gguf_file, task)
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
        raise DistillError(f"could not load model {name_or_path!r}: {first_line(e)}") from None
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
    gguf_file: str | None = None,
    **config_overrides: Any,
) -> PreTrainedModel:
    """``AutoModelFor<task>.from_pretrained`` from a local directory, a hub id, a GGUF file in either
    (``gguf_file``), or a package's directory (``package:<name>``), safetensors only.

    ``config_overrides`` go to the config (e.g. ``num_labels=2``, or ``num_hidden_layers=6`` to
    keep a model's first six layers). ``dtype`` is e.g. ``bfloat16``; default float32. Weights the
    checkpoint lacks (a new head) are listed in one log line instead of transformers' load report.
    """
    loaded = load_pretrained(name_or_path, task, trust_remote_code, revision, dtype, gguf_file, **config_overrides)
    if loaded.fresh:
        log.warning("%s", load_summary(name_or_path, loaded))
    return loaded.model


def checkpoint_path(name_or_path: str, gguf_file: str | None = None, task: str = "causal_lm") -> str:
    """What ``from_pretrained`` reads: a package's directory for ``package:<name>``, the converted directory
    of a GGUF file, else ``name_or_path`` itself."""
    if gguf_file:
        return str(gguf_checkpoint(name_or_path, gguf_file, task))
    return package_dir(name_or_path)


def pretrained_dir(
    name_or_path: str, revision: str | None = None, gguf_file: str | None = None, task: str = "causal_lm", **_: Any
) -> Path | None:
    """Where :func:`pretrained` reads ``name_or_path``'s files from, without loading the model: the
    local directory (a GGUF file's converted one), or the hub snapshot already in the local cache (None
    if it is not there)."""
    name_or_path = checkpoint_path(name_or_path, gguf_file, task)
    if _looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser()
        return path if path.is_dir() else None
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name_or_path, revision=revision, local_files_only=True))
    except Exception:  # not in the local cache (or offline): the caller loads the model instead
        return None


def pretrained_tokenizer(
    name_or_path: str, trust_remote_code: bool = False, revision: str | None = None, gguf_file: str | None = None
) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained`` with one-line errors (``gguf_file``: the tokenizer converted with its
    GGUF model, :mod:`distill.models.gguf`)."""
    name_or_path = checkpoint_path(name_or_path, gguf_file)
    if _looks_like_path(name_or_path) and not Path(name_or_path).expanduser().exists():
        raise DistillError(f"tokenizer path {name_or_path} does not exist")
    try:
        return AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as e:
        raise DistillError(f"could not load tokenizer {name_or_path!r}: {first_line(e)}") from None
