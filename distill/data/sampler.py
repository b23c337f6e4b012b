"""The order examples come in: the training sampler (a reshuffle per epoch, a pure function of
(seed, epoch)) and a loader's dataset read once in order."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler


class EpochSampler(Sampler[int]):
    """Shuffles with a generator seeded by (seed, epoch) and can start mid-epoch.

    The order of epoch e is a pure function of (seed, e), so a resumed run sees exactly the
    batches the interrupted one would have seen: set ``epoch`` and ``start`` (in samples).
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        return iter(order[self.start :])

    def __len__(self) -> int:
        return self.n - self.start


def in_dataset_order(loader: DataLoader, batch_size: int | None = None) -> DataLoader:
    """The same dataset and collator, read once in dataset order (the sampler's shuffle and position ignored)."""
    size = batch_size or loader.batch_size or 64
    return DataLoader(loader.dataset, batch_size=size, shuffle=False, collate_fn=loader.collate_fn)
