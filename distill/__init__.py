"""distill: knowledge distillation for language models, logit- and language-output-based.

The public names are loaded on first use, so ``import distill.loop`` (or any lower layer)
does not import the distillers. The packages, bottom to top: ``core``; ``data``, ``losses``,
``models``, ``optim``, ``loggers``; ``inference``; ``teacher``; ``loop``; ``distillers``;
``config``, ``run``, ``report`` (``tests/test_layers.py`` keeps every import going down).
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "BaseDistiller": "distill.distillers",
    "Distiller": "distill.distillers",
    "DistillerFactory": "distill.distillers",
    "LogitDistiller": "distill.distillers",
    "SupervisedDistiller": "distill.distillers",
    "distillation_loss": "distill.losses",
    "student_from_teacher": "distill.models",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'distill' has no attribute {name!r}")
