"""The embedded task: multi-digit addition with a step-by-step rationale.

Each example is a prompt (``"What is 47 + 385?\\n"``), a response that works column by
column from the ones digit and ends with ``"Answer: 432"``, and the exact ``answer``.
The reference rationales are deliberately messy, the way human-written chains of thought are:
several phrasings, and with probability ``noise`` one step carries an arithmetic slip.
The final answer in the reference is always right, so accuracy is checked exactly, while a
teacher trained on this data can write cleaner rationales than the gold ones.

Everything is generated from a seed, so every process builds byte-identical splits.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from datasets import Dataset, DatasetDict
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from distill.core.errors import ConfigError, DataError

PAD, EOS = "<pad>", "<eos>"

# One step of the column-wise sum. {x}+{y}(+{c}) is the column sum {s}; {d} is written, {k} carried.
_STEP_TEMPLATES = (
    "{terms}={s}, write {d} carry {k}.",
    "{terms} is {s}; put down {d}, carry {k}.",
    "column: {terms}={s} -> {d} c{k}.",
)
_ANSWER_TEMPLATES = ("Answer: {n}", "So the answer is: {n}")


@dataclass(frozen=True)
class Problem:
    a: int
    b: int

    @property
    def answer(self) -> int:
        return self.a + self.b

    @property
    def prompt(self) -> str:
        return f"What is {self.a} + {self.b}?\n"


def rationale(p: Problem, rng: random.Random, noise: float) -> str:
    """Gold response for ``p``: one step per column, ones first, then the final answer."""
    da, db = str(p.a)[::-1], str(p.b)[::-1]
    template = rng.choice(_STEP_TEMPLATES)
    sep = rng.choice((" ", "\n"))
    slip_at = rng.randrange(max(len(da), len(db))) if rng.random() < noise else -1
    steps, carry = [], 0
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        terms = f"{x}+{y}" + (f"+{carry}" if carry else "")
        shown = s + rng.choice((-1, 1)) if i == slip_at else s  # the slip is in the text only
        if template[0] == "{" and " is " in template:
            terms = terms.replace("+", " plus ")
        steps.append(template.format(terms=terms, s=shown, d=s % 10, k=s // 10))
        carry = s // 10
    return sep.join(steps) + sep + rng.choice(_ANSWER_TEMPLATES).format(n=p.answer)


def _number(rng: random.Random, min_digits: int, max_digits: int) -> int:
    digits = rng.randint(min_digits, max_digits)
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)


def _problems(n: int, rng: random.Random, min_digits: int, max_digits: int) -> list[Problem]:
    return [Problem(_number(rng, min_digits, max_digits), _number(rng, min_digits, max_digits)) for _ in range(n)]


def is_held_out(p: Problem, fraction: float) -> bool:
    """Whether ``p`` belongs to the held-out part of the problem space: a hash of the problem, so
    the split is the same for every size of the data and every kind of problem is in both parts."""
    digest = hashlib.sha256(f"{p.a}+{p.b}".encode()).digest()
    return int.from_bytes(digest[:4], "big") < fraction * 2**32


def deal(problems: list[Problem], n_first: int, n_second: int) -> tuple[list[Problem], list[Problem]]:
    """Alternate ``problems`` between two lists of ``n_first`` and ``n_second`` (the longer one takes the rest)."""
    shared = 2 * min(n_first, n_second)
    first, second = problems[0:shared:2], problems[1:shared:2]
    rest = problems[shared : n_first + n_second]
    return (first + rest, second) if n_first > n_second else (first, second + rest)


def make_splits(
    n_train: int = 20000,
    n_validation: int = 1000,
    n_test: int = 1000,
    min_digits: int = 1,
    max_digits: int = 2,
    noise: float = 0.15,
    seed: int = 1234,
    held_out_fraction: float = 0.3,
) -> DatasetDict:
    """Deterministic train/validation/test splits with columns ``prompt``, ``response``, ``answer``.

    Problems are drawn as numbers of ``min_digits`` to ``max_digits`` digits. A fixed
    ``held_out_fraction`` of all problems (chosen by hash) never occurs in train; validation and
    test are distinct problems drawn from that part, dealt out alternately in the order they were
    first drawn, so the two follow one distribution (the easy problems, drawn early and often, are
    not all in one of them).
    Validation/test responses are clean (noise 0): they are references for text metrics.
    """
    rng = random.Random(seed)
    train: list[Problem] = []
    held_out: dict[Problem, None] = {}  # unique, in order of drawing
    for _ in range(100 * (n_train + n_validation + n_test)):
        if len(train) >= n_train and len(held_out) >= n_validation + n_test:
            break
        p = Problem(_number(rng, min_digits, max_digits), _number(rng, min_digits, max_digits))
        if not is_held_out(p, held_out_fraction):
            if len(train) < n_train:
                train.append(p)
        elif len(held_out) < n_validation + n_test:
            held_out[p] = None
    if len(held_out) < n_validation + n_test:
        raise DataError(
            f"only {len(held_out)} distinct held-out problems of at most {max_digits} digits: "
            f"lower data.source.n_validation + n_test ({n_validation + n_test}) or raise max_digits"
        )
    validation, test = deal(list(held_out), n_validation, n_test)

    def rows(problems: list[Problem], noise_: float) -> dict[str, list]:
        return {
            "prompt": [p.prompt for p in problems],
            "response": [rationale(p, rng, noise_) for p in problems],
            "answer": [str(p.answer) for p in problems],
        }

    return DatasetDict(
        train=Dataset.from_dict(rows(train, noise)),
        validation=Dataset.from_dict(rows(validation, 0.0)),
        test=Dataset.from_dict(rows(test, 0.0)),
    )


# How build_tokenizer's pre-tokenizer cuts text before BPE merges: words and punctuation runs with their
# leading space, and numbers digit by digit (" 7" is one token, "12" two) or whole (merges may join digits).
NUMBERS = {"digits": r" ?\d", "whole": r" ?\d+"}


def build_tokenizer(vocab_size: int = 160, seed: int = 0, numbers: str = "digits") -> PreTrainedTokenizerFast:
    """A small byte-level BPE trained on generated task text, digits kept as single tokens (``numbers="digits"``)
    or free to merge (``"whole"``: another tokenizer for the same text, whose tokens cross the first one's
    boundaries; the cross-tokenizer experiment's student).

    Built with the ``tokenizers`` library and wrapped as a transformers tokenizer, with
    distinct ``<pad>`` and ``<eos>`` tokens. Deterministic for a given ``seed``.
    """
    if numbers not in NUMBERS:
        raise ConfigError(f"model.tokenizer.numbers={numbers!r} is invalid: must be one of {', '.join(NUMBERS)}")
    rng = random.Random(seed)
    corpus = [p.prompt + rationale(p, rng, 0.2) for p in _problems(4000, rng, 1, 4)]
    tok = Tokenizer(models.BPE())
    pattern = NUMBERS[numbers] + r"| ?[A-Za-z]+| ?[^\sA-Za-z\d]+|\s+"
    words = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [words, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS],
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS)
