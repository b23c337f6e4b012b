"""An embedded word-problem task in GSM8K's format, for pretrained instruct models.

Each example is a two-step word problem (several operations: a product then a sum, a difference, a
split), a worked answer with one line per step, and ``#### n`` with the final answer, as in GSM8K.
Numbers are small, so a 135M-parameter model can learn the task in minutes, and a base instruct model
does not solve them all. Validation and test problems are held out by a hash of the problem's text
(never in training), and everything is generated from a seed.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

from datasets import Dataset, DatasetDict

from distill.core.errors import DataError

NAMES = ("Ana", "Ben", "Mia", "Leo", "Zoe", "Sam", "Ivy", "Tom")
# (question, worked answer, result) from a name and numbers a, b, c drawn in [2, 12]
Template = Callable[[str, int, int, int], tuple[str, str, int] | None]


def _bags(name: str, a: int, b: int, c: int) -> tuple[str, str, int]:
    total = a + b * c
    return (f"{name} has {a} apples and buys {b} bags with {c} apples each. How many apples does {name} have now?",
            f"The bags hold {b} * {c} = {b * c} apples.\n{name} has {a} + {b * c} = {total} apples.\n#### {total}",
            total)  # fmt: skip


def _change(name: str, a: int, b: int, c: int) -> tuple[str, str, int] | None:
    paid, cost = 10 * a, b * c
    if cost >= paid:
        return None
    return (f"Pencils cost {c} dollars each. {name} buys {b} pencils and pays with {paid} dollars. "
            f"How much change does {name} get?",
            f"The pencils cost {b} * {c} = {cost} dollars.\nThe change is {paid} - {cost} = {paid - cost} dollars.\n"
            f"#### {paid - cost}", paid - cost)  # fmt: skip


def _pages(name: str, a: int, b: int, c: int) -> tuple[str, str, int]:
    total = a * b + c
    return (f"{name} reads {a} pages a day for {b} days, then {c} more pages. How many pages did {name} read?",
            f"In {b} days {name} reads {a} * {b} = {a * b} pages.\nIn all {a * b} + {c} = {total} pages.\n#### {total}",
            total)  # fmt: skip


def _cookies(name: str, a: int, b: int, c: int) -> tuple[str, str, int] | None:
    made = a * b
    if c >= made:
        return None
    return (f"{name} bakes {a} trays of {b} cookies and sells {c} cookies. How many cookies are left?",
            f"{name} bakes {a} * {b} = {made} cookies.\n{made} - {c} = {made - c} cookies are left.\n#### {made - c}",
            made - c)  # fmt: skip


def _share(name: str, a: int, b: int, c: int) -> tuple[str, str, int] | None:
    money = a * c + b
    return (f"{name} has {money} dollars, spends {b} dollars on a book and shares the rest equally among {c} "
            f"friends. How many dollars does each friend get?",
            f"After the book {name} has {money} - {b} = {a * c} dollars.\nEach friend gets {a * c} / {c} = {a} "
            f"dollars.\n#### {a}", a)  # fmt: skip


TEMPLATES: tuple[Template, ...] = (_bags, _change, _pages, _cookies, _share)


def _held_out(question: str, fraction: float) -> bool:
    digest = hashlib.sha256(question.encode()).digest()
    return int.from_bytes(digest[:4], "big") < fraction * 2**32


def make_word_problems(
    n_train: int = 2000, n_validation: int = 200, n_test: int = 200, seed: int = 1234, held_out_fraction: float = 0.2
) -> DatasetDict:
    """Train/validation/test splits with columns ``prompt`` (the question), ``response`` (the worked answer
    ending in ``#### n``) and ``answer`` (n); validation and test alternate over held-out problems."""
    rng = random.Random(seed)
    train: list[tuple[str, str, int]] = []
    held: dict[str, tuple[str, str, int]] = {}
    for _ in range(100 * (n_train + n_validation + n_test)):
        if len(train) >= n_train and len(held) >= n_validation + n_test:
            break
        made = rng.choice(TEMPLATES)(rng.choice(NAMES), *(rng.randint(2, 12) for _ in range(3)))
        if made is None:
            continue
        if not _held_out(made[0], held_out_fraction):
            if len(train) < n_train:
                train.append(made)
        elif len(held) < n_validation + n_test:
            held.setdefault(made[0], made)
    if len(held) < n_validation + n_test:
        raise DataError(f"only {len(held)} distinct held-out word problems: lower data.source.n_validation + n_test")
    problems = list(held.values())
    shared = 2 * min(n_validation, n_test)
    validation = problems[0:shared:2] + (problems[shared:] if n_validation > n_test else [])
    test = problems[1:shared:2] + (problems[shared:] if n_test >= n_validation else [])

    def rows(items: list[tuple[str, str, int]]) -> Dataset:
        return Dataset.from_dict({"prompt": [q for q, _, _ in items], "response": [r for _, r, _ in items],
                                  "answer": [str(n) for _, _, n in items]})  # fmt: skip

    return DatasetDict({"train": rows(train), "validation": rows(validation), "test": rows(test)})
