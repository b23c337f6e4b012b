"""Losses: divergences between output distributions and the objective that weighs them."""

from distill.losses.divergences import DIVERGENCES, distillation_loss
from distill.losses.objective import Objective, objective_loss

__all__ = ["DIVERGENCES", "Objective", "distillation_loss", "objective_loss"]
