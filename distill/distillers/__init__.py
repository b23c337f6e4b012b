"""Distillers: the losses and validation of each distillation method."""

from distill.distillers.base import BaseDistiller, Distiller, LossOutput
from distill.distillers.factory import DistillerFactory
from distill.distillers.language import LanguageDistiller
from distill.distillers.logit import LogitDistiller
from distill.distillers.onpolicy import OnPolicyDistiller
from distill.distillers.supervised import SupervisedDistiller

DistillerFactory.register("logit", LogitDistiller)
DistillerFactory.register("supervised", SupervisedDistiller)
DistillerFactory.register("language", LanguageDistiller)
DistillerFactory.register("onpolicy", OnPolicyDistiller)

__all__ = [
    "BaseDistiller",
    "Distiller",
    "DistillerFactory",
    "LanguageDistiller",
    "LogitDistiller",
    "LossOutput",
    "OnPolicyDistiller",
    "SupervisedDistiller",
]
