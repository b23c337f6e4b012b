"""Building objects from ``_target_`` nodes, and the one list of runtime arguments.

A config group's constructor may declare runtime objects that no config sets: the runner passes
them (:data:`RUNTIME_ARGUMENTS`, by group). This list is the interface between the groups; schemas
leave these keys out, start-up checks refuse them in a config, and :func:`runtime_kwargs` picks
the ones a target declares.
"""

from __future__ import annotations

import inspect
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate

from distill.core.errors import DistillError

MODEL_ARGUMENTS = ("student_model", "teacher_model", "tokenizer")  # a distiller's models, passed by the caller
RUNTIME_ARGUMENTS: dict[str, tuple[str, ...]] = {
    # the tokenizer and the data; the trainer of a teacher built here; the teacher a student is born from
    "model": ("tokenizer", "data", "progress", "fit_teacher", "teacher"),
    "data": ("tokenizer",),
    # the models, a built teacher-logit cache, the data's task and generation budget, the teacher's tokenizer bridge
    "distiller": (*MODEL_ARGUMENTS, "teacher_targets", "task", "max_new_tokens", "teacher_tokenizer"),
    "logger": ("dir", "run_config", "run_id"),
    "peft": ("student",),  # the student the adapters go on
}


def accepted(target: Any) -> tuple[set[str], bool]:
    """Keyword names ``target`` takes and whether it also takes ``**kwargs``."""
    if hasattr(target, "init_parameter_names"):
        return target.init_parameter_names(), False
    sig = inspect.signature(target)
    names = {p.name for p in sig.parameters.values() if p.kind is not p.VAR_POSITIONAL}
    return names, any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def runtime_kwargs(node: Any, available: dict[str, Any]) -> dict[str, Any]:
    """The runtime objects in ``available`` that ``node``'s target declares and the node does not set itself."""
    names, _ = accepted(get_object(node._target_))
    return {k: v for k, v in available.items() if k in names and k not in node}


def build(node: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` with the project's options: plain containers for arguments, and
    a user error raised inside a constructor surfaces as itself, not wrapped by Hydra."""
    try:
        return instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, DistillError):
            raise e.__cause__ from None
        raise
