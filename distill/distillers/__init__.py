"""Distillers: the distiller core (``Distiller.loss_on``) and the methods composed on it, each a loss and a
validation: logit, supervised, language, onpolicy."""

from distill.distillers.base import BaseDistiller, LossOutput
from distill.distillers.distiller import Distiller
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
