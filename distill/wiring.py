"""Wiring a composed config to objects: the start-up checks, and the one instantiate helper.

Hydra's schemas (:mod:`distill.schemas`) refuse wrong types and unknown keys while composing;
the checks here catch what a schema cannot: keys added with ``+``, keys the runner sets itself,
and out-of-range values, each as a :class:`~distill.errors.ConfigError` whose one line names the
key. They run before any model is loaded, so a bad command fails within seconds.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from distill.distillers.sources import generation_settings
from distill.errors import ConfigError, DistillError, require, require_fraction
from distill.losses import Objective
from distill.settings import RUNNER_KEYS, TrainConfig, TrainSettings

GROUPS = ("model", "data", "distiller", "optimizer", "logger")


def accepted(target: Any) -> tuple[set[str], bool]:
    """Keyword names ``target`` takes and whether it also takes ``**kwargs``."""
    if hasattr(target, "init_parameter_names"):
        return target.init_parameter_names(), False
    sig = inspect.signature(target)
    names = {p.name for p in sig.parameters.values() if p.kind is not p.VAR_POSITIONAL}
    return names, any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def runtime_kwargs(node: Any, available: dict[str, Any]) -> dict[str, Any]:
    """The runtime objects (tokenizer, data, models, ...) that ``node``'s target declares and
    the node does not set itself: the documented interface between the groups."""
    names, _ = accepted(get_object(node._target_))
    return {k: v for k, v in available.items() if k in names and k not in node}


def check_keys(node: Any, path: str) -> None:
    """Every key of a ``_target_`` node (recursively) must be a parameter of its target."""
    if not isinstance(node, DictConfig):
        return
    if "_target_" in node:
        try:
            target = get_object(node._target_)
        except Exception:
            raise ConfigError(f"{path}._target_={node._target_!r} is invalid: it cannot be imported") from None
        names, open_ended = accepted(target)
        unknown = [k for k in node if not str(k).startswith("_") and k not in names]
        if unknown and not open_ended:
            allowed = ", ".join(
                sorted(n for n in names if n not in ("self", "student_model", "teacher_model", "tokenizer"))
            )
            raise ConfigError(f"{path}.{unknown[0]} is not a known key: allowed are {allowed}")
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


def check_distiller_options(options: dict[str, Any]) -> None:
    """The shared hyperparameters, by the same code the distillers' constructors run."""
    for key in ("alpha", "lmbda"):
        if key in options:
            require_fraction(f"distiller.{key}", options[key])
    if "divergence" in options or "temperature" in options:
        Objective(
            divergence=options.get("divergence", "forward_kl"),
            temperature=options.get("temperature", 1.0),
            beta=options.get("beta", 0.5),
        )
    if "top_p" in options:
        generation_settings(
            options.get("max_length") or 1,
            bool(options.get("do_sample")),
            options.get("temperature", 1.0),
            options["top_p"],
            options.get("num_samples", 1),
        )


def validate_config(cfg: DictConfig) -> None:
    """All start-up checks; cheap, so a bad command fails within seconds."""
    for group in GROUPS:
        require(group in cfg, group, None, f"the config needs a {group} group")
    for group in ("data", "distiller", "optimizer", "logger"):
        check_keys(cfg[group], group)
    for part in ("tokenizer", "teacher", "student"):
        require(part in cfg.model, f"model.{part}", None, "every model config names a tokenizer, teacher and student")
        check_keys(cfg.model[part], f"model.{part}")
    check_keys(cfg.model.get("teacher_tokenizer"), "model.teacher_tokenizer")
    check_train(cfg.train)
    check_distiller_options(OmegaConf.to_container(cfg.distiller, resolve=True))  # type: ignore[arg-type]
    if "lr" in cfg.optimizer:
        require(
            isinstance(cfg.optimizer.lr, (int, float)) and cfg.optimizer.lr > 0,
            "optimizer.lr",
            cfg.optimizer.lr,
            "must be > 0",
        )


def build(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` with the project's options: plain containers for arguments, and
    a user error raised inside a constructor surfaces as itself, not wrapped by Hydra."""
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, DistillError):
            raise e.__cause__ from None
        raise
