"""The training loop, its settings, checkpoints, placement and signal handling; it knows distillers and
loggers only through the protocols in :mod:`distill.loop.protocols`."""

from distill.loop.checkpoint import checkpoint_dirs, load_latest, read_checkpoint_state, save_student
from distill.loop.fit import fit, total_steps
from distill.loop.placement import resolve_device
from distill.loop.protocols import Logger, Trainable
from distill.loop.settings import TrainConfig, TrainSettings
from distill.loop.signals import Interrupted

__all__ = [
    "Interrupted",
    "Logger",
    "TrainConfig",
    "TrainSettings",
    "Trainable",
    "checkpoint_dirs",
    "fit",
    "load_latest",
    "read_checkpoint_state",
    "resolve_device",
    "save_student",
    "total_steps",
]
