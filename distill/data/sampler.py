"""The order examples come in: the training sampler (a reshuffle per epoch, a pure function of
(seed, epoch), optionally grouping examples of similar length) and a loader's dataset read once in order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

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

    With ``lengths`` and ``group_by_length = g > 1`` (shuffled runs only), each window of ``g``
    batches of the shuffled order is sorted by length and cut into batches, and the epoch's full
    batches are then shuffled (a short last batch stays last): batches hold examples of similar
    length, so less of each is padding, while every example is still seen once per epoch.
    """

    def __init__(
        self,
        n: int,
        seed: int = 0,
        shuffle: bool = True,
        batch_size: int = 1,
        lengths: Sequence[int] | None = None,
        group_by_length: int = 0,
    ) -> None:
        if lengths is not None and len(lengths) != n:
            raise ValueError(f"lengths has {len(lengths)} entries for {n} examples")
        self.n, self.seed, self.shuffle, self.batch_size = n, seed, shuffle, batch_size
        self.lengths, self.group_by_length = lengths, group_by_length
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
        if self.shuffle and self.lengths is not None and self.group_by_length > 1:
            batches = grouped_by_length(order, self.lengths, self.batch_size, self.group_by_length, g)
        if self.world > 1:
            batches = batches[: len(batches) - len(batches) % self.world]
        return batches[self.rank :: self.world][self.start :]

    def __iter__(self) -> Iterator[int]:
        return iter([i for batch in self._batches() for i in batch])

    def __len__(self) -> int:
        return sum(len(batch) for batch in self._batches())


def grouped_by_length(
    order: list[int], lengths: Sequence[int], batch_size: int, group: int, generator: torch.Generator
) -> list[list[int]]:
    """``order`` cut into windows of ``group * batch_size`` examples, each sorted by length (longest
    first) and cut into batches; the full batches shuffled with ``generator``, a short one kept last."""
    window = group * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        part = sorted(order[start : start + window], key=lambda i: -lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    return shuffled + [b for b in batches if len(b) < batch_size]


def in_dataset_order(loader: DataLoader, batch_size: int | None = None) -> DataLoader:
    """The same dataset and collator, read once in dataset order (the sampler's shuffle and position ignored)."""
    size = batch_size or loader.batch_size or 64
    return DataLoader(loader.dataset, batch_size=size, shuffle=False, collate_fn=loader.collate_fn)
