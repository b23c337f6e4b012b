"""Metrics on generated text: checkable final answers, exact match, BLEU, chrF and ROUGE-L."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from typing import Any

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
    hits = sum(
        extract_answer(p) is not None and extract_answer(p) == extract_answer(a) for p, a in zip(predictions, answers)
    )
    return hits / len(answers)


# ----------------------------------------------------------------------------- text similarity


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Fraction of predictions equal to their reference after stripping outer whitespace."""
    _check_lengths(predictions, references)
    if not references:
        return 0.0
    return sum(p.strip() == r.strip() for p, r in zip(predictions, references)) / len(references)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU in [0, 100] (sacrebleu defaults: 13a tokenisation, 4-grams, exp smoothing)."""
    import sacrebleu

    _check_lengths(predictions, references)
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score) if references else 0.0


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF in [0, 100] (sacrebleu defaults: character 6-grams, beta 2)."""
    import sacrebleu

    _check_lengths(predictions, references)
    return float(sacrebleu.corpus_chrf(list(predictions), [list(references)]).score) if references else 0.0


@functools.cache
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer  # imported on first use: it pulls in nltk

    logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score logs "Using default tokenizer." at INFO
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F1 in [0, 1] over the pairs (rouge-score, its default tokeniser, no stemming).

    rouge-score's tokeniser keeps only lower-cased letters and digits; a pair of identical
    texts scores 1 even when that leaves no token (rouge-score alone would say 0).
    """
    _check_lengths(predictions, references)
    if not references:
        return 0.0
    scorer = _rouge_scorer()
    scores = [
        1.0 if p.strip() == r.strip() else scorer.score(r, p)["rougeL"].fmeasure
        for p, r in zip(predictions, references)
    ]
    return sum(scores) / len(scores)


def text_metrics(predictions: Sequence[str], references: Sequence[str], prefix: str = "") -> dict[str, float]:
    """``{prefix}bleu``, ``{prefix}chrf`` (0-100), ``{prefix}rougeL`` and ``{prefix}exact_match`` (0-1)."""
    return {
        f"{prefix}bleu": bleu(predictions, references),
        f"{prefix}chrf": chrf(predictions, references),
        f"{prefix}rougeL": rouge_l(predictions, references),
        f"{prefix}exact_match": exact_match(predictions, references),
    }


def _check_lengths(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
