"""Hydra schemas, registered in the ConfigStore: the settings dataclasses and, for every
distiller and the data constructor, a schema made from the constructor's own signature.

A schema generated from ``__init__`` cannot drift from the code: a new keyword is a new key,
a default changes in one place, and Hydra refuses a wrong type or an unknown key at
composition time. The yaml option files start from their schema (``defaults:
[/schema/distiller/logit@_here_, _self_]``) and only override values.
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

from distill.data import TaskData
from distill.distillers import DistillerFactory
from distill.settings import RunSettings, cache_dir
from distill.tracking import WandbLogger

# Constructor arguments the runner passes (see distill.experiment), never set in a config.
DISTILLER_RUNTIME = ("student_model", "teacher_model", "teacher_targets", "tokenizer", "max_new_tokens", "task")
DATA_RUNTIME = ("tokenizer",)
LOGGER_RUNTIME = ("dir", "run_config", "run_id")
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


def schema_of(cls: type, target: str, runtime: tuple[str, ...]) -> type:
    """A dataclass with ``_target_: target`` and one typed field per keyword of ``cls.__init__``
    but the ``runtime`` ones."""
    hints = typing.get_type_hints(cls.__init__)
    fields: list[tuple[str, Any, Any]] = [("_target_", str, target)]
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
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
        store.store(group="schema/distiller", name=mode, node=schema_of(cls, target, DISTILLER_RUNTIME))
    store.store(group="schema/data", name="task", node=schema_of(TaskData, "distill.data.TaskData", DATA_RUNTIME))
    target = "distill.tracking.WandbLogger"
    store.store(group="schema/logger", name="wandb", node=schema_of(WandbLogger, target, LOGGER_RUNTIME))
