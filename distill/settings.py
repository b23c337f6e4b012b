"""Every default of the loop, the paths and the run, once.

These dataclasses are Hydra's schemas for the ``train`` and ``paths`` nodes and the top level
(registered by :mod:`distill.schemas`), so Hydra refuses a wrong type or an unknown key, and
the yaml files only override them. The Python API uses the same classes
(``distiller.train(max_steps=...)`` builds a :class:`TrainConfig`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING

from distill.errors import require

CACHE_ENV, DEFAULT_CACHE = "DISTILL_CACHE", "~/.cache/distill"
NONFINITE_POLICIES = ("stop", "skip")
PRECISIONS = ("auto", "fp32", "bf16")


def cache_dir(path: str | None = None, sub: str = "") -> Path:
    """``path`` if given, else ``$DISTILL_CACHE``, else ``~/.cache/distill``; then ``/sub``."""
    root = path or os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(root).expanduser() / sub


@dataclass
class TrainSettings:
    """The loop's options: the ``train`` node of ``train.py``."""

    max_steps: int | None = 1500  # optimizer steps; null: run ``epochs`` epochs
    epochs: int | None = None  # if both are set, whichever ends first
    grad_accum: int = 1  # micro-batches per optimizer step
    max_grad_norm: float | None = 1.0  # null: no clipping
    lr_scheduler: str = "cosine"  # any name transformers.get_scheduler knows
    warmup_steps: int = 50
    eval_every: int = 500  # 0: only at the end
    log_every: int = 10
    checkpoint_every: int = 0  # 0: only at the end
    keep_checkpoints: int = 2  # the newest N are kept; an unreadable one falls back to the one before
    device: str = "auto"  # auto: this rank's GPU if there is one, else the CPU
    strategy: str = "auto"  # auto | single | ddp | fsdp (auto: ddp under torchrun, else single)
    shard_teacher: bool = False  # under torchrun: shard the teacher with FSDP2 (else replicated per rank)
    num_threads: int | None = None  # CPU threads; null: all cores, or cores // n_jobs under a parallel launcher
    precision: str = "auto"  # auto: bf16 autocast on GPUs that support it, else fp32
    resume: bool = False  # continue from the newest checkpoint in the run directory
    resume_allow_changes: list[str] = field(default_factory=list)  # config keys (or prefixes) a resume may change
    on_nonfinite: str = "stop"  # stop: fail naming the step; skip: drop the batch's update
    progress: bool = True
    desc: str = "train"  # the progress bar's label


# Keys the runner sets itself, and where a user sets them instead.
RUNNER_KEYS = {"seed": "the top-level seed (seed=N)", "output_dir": "hydra.run.dir (or hydra.sweep.dir under -m)"}


@dataclass
class TrainConfig(TrainSettings):
    """Everything :func:`distill.loop.fit` takes: the ``train`` options, the keys the runner sets
    (``seed``, ``output_dir``) and, for the Python API without an optimizer, AdamW's ``lr`` and
    ``weight_decay``. Values are checked here, one line per problem."""

    seed: int = 0
    output_dir: str | None = None
    lr: float = 5e-4
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        def positive(key: str, value: Any, none_ok: bool = False) -> None:
            ok = (none_ok and value is None) or (isinstance(value, int) and not isinstance(value, bool) and value > 0)
            require(ok, f"train.{key}", value, "must be a positive integer" + (" or null" if none_ok else ""))

        positive("max_steps", self.max_steps, none_ok=True)
        positive("epochs", self.epochs, none_ok=True)
        require(
            self.max_steps is not None or self.epochs is not None, "train.max_steps", None, "set max_steps or epochs"
        )
        positive("grad_accum", self.grad_accum)
        positive("log_every", self.log_every)
        positive("keep_checkpoints", self.keep_checkpoints)
        positive("num_threads", self.num_threads, none_ok=True)
        for key in ("eval_every", "checkpoint_every", "warmup_steps"):
            value = getattr(self, key)
            require(isinstance(value, int) and value >= 0, f"train.{key}", value, "must be an integer >= 0")
        require(
            self.max_grad_norm is None or (isinstance(self.max_grad_norm, (int, float)) and self.max_grad_norm > 0),
            "train.max_grad_norm",
            self.max_grad_norm,
            "must be > 0 (0 would freeze the weights), or null for no clipping",
        )
        require(
            self.on_nonfinite in NONFINITE_POLICIES, "train.on_nonfinite", self.on_nonfinite, "must be stop or skip"
        )
        require(
            self.precision in PRECISIONS, "train.precision", self.precision, f"must be one of {', '.join(PRECISIONS)}"
        )
        require(isinstance(self.lr, (int, float)) and self.lr > 0, "lr", self.lr, "must be > 0")


@dataclass
class PathSettings:
    """Where runs and caches go: the ``paths`` node (the one place they are set)."""

    cache_dir: str = "${distill_cache:}"  # $DISTILL_CACHE, else ~/.cache/distill (resolver: cache_dir())
    output_root: str = "outputs"  # run directories: <output_root>/<date>/<time>, sweeps under multirun/


@dataclass
class RunSettings:
    """The top level of ``conf/config.yaml``; the groups are filled by the defaults list."""

    seed: int = 0
    monitor: str = "accuracy"  # train.py returns the student's val/<monitor> (what a sweeper optimises)
    evaluate_teacher: bool = True  # also evaluate the teacher at the end (teacher/* in metrics.json)
    train: TrainSettings = field(default_factory=TrainSettings)
    paths: PathSettings = field(default_factory=PathSettings)
    model: Any = MISSING
    distiller: Any = MISSING
    data: Any = MISSING
    optimizer: Any = MISSING
    logger: Any = MISSING
