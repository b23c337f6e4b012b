"""No teacher: the student's ordinary task loss. Trains the embedded teacher and the baseline."""

from __future__ import annotations

import torch.nn.functional as F

from distill.distillers.base import Batch, Distiller, LossOutput
from distill.evaluation import shifted_response_mask


def task_loss(logits, labels):
    """Cross-entropy on class labels (B,) or on the response tokens of (B, L) LM labels."""
    if labels.dim() == 1:
        return F.cross_entropy(logits.float(), labels)
    mask = shifted_response_mask(labels)
    return F.cross_entropy(logits[:, :-1][mask].float(), labels[:, 1:][mask])


class SupervisedDistiller(Distiller):
    """``loss = ce``: cross-entropy on the labels, no teacher involved."""

    requires_teacher = False

    def compute_loss(self, batch: Batch) -> LossOutput:
        ce = task_loss(self.student_logits(batch), batch["labels"].to(self.device))
        return LossOutput(ce, {"ce": float(ce.detach())})
