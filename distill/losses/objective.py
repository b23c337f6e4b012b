"""The objective: where student and teacher outputs meet the loss, in one function.

On N positions that count (response tokens of a causal LM, or examples of a classifier):

    loss = kd_weight * T^2 * D(p_T, p_S) + ce_weight * CE(student, targets)

with D one of :data:`~distill.losses.divergences.DIVERGENCES` at temperature T (see
:func:`~distill.losses.divergences.distillation_loss`). Both parts are returned for logging.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from distill.errors import require
from distill.losses.divergences import DIVERGENCES, distillation_loss


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Objective:
    """The weights and the divergence of one loss on one kind of sequences."""

    kd_weight: float = 0.0
    ce_weight: float = 1.0
    divergence: str = "forward_kl"
    temperature: float = 1.0
    beta: float = 0.5

    def __post_init__(self) -> None:
        require(
            self.divergence in DIVERGENCES,
            "distiller.divergence",
            self.divergence,
            f"must be one of {', '.join(DIVERGENCES)}",
        )
        require(
            _number(self.temperature) and self.temperature > 0, "distiller.temperature", self.temperature, "must be > 0"
        )
        if self.divergence == "jsd":  # beta 0 or 1 makes M equal one side: the divergence is identically 0
            require(
                _number(self.beta) and 0 < self.beta < 1,
                "distiller.beta",
                self.beta,
                "must be in the open interval (0, 1) for jsd",
            )
        for name in ("kd_weight", "ce_weight"):
            value = getattr(self, name)
            require(_number(value) and value >= 0, name, value, "must be >= 0")


def objective_loss(
    student_logits: Tensor,
    teacher_logits: Tensor | None,
    targets: Tensor | None,
    objective: Objective,
    width: int | None = None,
    reduction: str = "mean",
) -> dict[str, Tensor]:
    """``{"loss", "kd", "ce"}`` on N positions (``kd`` only with a teacher, ``ce`` only with targets).

    Args:
        student_logits: (N, V_s). CE is taken over all V_s classes.
        teacher_logits: (N, V_t) or None. The divergence is taken over the first ``width``
            classes of both (the vocabulary they share; None: all).
        targets: (N,) class ids, or None.
        reduction: ``mean`` over positions, or ``sum`` (evaluation adds batches up).

    A term whose weight is 0 is computed for logging but left out of ``loss``.
    """
    parts: dict[str, Tensor] = {}
    if teacher_logits is not None:
        parts["kd"] = distillation_loss(
            student_logits[..., :width],
            teacher_logits[..., :width],
            divergence=objective.divergence,
            temperature=objective.temperature,
            beta=objective.beta,
        )
        if reduction == "sum":
            parts["kd"] = parts["kd"] * student_logits.shape[0]
    if targets is not None:
        parts["ce"] = F.cross_entropy(student_logits.float(), targets, reduction=reduction)
    terms = [(objective.kd_weight, parts.get("kd")), (objective.ce_weight, parts.get("ce"))]
    terms = [w * value for w, value in terms if value is not None and w > 0]
    if not terms:
        raise ValueError(f"{objective} has no term to optimise: every weight is 0 or its input is missing")
    parts["loss"] = terms[0] if len(terms) == 1 else terms[0] + terms[1]
    return parts
