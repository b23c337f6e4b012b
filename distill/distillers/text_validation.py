"""Validation by generated text, for the language and on-policy distillers.

The student's greedy outputs are scored against the references and against the teacher's
greedy outputs on the same prompts (generated once, cached on disk): ``bleu``/``chrf`` (0-100),
``rougeL`` (F1, 0-1) and ``exact_match``, the latter four also as ``agreement_*``; plus the
student's ``loss`` on the references and ``accuracy`` when the data has final answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from distill.inference.evaluation import evaluate_model
from distill.inference.generation import GenerationSettings, collect_prompts, decode_completion
from distill.inference.text_metrics import text_metrics
from distill.teacher.generations import TeacherGenerations

Batch = dict[str, Any]


class TextValidation:
    """``validate(student, loader) -> (metrics, rows)``; rows hold prompt/reference/teacher/student."""

    def __init__(self, generations: TeacherGenerations, max_new_tokens: int, task: str = "causal_lm") -> None:
        self.generations, self.max_new_tokens, self.task = generations, max_new_tokens, task
        self.teacher_texts: dict[str, str] = {}  # teacher output text per validation prompt

    def prepare(self, val_loader: Iterable[Batch]) -> dict[str, str]:
        """The teacher's output text per prompt of ``val_loader`` (the student's budget), from the
        cache or generated the first time a loader's prompts are seen."""
        prompts = collect_prompts(val_loader)
        if not prompts.keys() <= self.teacher_texts.keys():
            completions = self.generations(
                prompts, GenerationSettings(max_new_tokens=self.max_new_tokens), "validation"
            )
            tokenizer = self.generations.tokenizer
            self.teacher_texts.update({p: decode_completion(tokenizer, c[0]) for p, c in completions.items()})
        return self.teacher_texts

    def validate(
        self, student: nn.Module, val_loader: Iterable[Batch], chunk_size: int | str | None = None
    ) -> tuple[dict[str, float], list[dict[str, str]]]:
        teacher_texts = self.prepare(val_loader)
        tokenizer = self.generations.tokenizer
        metrics, samples = evaluate_model(
            student, val_loader, tokenizer, self.max_new_tokens, self.task, chunk_size=chunk_size
        )
        if not samples:
            return metrics, []
        student_texts = [s["output"] for s in samples]
        teacher = [teacher_texts[s["prompt"]] for s in samples]
        metrics.update(text_metrics(student_texts, [s["reference"] for s in samples]))
        metrics.update(text_metrics(student_texts, teacher, prefix="agreement_"))
        rows = [
            {"prompt": s["prompt"], "reference": s["reference"], "teacher": t, "student": s["output"]}
            for s, t in zip(samples, teacher)
        ]
        return metrics, rows
