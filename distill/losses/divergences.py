"""Distillation losses between a teacher's and a student's output distributions.

With p_T = softmax(teacher / T) and p_S = softmax(student / T) over the last axis:

    forward_kl  KL(p_T || p_S) = sum p_T (log p_T - log p_S)        (Hinton et al. 2015)
    reverse_kl  KL(p_S || p_T)                                       (mode-seeking)
    jsd(beta)   beta KL(p_T || M) + (1 - beta) KL(p_S || M),  M = beta p_T + (1 - beta) p_S
    tvd         1/2 sum |p_T - p_S|
    skew_forward_kl(s)  KL(p_T || s p_T + (1 - s) p_S)               (DistiLLM, Ko et al. 2024)
    skew_reverse_kl(s)  KL(p_S || s p_S + (1 - s) p_T)

Every divergence is multiplied by T^2, so that the gradient scale does not shrink as T grows,
and averaged over the unmasked positions. Computed in float32 whatever the input dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DIVERGENCES = ("forward_kl", "reverse_kl", "jsd", "tvd", "skew_forward_kl", "skew_reverse_kl")
SKEWED = ("skew_forward_kl", "skew_reverse_kl")  # take ``skew`` in (0, 1)


def log_mixture(log_a: Tensor, log_b: Tensor, weight: float) -> Tensor:
    """log(weight a + (1 - weight) b) from log a and log b, stably; weight in (0, 1)."""
    return torch.logaddexp(log_a + math.log(weight), log_b + math.log1p(-weight))


def _kl(p: Tensor, log_p: Tensor, log_q: Tensor) -> Tensor:
    """sum_v p (log p - log q) over the last axis, with 0 log 0 = 0. Shapes (N, V) -> (N,)."""
    return torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p)).sum(-1)


def divergence_per_position(
    student_logits: Tensor,
    teacher_logits: Tensor,
    divergence: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
    skew: float = 0.1,
) -> Tensor:
    """Divergence between softmax(teacher/T) and softmax(student/T) at each position.

    Shapes (..., V) -> (...). Not yet scaled by T^2.
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {', '.join(DIVERGENCES)}; got {divergence!r}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} must have the same shape"
        )
    log_s = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)
    p_s, p_t = log_s.exp(), log_t.exp()
    if divergence == "forward_kl":
        return _kl(p_t, log_t, log_s)
    if divergence == "reverse_kl":
        return _kl(p_s, log_s, log_t)
    if divergence == "tvd":
        return 0.5 * (p_t - p_s).abs().sum(-1)
    if divergence == "skew_forward_kl":
        return _kl(p_t, log_t, log_mixture(log_t, log_s, skew))
    if divergence == "skew_reverse_kl":
        return _kl(p_s, log_s, log_mixture(log_s, log_t, skew))
    # jsd: log M computed stably as logsumexp(log beta + log p_T, log(1 - beta) + log p_S)
    if beta <= 0.0 or beta >= 1.0:  # M equals one of the two distributions: both terms vanish
        return torch.zeros(log_s.shape[:-1], device=log_s.device)
    log_m = log_mixture(log_t, log_s, beta)
    return beta * _kl(p_t, log_t, log_m) + (1.0 - beta) * _kl(p_s, log_s, log_m)


def distillation_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor | None = None,
    *,
    divergence: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
    skew: float = 0.1,
) -> Tensor:
    """T^2 times the mean, over unmasked positions, of the divergence at each position.

    Args:
        student_logits, teacher_logits: (..., V), e.g. (B, L, V) for causal LMs or (B, C).
        mask: (...) bool or 0/1; positions where it is false are ignored. None keeps all.
        divergence: one of :data:`DIVERGENCES`.
        temperature: T > 0, applied to both logits.
        beta: the JSD mixing weight (ignored by the other divergences).
        skew: the skewed KLs' weight s of their own side in the mixture, in (0, 1).

    Returns a float32 scalar; 0 when no position is unmasked.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    if mask is not None:
        if mask.shape != student_logits.shape[:-1]:
            raise ValueError(
                f"mask {tuple(mask.shape)} must match the logits' leading shape {tuple(student_logits.shape[:-1])}"
            )
        keep = mask.bool()
        # Select the kept positions first: memory is then (N_kept, V), not (B, L, V) of floats.
        student_logits, teacher_logits = student_logits[keep], teacher_logits[keep]
    per_position = divergence_per_position(student_logits, teacher_logits, divergence, temperature, beta, skew)
    if per_position.numel() == 0:
        return student_logits.float().sum() * 0.0
    return per_position.mean() * temperature**2
