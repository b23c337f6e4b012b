"""A teacher kept on k tokens per position (an offline teacher cache), and forward KL against it.

With w = :meth:`SparseTeacher.weights` (N, k) at temperature T and p_S = softmax(student / T):

    kd = T^2 * mean_n sum_i w_ni (log w_ni - log p_S(ids_ni))

that is T^2 KL(w || p_S) with the teacher's mass on the k cached ids only; with ``skew`` s, the skewed
forward KL T^2 KL(w || s w + (1 - s) p_S), which needs p_S on the cached ids only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from distill.losses.divergences import log_mixture

SPARSE_DIVERGENCES = ("forward_kl", "skew_forward_kl")  # what a teacher kept on k ids supports


@dataclass(frozen=True)
class SparseTeacher:
    """A teacher distribution kept only on k tokens per position (an offline teacher cache).

    ids (N, k) long; logits (N, k) float, the teacher's raw logits of those ids; counts (N, k) float or None.

    * top_k cache (counts None): target_T = softmax(logits / T) over the k ids (the tail gets no mass).
    * sampled cache (counts = how often each id was drawn from the teacher's p_tau, tau =
      ``draw_temperature``; rows may repeat pad ids with count 0): target_T(i) ∝ counts(i) *
      exp(logits(i) * (1/T - 1/tau)), normalised over the row. At T = tau this is counts / draws, an
      unbiased estimate of p_T; at T < tau the weights favour the often-drawn head (well conditioned),
      at T > tau they inflate rare draws. Every row needs a positive count.
    """

    ids: Tensor
    logits: Tensor
    counts: Tensor | None = None
    draw_temperature: float = 1.0

    def __post_init__(self) -> None:
        shapes = [tuple(self.ids.shape), tuple(self.logits.shape)]
        if self.counts is not None:
            shapes.append(tuple(self.counts.shape))
        if self.ids.dim() != 2 or len(set(shapes)) != 1:
            raise ValueError(f"ids, logits and counts must all be (N, k); got shapes {shapes}")

    def __len__(self) -> int:
        return self.ids.shape[0]

    @torch.no_grad()
    def weights(self, temperature: float) -> Tensor:
        """(N, k) float32 target probabilities; rows sum to 1 (see the class docstring)."""
        logits = self.logits.float()
        if self.counts is None:
            return torch.softmax(logits / temperature, dim=-1)
        tilt = 1.0 / temperature - 1.0 / self.draw_temperature
        log_weights = self.counts.float().log() + logits * tilt  # log 0 = -inf: no mass
        return torch.softmax(log_weights, dim=-1)


def sparse_kl_rows(log_p: Tensor, ids: Tensor, weights: Tensor, skew: float | None = None) -> Tensor:
    """sum_i w_i (log w_i - log q_i) per row, with 0 log 0 = 0 and q = p[ids] (``skew`` None), else the mixture
    q = s w + (1 - s) p[ids]. log_p (N, V), ids and weights (N, k) -> (N,)."""
    log_q = log_p.gather(-1, ids)
    if skew is not None:
        log_q = log_mixture(weights.log(), log_q, skew)
    return (torch.xlogy(weights, weights) - weights * log_q).sum(-1)


def sparse_kd_loss(
    student_logits: Tensor,
    teacher: SparseTeacher,
    temperature: float,
    width: int | None = None,
    skew: float | None = None,
) -> Tensor:
    """T^2 * mean_n KL(w_n || softmax(student_n[:width] / T)) (with ``skew`` s: KL(w_n || s w_n + (1 - s) p_S)),
    the materialised reference.

    student_logits (N, V); the student's softmax is over its first ``width`` columns (None: all), and
    every cached id must be below that. Returns a float32 scalar (0 when N = 0); differentiable.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    log_p = torch.log_softmax(student_logits[:, :width].float() / temperature, dim=-1)
    if log_p.shape[0] == 0:
        return log_p.sum() * 0.0
    per_position = sparse_kl_rows(log_p, teacher.ids, teacher.weights(temperature), skew)
    return per_position.mean() * temperature**2
