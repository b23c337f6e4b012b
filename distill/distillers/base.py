"""The distiller interface and the shared student/teacher plumbing.

A distiller knows its loss and how to validate; the loop (:mod:`distill.loop`) knows steps,
devices, optimizers and checkpoints. Subclass :class:`BaseDistiller` to implement all three
methods yourself, or :class:`Distiller` to write only ``compute_loss``.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.errors import ConfigError
from distill.evaluation import evaluate_model, model_inputs

Batch = dict[str, Any]


@dataclass
class LossOutput:
    """The loss to backpropagate and the scalar parts to log (``kd``, ``ce``, ...)."""

    loss: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)


def output_width(model: nn.Module) -> int:
    """Width of the model's logits: the LM head's rows, or the number of classes."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None:
        return int(head.weight.shape[0])
    return int(model.config.num_labels)


def shared_width(
    teacher: nn.Module, student: nn.Module, tokenizer: PreTrainedTokenizerBase | None, max_padding: int = 1024
) -> int:
    """The logit width teacher and student share; raises one clear error on a real mismatch.

    Models often pad their embedding matrix past the tokenizer's size (Qwen2.5: 151,936 or
    152,064 rows for 151,665 tokens). Such padding rows are never real tokens, so logits are
    sliced to the smaller width when both models cover the tokenizer and neither pads it by
    more than ``max_padding`` rows. Anything else means different vocabularies.
    """
    t, s = output_width(teacher), output_width(student)
    if t == s:
        return s
    n_tok = len(tokenizer) if tokenizer is not None else None
    if n_tok is not None and min(t, s) >= n_tok and max(t, s) - n_tok <= max_padding:
        return min(t, s)
    covers = f" for a tokenizer of {n_tok} tokens" if n_tok is not None else ""
    raise ConfigError(
        f"teacher vocabulary size {t} and student vocabulary size {s} do not match{covers}: "
        "teacher and student must share one tokenizer (pick a model pair from the same family)"
    )


class BaseDistiller(ABC):
    """A student, an optional teacher, a tokenizer, and three methods the loop calls.

    ``compute_loss(batch) -> LossOutput``; ``train_step(batch, loss_scale) -> dict`` runs the
    forward and backward of one micro-batch; ``validate(loader) -> dict`` returns student
    metrics. ``train(train_loader, val_loader)`` runs :func:`distill.loop.fit` on them.
    """

    requires_teacher: ClassVar[bool] = True

    def __init__(
        self,
        student_model: nn.Module,
        teacher_model: nn.Module | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> None:
        if student_model is None:
            raise ConfigError("a student_model is required")
        if self.requires_teacher and teacher_model is None:
            raise ConfigError(f"{type(self).__name__} needs a teacher_model")
        self.student, self.teacher, self.tokenizer = student_model, teacher_model, tokenizer
        if self.teacher is not None:  # the teacher is frozen and never trains
            self.teacher.eval().requires_grad_(False)
        self.train_config: dict[str, Any] = {}  # loop options given through DistillerFactory

    @abstractmethod
    def compute_loss(self, batch: Batch) -> LossOutput:
        """The loss on one batch (student in train mode, gradients on)."""

    @abstractmethod
    def train_step(self, batch: Batch, loss_scale: float = 1.0) -> dict[str, float]:
        """Forward and backward of ``loss * loss_scale`` on one micro-batch; returns logged scalars."""

    @abstractmethod
    def validate(self, val_loader: Iterable[Batch]) -> dict[str, float]:
        """Student metrics on the validation loader (``loss``, ``accuracy``, ...)."""

    @property
    def device(self) -> torch.device:
        return next(self.student.parameters()).device

    def to(self, device: torch.device | str) -> BaseDistiller:
        self.student.to(device)
        if self.teacher is not None:
            self.teacher.to(device)
        return self

    def parameters(self) -> Iterator[nn.Parameter]:
        """The parameters the optimizer updates: the student's only."""
        return (p for p in self.student.parameters() if p.requires_grad)

    def train(self, train_loader: Iterable[Batch], val_loader: Iterable[Batch] | None = None, **options: Any) -> dict[str, float]:
        """Train the student with the shared loop; ``options`` override :class:`distill.loop.TrainConfig`."""
        from distill.loop import TrainConfig, fit

        return fit(self, train_loader, val_loader, TrainConfig(**{**self.train_config, **options}))

    @classmethod
    def init_parameter_names(cls) -> set[str]:
        """Constructor keywords (used to route a config dict between distiller and loop)."""
        names: set[str] = set()
        for klass in cls.__mro__:
            if "__init__" in vars(klass):
                names |= {p for p in inspect.signature(klass.__init__).parameters if p not in ("self", "args", "kwargs")}
        return names


class Distiller(BaseDistiller):
    """Generic ``train_step``/``validate``; subclasses write ``compute_loss`` only."""

    def __init__(
        self,
        student_model: nn.Module,
        teacher_model: nn.Module | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_new_tokens: int = 64,
    ) -> None:
        super().__init__(student_model, teacher_model, tokenizer)
        self.max_new_tokens = max_new_tokens
        self.last_samples: list[dict[str, str]] = []  # generations from the latest validate()

    def train_step(self, batch: Batch, loss_scale: float = 1.0) -> dict[str, float]:
        self.student.train()
        out = self.compute_loss(batch)
        (out.loss * loss_scale).backward()
        return {"loss": float(out.loss.detach()), **out.parts}

    def validate(self, val_loader: Iterable[Batch]) -> dict[str, float]:
        metrics, self.last_samples = evaluate_model(self.student, val_loader, self.tokenizer, self.max_new_tokens)
        return metrics

    def student_logits(self, batch: Batch) -> torch.Tensor:
        return self.student(**model_inputs(batch, self.device)).logits

    @torch.no_grad()
    def teacher_logits(self, batch: Batch) -> torch.Tensor:
        """Teacher logits in eval mode without gradients (no_grad, not inference_mode: they feed
        a loss that is backpropagated into the student)."""
        assert self.teacher is not None
        self.teacher.eval()
        return self.teacher(**model_inputs(batch, self.device)).logits
