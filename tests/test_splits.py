"""The embedded arithmetic task's splits: held out from training, disjoint, and alike in difficulty."""

from __future__ import annotations

from distill.data.arithmetic import deal, make_splits


def operands(prompt: str) -> tuple[str, str]:
    a, b = prompt.removeprefix("What is ").split("?")[0].split(" + ")
    return a, b


def test_validation_and_test_are_held_out_disjoint_and_alike():
    splits = make_splits()
    train, val, test = (set(splits[s]["prompt"]) for s in ("train", "validation", "test"))
    assert len(val) == len(test) == 1000 and not (val & train) and not (test & train) and not (val & test)
    # Early draws are mostly easy (one-digit operands are half of all draws): dealt alternately, both
    # splits get the same share of two-digit + two-digit problems (taken in order, test had far more).
    hard = [sum(all(len(x) == 2 for x in operands(p)) for p in split) / 1000 for split in (val, test)]
    assert abs(hard[0] - hard[1]) < 0.03, hard


def test_deal_alternates_and_gives_the_rest_to_the_larger_split():
    assert deal(list(range(7)), 5, 2) == ([0, 2, 4, 5, 6], [1, 3])
    assert deal(list(range(5)), 1, 4) == ([0], [1, 2, 3, 4])
