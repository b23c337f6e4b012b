"""The core every built-in distiller composes: :meth:`Distiller.loss_on`.

Given sequences (from the dataset, the teacher's generations or the student's samples) and an
:class:`~distill.losses.Objective`, it runs the student and the frozen teacher, keeps the positions
that count and calls the one loss function. Subclasses write ``compute_loss`` only.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.core.errors import is_int, require
from distill.data.alignment import TokenizerBridge
from distill.distillers.base import BaseDistiller, Batch, LossOutput
from distill.distillers.cross_tokenizer import bridge_for, check_cross_options, cross_teacher
from distill.distillers.intermediate import IntermediateTerms, token_masks
from distill.distillers.text_validation import TextValidation
from distill.inference.evaluation import evaluate_model
from distill.inference.forward import Forward, forward, frozen_forward
from distill.losses import DEFAULT_CHUNK_SIZE, Hidden, Objective, TokenTeacher, objective_loss, token_log_probs
from distill.models import model_task, shared_width
from distill.models.activations import swap_activations

log = logging.getLogger(__name__)


def check_chunk_size(chunk_size: object) -> None:
    valid = chunk_size in (None, "auto") or (is_int(chunk_size) and chunk_size >= 0)  # type: ignore[operator]
    require(valid, "distiller.chunk_size", chunk_size,
            "must be 'auto', a positive integer, or 0 / null to materialise the logits")  # fmt: skip


class Distiller(BaseDistiller):
    """Generic ``train_step`` and ``validate``, and the core :meth:`loss_on`; subclasses write
    ``compute_loss`` only, and take these options by keyword (``**base``).

    Args:
        task: ``causal_lm`` or ``classification``; the runner passes the data's, and by default
            it is read off the student (an LM head or not).
        max_new_tokens: generation budget at validation (causal LMs).
        chunk_size: causal LMs: positions per chunk of the memory-bounded loss, which never holds
            N x V logits; ``"auto"``: 128, more for vocabularies under 8,192 (:func:`~distill.losses.chunk_rows`);
            0 or None: materialise the logits. Classifiers always materialise.
        fast_activations: swap the student's and the teacher's tanh-GELU modules (GPT-2 family)
            for :class:`~distill.models.activations.TanhGELU`, in place: the same function in fewer kernels.
        cross_tokenizer: null (teacher and student share one tokenizer; another teacher tokenizer is refused),
            ``uld`` or ``gold``: a teacher with its own tokenizer (``teacher_tokenizer``: the tokenizer, or the
            runner's :class:`~distill.data.alignment.TokenizerBridge`), its distribution compared with the
            student's at positions paired by character offsets, by ULD or the hybrid
            (:mod:`distill.distillers.cross_tokenizer`, :mod:`distill.losses.cross_vocab`).
    """

    def __init__(
        self,
        student_model: nn.Module,
        teacher_model: nn.Module | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        max_new_tokens: int = 64,
        task: str | None = None,
        chunk_size: int | str | None = DEFAULT_CHUNK_SIZE,
        fast_activations: bool = True,
        cross_tokenizer: str | None = None,
        teacher_tokenizer: PreTrainedTokenizerBase | TokenizerBridge | None = None,
    ) -> None:
        check_chunk_size(chunk_size)
        self.cross_tokenizer, self.bridge = cross_tokenizer, bridge_for(cross_tokenizer, tokenizer, teacher_tokenizer)
        super().__init__(student_model, teacher_model, tokenizer)
        if fast_activations:
            swapped = sum(swap_activations(m) for m in (student_model, teacher_model) if m is not None)
            if swapped:
                log.info("fast_activations: %d tanh-GELU modules run as TanhGELU (the same function)", swapped)
        self.max_new_tokens, self.chunk_size = max_new_tokens, chunk_size or None
        self.task = task or model_task(student_model)
        one_vocabulary = self.bridge is None and teacher_model is not None
        self.width = shared_width(teacher_model, student_model, tokenizer) if one_vocabulary else None
        self.intermediate: IntermediateTerms | None = None  # hidden-state and attention terms (LogitDistiller)
        self.text_validation: TextValidation | None = None  # validation by generated text (language, onpolicy)
        self.last_samples: list[dict[str, str]] = []  # generations from the latest validate()

    @classmethod
    def check_config(cls, options: Mapping[str, Any]) -> None:
        check_chunk_size(cls.with_defaults(options)["chunk_size"])
        check_cross_options(options)

    def train_step(self, batch: Batch, loss_scale: float = 1.0) -> dict[str, float]:
        if not self.student.training:  # .train() walks every submodule: only when validation left it in eval
            self.student.train()
        out = self.compute_loss(batch)
        (out.loss * loss_scale).backward()
        return {"loss": float(out.loss.detach()), **out.parts}

    def validate(self, val_loader: Iterable[Batch]) -> dict[str, float]:
        """The student's metrics on ``val_loader``; with :attr:`text_validation`, also its text against the
        references and the teacher's outputs."""
        if self.text_validation is not None:
            metrics, self.last_samples = self.text_validation.validate(self.student, val_loader, self.chunk_size)
            return metrics
        metrics, self.last_samples = evaluate_model(
            self.student, val_loader, self.tokenizer, self.max_new_tokens, self.task, chunk_size=self.chunk_size
        )
        return metrics

    def loss_on(
        self, sequences: Batch, objective: Objective, names: dict[str, str] | None = None, score_targets: bool = False
    ) -> LossOutput:
        """The objective on ``sequences`` (``input_ids``, ``attention_mask``, ``labels``).

        The student runs with gradients; the teacher (when the objective weighs a divergence, or
        intermediate-layer terms are on) runs frozen; both are reduced to the positions that
        count, and :func:`~distill.losses.objective_loss` combines them (plus
        :attr:`intermediate`'s terms). ``names`` renames the logged parts (``{"ce": "ce_teacher"}``);
        a part mapped to ``""`` is not logged. ``score_targets``: also log ``teacher_logprob``, the teacher's
        mean log-probability of the target tokens (T = 1, as the cross-entropy; for a sampled objective at
        T = 1 also the one teacher input its loss needs: computed once).
        """
        chunked = self.chunk_size is not None
        extra = self.intermediate.request if self.intermediate is not None else {}
        student = forward(self.student, sequences, self.task, chunked=chunked, **extra)
        if self.bridge is not None and objective.kd_weight > 0:  # a teacher with its own tokenizer
            kd_teacher, shares = cross_teacher(
                self.teacher, self.bridge, self.cross_tokenizer, sequences, student.targets, chunked
            )
            parts = objective_loss(student.outputs, kd_teacher, student.targets, objective, chunk_size=self.chunk_size)
            return self._logged({**parts, **{k: torch.tensor(v) for k, v in shares.items()}}, names)
        teacher = (
            self.teacher_forward(sequences, chunked, extra) if objective.kd_weight > 0 or any(extra.values()) else None
        )
        kd_teacher = (teacher.outputs if isinstance(teacher, Forward) else teacher) if objective.kd_weight > 0 else None
        scores = None
        if score_targets and isinstance(kd_teacher, (torch.Tensor, Hidden)):
            scores = token_log_probs(kd_teacher, student.targets, self.chunk_size)
            kd_teacher = TokenTeacher(scores) if objective.sampled and objective.temperature == 1 else kd_teacher
        parts = objective_loss(
            student.outputs, kd_teacher, student.targets, objective, self.width, chunk_size=self.chunk_size
        )
        if scores is not None:
            parts["teacher_logprob"] = scores.mean()
        if self.intermediate is not None and any(extra.values()):
            mask, keys = token_masks(sequences, self.task, self.device)
            terms = self.intermediate(student, teacher, mask, keys)
            parts["loss"] = parts["loss"] + self.intermediate.weighted(terms)
            parts.update(terms)
        return self._logged(parts, names)

    @staticmethod
    def _logged(parts: dict[str, torch.Tensor], names: dict[str, str] | None) -> LossOutput:
        """``parts["loss"]`` and the other parts as floats, renamed by ``names`` (mapped to "": not logged)."""
        loss = parts.pop("loss")
        names = names or {}
        logged = {names.get(k, k): float(v.detach()) for k, v in parts.items()}
        return LossOutput(loss, {k: v for k, v in logged.items() if k})

    def teacher_forward(self, sequences: Batch, chunked: bool, extra: dict[str, bool]) -> Any:
        """The teacher's outputs on the positions that count (its frozen forward)."""
        return frozen_forward(self.teacher, sequences, self.task, chunked=chunked, **extra)

    def parameters(self) -> Iterator[nn.Parameter]:
        """What the optimizer updates: the student's parameters and the intermediate terms' projections."""
        extra = self.intermediate.parameters() if self.intermediate is not None else iter(())
        return (p for p in itertools.chain(self.student.parameters(), extra) if p.requires_grad)

    def to(self, device: torch.device | str) -> Distiller:
        super().to(device)
        if self.intermediate is not None:
            self.intermediate.to(device)
        return self

    def extra_modules(self) -> nn.Module | None:
        """Trainable modules besides the student (the intermediate terms' projections): the optimizer
        updates them and checkpoints keep them; the exported student does not."""
        has_parameters = self.intermediate is not None and next(self.intermediate.parameters(), None) is not None
        return self.intermediate if has_parameters else None
