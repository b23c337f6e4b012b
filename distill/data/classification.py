"""The embedded classification task: how many carries does the column method make in a + b?

Each example is the arithmetic task's prompt (``"What is 487 + 356?\\n"``) labelled with the number
of columns, ones first, whose digit sum plus the incoming carry reaches 10 (here 2: 7+6=13, then
8+5+1=14, then 4+3+1=8), so the classes are 0 .. ``max_digits``. Deciding it needs the digit sums
of every column and the carry passed between them (a carry-propagation chain, like 55 + 45), near
whose thresholds a teacher's soft predictions carry information that the hard label does not.

Classes are balanced in every split; problems are drawn like :func:`distill.data.arithmetic.make_splits`
(numbers of 1 to ``max_digits`` digits) and validation and test problems never occur in training
(a fixed, hashed part of all problems). Deterministic for a seed.

With the embedded tokenizer a BERT classifier needs no special tokens: every text starts with the
same word ("What"), so position 0, which BERT's pooler reads, plays ``[CLS]``'s part, and the
``token_type_ids`` BERT expects default to zeros (the tokenizer returns none; the collator pads what
it returns).

(A first design, "is this worked addition correct?" with one slipped step or a wrong final answer,
was dropped: such a check is an interaction of two digits far apart, and a 4 x 128 BERT stayed at
chance for 1,000 steps, a 2 x 64 one reached 0.56 after 5,000.)
"""

from __future__ import annotations

import random

from datasets import Dataset, DatasetDict

from distill.core.errors import DataError
from distill.data.arithmetic import Problem, is_held_out


def carries(a: int, b: int) -> int:
    """Columns of ``a + b`` (ones first) whose digit sum plus the incoming carry is at least 10."""
    count = carry = 0
    while a or b:
        carry = int(a % 10 + b % 10 + carry >= 10)
        count += carry
        a, b = a // 10, b // 10
    return count


def _number(rng: random.Random, max_digits: int) -> int:
    digits = rng.randint(1, max_digits)
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)


def _balanced(
    sizes: dict[str, int], max_digits: int, held_out_fraction: float, rng: random.Random
) -> dict[str, list[Problem]]:
    """Problems per split, ``sizes[split] // classes`` of each class (the remainder to the lowest classes):
    train from the part never held out (repeats allowed), validation and test distinct held-out ones."""
    classes = max_digits + 1
    quota = {s: [n // classes + (c < n % classes) for c in range(classes)] for s, n in sizes.items()}
    found: dict[str, list[Problem]] = {s: [] for s in sizes}
    seen: set[Problem] = set()
    for _ in range(1000 * sum(sizes.values())):
        if not any(any(q) for q in quota.values()):
            return found
        p = Problem(_number(rng, max_digits), _number(rng, max_digits))
        label = carries(p.a, p.b)
        held = is_held_out(p, held_out_fraction)
        # held out: to the split with more room left for this class, so both get early and late draws alike
        split = "train" if not held else max(("validation", "test"), key=lambda s: quota[s][label])
        if not quota[split][label] or (held and p in seen):
            continue
        quota[split][label] -= 1
        found[split].append(p)
        seen.add(p)
    raise DataError(f"too few distinct held-out problems of at most {max_digits} digits for every class: "
                    "lower data.source.n_validation and n_test, or raise data.source.max_digits")  # fmt: skip


def make_carry_splits(
    n_train: int = 20000,
    n_validation: int = 1000,
    n_test: int = 1000,
    max_digits: int = 3,
    seed: int = 1234,
    held_out_fraction: float = 0.3,
) -> DatasetDict:
    """Deterministic train/validation/test splits with columns ``text`` (the prompt ``What is a + b?``)
    and ``label`` (the number of carries, 0 .. ``max_digits``), classes balanced, shuffled."""
    if not 1 <= max_digits <= 9:
        raise DataError(f"data.source.max_digits={max_digits} is invalid: must be in [1, 9]")
    rng = random.Random(seed)
    sizes = {"train": n_train, "validation": n_validation, "test": n_test}
    problems = _balanced(sizes, max_digits, held_out_fraction, rng)
    splits = {}
    for name, found in problems.items():
        rng.shuffle(found)
        splits[name] = Dataset.from_dict(
            {"text": [p.prompt for p in found], "label": [carries(p.a, p.b) for p in found]}
        )
    return DatasetDict(splits)
