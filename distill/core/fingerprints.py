"""Fingerprints: stable hashes that key the caches (teacher, generations, teacher logits)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase


def sha256_json(obj: Any) -> str:
    """sha256 hex digest of ``obj`` as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def model_fingerprint(model: nn.Module) -> str:
    """sha256 of a model's config and generation config (its decoding defaults, e.g. a repetition
    penalty) and of every tensor of its state dict (names, dtypes, bytes)."""
    h = hashlib.sha256()
    for config in (getattr(model, "config", None), getattr(model, "generation_config", None)):
        if config is not None and hasattr(config, "to_json_string"):
            h.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)  # 1-D: a dtype view needs at least one dim
        h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """sha256 of the vocabulary and the special-token ids."""
    special = {"pad": tokenizer.pad_token_id, "eos": tokenizer.eos_token_id, "bos": tokenizer.bos_token_id}
    return sha256_json({"vocab": sorted(tokenizer.get_vocab().items()), "special": special})


def files_fingerprint(directory: Path, patterns: tuple[str, ...] = ("*.safetensors", "*.bin", "config.json")) -> str:
    """sha256 of a model directory's weight and config files (names and bytes), without loading a model."""
    h = hashlib.sha256()
    for path in sorted(p for pattern in patterns for p in directory.glob(pattern)):
        h.update(f"{path.name}:{path.stat().st_size}".encode())
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
    return h.hexdigest()


def dataset_fingerprint(dataset: Any, columns: tuple[str, ...] = ("input_ids", "labels", "label")) -> str:
    """sha256 of a tokenized ``datasets.Dataset``'s token and label columns."""
    present = [c for c in columns if c in dataset.column_names]
    return sha256_json({c: dataset.data.column(c).to_pylist() for c in present})
