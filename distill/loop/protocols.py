"""What the loop needs of a distiller and of a logger: small protocols, no imports from above."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class Trainable(Protocol):
    """A distiller as the loop sees it (:class:`distill.distillers.BaseDistiller` is one).

    Optional: ``set_step(step)``, called with the optimizer step before each micro-batch (a schedule's
    clock, restored on resume); ``prepare(train_loader, val_loader)`` for one-off work before the first step (the
    language distiller's teacher generations), ``last_samples`` (rows logged after ``validate``),
    and ``extra_modules() -> nn.Module | None``: trainable modules besides the student (kept in
    checkpoints with their optimizer state, not in the exported student).
    """

    student: nn.Module
    tokenizer: Any

    def to(self, device: torch.device | str) -> Any: ...

    def parameters(self) -> Iterator[nn.Parameter]: ...

    def train_step(self, batch: Any, loss_scale: float = 1.0) -> dict[str, float]: ...

    def validate(self, val_loader: Iterable[Any]) -> dict[str, float]: ...


class Logger(Protocol):
    """An experiment logger (:mod:`distill.loggers`)."""

    def log(self, metrics: dict[str, Any], step: int) -> None: ...

    def log_samples(self, samples: list[dict[str, str]], step: int) -> None: ...

    def checkpoint_state(self) -> dict[str, Any]: ...
