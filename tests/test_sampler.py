"""The training sampler: an epoch's order, grouping by length, repositioning."""

from __future__ import annotations

import pytest
import torch

from distill.data import EpochSampler


def lengths(n: int = 1000) -> list[int]:
    return torch.randint(5, 90, (n,), generator=torch.Generator().manual_seed(0)).tolist()


def batches(sampler: EpochSampler) -> list[list[int]]:
    order = list(sampler)
    return [order[i : i + sampler.batch_size] for i in range(0, len(order), sampler.batch_size)]


def padding(groups: list[list[int]], sizes: list[int]) -> float:
    """The fraction of a right-padded batch's positions that are padding, over all batches."""
    total = sum(len(b) * max(sizes[i] for i in b) for b in groups)
    return 1 - sum(sizes) / total


def test_grouping_by_length_sees_every_example_once_with_less_padding():
    sizes = lengths()
    plain = EpochSampler(1000, seed=3, batch_size=48)
    grouped = EpochSampler(1000, seed=3, batch_size=48, lengths=sizes, group_by_length=10)
    assert sorted(grouped) == list(range(1000))
    assert padding(batches(grouped), sizes) < 0.15 < 0.3 < padding(batches(plain), sizes)
    assert [len(b) for b in batches(grouped)] == [48] * 20 + [40]  # the short batch stays last


def test_grouped_order_is_a_function_of_seed_and_epoch_and_can_resume():
    sizes = lengths()

    def sampler(seed: int, epoch: int, start: int = 0) -> list[int]:
        s = EpochSampler(1000, seed=seed, batch_size=32, lengths=sizes, group_by_length=8)
        s.set_position(epoch, start)
        return list(s)

    assert sampler(1, 0) == sampler(1, 0)
    assert sampler(1, 0) != sampler(1, 1) and sampler(1, 0) != sampler(2, 0)
    assert sampler(1, 1, start=5) == sampler(1, 1)[5 * 32 :]


def test_grouping_needs_one_length_per_example():
    with pytest.raises(ValueError, match="lengths has 3 entries for 4 examples"):
        EpochSampler(4, lengths=[1, 2, 3], group_by_length=2)
