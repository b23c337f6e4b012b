"""Where student and teacher outputs meet the loss: one function, :func:`objective_loss`.

Student and teacher come as logits (N, V) or as :class:`Hidden`, the last hidden states of the N
positions that count with the output layer that turns them into logits. From hidden states and a
``chunk_size``, the loss works through the positions in chunks and never holds N x V values
(:mod:`distill.losses.chunked`); otherwise it materialises the logits. The teacher may also be a
:class:`~distill.losses.sparse.SparseTeacher` (an offline teacher cache: forward KL or skewed forward KL),
or, for an objective with ``sampled``, a :class:`~distill.losses.sampled.TokenTeacher` (its log-probability
of each target token), or a :class:`~distill.losses.cross_vocab.CrossTeacher` (another vocabulary: ULD or the
hybrid).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.losses.chunked import chunk_rows, chunked_objective_loss
from distill.losses.cross_vocab import CrossTeacher, cross_vocab_loss
from distill.losses.divergences import distillation_loss
from distill.losses.head import Hidden
from distill.losses.objective import Objective
from distill.losses.sampled import TokenTeacher, sampled_reverse_kl
from distill.losses.sparse import SparseTeacher, sparse_kd_loss

Outputs = Tensor | Hidden


def objective_loss(
    student: Outputs,
    teacher: Outputs | SparseTeacher | TokenTeacher | CrossTeacher | None,
    targets: Tensor | None,
    objective: Objective,
    width: int | None = None,
    reduction: str = "mean",
    chunk_size: int | str | None = None,
) -> dict[str, Tensor]:
    """``{"loss", "kd", "ce"}`` on N positions (``kd`` only with a teacher, ``ce`` only with targets).

    Args:
        student: logits (N, V_s) or :class:`Hidden`. CE is taken over all V_s classes.
        teacher: logits (N, V_t), :class:`Hidden`, a :class:`SparseTeacher`, a :class:`TokenTeacher`
            (``objective.sampled`` only; logits or Hidden are then reduced to one), a :class:`CrossTeacher`
            (another vocabulary; ``width`` None), or None. The divergence is over the first ``width`` classes of
            both (the vocabulary they share; None: all).
        targets: (N,) class ids, or None.
        reduction: ``mean`` over positions, or ``sum`` (evaluation adds batches up).
        chunk_size: with a :class:`Hidden` student, positions per chunk or ``"auto"`` (None or 0: materialise).

    A term whose weight is 0 is computed for logging but left out of ``loss``.
    """
    if objective.sampled and teacher is not None and not isinstance(teacher, TokenTeacher):
        if targets is None or isinstance(teacher, SparseTeacher):
            raise ValueError("a sampled objective needs targets and the teacher's logits or hidden states")
        teacher = TokenTeacher(token_log_probs(teacher, targets, chunk_size, objective.temperature))
    cross_logits = isinstance(teacher, CrossTeacher) and not isinstance(teacher.outputs, Hidden)
    if isinstance(student, Hidden) and chunk_size and not cross_logits:  # (a teacher known by logits: materialised)
        teacher_states = teacher.states if isinstance(teacher, Hidden) else teacher  # or a Sparse/TokenTeacher
        teacher_head = teacher.head if isinstance(teacher, Hidden) else None
        return chunked_objective_loss(
            student.states, student.head, teacher_states, targets, objective, teacher_head, width, chunk_size, reduction
        )
    student_logits = student.logits() if isinstance(student, Hidden) else student
    parts: dict[str, Tensor] = {}
    if isinstance(teacher, SparseTeacher):
        skew = objective.skew if objective.divergence == "skew_forward_kl" else None
        parts["kd"] = sparse_kd_loss(student_logits, teacher, objective.temperature, width, skew)
    elif isinstance(teacher, CrossTeacher):
        parts["kd"] = cross_vocab_loss(student_logits, teacher, objective.temperature)
    elif isinstance(teacher, TokenTeacher):
        if targets is None:
            raise ValueError("a TokenTeacher needs the targets it scored")
        parts["kd"] = sampled_reverse_kl(student_logits, teacher, targets, objective.temperature, width)
    elif teacher is not None:
        teacher_logits = teacher.logits() if isinstance(teacher, Hidden) else teacher
        parts["kd"] = distillation_loss(
            student_logits[..., :width], teacher_logits[..., :width],
            divergence=objective.divergence, temperature=objective.temperature, beta=objective.beta,
            skew=objective.skew,
        )  # fmt: skip
    if "kd" in parts and reduction == "sum":
        parts["kd"] = parts["kd"] * student_logits.shape[0]
    if targets is not None:
        parts["ce"] = F.cross_entropy(student_logits.float(), targets, reduction=reduction)
    terms = [(objective.kd_weight, parts.get("kd")), (objective.ce_weight, parts.get("ce"))]
    terms = [w * value for w, value in terms if value is not None and w > 0]
    if not terms:
        raise ValueError(f"{objective} has no term to optimise: every weight is 0 or its input is missing")
    parts["loss"] = terms[0] if len(terms) == 1 else terms[0] + terms[1]
    return parts


@torch.no_grad()
def token_log_probs(
    outputs: Tensor | Hidden, targets: Tensor, chunk_size: int | str | None = None, temperature: float = 1.0
) -> Tensor:
    """log softmax(logits / T)[target] per position, (N,) float32, without gradients. ``outputs``: logits (N, V)
    or :class:`Hidden` (then ``chunk_size`` positions at a time, never N x V logits; None or 0: materialised)."""
    if not isinstance(outputs, Hidden):
        return torch.log_softmax(outputs.float() / temperature, dim=-1).gather(1, targets[:, None]).squeeze(1)
    if not chunk_size:
        return token_log_probs(outputs.logits(), targets, temperature=temperature)
    vocab = outputs.head.weight.shape[0]
    rows = chunk_rows(chunk_size, vocab)
    chunks = [
        token_log_probs(
            outputs.head.logits(outputs.states[i : i + rows], vocab), targets[i : i + rows], None, temperature
        )
        for i in range(0, len(targets), rows)
    ]
    return torch.cat(chunks) if chunks else targets.new_zeros(0, dtype=torch.float32)
