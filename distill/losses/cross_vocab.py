"""Distillation across two vocabularies: ULD and the GOLD-style hybrid.

The teacher comes as a :class:`CrossTeacher`: row i is the teacher's output at the position that predicts what
follows the same text as the student's position i (``aligned``; how positions are paired is
:mod:`distill.data.alignment`'s job). With p_S = softmax(s / T) over the student's V_s tokens and
p_T = softmax(t / T) over the teacher's V_t:

    ULD (Boizard et al. 2024)  D = sum_j |sort(p_S)_j - sort(p_T)_j|
        both sorted in decreasing order, the shorter padded with zeros: the closed-form Wasserstein-1 distance
        between the two distributions when every pair of tokens is one unit apart, whatever their strings.
        dD/dz = p_S (g - <p_S, g>), g_i = sign(p_S(i) - its sorted partner), with z = s / T.
    hybrid, at ``matched`` rows  D = KL over S + 1 bins: the S shared tokens (``shared``: the same string in both
        vocabularies, student id next to teacher id) and "the rest",
        sum_j q_j (log q_j - log p_S(j)) + r (log r - log p_S(rest)),  q_j = p_T(teacher id j), r = 1 - sum_j q_j;
        exactly the forward KL when the two vocabularies are one. ULD at the other aligned rows.

    kd = T^2 * (1 / N) * sum over aligned rows of D

(unaligned rows add 0, so ``kd`` is a mean over all N student positions, like every other objective's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from distill.losses.gradients import sparse_tail_and_grad
from distill.losses.head import Hidden
from distill.losses.sparse import log_rest, sparse_kl_rows

CROSS_TOKENIZER = ("uld", "gold")  # distiller.cross_tokenizer: ULD everywhere, or the hybrid


@dataclass(frozen=True)
class CrossTeacher:
    """A teacher with another vocabulary, row by row at the student's N positions.

    outputs: logits (N, V_t), or :class:`Hidden` with (N, H_t) states; the rows of unaligned positions are
        never read (any values). aligned: (N,) bool. matched: (N,) bool, the hybrid's KL rows (a subset of
        ``aligned``), or None for ULD everywhere. shared: (student ids (S,), teacher ids (S,)), the tokens both
        vocabularies spell the same way; needed with ``matched``.
    """

    outputs: Tensor | Hidden
    aligned: Tensor
    matched: Tensor | None = None
    shared: tuple[Tensor, Tensor] | None = None

    def __post_init__(self) -> None:
        n = len(self.aligned)
        rows = self.outputs.states.shape[0] if isinstance(self.outputs, Hidden) else self.outputs.shape[0]
        problems = [
            (self.aligned.dtype != torch.bool or self.aligned.dim() != 1, "aligned must be (N,) bool"),
            (rows != n, f"outputs must have {n} rows (one per student position); got {rows}"),
            (self.matched is not None and self.shared is None, "matched rows need the shared ids"),
            (self.matched is not None and tuple(self.matched.shape) != (n,), f"matched must be ({n},) bool"),
            (self.matched is not None and bool((self.matched & ~self.aligned).any()), "a matched row must be aligned"),
        ]
        for failed, message in problems:
            if failed:
                raise ValueError(message)

    def __len__(self) -> int:
        return len(self.aligned)


def uld_rows_and_grad(log_s: Tensor, log_t: Tensor) -> tuple[Tensor, Tensor]:
    """ULD per row, (C,), and dD/dz (C, V_s), z the student's logits over T; log_s (C, V_s), log_t (C, V_t)."""
    p_s = log_s.exp()
    sorted_s, order = p_s.sort(dim=-1, descending=True)
    sorted_t = log_t.exp().sort(dim=-1, descending=True).values
    k = min(sorted_s.shape[1], sorted_t.shape[1])
    diff = sorted_s[:, :k] - sorted_t[:, :k]
    value = diff.abs().sum(-1) + sorted_s[:, k:].sum(-1) + sorted_t[:, k:].sum(-1)
    sign = torch.cat([diff.sign(), sorted_s[:, k:].sign()], dim=1)  # past V_t, the student faces zeros
    g = torch.empty_like(p_s).scatter_(1, order, sign)
    return value, p_s * (g - (p_s * g).sum(-1, keepdim=True))


def uld_rows(log_s: Tensor, log_t: Tensor) -> Tensor:
    """ULD per row, (C,), differentiable by autograd (the materialised reference)."""
    sorted_s = log_s.exp().sort(dim=-1, descending=True).values
    sorted_t = log_t.exp().sort(dim=-1, descending=True).values
    width = max(sorted_s.shape[1], sorted_t.shape[1])
    pad = [torch.nn.functional.pad(x, (0, width - x.shape[1])) for x in (sorted_s, sorted_t)]
    return (pad[0] - pad[1]).abs().sum(-1)


def shared_bins(log_t: Tensor, shared: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """The teacher on the S shared tokens: (student ids (C, S), weights w (C, S) summing to 1, the rest r (C,)),
    so that q = (1 - r) w, the form :func:`~distill.losses.sparse.sparse_kl_rows` takes with a tail."""
    student_ids, teacher_ids = shared
    q = log_t.exp()[:, teacher_ids]
    w = q / q.sum(-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    rest = log_rest(log_t, teacher_ids.expand(len(q), -1)).exp()  # no cancellation: ~0 when all is shared
    return student_ids.expand(len(q), -1), w, rest


def hybrid_rows_and_grad(log_s: Tensor, log_t: Tensor, shared: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """The hybrid's KL over the shared tokens and the rest per row, (C,), and dD/dz (C, V_s). Overwrites log_s."""
    ids, w, rest = shared_bins(log_t, shared)
    return sparse_tail_and_grad(log_s, ids, w, rest)


def hybrid_rows(log_s: Tensor, log_t: Tensor, shared: tuple[Tensor, Tensor]) -> Tensor:
    """The hybrid's KL per row, (C,), differentiable by autograd (the materialised reference)."""
    ids, w, rest = shared_bins(log_t, shared)
    return sparse_kl_rows(log_s, ids, w, tail=rest)


def cross_rows_and_grad(
    log_s: Tensor, log_t: Tensor, aligned: Tensor, matched: Tensor | None, shared: tuple[Tensor, Tensor] | None
) -> tuple[Tensor, Tensor]:
    """D per row, (C,) (0 on unaligned rows), and dD/dz (C, V_s), for a chunk: ULD on the aligned rows that are
    not ``matched``, the hybrid's KL on the matched ones. Each is computed on its own rows only."""
    value, grad = log_s.new_zeros(len(log_s)), torch.zeros_like(log_s)
    uld = aligned if matched is None else aligned & ~matched
    groups = [(uld, uld_rows_and_grad, ())] + ([] if matched is None else [(matched, hybrid_rows_and_grad, (shared,))])
    for rows, rows_and_grad, extra in groups:
        index = rows.nonzero().squeeze(1)
        if len(index):
            v, g = rows_and_grad(log_s[index], log_t[index], *extra)
            value[index], grad[index] = v, g
    return value, grad


def cross_vocab_loss(student_logits: Tensor, teacher: CrossTeacher, temperature: float) -> Tensor:
    """T^2 * (1 / N) * sum of D over the aligned rows (module docstring), materialised and differentiable by
    autograd. student_logits (N, V_s). Returns a float32 scalar (0 when N = 0)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    outputs = teacher.outputs.logits() if isinstance(teacher.outputs, Hidden) else teacher.outputs
    log_s = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = torch.log_softmax(outputs.float() / temperature, dim=-1)
    if len(log_s) == 0:
        return log_s.sum() * 0.0
    per_row = uld_rows(log_s, log_t)
    if teacher.matched is not None:
        per_row = torch.where(teacher.matched, hybrid_rows(log_s, log_t, teacher.shared), per_row)
    return (per_row * teacher.aligned).sum() / len(log_s) * temperature**2
