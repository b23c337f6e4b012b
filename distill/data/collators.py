"""Collators: tokenized rows -> the batches the distillers and the evaluation read."""

from __future__ import annotations

from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from distill.data.sequences import IGNORE_INDEX, left_pad, pad

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


class CausalLMCollator:
    """Right-padded ``input_ids``/``attention_mask``/``labels`` for training and loss, plus, for
    generation, left-padded ``prompt_input_ids``/``prompt_attention_mask`` and the raw
    ``prompts``, ``references`` and ``answers`` strings."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad = pad_token_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        ids = [r["input_ids"] for r in rows]
        prompt_ids, prompt_mask = left_pad([r["prompt_ids"] for r in rows], self.pad)
        batch: dict[str, Any] = {
            "input_ids": pad(ids, self.pad),
            "attention_mask": pad([[1] * len(s) for s in ids], 0),
            "labels": pad([r["labels"] for r in rows], IGNORE_INDEX),
            "prompt_input_ids": prompt_ids,
            "prompt_attention_mask": prompt_mask,
            "prompts": [r["prompt"] for r in rows],
            "references": [r["response"] for r in rows],
        }
        if "answer" in rows[0]:
            batch["answers"] = [r["answer"] for r in rows]
        if "index" in rows[0]:  # the example's row in its split (the teacher cache's key)
            batch["index"] = torch.tensor([r["index"] for r in rows], dtype=torch.long)
        return batch


class ClassificationCollator:
    """Right-padded ``input_ids``/``attention_mask`` (and ``token_type_ids``) with class ``labels``."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        features = [{k: r[k] for k in r if k in MODEL_KEYS} for r in rows]
        batch = dict(self.tokenizer.pad(features, return_tensors="pt"))
        batch["labels"] = torch.tensor([r["label"] for r in rows], dtype=torch.long)
        return batch
