"""Fitting a teacher: the supervised distiller in the training loop, for a teacher recipe.

:mod:`distill.teacher` caches trained teachers but cannot train one (training needs the loop and a
distiller, which sit above it); the runner hands it :func:`fit_teacher`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distill.core.errors import require
from distill.data import TaskData
from distill.distillers import SupervisedDistiller
from distill.loop import TrainConfig, fit
from distill.optim import MuonAdamW, split_for_muon


def fit_teacher(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: TaskData,
    recipe: dict[str, Any],
    progress: bool = True,
) -> None:
    """Train ``model`` in place on ``data``'s whole labelled training split (``task_train``) with the
    supervised distiller (cross-entropy on the labels) for ``recipe`` (``max_steps``, ``lr``, ``batch_size``,
    ``warmup_steps``, ``seed``, ``optimizer``, ``matrix_lr``, ``fast_activations``)."""
    seed = recipe.get("seed", 0)
    optimizer = recipe_optimizer(model, recipe)
    started = time.perf_counter()
    fit(
        SupervisedDistiller(
            model, tokenizer=tokenizer, task=data.task, fast_activations=recipe.get("fast_activations", False)
        ),
        data.train_loader(seed=seed, batch_size=recipe["batch_size"], split="task_train"),
        None,
        optimizer=optimizer,
        cfg=TrainConfig(
            max_steps=recipe["max_steps"],
            lr=recipe["lr"],
            warmup_steps=recipe.get("warmup_steps", 0),
            seed=seed,
            desc="teacher",
            progress=progress,
            device="auto",
            strategy="single",  # every rank trains the same teacher alone (under a file lock), never a DDP job
        ),
    )
    print(f"Teacher trained in {time.perf_counter() - started:.0f} s ({torch.get_num_threads()} threads)")


def recipe_optimizer(
    model: PreTrainedModel, recipe: dict[str, Any]
) -> Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer] | None:
    """The recipe's ``optimizer``: ``adamw`` (the default: the loop's AdamW with ``lr``) or ``muon``
    (:class:`~distill.optim.MuonAdamW`: Muon with ``matrix_lr``, default 0.02, on the hidden matrices,
    AdamW with ``lr`` on the rest)."""
    name = recipe.get("optimizer", "adamw")
    require(name in ("adamw", "muon"), "model.teacher.recipe.optimizer", name, "adamw or muon")
    if name == "adamw":
        return None
    matrix_lr = recipe.get("matrix_lr", 0.02)
    return lambda _params: MuonAdamW(*split_for_muon(model), lr=matrix_lr, adamw_lr=recipe["lr"])
