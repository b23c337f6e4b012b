"""Start-up checks: every value that can be checked from the composed config, before anything is
built (no tokenizer, dataset, teacher or cache), so a bad command fails within seconds.

Hydra's schemas (:mod:`distill.config.schemas`) refuse wrong types and unknown keys while composing;
the checks here catch what a schema cannot: keys added with ``+``, keys the runner sets itself,
and out-of-range values, each as a :class:`~distill.core.errors.ConfigError` whose one line names
the key. A distiller's options are checked by its own ``check_config``, the code its constructor runs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from distill.core.errors import ConfigError, is_number, require
from distill.core.instantiate import MODEL_ARGUMENTS, RUNTIME_ARGUMENTS, accepted
from distill.loop import TrainConfig, TrainSettings

GROUPS = ("model", "data", "distiller", "optimizer", "logger")
# train.* keys the runner sets itself, and where a user sets them instead.
RUNNER_KEYS = {"seed": "the top-level seed (seed=N)", "output_dir": "hydra.run.dir (or hydra.sweep.dir under -m)"}


def importable(node: DictConfig, path: str) -> Any:
    """The object a ``_target_`` names, or one line saying it cannot be imported."""
    try:
        return get_object(node._target_)
    except Exception:
        raise ConfigError(f"{path}._target_={node._target_!r} is invalid: it cannot be imported") from None


def check_keys(node: Any, path: str, runtime: tuple[str, ...] = ()) -> None:
    """Every key of a ``_target_`` node (recursively) must be a parameter of its target, and none of the
    ``runtime`` arguments the runner passes."""
    if not isinstance(node, DictConfig):
        return
    if "_target_" in node:
        names, open_ended = accepted(importable(node, path))
        hidden = {"self", *MODEL_ARGUMENTS, *runtime}
        for key in node:
            key = str(key)
            require(key not in runtime or key.startswith("_"), f"{path}.{key}", node[key], "is set by the runner")
            if not key.startswith("_") and key not in names and not open_ended:
                allowed = ", ".join(sorted(n for n in names if n not in hidden))
                raise ConfigError(f"{path}.{key} is not a known key: allowed are {allowed}")
        if node.get("_recursive_", True) is False:
            return
    for key in node:
        check_keys(node._get_node(key), f"{path}.{key}")  # type: ignore[union-attr]


def check_train(train: DictConfig) -> None:
    """``train.*``: no runner-set key, no key added with ``+``, values in range."""
    for key in train:
        if key in RUNNER_KEYS:
            raise ConfigError(f"train.{key} is set by the runner: set {RUNNER_KEYS[key]} instead")
    fields = {f.name for f in dataclasses.fields(TrainSettings)}
    for key in train:
        require(key in fields, f"train.{key}", train[key], f"not a known key: allowed are {', '.join(sorted(fields))}")
    TrainConfig(**OmegaConf.to_container(train, resolve=True))  # type: ignore[arg-type]


def check_distiller(node: DictConfig) -> None:
    """The distiller's options, by its own ``check_config`` (the checks its constructor runs)."""
    target = importable(node, "distiller")
    if hasattr(target, "check_config"):
        options = OmegaConf.to_container(node, resolve=True)
        target.check_config({k: v for k, v in options.items() if not str(k).startswith("_")})  # type: ignore[union-attr]


def validate_config(cfg: DictConfig) -> None:
    """All start-up checks; cheap, so a bad command fails within seconds."""
    for group in GROUPS:
        require(group in cfg, group, None, f"the config needs a {group} group")
    for group in ("data", "distiller", "optimizer", "logger"):
        check_keys(cfg[group], group, RUNTIME_ARGUMENTS.get(group, ()))
    for part in ("tokenizer", "teacher", "student"):
        require(part in cfg.model, f"model.{part}", None, "every model config names a tokenizer, teacher and student")
        check_keys(cfg.model[part], f"model.{part}", RUNTIME_ARGUMENTS["model"])
    check_keys(cfg.model.get("teacher_tokenizer"), "model.teacher_tokenizer")
    check_keys(cfg.get("peft"), "peft", RUNTIME_ARGUMENTS["peft"])
    check_train(cfg.train)
    check_distiller(cfg.distiller)
    if "lr" in cfg.optimizer:
        lr = cfg.optimizer.lr
        require(is_number(lr) and lr > 0, "optimizer.lr", lr, "must be > 0")
