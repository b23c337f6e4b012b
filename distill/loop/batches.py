"""The order training batches come in: epoch after epoch, resumable at any micro-batch."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from distill.data.sampler import EpochSampler


def _iter_without_rng(loader: Iterable[Any]) -> Iterator[Any]:
    """``iter(loader)`` without touching the global RNG (a DataLoader draws a base seed from it),
    so a resumed run's dropout masks match the uninterrupted run's exactly."""
    with torch.random.fork_rng(devices=[]):
        return iter(loader)


def batches_from(loader: Iterable[Any], micro: int, batches_per_epoch: int) -> Iterator[Any]:
    """Endless micro-batches starting at this rank's micro-batch index ``micro`` (epoch after epoch)."""
    for epoch in itertools.count(micro // batches_per_epoch):
        offset = micro - epoch * batches_per_epoch if epoch == micro // batches_per_epoch else 0
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, EpochSampler):  # jump straight to the position: no data is read twice
            sampler.set_position(epoch, offset)
            yield from _iter_without_rng(loader)
        else:
            yield from itertools.islice(_iter_without_rng(loader), offset, None)
