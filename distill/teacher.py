"""The embedded teacher: trained here with the ``supervised`` distiller the first time it is
needed, then cached with ``save_pretrained`` and loaded by every later run.

The cache key hashes everything that shapes the teacher (architecture, data source, max
length, training recipe, tokenizer vocabulary), so changing any of them trains a new one.
A file lock makes parallel sweep jobs wait for one training instead of racing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from filelock import FileLock
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distill.models import TASKS, from_config, num_parameters

log = logging.getLogger(__name__)


def _plain(x: Any) -> Any:
    return OmegaConf.to_container(x, resolve=True) if isinstance(x, DictConfig) else x


def teacher_cache_key(tokenizer: PreTrainedTokenizerBase, **recipe: Any) -> str:
    blob = json.dumps({**{k: _plain(v) for k, v in recipe.items()}, "vocab": sorted(tokenizer.get_vocab().items())}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_or_train_teacher(
    tokenizer: PreTrainedTokenizerBase,
    architecture: DictConfig | dict,
    source: DictConfig | dict,
    recipe: DictConfig | dict,
    cache_dir: str,
    max_length: int = 128,
    task: str = "causal_lm",
) -> PreTrainedModel:
    """Load the cached teacher for this recipe, training and caching it first if needed.

    Args:
        tokenizer: the shared tokenizer.
        architecture: ``from_config`` keywords (model_type, n_layer, ...).
        source: the data ``source`` node (a DatasetDict constructor) to train on.
        recipe: ``max_steps``, ``lr``, ``batch_size``, ``warmup_steps``, ``seed``.
        cache_dir: where teachers are kept (``~`` expanded).
    """
    from distill.data import TaskData
    from distill.distillers import SupervisedDistiller
    from distill.loop import TrainConfig, fit

    architecture, recipe = _plain(architecture), _plain(recipe)
    key = teacher_cache_key(tokenizer, architecture=architecture, source=source, recipe=recipe, max_length=max_length, task=task)
    root = Path(cache_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"teacher-{key}"
    with FileLock(str(path) + ".lock"):
        if (path / "config.json").exists():
            log.info("using the cached teacher %s", path)
        else:
            log.info("training the embedded teacher (first run only; cached in %s)", path)
            data = TaskData(instantiate(source), tokenizer, task=task, max_length=max_length, batch_size=recipe["batch_size"])
            model = from_config(tokenizer=tokenizer, task=task, **architecture)
            print(f"Training the teacher ({num_parameters(model) / 1e6:.2f}M parameters); cached for later runs in {path}")
            fit(
                SupervisedDistiller(model, tokenizer=tokenizer),
                data.train_loader(seed=recipe.get("seed", 0)),
                None,
                TrainConfig(
                    max_steps=recipe["max_steps"], lr=recipe["lr"], warmup_steps=recipe.get("warmup_steps", 0),
                    seed=recipe.get("seed", 0), desc="teacher", device="auto",
                ),
            )
            tmp = path.with_name(path.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp)
            tmp.rename(path)
    return TASKS[task].from_pretrained(path, use_safetensors=True)
