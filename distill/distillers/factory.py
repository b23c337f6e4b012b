"""The seed's Python API: ``DistillerFactory.create_distiller(mode=..., ...)``."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.core.errors import ConfigError
from distill.core.instantiate import MODEL_ARGUMENTS
from distill.distillers.base import BaseDistiller
from distill.loop import TrainConfig

# Names the seed's README used for loop options, mapped onto TrainConfig fields.
_ALIASES = {"learning_rate": "lr", "num_epochs": "epochs", "gradient_accumulation_steps": "grad_accum"}


class DistillerFactory:
    """Builds distillers by name. ``register`` adds one; any class can also be a config ``_target_``."""

    _registry: ClassVar[dict[str, type[BaseDistiller]]] = {}

    @classmethod
    def register(cls, name: str, distiller_cls: type[BaseDistiller]) -> type[BaseDistiller]:
        if not (isinstance(distiller_cls, type) and issubclass(distiller_cls, BaseDistiller)):
            raise TypeError(f"{distiller_cls!r} is not a BaseDistiller subclass")
        cls._registry[name] = distiller_cls
        return distiller_cls

    @classmethod
    def available(cls) -> list[str]:
        return sorted(cls._registry)

    @classmethod
    def get(cls, mode: str) -> type[BaseDistiller]:
        """The class registered as ``mode``; one line listing the modes if there is none."""
        if mode not in cls._registry:
            raise ConfigError(f"mode={mode!r} is invalid: must be one of {', '.join(cls.available())}")
        return cls._registry[mode]

    @classmethod
    def create_distiller(
        cls,
        mode: str,
        teacher_model: nn.Module | None = None,
        student_model: nn.Module | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        config: dict[str, Any] | None = None,
    ) -> BaseDistiller:
        """A ``mode`` distiller. ``config`` keys go to its constructor (``temperature``, ``alpha``,
        ...) or, if they are loop options (``max_steps``, ``lr``/``learning_rate``, ``epochs``,
        ...), to ``distiller.train()``. Unknown keys are an error that lists the allowed ones."""
        distiller_cls = cls.get(mode)
        own = distiller_cls.init_parameter_names() - set(MODEL_ARGUMENTS)
        loop = {f.name for f in dataclasses.fields(TrainConfig)}
        kwargs, train_options = {}, {}
        for key, value in (config or {}).items():
            key = key if key in own else _ALIASES.get(key, key)
            if key in own:
                kwargs[key] = value
            elif key in loop:
                train_options[key] = value
            else:
                raise ConfigError(
                    f"config key {key!r} is unknown for mode {mode!r}: allowed are {', '.join(sorted(own | loop))}"
                )
        distiller = distiller_cls(
            student_model=student_model, teacher_model=teacher_model, tokenizer=tokenizer, **kwargs
        )
        distiller.train_config.update(train_options)
        return distiller
