"""No teacher: the student's ordinary task loss. Trains the embedded teacher and the baseline."""

from __future__ import annotations

from distill.distillers.base import Batch, LossOutput
from distill.distillers.distiller import Distiller
from distill.losses import CROSS_ENTROPY


class SupervisedDistiller(Distiller):
    """``loss = ce``: cross-entropy on the labels (response tokens, or classes), no teacher."""

    requires_teacher = False

    def compute_loss(self, batch: Batch) -> LossOutput:
        return self.loss_on(batch, CROSS_ENTROPY)
