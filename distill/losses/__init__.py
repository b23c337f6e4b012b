"""Losses: divergences between output distributions, the objective that weighs them, and the one
function where student and teacher outputs meet it (materialised, chunked from hidden states, or
against a sparse teacher); hidden-state and attention-map terms for intermediate layers."""

from distill.losses.chunked import DEFAULT_CHUNK_SIZE, chunk_rows
from distill.losses.cross_vocab import CROSS_TOKENIZER, CrossTeacher
from distill.losses.divergences import DIVERGENCES, distillation_loss
from distill.losses.head import Head, Hidden
from distill.losses.objective import CROSS_ENTROPY, Objective
from distill.losses.objective_loss import objective_loss, token_log_probs
from distill.losses.sampled import TokenTeacher
from distill.losses.sparse import SPARSE_DIVERGENCES, SparseTeacher

__all__ = [
    "CROSS_ENTROPY",
    "CROSS_TOKENIZER",
    "DEFAULT_CHUNK_SIZE",
    "DIVERGENCES",
    "SPARSE_DIVERGENCES",
    "CrossTeacher",
    "Head",
    "Hidden",
    "Objective",
    "SparseTeacher",
    "TokenTeacher",
    "chunk_rows",
    "distillation_loss",
    "objective_loss",
    "token_log_probs",
]
