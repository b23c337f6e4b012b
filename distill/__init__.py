"""distill: knowledge distillation for language models, logit- and language-output-based."""

from distill.distillers import BaseDistiller, Distiller, DistillerFactory, LogitDistiller, SupervisedDistiller
from distill.losses import distillation_loss

__all__ = ["BaseDistiller", "Distiller", "DistillerFactory", "LogitDistiller", "SupervisedDistiller", "distillation_loss"]
