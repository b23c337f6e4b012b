"""Metrics on generated text: checkable final answers (more text metrics live beside these)."""

from __future__ import annotations

import re
from collections.abc import Sequence

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def extract_answer(text: str) -> str | None:
    """The last number in ``text``, without thousands separators; None if there is none."""
    found = _NUMBER.findall(text)
    return found[-1].replace(",", "") if found else None


def answer_accuracy(predictions: Sequence[str], answers: Sequence[str]) -> float:
    """Fraction of predictions whose final number equals the reference answer's."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers")
    if not answers:
        return 0.0
    hits = sum(extract_answer(p) is not None and extract_answer(p) == extract_answer(a) for p, a in zip(predictions, answers))
    return hits / len(answers)
