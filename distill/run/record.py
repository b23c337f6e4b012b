"""What a run directory remembers across its segments (a run stopped and resumed is several).

Each launch in a run directory is a *segment*, recorded once and never overwritten:
``segments/<k>/`` holds its config, overrides (and Hydra's files when Hydra ran it) and
``segment.json`` (start step and time). The checkpoint holds the resolved config of the run, so a
resume is checked against what the run did: a changed key is refused, naming it, unless it is
safe to change (:data:`SAFE_TO_CHANGE`) or listed in ``train.resume_allow_changes``. A checkpoint
written before the package took its current layout names its targets by their old module paths
(:data:`MOVED_TARGETS`): they are read as their new names.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from distill.core.errors import ConfigError

# Keys (or prefixes) whose change does not alter what the student has learnt so far.
SAFE_TO_CHANGE = (
    "train.max_steps", "train.epochs", "train.eval_every", "train.log_every", "train.checkpoint_every",
    "train.keep_checkpoints", "train.progress", "train.resume", "train.resume_allow_changes", "train.device",
    "logger", "paths", "evaluate_teacher", "monitor", "data.eval_batch_size", "data.num_workers",
)  # fmt: skip
HYDRA_FILES = ("config.yaml", "overrides.yaml", "hydra.yaml")
# _target_ values of version 0.2 that moved with the code, and their names now.
MOVED_TARGETS = {
    "distill.tracking.WandbLogger": "distill.loggers.WandbLogger",
    "distill.tracking.NullLogger": "distill.loggers.NullLogger",
    "distill.student_init.student_from_teacher": "distill.models.student_from_teacher",
}


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _covered(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def check_resume(saved: dict[str, Any], current: dict[str, Any], allowed: Sequence[str] = ()) -> list[str]:
    """Refuse a resume whose config differs from the checkpoint's, except in safe or allowed keys.

    Returns the keys that differ and are allowed (to log them); raises one ConfigError line otherwise.
    """
    before = {k: MOVED_TARGETS.get(v, v) if k.endswith("_target_") else v for k, v in flatten(saved).items()}
    after = flatten(current)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k, "<unset>") != after.get(k, "<unset>"))
    refused = [k for k in changed if not _covered(k, SAFE_TO_CHANGE) and not _covered(k, allowed)]
    if refused:
        shown = ", ".join(f"{k} ({before.get(k, '<unset>')!r} -> {after.get(k, '<unset>')!r})" for k in refused[:6])
        more = f" and {len(refused) - 6} more" if len(refused) > 6 else ""
        raise ConfigError(
            f"train.resume=true with a config that differs from the checkpoint's: {shown}{more}; "
            "resume with the original values, or list the keys in train.resume_allow_changes"
        )
    return [k for k in changed if not k.startswith("train.resume")]


def record_segment(out: Path, cfg: DictConfig, overrides: list[str], start_step: int) -> Path:
    """Write ``segments/<k>/`` for this launch (k = the number of earlier segments)."""
    root = out / "segments"
    k = len([p for p in root.iterdir() if p.is_dir()]) if root.is_dir() else 0
    seg = root / str(k)
    seg.mkdir(parents=True)
    (seg / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (seg / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(list(overrides))))
    if (out / ".hydra" / "hydra.yaml").is_file():
        shutil.copy2(out / ".hydra" / "hydra.yaml", seg / "hydra.yaml")
    info = {"segment": k, "start_step": start_step, "started_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    (seg / "segment.json").write_text(json.dumps(info, indent=2) + "\n")
    return seg


def restore_hydra_files(out: Path) -> None:
    """Put the last recorded segment's files back into ``.hydra/`` (Hydra overwrote them at launch)."""
    root = out / "segments"
    segments = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: int(p.name)) if root.is_dir() else []
    if not segments or not (out / ".hydra").is_dir():
        return
    for name in HYDRA_FILES:
        if (segments[-1] / name).is_file():
            shutil.copy2(segments[-1] / name, out / ".hydra" / name)
