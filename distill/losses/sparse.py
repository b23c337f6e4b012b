"""A teacher kept on k tokens per position (an offline teacher cache), and forward KL against it.

With w = :meth:`SparseTeacher.weights` (N, k) at temperature T and p_S = softmax(student / T):

    kd = T^2 * mean_n sum_i w_ni (log w_ni - log p_S(ids_ni))

that is T^2 KL(w || p_S) with the teacher's mass on the k cached ids only; with ``skew`` s, the skewed
forward KL T^2 KL(w || s w + (1 - s) p_S), which needs p_S on the cached ids only.

With a ``tail`` (a top-k cache that keeps the teacher's mass r outside its k ids, at T = ``draw_temperature``)
the comparison is over k + 1 bins, the k ids and "the rest": q_i = (1 - r) w_i and q_rest = r against p_S(ids_i)
and p_S(rest) = 1 - sum_i p_S(ids_i),

    kd = T^2 * mean_n [sum_i q_i (log q_i - log p_S(ids_i)) + r (log r - log p_S(rest))]

exactly the full forward KL when the k ids cover the vocabulary (r = 0).
"""

from __future__ import annotations

import math
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
    * top_k cache with ``tail`` (N,): the teacher's probability mass outside the k ids at T =
      ``draw_temperature`` (one more bin: see the module docstring); usable at that temperature only.
    """

    ids: Tensor
    logits: Tensor
    counts: Tensor | None = None
    draw_temperature: float = 1.0
    tail: Tensor | None = None

    def __post_init__(self) -> None:
        shapes = [tuple(self.ids.shape), tuple(self.logits.shape)]
        if self.counts is not None:
            shapes.append(tuple(self.counts.shape))
        if self.ids.dim() != 2 or len(set(shapes)) != 1:
            raise ValueError(f"ids, logits and counts must all be (N, k); got shapes {shapes}")
        if self.tail is not None and (self.counts is not None or tuple(self.tail.shape) != shapes[0][:1]):
            raise ValueError(f"tail must be (N,) = {shapes[0][:1]}, and only with a top-k cache (no counts)")

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


def sparse_kl_rows(
    log_p: Tensor, ids: Tensor, weights: Tensor, skew: float | None = None, tail: Tensor | None = None
) -> Tensor:
    """sum_i w_i (log w_i - log q_i) per row, with 0 log 0 = 0 and q = p[ids] (``skew`` None), else the mixture
    q = s w + (1 - s) p[ids]; with ``tail`` r (N,), over k + 1 bins: w scaled by 1 - r, and r against the rest of
    p (module docstring). log_p (N, V), ids and weights (N, k) -> (N,)."""
    log_q = log_p.gather(-1, ids)
    if skew is not None:
        log_q = log_mixture(weights.log(), log_q, skew)
    if tail is None:
        return (torch.xlogy(weights, weights) - weights * log_q).sum(-1)
    q = weights * (1.0 - tail)[:, None]
    rest = (torch.xlogy(tail, tail) - tail * log_rest(log_p, ids)).where(tail > 0, 0.0)
    return (torch.xlogy(q, q) - q * log_q).sum(-1) + rest


def log_rest(log_p: Tensor, ids: Tensor) -> Tensor:
    """log of p's mass outside ``ids`` per row, (N,), from log p (N, V) without cancellation: a logsumexp over
    the other columns (floored at the smallest normal float32, so that it stays finite when ids cover all)."""
    return log_p.scatter(-1, ids, float("-inf")).logsumexp(-1).clamp_min(math.log(torch.finfo(torch.float32).tiny))


def sparse_kd_loss(
    student_logits: Tensor,
    teacher: SparseTeacher,
    temperature: float,
    width: int | None = None,
    skew: float | None = None,
) -> Tensor:
    """T^2 * mean_n KL(w_n || softmax(student_n[:width] / T)) (with ``skew`` s: KL(w_n || s w_n + (1 - s) p_S);
    with the teacher's ``tail``: over k + 1 bins), the materialised reference.

    student_logits (N, V); the student's softmax is over its first ``width`` columns (None: all), and
    every cached id must be below that. Returns a float32 scalar (0 when N = 0); differentiable.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    log_p = torch.log_softmax(student_logits[:, :width].float() / temperature, dim=-1)
    if log_p.shape[0] == 0:
        return log_p.sum() * 0.0
    check_tail(teacher, temperature, "forward_kl" if skew is None else "skew_forward_kl")
    per_position = sparse_kl_rows(log_p, teacher.ids, teacher.weights(temperature), skew, teacher.tail)
    return per_position.mean() * temperature**2


def check_tail(teacher: SparseTeacher, temperature: float, divergence: str) -> None:
    """A tail is the teacher's mass at its ``draw_temperature``, for forward KL: refuse anything else."""
    if teacher.tail is not None and (divergence != "forward_kl" or temperature != teacher.draw_temperature):
        stored = teacher.draw_temperature
        raise ValueError(f"a SparseTeacher with a tail serves forward_kl at T = {stored} only (the temperature its "
                         f"tail was stored at); got {divergence} at T = {temperature}")  # fmt: skip
