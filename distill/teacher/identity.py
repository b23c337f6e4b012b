"""The teacher's one identity: the hash every teacher cache is keyed on (its logit cache, its generations,
its metrics).

A teacher built by a run is known by a hash of its weight files and its config node, which the run
can compute without loading the model (:meth:`distill.teacher.TeacherSource.identity`); the run
records it on the model it loads (:func:`remember`). A teacher handed over in Python is known by
:func:`~distill.core.fingerprints.model_fingerprint`, its config and every tensor, computed once.
:func:`teacher_identity` gives whichever applies, so a distiller keys its caches the same way
whether ``train.py`` or a Python caller built it.
"""

from __future__ import annotations

import weakref

from torch import nn

from distill.core.fingerprints import model_fingerprint
from distill.models.facts import unwrap

_KNOWN: weakref.WeakKeyDictionary[nn.Module, str] = weakref.WeakKeyDictionary()


def remember(teacher: nn.Module, identity: str) -> None:
    """Record ``identity`` as the identity of ``teacher`` (the run that built it knows it without hashing)."""
    _KNOWN[unwrap(teacher)] = identity


def teacher_identity(teacher: nn.Module) -> str:
    """The identity recorded for ``teacher``, else its model fingerprint (computed once, then recorded)."""
    model = unwrap(teacher)
    if model not in _KNOWN:
        _KNOWN[model] = model_fingerprint(model)
    return _KNOWN[model]
