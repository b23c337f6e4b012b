"""The order examples come in: the training sampler (a reshuffle per epoch, a pure function of
(seed, epoch)) and a loader's dataset read once in order."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler


class EpochSampler(Sampler[int]):
    """Shuffles with a generator seeded by (seed, epoch), deals whole batches to ranks, and can start
    mid-epoch.

    The order of epoch e is a pure function of (seed, e): its batches of ``batch_size`` are the
    global micro-batches 0, 1, 2, ...; rank r of ``world`` takes those numbered r, r + world, ...
    (with more than one rank, the last ``batches % world`` are dropped so every rank has as many).
    So a step of ``world`` ranks sees the same batches as one process with ``grad_accum = world``,
    and a resumed run sees exactly the batches the interrupted one would have seen.
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True, batch_size: int = 1) -> None:
        self.n, self.seed, self.shuffle, self.batch_size = n, seed, shuffle, batch_size
        self.rank, self.world = 0, 1
        self.epoch, self.start = 0, 0

    def set_ranks(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        """Start at this rank's batch ``start_batch`` of ``epoch``."""
        self.epoch, self.start = epoch, start_batch

    def _batches(self) -> list[list[int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        batches = [order[i : i + self.batch_size] for i in range(0, self.n, self.batch_size)]
        if self.world > 1:
            batches = batches[: len(batches) - len(batches) % self.world]
        return batches[self.rank :: self.world][self.start :]

    def __iter__(self) -> Iterator[int]:
        return iter([i for batch in self._batches() for i in batch])

    def __len__(self) -> int:
        return sum(len(batch) for batch in self._batches())


def in_dataset_order(loader: DataLoader, batch_size: int | None = None) -> DataLoader:
    """The same dataset and collator, read once in dataset order (the sampler's shuffle and position ignored)."""
    size = batch_size or loader.batch_size or 64
    return DataLoader(loader.dataset, batch_size=size, shuffle=False, collate_fn=loader.collate_fn)
