"""The objective: the weights and the divergence of one loss on one kind of sequences.

On N positions that count (response tokens of a causal LM, or examples of a classifier):

    loss = kd_weight * T^2 * D(p_T, p_S) + ce_weight * CE(student, targets)

with D one of :data:`~distill.losses.divergences.DIVERGENCES` at temperature T (see
:func:`~distill.losses.divergences.distillation_loss`); with ``sampled``, D is the reverse KL estimated
on the targets as the student's own samples (:mod:`distill.losses.sampled`). :func:`distill.losses.objective_loss`
computes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from distill.core.errors import is_number, require
from distill.losses.divergences import DIVERGENCES, SKEWED


@dataclass(frozen=True)
class Objective:
    """The weights and the divergence of one loss on one kind of sequences."""

    kd_weight: float = 0.0
    ce_weight: float = 1.0
    divergence: str = "forward_kl"
    temperature: float = 1.0
    beta: float = 0.5
    skew: float = 0.1  # the skewed KLs' mixture weight (DistiLLM's alpha)
    sampled: bool = False  # reverse_kl from the teacher's log-probability of the (sampled) targets only

    def __post_init__(self) -> None:
        require(
            self.divergence in DIVERGENCES,
            "distiller.divergence",
            self.divergence,
            f"must be one of {', '.join(DIVERGENCES)}",
        )
        require(
            is_number(self.temperature) and self.temperature > 0,
            "distiller.temperature",
            self.temperature,
            "must be > 0",
        )
        if self.divergence == "jsd":  # beta 0 or 1 makes M equal one side: the divergence is identically 0
            require(
                is_number(self.beta) and 0 < self.beta < 1,
                "distiller.beta",
                self.beta,
                "must be in the open interval (0, 1) for jsd",
            )
        if self.divergence in SKEWED:  # skew 0 is the plain KL, 1 makes the divergence identically 0
            require(
                is_number(self.skew) and 0 < self.skew < 1,
                "distiller.skew",
                self.skew,
                f"must be in the open interval (0, 1) for {self.divergence}",
            )
        if self.sampled:
            require(self.divergence == "reverse_kl", "divergence", self.divergence, "a sampled objective is reverse_kl")
        for name in ("kd_weight", "ce_weight"):
            value = getattr(self, name)
            require(is_number(value) and value >= 0, name, value, "must be >= 0")


CROSS_ENTROPY = Objective(ce_weight=1.0)  # the task loss alone: label-only training, evaluation
