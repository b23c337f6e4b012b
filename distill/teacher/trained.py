"""Teachers trained here: the embedded teacher, trained the first time it is needed, and a pretrained
checkpoint fine-tuned on the task when asked; both are cached with ``save_pretrained`` and loaded by
every later run.

The cache key hashes everything that shapes the teacher (architecture or base checkpoint, training
recipe, the tokenized training data and the tokenizer), so changing any of them trains a new one.
Each is an entry of the one disk cache (:mod:`distill.core.disk_cache`): parallel sweep jobs wait
for one training instead of racing.

Training itself (the supervised distiller in the training loop, :func:`distill.run.fit_teacher`)
sits in the layers above this package; the runner passes it as ``fit_teacher``, as it passes the
tokenizer and the data.

A pretrained teacher is never used with weights initialised fresh (a classification head missing
from a base checkpoint): it is fine-tuned first with ``fine_tune: true``, else refused in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import save_model
from transformers import PreTrainedModel, PreTrainedTokenizerBase, set_seed

from distill.core.disk_cache import cache_dir as default_cache_dir
from distill.core.disk_cache import get_or_build
from distill.core.errors import ConfigError, require
from distill.core.fingerprints import files_fingerprint, sha256_json, tokenizer_fingerprint
from distill.data import TaskData
from distill.models.facts import AUTO_CLASSES, check_model_fits, num_parameters
from distill.models.loading import checkpoint_path, compact_names, from_config, load_pretrained

log = logging.getLogger(__name__)
# Trains a model on the data's training split for a recipe, in place: (model, tokenizer, data, recipe,
# progress) -> None. The runner passes distill.run.fit_teacher.
FitTeacher = Callable[[PreTrainedModel, PreTrainedTokenizerBase, TaskData, dict[str, Any], bool], None]


def load_or_train_teacher(
    tokenizer: PreTrainedTokenizerBase,
    data: TaskData,
    architecture: dict[str, Any],
    recipe: dict[str, Any],
    cache_dir: str | None = None,
    progress: bool = True,
    fit_teacher: FitTeacher | None = None,
) -> PreTrainedModel:
    """Load the cached teacher for this recipe, training and caching it first if needed
    (arguments as :func:`trained_teacher_dir`)."""
    path = trained_teacher_dir(tokenizer, data, architecture, recipe, cache_dir, progress, fit_teacher)
    return AUTO_CLASSES[data.task].from_pretrained(path, use_safetensors=True)


RECIPE_KEYS = ("max_steps", "lr", "batch_size")


def pretrained_teacher(
    name_or_path: str,
    tokenizer: PreTrainedTokenizerBase,
    data: TaskData,
    fine_tune: bool = False,
    recipe: dict[str, Any] | None = None,
    cache_dir: str | None = None,
    task: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    progress: bool = True,
    fit_teacher: FitTeacher | None = None,
    gguf_file: str | None = None,
    **config_overrides: Any,
) -> PreTrainedModel:
    """A pretrained teacher (hub id, local directory, a GGUF file in either, or ``package:<name>``) that never
    teaches from fresh weights.

    ``fine_tune=False``: the checkpoint as it is; one whose weights are not all in the checkpoint
    (e.g. ``classifier.weight`` of a base model loaded for classification) is refused with one line
    naming ``model.teacher.fine_tune``. ``fine_tune=True``: the checkpoint fine-tuned once on the
    data's training split with the supervised distiller for ``recipe`` (``max_steps``, ``lr``,
    ``batch_size``, ``warmup_steps``, ``seed``), cached like the embedded teacher (key: the
    checkpoint's files, the overrides, the recipe, the data and the tokenizer). ``task`` defaults to
    the data's; ``config_overrides`` go to the model config (``num_labels: 2``).
    """
    task = task or data.task
    require(task == data.task, "model.teacher.task", task, f"must be the data's task, {data.task}")
    load = dict(task=task, revision=revision, trust_remote_code=trust_remote_code, **config_overrides)
    if gguf_file:
        load["gguf_file"] = gguf_file
    if fine_tune:
        path = fine_tuned_dir(name_or_path, load, tokenizer, data, recipe, cache_dir, progress, fit_teacher)
        return AUTO_CLASSES[task].from_pretrained(path, use_safetensors=True)
    loaded = load_pretrained(name_or_path, **load)
    if loaded.fresh:
        raise ConfigError(
            f"model.teacher.name_or_path={name_or_path!r} has weights initialised fresh "
            f"({compact_names(loaded.fresh)}), so it would teach noise: set model.teacher.fine_tune=true to "
            "fine-tune it on the training split first (once, cached), or use a checkpoint trained for the task"
        )
    return loaded.model


def fine_tuned_dir(
    name_or_path: str,
    load: dict[str, Any],
    tokenizer: PreTrainedTokenizerBase,
    data: TaskData,
    recipe: dict[str, Any] | None,
    cache_dir: str | None = None,
    progress: bool = True,
    fit_teacher: FitTeacher | None = None,
) -> Path:
    """The cached fine-tuned copy of a checkpoint (``load``: :func:`~distill.models.load_pretrained`'s
    keywords), fine-tuned first if needed."""
    ok = isinstance(recipe, dict) and all(k in recipe for k in RECIPE_KEYS)
    optional = "warmup_steps, seed, optimizer, matrix_lr, fast_activations"
    allowed = f"fine_tune=true needs a recipe with {', '.join(RECIPE_KEYS)} (optionally {optional})"
    require(ok, "model.teacher.recipe", recipe, allowed)
    recipe = dict(recipe or {})
    source = checkpoint_path(name_or_path, load.get("gguf_file"), load.get("task", "causal_lm"))
    local = Path(source).expanduser()  # a local checkpoint is known by its files, a hub one by its id
    base = files_fingerprint(local) if local.is_dir() else {"name": name_or_path, "revision": load.get("revision")}
    spec = {"base": base, "load": load, "recipe": recipe}

    def train(path: Path) -> None:
        set_seed(recipe.get("seed", 0))  # a fresh head's initialisation depends on the recipe only
        loaded = load_pretrained(name_or_path, **load)
        check_model_fits(loaded.model, "model.teacher", data.max_length)
        check_num_labels(loaded.model, data, "model.teacher")
        fresh = f"; fresh: {compact_names(loaded.fresh)}" if loaded.fresh else ""
        size = f"{num_parameters(loaded.model) / 1e6:.1f}M parameters{fresh}"
        print(f"Fine-tuning the teacher {name_or_path} ({size}) for {recipe['max_steps']} steps on the training "
              f"split; cached for later runs in {final}")  # fmt: skip
        require_trainer(fit_teacher)(loaded.model, tokenizer, data, recipe, progress)
        save_on_this_rank(loaded.model, path)

    final = cached_dir(spec, tokenizer, data, cache_dir)
    return cached_teacher(final, train)


def trained_teacher_dir(
    tokenizer: PreTrainedTokenizerBase,
    data: TaskData,
    architecture: dict[str, Any],
    recipe: dict[str, Any],
    cache_dir: str | None = None,
    progress: bool = True,
    fit_teacher: FitTeacher | None = None,
) -> Path:
    """The directory of the cached teacher for this recipe (``save_pretrained``), trained first if needed.

    Args:
        tokenizer: the shared tokenizer (the runner passes it).
        data: the run's :class:`~distill.data.TaskData` (the runner passes it); the teacher
            trains on its training split, for its task.
        architecture: ``from_config`` keywords (model_type, n_layer, ...).
        recipe: ``max_steps``, ``lr``, ``batch_size``, ``warmup_steps``, ``seed``, ``optimizer``
            (``adamw`` or ``muon``), with ``muon`` ``matrix_lr``, and ``fast_activations`` (default
            false, so the published teacher stays the one its cache key names; see
            :mod:`distill.models.activations`).
        cache_dir: where teachers are kept (default ``$DISTILL_CACHE``, else ``~/.cache/distill``).
        progress: show the training's progress bar (the runner passes ``train.progress``).
        fit_teacher: what trains it (the runner passes :func:`distill.run.fit_teacher`); needed only
            when the teacher is not cached yet.
    """
    spec = {"architecture": architecture, "recipe": recipe}

    def train(path: Path) -> None:
        log.info("training the embedded teacher (first run only; cached in %s)", final)
        set_seed(recipe.get("seed", 0))  # the teacher depends on its recipe only, not on the run that trains it
        model = from_config(tokenizer=tokenizer, task=data.task, **architecture)
        check_model_fits(model, "model.teacher.architecture", data.max_length, architecture)
        check_num_labels(model, data, "model.teacher.architecture")
        print(f"Training the teacher ({num_parameters(model) / 1e6:.2f}M parameters); cached for later runs in {final}")
        require_trainer(fit_teacher)(model, tokenizer, data, recipe, progress)
        save_on_this_rank(model, path)

    final = cached_dir(spec, tokenizer, data, cache_dir)
    return cached_teacher(final, train)


def check_num_labels(model: PreTrainedModel, data: TaskData, key: str) -> None:
    """A classifier must have a class for every label in the data (one line naming ``<key>.num_labels``)."""
    if data.task != "classification":
        return
    top = max(max(data.task_train["label"]), max(data.validation["label"]))
    n = model.config.num_labels
    require(top < n, f"{key}.num_labels", n, f"the data has labels up to {top}: set it to {top + 1} or more")


def cached_dir(spec: dict[str, Any], tokenizer: PreTrainedTokenizerBase, data: TaskData, cache_dir: str | None) -> Path:
    """``<cache_dir>/teacher-<key>``, key = sha256 of ``spec`` with the task, the training data's fingerprint
    and the tokenizer's, so any change trains anew."""
    data_fp, tokenizer_fp = data.fingerprint("task_train"), tokenizer_fingerprint(tokenizer)
    key = sha256_json({**spec, "task": data.task, "data": data_fp, "tokenizer": tokenizer_fp})[:16]
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    return root / f"teacher-{key}"


def cached_teacher(path: Path, train: Callable[[Path], None]) -> Path:
    """``path``, made by ``train(directory)`` under its lock if it is not there yet."""
    if not get_or_build(path, train, ready=lambda p: (p / "config.json").exists()):
        log.info("using the cached teacher %s", path)
    return path


def require_trainer(fit_teacher: FitTeacher | None) -> FitTeacher:
    """The trainer, or one line saying what to pass (a teacher that is not cached yet must be trained)."""
    if fit_teacher is None:
        raise ConfigError("training a teacher needs fit_teacher: pass distill.run.fit_teacher (train.py does)")
    return fit_teacher


def save_on_this_rank(model: PreTrainedModel, path: Path) -> None:
    """``save_pretrained``'s files (config, generation config, safetensors weights), written by this process
    whatever its rank: inside a process group ``save_pretrained`` writes on rank 0 only, and a teacher
    is trained by whichever rank takes its lock first. ``path`` must not exist yet."""
    path.mkdir(parents=True)
    model.config.save_pretrained(path)
    if model.can_generate():
        model.generation_config.save_pretrained(path)
    save_model(model, str(path / "model.safetensors"))
