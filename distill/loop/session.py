"""One training run's state as the loop carries it: the session, its history file, and how it is
checkpointed and resumed (on any number of processes)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from distill.core import ranks
from distill.core.errors import DistillError
from distill.loop.checkpoint import WEIGHTS_FILE, load_latest, rng_state, save_checkpoint, set_rng_state
from distill.loop.placement import gathered_state, load_gathered_state
from distill.loop.protocols import Logger, Trainable
from distill.loop.settings import TrainConfig

log = logging.getLogger(__name__)


class History:
    """Appends every logged dict to ``history.jsonl`` (the report's training curves) and the logger."""

    def __init__(self, out_dir: Path | None, logger: Logger | None) -> None:
        self.path = out_dir / "history.jsonl" if out_dir else None
        self.logger = logger

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        if self.logger is not None:
            self.logger.log(metrics, step=step)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, **metrics}) + "\n")


@dataclass
class Session:
    """One training run's moving parts; ``step``, ``micro`` and ``skipped`` are what a checkpoint restores."""

    distiller: Trainable
    cfg: TrainConfig
    out_dir: Path | None  # where this rank writes: None on ranks > 0
    read_dir: Path | None  # where checkpoints are read from (rank 0's output_dir, on every rank)
    strategy: str
    student: torch.nn.Module  # the bare student (the distiller may hold a DDP wrapper of it)
    params: list[torch.nn.Parameter]
    opt: torch.optim.Optimizer
    scheduler: Any
    batch_size: int
    grad_accum: int
    total: int
    record: History
    extra_state: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    micro: int = 0  # this rank's micro-batches so far
    skipped: int = 0
    train_seconds: float = 0.0  # wall time spent in training steps (evaluation and checkpoints excluded)

    @property
    def world(self) -> int:
        """Processes training this student (1 with strategy single, even inside a process group)."""
        return 1 if self.strategy == "single" else ranks.world()

    def gather(self, value: Any) -> list[Any]:
        return [value] if self.world == 1 else ranks.gather_objects(value)

    def barrier(self) -> None:
        if self.world > 1:
            ranks.barrier()


def resume(s: Session) -> None:
    """With ``train.resume``, load the newest readable checkpoint (written by any number of processes)."""
    if not s.cfg.resume:
        return
    found = load_latest(s.read_dir) if s.read_dir is not None else None
    if found is None:
        log.warning("train.resume=true but no checkpoint in %s: starting from scratch", s.read_dir)
        return
    ckpt, state = found
    extra = extra_modules(s.distiller)
    if extra is not None:  # before the optimizer state, which is keyed by their parameter names too
        extra.load_state_dict(state["extra_modules"])
    load_gathered_state(s.distiller.student, s.opt, str(ckpt / WEIGHTS_FILE), state["optimizer"], s.strategy, extra)
    s.scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    global_batch = state.get("global_batch", s.batch_size * s.grad_accum)
    s.grad_accum, rest = divmod(global_batch, s.batch_size * s.world)
    if rest or s.grad_accum < 1:
        raise DistillError(
            f"the checkpoint's global batch of {global_batch} examples is not data.batch_size={s.batch_size} x "
            f"{s.world} processes x an integer train.grad_accum: resume on a number of processes that divides it"
        )
    s.step, s.micro, s.skipped = state["step"], state["micro"] // s.world, state.get("skipped", 0)
    s.train_seconds = state.get("train_seconds", 0.0)
    log.info("resumed from %s at step %d", ckpt, s.step)


def extra_modules(distiller: Trainable) -> torch.nn.Module | None:
    return distiller.extra_modules() if hasattr(distiller, "extra_modules") else None


def checkpoint(s: Session) -> Path | None:
    """Gather the student and optimizer (every rank takes part); rank 0 writes them. A failed write
    raises one line."""
    if s.read_dir is None:
        return None
    extra = extra_modules(s.distiller)
    weights, optim = gathered_state(s.distiller.student, s.opt, s.strategy, extra)
    path = None
    if s.out_dir is not None:
        state = {
            "step": s.step,
            "micro": s.micro * s.world,  # global micro-batches: the data position on any number of ranks
            "global_batch": s.batch_size * s.world * s.grad_accum,
            "skipped": s.skipped,
            "train_seconds": s.train_seconds,
            "optimizer": optim,
            "scheduler": s.scheduler.state_dict(),
            "rng": rng_state(),
            "config": asdict(s.cfg),
            "extra_modules": extra.state_dict() if extra is not None else {},
            **s.extra_state,
        }
        path = save_checkpoint(s.out_dir, weights, state, keep=s.cfg.keep_checkpoints)
    s.barrier()
    return path
