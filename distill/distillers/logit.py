"""Logit distillation (Hinton et al. 2015), token by token for causal LMs, per example for classifiers."""

from __future__ import annotations

import logging

from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.distillers.base import Batch, Distiller, LossOutput
from distill.errors import require_fraction
from distill.losses import Objective

log = logging.getLogger(__name__)


class LogitDistiller(Distiller):
    """``loss = alpha * kd + (1 - alpha) * ce`` with ``kd = T^2 * D(p_T, p_S)``.

    For causal LMs both terms are taken over response tokens only (prompt and padding masked,
    EOS kept); for classifiers over the class logits. ``D`` is ``divergence`` (see
    :mod:`distill.losses`); ``beta`` is JSD's mixing weight. The teacher's logits are sliced to
    the width both models share.
    """

    def __init__(
        self,
        student_model: nn.Module,
        teacher_model: nn.Module,
        tokenizer: PreTrainedTokenizerBase | None = None,
        temperature: float = 2.0,
        alpha: float = 0.5,
        divergence: str = "forward_kl",
        beta: float = 0.5,
        max_new_tokens: int = 64,
        task: str | None = None,
    ) -> None:
        require_fraction("distiller.alpha", alpha)
        if alpha == 0:
            log.warning(
                "distiller.alpha=0 turns the distillation term off: this is distiller=supervised, paying for a teacher"
            )
        self.objective = Objective(alpha, 1.0 - alpha, divergence, temperature, beta)
        super().__init__(student_model, teacher_model, tokenizer, max_new_tokens, task)
        self.temperature, self.alpha, self.divergence, self.beta = temperature, alpha, divergence, beta

    def compute_loss(self, batch: Batch) -> LossOutput:
        return self.loss_on(batch, self.objective)
