"""What a dataset and a tokenizer must satisfy before anything is tokenized: one line if not."""

from __future__ import annotations

import logging

from datasets import DatasetDict
from transformers import PreTrainedTokenizerBase

from distill.core.errors import DataError

log = logging.getLogger(__name__)


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Give a tokenizer without a pad token its EOS token as pad (labels keep EOS: see sequences)."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise DataError("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token")
        log.warning("tokenizer has no pad token; using its eos token %r for padding", tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_columns(source: DatasetDict, splits: tuple[str, ...], columns: tuple[str, ...]) -> None:
    """Fail with one line if a split is missing or empty, or lacks one of ``columns``."""
    for split in splits:
        if split not in source:
            raise DataError(f"dataset has no {split!r} split (has: {', '.join(source)})")
        if len(source[split]) == 0:
            raise DataError(f"dataset split {split!r} is empty")
        missing = [c for c in columns if c not in source[split].column_names]
        if missing:
            raise DataError(
                f"dataset split {split!r} lacks column(s) {', '.join(missing)} "
                f"(has: {', '.join(source[split].column_names)})"
            )
