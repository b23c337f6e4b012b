"""Datasets and loaders: the embedded arithmetic task, hub datasets, one preprocessing path."""

from distill.data.sampler import EpochSampler
from distill.data.sequences import IGNORE_INDEX
from distill.data.task import TASKS, TaskData

__all__ = ["IGNORE_INDEX", "TASKS", "EpochSampler", "TaskData"]
