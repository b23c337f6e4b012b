"""Hydra schemas, registered in the ConfigStore: the settings dataclasses and, for every
distiller and the data constructor, a schema made from the constructor's own signature.

A schema generated from ``__init__`` cannot drift from the code: a new keyword is a new key,
a default changes in one place, and Hydra refuses a wrong type or an unknown key at
composition time. The yaml option files start from their schema (``defaults:
[/schema/distiller/logit@_here_, _self_]``), name the ``_target_`` they build, and only override
values. Runtime arguments (:data:`distill.core.instantiate.RUNTIME_ARGUMENTS`) have no field.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import time
import types
import typing
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from distill.config.settings import RunSettings
from distill.core.disk_cache import cache_dir
from distill.core.instantiate import RUNTIME_ARGUMENTS
from distill.data import TaskData
from distill.distillers import DistillerFactory
from distill.loggers import WandbLogger

_PLAIN = (int, float, bool, str)


def _field_type(annotation: Any) -> Any:
    """An OmegaConf-compatible type: plain types and Optional plain types; Any otherwise."""
    if annotation in _PLAIN:
        return annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = next(a for a in args if a is not type(None))
        return inner | None if inner in _PLAIN else Any
    return Any


def _parameters(cls: type) -> tuple[list[inspect.Parameter], dict[str, Any]]:
    """The keywords of ``cls``'s constructor (over its hierarchy when it passes ``**base`` on, as the
    distillers do) and their type hints."""
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if "__init__" in vars(klass) and klass is not object:
            hints.update(typing.get_type_hints(klass.__init__))
    if hasattr(cls, "init_parameters"):
        return list(cls.init_parameters().values()), hints
    params = inspect.signature(cls.__init__).parameters.values()
    return [p for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)], hints


def schema_of(cls: type, target: str, runtime: tuple[str, ...]) -> type:
    """A dataclass with ``_target_: target`` and one typed field per constructor keyword but the ``runtime``
    ones."""
    params, hints = _parameters(cls)
    fields: list[tuple[str, Any, Any]] = [("_target_", str, target)]
    for p in params:
        if p.name in runtime:
            continue
        default = MISSING if p.default is p.empty else p.default  # "???": the yaml must set it
        kind = _field_type(hints.get(p.name, Any))
        if isinstance(default, (list, dict)):
            default = dataclasses.field(default_factory=lambda d=default: d)
        fields.append((p.name, kind, default))
    return dataclasses.make_dataclass(f"{cls.__name__}Schema", fields)


def run_stamp() -> str:
    """``<date>/<time>`` of the launch; under torchrun ``<date>/torchrun-<run id>``, the same on every
    rank (each resolves it, possibly in another second)."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    if run_id not in ("", "none"):
        return f"{time.strftime('%Y-%m-%d')}/torchrun-{run_id[:12]}"
    return time.strftime("%Y-%m-%d/%H-%M-%S")


def register() -> None:
    """Register the schemas and the ``distill_cache`` resolver (idempotent): call before
    composing ``conf/``."""
    if not OmegaConf.has_resolver("distill_cache"):
        OmegaConf.register_new_resolver("distill_cache", lambda: str(cache_dir()))
    if not OmegaConf.has_resolver("distill_run_stamp"):
        OmegaConf.register_new_resolver("distill_run_stamp", run_stamp, use_cache=True)
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunSettings)
    for mode in ("logit", "supervised", "language", "onpolicy"):
        cls = DistillerFactory.get(mode)
        target = f"distill.distillers.{cls.__name__}"
        store.store(group="schema/distiller", name=mode, node=schema_of(cls, target, RUNTIME_ARGUMENTS["distiller"]))
    data = schema_of(TaskData, "distill.data.TaskData", RUNTIME_ARGUMENTS["data"])
    store.store(group="schema/data", name="task", node=data)
    logger = schema_of(WandbLogger, "distill.loggers.WandbLogger", RUNTIME_ARGUMENTS["logger"])
    store.store(group="schema/logger", name="wandb", node=logger)
