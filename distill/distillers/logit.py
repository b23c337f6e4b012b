"""Logit distillation (Hinton et al. 2015), token by token for causal LMs, per example for classifiers."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.distillers.base import Batch, Distiller, LossOutput, shared_width
from distill.config import check_options
from distill.evaluation import shifted_response_mask
from distill.losses import distillation_loss


class LogitDistiller(Distiller):
    """``loss = alpha * kd + (1 - alpha) * ce`` with ``kd = T^2 * D(p_T, p_S)``.

    For causal LMs both terms are taken over response tokens only (prompt and padding masked,
    EOS kept); for classifiers over the class logits. ``D`` is ``divergence`` (see
    :mod:`distill.losses`). The teacher's logits are sliced to the width both models share.
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
    ) -> None:
        check_options("distiller", dict(temperature=temperature, alpha=alpha, beta=beta, divergence=divergence))
        super().__init__(student_model, teacher_model, tokenizer, max_new_tokens)
        self.temperature, self.alpha, self.divergence, self.beta = temperature, alpha, divergence, beta
        self.width = shared_width(teacher_model, student_model, tokenizer)

    def compute_loss(self, batch: Batch) -> LossOutput:
        labels = batch["labels"].to(self.device)
        student, teacher = self.student_logits(batch), self.teacher_logits(batch)
        if labels.dim() == 1:  # classifier: (B, C) logits, (B,) labels
            ce = F.cross_entropy(student.float(), labels)
        else:  # causal LM: keep only positions that predict a response token
            mask = shifted_response_mask(labels)
            student, teacher, labels = student[:, :-1][mask], teacher[:, :-1][mask], labels[:, 1:][mask]
            ce = F.cross_entropy(student.float(), labels)
        kd = distillation_loss(
            student[..., : self.width], teacher[..., : self.width],
            divergence=self.divergence, temperature=self.temperature, beta=self.beta,
        )
        loss = self.alpha * kd + (1.0 - self.alpha) * ce
        return LossOutput(loss, {"kd": float(kd.detach()), "ce": float(ce.detach())})
