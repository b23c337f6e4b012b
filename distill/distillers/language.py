"""Sequence-level distillation (Kim & Rush 2016): the student learns the teacher's generated text."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.core.errors import is_number, require, require_fraction
from distill.distillers.base import Batch, LossOutput, call_with
from distill.distillers.cross_tokenizer import check_cross_options
from distill.distillers.distiller import Distiller
from distill.distillers.sources import TeacherCompletions, require_tokenizer
from distill.distillers.text_validation import TextValidation
from distill.inference.generation import GenerationSettings
from distill.losses import Objective
from distill.teacher.generations import TeacherGenerations

log = logging.getLogger(__name__)


class LanguageDistiller(Distiller):
    """Sequence-level KD: cross-entropy on the teacher's own generated responses.

    ``loss = alpha * ce_teacher + (1 - alpha) * ce + kd_weight * kd`` where ``ce_teacher`` is
    the student's cross-entropy on ``prompt + teacher completion`` (prompt masked; the
    completion's EOS kept, also when pad == eos), ``ce`` the cross-entropy on the dataset
    response, and ``kd = T^2 * D(p_T, p_S)`` a token-level divergence on the teacher completion.
    ``alpha=1`` (default) is pure sequence-level KD, ``alpha=0`` plain supervised training.

    Teacher completions are greedy by default; with ``do_sample`` they are sampled at
    ``temperature`` with nucleus ``top_p``, ``num_samples`` per prompt (each one a training
    sequence). ``max_length`` is the teacher's budget of new tokens (null: ``max_new_tokens``).
    The completions of the whole training prompt set are generated once, batched, before the
    first step and cached on disk (:class:`~distill.teacher.generations.TeacherGenerations`).
    Validation compares text (:class:`~distill.distillers.text_validation.TextValidation`).
    Other options (``chunk_size``, ...) are :class:`~distill.distillers.distiller.Distiller`'s.
    """

    writes_text = True

    def __init__(
        self,
        student_model: nn.Module,
        teacher_model: nn.Module,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        alpha: float = 1.0,
        temperature: float = 1.0,
        do_sample: bool = False,
        top_p: float = 1.0,
        max_length: int | None = None,
        num_samples: int = 1,
        kd_weight: float = 0.0,
        divergence: str = "forward_kl",
        beta: float = 0.5,
        skew: float = 0.1,
        cache_dir: str | None = None,
        generation_batch_size: int = 128,
        seed: int = 0,
        **base: Any,
    ) -> None:
        require_tokenizer(type(self).__name__, tokenizer)
        check_cross_options({"cross_tokenizer": base.get("cross_tokenizer"), "divergence": divergence})
        max_new_tokens = self.with_defaults(base)["max_new_tokens"]
        settings, self.on_teacher_text, self.on_dataset = language_objectives(
            alpha, kd_weight, divergence, temperature, beta, max_length, max_new_tokens, do_sample, top_p, num_samples,
            seed, skew,
        )  # fmt: skip
        if alpha == 0 and kd_weight == 0:
            log.warning(
                "distiller.alpha=0 with kd_weight=0 never uses the teacher's text: this is distiller=supervised"
            )
        super().__init__(student_model, teacher_model, tokenizer, **base)
        self.alpha, self.kd_weight = alpha, kd_weight
        generations = TeacherGenerations(teacher_model, tokenizer, cache_dir, generation_batch_size, self.bridge)
        self.teacher_completions = TeacherCompletions(generations, settings)
        self.text_validation = TextValidation(generations, self.max_new_tokens, self.task)

    @classmethod
    def check_config(cls, options: Mapping[str, Any]) -> None:
        super().check_config(options)
        o = cls.with_defaults(options)
        call_with(language_objectives, o)
        TeacherGenerations.check_batch_size(o["generation_batch_size"])

    def prepare(self, train_loader: Iterable[Batch], val_loader: Iterable[Batch] | None = None) -> None:
        """Teacher completions of every training prompt (and its validation outputs), once."""
        self.teacher_completions.prepare(train_loader)
        if val_loader is not None and self.text_validation is not None:
            self.text_validation.prepare(val_loader)

    def compute_loss(self, batch: Batch) -> LossOutput:
        out = LossOutput(loss=0.0, parts={})  # type: ignore[arg-type]
        if self.alpha > 0 or self.kd_weight > 0:
            sequences = self.teacher_completions.sequences(batch, self.device)
            out = self.loss_on(sequences, self.on_teacher_text, names={"ce": "ce_teacher"})
        if self.alpha < 1:
            rest = self.loss_on(batch, self.on_dataset, names={"kd": ""})
            out = LossOutput(out.loss + rest.loss, {**out.parts, **rest.parts})
        return out


def language_objectives(
    alpha: float, kd_weight: float, divergence: str, temperature: float, beta: float, max_length: int | None,
    max_new_tokens: int, do_sample: bool, top_p: float, num_samples: int, seed: int, skew: float = 0.1,
) -> tuple[GenerationSettings, Objective, Objective]:  # fmt: skip
    """The teacher's decoding settings (``max_length`` new tokens, null: ``max_new_tokens``), the objective on
    its text and the one on the dataset, checked."""
    require_fraction("distiller.alpha", alpha)
    require(is_number(kd_weight) and kd_weight >= 0, "distiller.kd_weight", kd_weight, "must be >= 0")  # type: ignore[operator]
    budget = max_new_tokens if max_length is None else max_length
    settings = GenerationSettings(budget, do_sample, temperature, top_p, num_samples, seed)
    kd = Objective(kd_weight, alpha, divergence, temperature, beta, skew)
    return settings, kd, Objective(ce_weight=1.0 - alpha)
