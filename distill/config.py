"""Config checks run at start-up, before any model is loaded, and the one instantiate helper.

Every violation raises :class:`~distill.errors.ConfigError` with one line naming the key, the
value and what is allowed; ``train.py`` prints it and exits non-zero without a traceback.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf

from distill.errors import ConfigError, DistillError, require
from distill.losses import DIVERGENCES

Rule = tuple[Callable[[Any], bool], str]


def _positive(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _unit(v: Any) -> bool:
    return isinstance(v, (int, float)) and 0.0 <= v <= 1.0


# Hyperparameters shared by the distillers; each distiller checks the ones it takes.
DISTILLER_RULES: dict[str, Rule] = {
    "temperature": (lambda v: isinstance(v, (int, float)) and v > 0, "must be > 0"),
    "alpha": (_unit, "must be in [0, 1]"),
    "beta": (_unit, "must be in [0, 1]"),
    "lmbda": (_unit, "must be in [0, 1]"),
    "divergence": (lambda v: v in DIVERGENCES, f"must be one of {', '.join(DIVERGENCES)}"),
    "top_p": (lambda v: isinstance(v, (int, float)) and 0.0 < v <= 1.0, "must be in (0, 1]"),
    "max_length": (_positive, "must be a positive integer"),
    "max_new_tokens": (_positive, "must be a positive integer"),
    "num_samples": (_positive, "must be a positive integer"),
}
DATA_RULES: dict[str, Rule] = {
    "batch_size": (_positive, "must be a positive integer"),
    "eval_batch_size": (_positive, "must be a positive integer"),
    "max_length": (_positive, "must be a positive integer"),
    "max_new_tokens": (_positive, "must be a positive integer"),
    "max_eval_examples": (lambda v: v is None or _positive(v), "must be a positive integer or null"),
}


def check_options(prefix: str, options: dict[str, Any], rules: dict[str, Rule] = DISTILLER_RULES) -> None:
    """Apply ``rules`` to the keys of ``options`` that have one."""
    for key, value in options.items():
        if key in rules:
            ok, allowed = rules[key]
            require(ok(value), f"{prefix}.{key}", value, allowed)


def _parameters(target: Any) -> tuple[set[str], bool]:
    """Keyword names ``target`` takes and whether it also takes ``**kwargs``."""
    if hasattr(target, "init_parameter_names"):
        return target.init_parameter_names(), False
    sig = inspect.signature(target)
    names = {p.name for p in sig.parameters.values() if p.kind is not p.VAR_POSITIONAL}
    return names, any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def check_keys(node: Any, path: str) -> None:
    """Every key of a ``_target_`` node (recursively) must be a parameter of its target."""
    if not isinstance(node, DictConfig):
        return
    if "_target_" in node:
        try:
            target = get_object(node._target_)
        except Exception:
            raise ConfigError(f"{path}._target_={node._target_!r} is invalid: it cannot be imported") from None
        names, open_ended = _parameters(target)
        unknown = [k for k in node if not str(k).startswith("_") and k not in names]
        if unknown and not open_ended:
            allowed = ", ".join(sorted(n for n in names if n not in ("self", "student_model", "teacher_model", "tokenizer")))
            raise ConfigError(f"{path}.{unknown[0]} is not a known key: allowed are {allowed}")
        if node.get("_recursive_", True) is False:
            return
    for key in node:
        check_keys(node._get_node(key), f"{path}.{key}")  # type: ignore[union-attr]


def validate_config(cfg: DictConfig) -> None:
    """All start-up checks; cheap, so a bad command fails within seconds."""
    from distill.loop import TrainConfig

    for group in ("model", "data", "distiller", "optimizer", "logger"):
        require(group in cfg, group, None, f"the config needs a {group} group")
    for group in ("data", "distiller", "optimizer", "logger"):
        check_keys(cfg[group], group)
    for part in ("tokenizer", "teacher", "student"):
        require(part in cfg.model, f"model.{part}", None, "every model config names a tokenizer, teacher and student")
        check_keys(cfg.model[part], f"model.{part}")
    check_keys(cfg.model.get("teacher_tokenizer"), "model.teacher_tokenizer")
    check_options("distiller", OmegaConf.to_container(cfg.distiller, resolve=True))  # type: ignore[arg-type]
    check_options("data", OmegaConf.to_container(cfg.data, resolve=True), DATA_RULES)  # type: ignore[arg-type]
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in cfg.train:
        require(key in fields, f"train.{key}", cfg.train[key], f"not a known key: allowed are {', '.join(sorted(fields))}")
    TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True))  # type: ignore[arg-type]
    if "lr" in cfg.optimizer:
        require(isinstance(cfg.optimizer.lr, (int, float)) and cfg.optimizer.lr > 0, "optimizer.lr", cfg.optimizer.lr, "must be > 0")


def build(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` with the project's options: plain containers for arguments, and
    a user error raised inside a constructor surfaces as itself, not wrapped by Hydra."""
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, DistillError):
            raise e.__cause__ from None
        raise
