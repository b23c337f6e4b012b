"""A teacher known only by its log-probability of each target token, and the reverse KL estimated from samples.

When the targets y_t are the student's own samples, the reverse KL needs only the two models' log-probabilities
of the sampled tokens: with the per-token advantage A_t = log p_T(y_t) - log p_S(y_t) (detached, no discount),

    kd   = T^2 * mean_t (log p_S(y_t) - log p_T(y_t))        the sampled estimate of T^2 KL(p_S || p_T)
    grad = d/ds of T^2 * mean_t (-A_t log p_S(y_t))          = T * A_t (p_S - onehot(y_t)) / N per position

the on-policy-distillation recipe's reward (MiniLLM's single-step term): a policy gradient on the reverse KL,
equivalently the cross-entropy of the samples weighted by A_t. It needs no full-vocabulary teacher distribution,
so a teacher served only as log-probabilities can be distilled from. ``kd`` is the estimate itself (what is
logged); the gradient is the surrogate's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class TokenTeacher:
    """A teacher known only by its log-probability (at the objective's temperature) of each target token: (N,)."""

    log_probs: Tensor

    def __post_init__(self) -> None:
        if self.log_probs.dim() != 1:
            raise ValueError(f"log_probs must be (N,); got {tuple(self.log_probs.shape)}")

    def __len__(self) -> int:
        return self.log_probs.shape[0]


def sampled_rows_and_grad(log_s: Tensor, targets: Tensor, teacher_log_probs: Tensor) -> tuple[Tensor, Tensor]:
    """Per row log p_S(y) - log p_T(y) (C,) and the surrogate's d/dz = A (p_S - onehot(y)) (C, V), A = -value.
    log_s = log p_S (C, V), overwritten."""
    advantage = teacher_log_probs - log_s.gather(1, targets[:, None]).squeeze(1)
    grad = log_s.exp_().mul_(advantage[:, None])
    grad[torch.arange(len(targets), device=grad.device), targets] -= advantage
    return -advantage, grad


def sampled_reverse_kl(
    student_logits: Tensor, teacher: TokenTeacher, targets: Tensor, temperature: float = 1.0, width: int | None = None
) -> Tensor:
    """The materialised reference: a scalar whose value is ``kd`` (module docstring) and whose gradient is the
    surrogate's; student_logits (N, V), the student's softmax over its first ``width`` columns (None: all)."""
    log_p = torch.log_softmax(student_logits[:, :width].float() / temperature, dim=-1)
    if log_p.shape[0] == 0:
        return log_p.sum() * 0.0
    log_p_s = log_p.gather(1, targets[:, None]).squeeze(1)
    advantage = (teacher.log_probs - log_p_s).detach()
    surrogate = -(advantage * log_p_s)
    per_position = -advantage + (surrogate - surrogate.detach())  # value: the estimate; gradient: the surrogate's
    return per_position.mean() * temperature**2
