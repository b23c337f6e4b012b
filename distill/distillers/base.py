"""The distiller interface: what the loop calls, and what the start-up checks ask before a distiller is built.

A distiller knows its loss and how to validate; the loop (:mod:`distill.loop`) knows steps,
devices, optimizers and checkpoints. Subclass :class:`BaseDistiller` to implement all three
methods yourself, or :class:`~distill.distillers.distiller.Distiller` to write only ``compute_loss``.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.core.errors import ConfigError
from distill.loop import TrainConfig, fit

Batch = dict[str, Any]


@dataclass
class LossOutput:
    """The loss to backpropagate and the scalar parts to log (``kd``, ``ce``, ...)."""

    loss: torch.Tensor
    parts: dict[str, float] = field(default_factory=dict)


class BaseDistiller(ABC):
    """A student, an optional teacher, a tokenizer, and three methods the loop calls.

    ``compute_loss(batch) -> LossOutput``; ``train_step(batch, loss_scale) -> dict`` runs the
    forward and backward of one micro-batch; ``validate(loader) -> dict`` returns student
    metrics. ``train(train_loader, val_loader)`` runs :func:`distill.loop.fit` on them.
    """

    requires_teacher: ClassVar[bool] = True  # whether the method uses a teacher at all
    writes_text: ClassVar[bool] = False  # whether it trains on generated text (teacher's or student's)

    def __init__(
        self,
        student_model: nn.Module,
        teacher_model: nn.Module | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
    ) -> None:
        if student_model is None:
            raise ConfigError("a student_model is required")
        if teacher_model is None and self.needs_teacher_model():
            raise ConfigError(f"{type(self).__name__} needs a teacher_model")
        self.student, self.teacher, self.tokenizer = student_model, teacher_model, tokenizer
        if self.teacher is not None:  # the teacher is frozen and never trains
            self.teacher.eval().requires_grad_(False)
        self.train_config: dict[str, Any] = {}  # loop options given through DistillerFactory

    def needs_teacher_model(self) -> bool:
        """Whether this distiller runs the teacher model (a logit distiller given cached targets does not)."""
        return self.requires_teacher

    @classmethod
    def teacher_input(cls, options: Mapping[str, Any]) -> str | None:
        """What a distiller with these config options takes from the teacher, asked before it is built:
        ``"model"``, ``"targets"`` (a built teacher-logit cache) or None."""
        return "model" if cls.requires_teacher else None

    @classmethod
    def check_config(cls, options: Mapping[str, Any]) -> None:
        """Check config options without any model (the start-up checks call it before a teacher is
        trained, loaded or cached); one :class:`ConfigError` line per bad value. Nothing to check here."""
        return None

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

    def train(
        self, train_loader: Iterable[Batch], val_loader: Iterable[Batch] | None = None, **options: Any
    ) -> dict[str, float]:
        """Train the student with the shared loop; ``options`` override :class:`distill.loop.TrainConfig`."""
        return fit(self, train_loader, val_loader, TrainConfig(**{**self.train_config, **options}))

    @classmethod
    def init_parameters(cls) -> dict[str, inspect.Parameter]:
        """Constructor keywords over the class hierarchy (a subclass passes its parents' on as ``**base``),
        the subclass's first."""
        found: dict[str, inspect.Parameter] = {}
        for klass in cls.__mro__:
            if "__init__" in vars(klass) and klass is not object:
                for p in inspect.signature(klass.__init__).parameters.values():
                    if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                        found.setdefault(p.name, p)
        return found

    @classmethod
    def init_parameter_names(cls) -> set[str]:
        """Constructor keywords (used to route a config dict between distiller and loop)."""
        return set(cls.init_parameters())

    @classmethod
    def with_defaults(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` over the constructor's defaults."""
        defaults = {k: p.default for k, p in cls.init_parameters().items() if p.default is not p.empty}
        return {**defaults, **options}


def call_with(check: Any, options: Mapping[str, Any]) -> Any:
    """``check(**options)`` with the options ``check`` takes: how ``check_config`` runs a constructor's checks."""
    return check(**{name: options[name] for name in inspect.signature(check).parameters})
