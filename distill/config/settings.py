"""The top level of ``conf/config.yaml`` and the ``paths`` node, as Hydra schemas (the ``train`` node's
is :class:`distill.loop.settings.TrainSettings`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from distill.loop.settings import TrainSettings


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
    peft: Any = None  # peft=lora: LoRA adapters on the student (conf/peft/lora.yaml)
