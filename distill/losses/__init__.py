"""Losses: divergences between output distributions, the objective that weighs them, and the one
function where student and teacher outputs meet it (materialised or chunked from hidden states)."""

from distill.losses.chunked import DEFAULT_CHUNK_SIZE, Head, chunk_rows
from distill.losses.divergences import DIVERGENCES, distillation_loss
from distill.losses.entry import Hidden, objective_loss
from distill.losses.objective import Objective
from distill.losses.sparse import SparseTeacher

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DIVERGENCES",
    "Head",
    "Hidden",
    "Objective",
    "SparseTeacher",
    "chunk_rows",
    "distillation_loss",
    "objective_loss",
]
