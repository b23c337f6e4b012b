"""Checkpoints: the student (safetensors), the optimizer, scheduler, RNG and data position,
written atomically; and the final student as ``save_pretrained``."""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model
from torch import nn

CHECKPOINT, STATE_FILE, WEIGHTS_FILE = "checkpoint", "trainer_state.pt", "student.safetensors"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out_dir: Path, student: nn.Module, state: dict[str, Any]) -> Path:
    """Write ``out_dir/checkpoint`` atomically: into a temp dir, then renamed over the old one.

    A failure at any point (disk full, ...) leaves the previous checkpoint as it was.
    """
    final, tmp, old = out_dir / CHECKPOINT, out_dir / f"{CHECKPOINT}.tmp", out_dir / f"{CHECKPOINT}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_model(student, str(tmp / WEIGHTS_FILE))
        torch.save(state, tmp / STATE_FILE)
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            old.rename(final)
        raise
    return final


def find_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint (``checkpoint``, else one left mid-rename as ``checkpoint.old``)."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        path = out_dir / name
        if (path / STATE_FILE).exists() and (path / WEIGHTS_FILE).exists():
            return path
    return None


def read_checkpoint_state(path: Path) -> dict[str, Any]:
    return torch.load(path / STATE_FILE, weights_only=True, map_location="cpu")


def save_student(student: nn.Module, tokenizer: Any, path: Path) -> None:
    """The trained student as safetensors: ``save_pretrained`` (+ tokenizer) for HF models."""
    path.mkdir(parents=True, exist_ok=True)
    if hasattr(student, "save_pretrained"):
        student.save_pretrained(path)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
    else:
        save_model(student, str(path / WEIGHTS_FILE))
