"""Distillers: the losses and validation of each distillation method."""

from distill.distillers.base import BaseDistiller, Distiller, LossOutput
from distill.distillers.factory import DistillerFactory
from distill.distillers.logit import LogitDistiller
from distill.distillers.supervised import SupervisedDistiller

DistillerFactory.register("logit", LogitDistiller)
DistillerFactory.register("supervised", SupervisedDistiller)

__all__ = ["BaseDistiller", "Distiller", "DistillerFactory", "LogitDistiller", "LossOutput", "SupervisedDistiller"]
