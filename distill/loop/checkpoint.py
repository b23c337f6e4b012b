"""Checkpoints: the student (safetensors), the optimizer, scheduler, RNG and data position.

Layout: ``<run>/checkpoints/step-000120/{student.safetensors, trainer_state.pt}``. A checkpoint is
written into ``step-N.<pid>.tmp`` and renamed when complete (:func:`~distill.core.disk_cache.write_atomic`),
so a directory without the suffix is always whole; the newest ``keep`` are kept. Reading one that
turns out to be unreadable (truncated, corrupted) falls back to the one before it, with one line
saying so.
"""

from __future__ import annotations

import logging
import pickle
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file, save_model
from torch import nn

from distill.core.disk_cache import write_atomic
from distill.core.errors import DistillError, first_line
from distill.models.lora import merged_copy

log = logging.getLogger(__name__)
CHECKPOINTS, STATE_FILE, WEIGHTS_FILE = "checkpoints", "trainer_state.pt", "student.safetensors"
UNREADABLE = (OSError, EOFError, RuntimeError, ValueError, KeyError, pickle.UnpicklingError, SafetensorError)


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


def checkpoint_dirs(out_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, newest first."""
    root = out_dir / CHECKPOINTS
    found = [p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp")] if root.is_dir() else []
    return sorted(found, key=lambda p: int(p.name.removeprefix("step-")), reverse=True)


def save_checkpoint(out_dir: Path, student: nn.Module | dict, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``checkpoints/step-<state['step']>`` atomically and keep the newest ``keep``.

    ``student`` is the module (tied weights saved once) or a full state dict (gathered under FSDP2).

    A failure (disk full, ...) removes the partial files, leaves every earlier checkpoint as it
    was, and raises one :class:`DistillError` line.
    """
    final = out_dir / CHECKPOINTS / f"step-{state['step']:06d}"

    def write(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        if isinstance(student, nn.Module):
            save_model(student, str(tmp / WEIGHTS_FILE))
        else:
            save_file({k: v.contiguous() for k, v in student.items()}, str(tmp / WEIGHTS_FILE))
        torch.save(state, tmp / STATE_FILE)

    try:
        write_atomic(final, write)
    except (OSError, SafetensorError) as e:
        previous = next((p for p in checkpoint_dirs(out_dir) if p != final), None)
        kept = f"the previous checkpoint {previous} is intact" if previous else "there is no earlier checkpoint"
        raise DistillError(f"could not write the checkpoint of step {state['step']} ({_reason(e)}); {kept}") from None
    for old in checkpoint_dirs(out_dir)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_checkpoint_state(path: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint directory (``weights_only``: no code is run from it)."""
    with warnings.catch_warnings():  # torch warns about pickle protocols of damaged files; the error says it all
        warnings.simplefilter("ignore", UserWarning)
        return torch.load(path / STATE_FILE, weights_only=True, map_location="cpu")


def load_latest(out_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint as ``(path, trainer state)``; None if the run has none.

    An unreadable one is skipped with one warning naming the file; if none can be read, one
    :class:`DistillError` line names the newest.
    """
    found = checkpoint_dirs(out_dir)
    problems = []
    for path in found:
        for name in (STATE_FILE, WEIGHTS_FILE):
            if not (path / name).is_file():
                problems.append(f"{path / name}: missing")
                break
        else:
            try:
                state = read_checkpoint_state(path)
                load_file(str(path / WEIGHTS_FILE))  # readable as a whole before anything is loaded
                return path, state
            except UNREADABLE as e:
                problems.append(f"{_culprit(path, e)}: {_reason(e)}")
        fallback = "; falling back to the one before" if path != found[-1] else ""
        log.warning("checkpoint %s is unreadable%s", problems[-1], fallback)
    if problems:
        raise DistillError(f"no readable checkpoint in {out_dir / CHECKPOINTS} ({problems[0]})")
    return None


def _culprit(path: Path, error: Exception) -> Path:
    return path / (WEIGHTS_FILE if isinstance(error, SafetensorError) else STATE_FILE)


def _reason(error: Exception) -> str:
    """The first sentence of an error; never torch's advice to load an untrusted file unsafely."""
    if isinstance(error, pickle.UnpicklingError):
        return "not a trainer state a safe load accepts (corrupted, or it holds code objects)"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return first_line(error).split(". ")[0].rstrip(".")


def save_student(student: nn.Module, tokenizer: Any, path: Path, weights: dict | None = None) -> None:
    """The trained student as safetensors: ``save_pretrained`` (+ tokenizer) for HF models, a LoRA student
    with its adapters merged (plain transformers loads it). ``weights``: its full state dict when the module
    itself is sharded (FSDP2)."""
    student = merged_copy(student)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if hasattr(student, "save_pretrained"):
            student.save_pretrained(path, state_dict=weights)
            if tokenizer is not None:
                tokenizer.save_pretrained(path)
        else:
            save_model(student, str(path / WEIGHTS_FILE))
    except (OSError, SafetensorError) as e:
        raise DistillError(f"could not save the trained student to {path} ({_reason(e)})") from None
