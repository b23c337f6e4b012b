"""Experiment loggers, one per ``conf/logger`` option: Weights & Biases, or nothing."""

from distill.loggers.null import NullLogger
from distill.loggers.wandb import WandbLogger

__all__ = ["NullLogger", "WandbLogger"]
