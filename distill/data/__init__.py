"""Datasets and loaders: the embedded arithmetic task, hub datasets, one preprocessing path."""

from distill.data.loaders import IGNORE_INDEX, EpochSampler, TaskData, ensure_pad_token

__all__ = ["IGNORE_INDEX", "EpochSampler", "TaskData", "ensure_pad_token"]
