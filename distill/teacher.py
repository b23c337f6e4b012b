"""The embedded teacher: trained here with the ``supervised`` distiller the first time it is
needed, then cached with ``save_pretrained`` and loaded by every later run.

The cache key hashes everything that shapes the teacher (architecture, training recipe, the
tokenized training data and the tokenizer), so changing any of them trains a new one. A file
lock makes parallel sweep jobs wait for one training instead of racing.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from filelock import FileLock
from transformers import PreTrainedModel, PreTrainedTokenizerBase, set_seed

from distill.data import TaskData
from distill.distillers import SupervisedDistiller
from distill.fingerprints import sha256_json, tokenizer_fingerprint
from distill.loop import TrainConfig, fit
from distill.models import AUTO_CLASSES, check_model_fits, from_config, num_parameters
from distill.settings import cache_dir as default_cache_dir

log = logging.getLogger(__name__)


def load_or_train_teacher(
    tokenizer: PreTrainedTokenizerBase,
    data: TaskData,
    architecture: dict[str, Any],
    recipe: dict[str, Any],
    cache_dir: str | None = None,
) -> PreTrainedModel:
    """Load the cached teacher for this recipe, training and caching it first if needed
    (arguments as :func:`trained_teacher_dir`)."""
    path = trained_teacher_dir(tokenizer, data, architecture, recipe, cache_dir)
    return AUTO_CLASSES[data.task].from_pretrained(path, use_safetensors=True)


def trained_teacher_dir(
    tokenizer: PreTrainedTokenizerBase,
    data: TaskData,
    architecture: dict[str, Any],
    recipe: dict[str, Any],
    cache_dir: str | None = None,
) -> Path:
    """The directory of the cached teacher for this recipe (``save_pretrained``), trained first if needed.

    Args:
        tokenizer: the shared tokenizer (the runner passes it).
        data: the run's :class:`~distill.data.TaskData` (the runner passes it); the teacher
            trains on its training split, for its task.
        architecture: ``from_config`` keywords (model_type, n_layer, ...).
        recipe: ``max_steps``, ``lr``, ``batch_size``, ``warmup_steps``, ``seed``.
        cache_dir: where teachers are kept (default ``$DISTILL_CACHE``, else ``~/.cache/distill``).
    """
    key = sha256_json(
        {
            "architecture": architecture,
            "recipe": recipe,
            "task": data.task,
            "data": data.fingerprint(),
            "tokenizer": tokenizer_fingerprint(tokenizer),
        }
    )[:16]
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"teacher-{key}"
    with FileLock(str(path) + ".lock"):
        if (path / "config.json").exists():
            log.info("using the cached teacher %s", path)
        else:
            _train(tokenizer, data, architecture, recipe, path)
    return path


def _train(
    tokenizer: PreTrainedTokenizerBase, data: TaskData, architecture: dict[str, Any], recipe: dict[str, Any], path: Path
) -> None:
    log.info("training the embedded teacher (first run only; cached in %s)", path)
    seed = recipe.get("seed", 0)
    set_seed(seed)  # the teacher depends on its recipe only, not on the run that trains it
    model = from_config(tokenizer=tokenizer, task=data.task, **architecture)
    check_model_fits(model, "model.teacher.architecture", data.max_length, architecture)
    print(f"Training the teacher ({num_parameters(model) / 1e6:.2f}M parameters); cached for later runs in {path}")
    fit(
        SupervisedDistiller(model, tokenizer=tokenizer, task=data.task),
        data.train_loader(seed=seed, batch_size=recipe["batch_size"]),
        None,
        TrainConfig(
            max_steps=recipe["max_steps"],
            lr=recipe["lr"],
            warmup_steps=recipe.get("warmup_steps", 0),
            seed=seed,
            desc="teacher",
            device="auto",
        ),
    )
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tmp.rename(path)
