"""How a run gets its teacher: the model, or only its cached sparse targets, and its metrics.

A frozen teacher's identity is a hash of its weight files and its config node, read without
loading the model when its constructor says where the files are (a local or hub-cached
``distill.models.pretrained`` checkpoint, or the embedded teacher's cache directory). That identity
keys the teacher-logit cache, the teacher's generations and its metrics, so a sweep that reuses
them never loads the teacher at all.
"""

from __future__ import annotations

import gc
import logging
from functools import partial
from pathlib import Path
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf
from torch import nn
from transformers import set_seed

from distill.core import ranks
from distill.core.disk_cache import cache_dir, cached_json
from distill.core.fingerprints import files_fingerprint, model_fingerprint, sha256_json
from distill.core.instantiate import build, runtime_kwargs
from distill.data import TaskData
from distill.data.alignment import TokenizerBridge
from distill.inference.evaluation import evaluate_model
from distill.losses import DEFAULT_CHUNK_SIZE
from distill.models import check_model_fits, num_parameters, output_width, pretrained, pretrained_dir
from distill.teacher.generations import label_unlabelled
from distill.teacher.identity import remember
from distill.teacher.logit_cache import (
    DEFAULT_DRAW_TEMPERATURE,
    DEFAULT_SIZE,
    CacheSettings,
    TeacherLogitCache,
    cache_key,
    open_or_build,
    teacher_logit_chunks,
)
from distill.teacher.logit_cache import build as build_cache
from distill.teacher.trained import FitTeacher, load_or_train_teacher, trained_teacher_dir

log = logging.getLogger(__name__)


def weights_dir(node: DictConfig, available: dict[str, Any]) -> Path | None:
    """Where the teacher's files are, without loading it (None: unknown for this constructor)."""
    target = get_object(node._target_)
    if target is pretrained:
        return pretrained_dir(
            node.name_or_path, node.get("revision"), node.get("gguf_file"), node.get("task", "causal_lm")
        )
    if target is load_or_train_teacher:  # trains it first if needed, under its lock
        kwargs = runtime_kwargs(node, available)
        options = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "_target_"}
        return trained_teacher_dir(**options, **kwargs)
    return None


class TeacherSource:
    """The run's teacher, loaded at most once and only when something needs the model itself.

    ``fit_teacher`` trains a teacher its constructor builds here (:func:`distill.run.fit_teacher`);
    without it, a teacher that is not cached yet cannot be trained."""

    def __init__(self, cfg: DictConfig, tokenizer: Any, data: TaskData, fit_teacher: FitTeacher | None = None) -> None:
        self.cfg, self.tokenizer, self.data = cfg, tokenizer, data
        progress = cfg.train.get("progress", True) if "train" in cfg else True
        # what teacher constructors may take (distill.core.instantiate.RUNTIME_ARGUMENTS["model"])
        self.available = {"tokenizer": tokenizer, "data": data, "progress": progress, "fit_teacher": fit_teacher}
        self.root = Path(cfg.paths.cache_dir) if "paths" in cfg else cache_dir()
        self._model: nn.Module | None = None
        self._identity: str | None = None

    def model(self) -> nn.Module:
        """The teacher, built from ``set_seed(cfg.seed)``, checked against the data, its identity recorded."""
        if self._model is None:
            set_seed(self.cfg.seed)
            node = self.cfg.model.teacher
            self._model = build(node, **runtime_kwargs(node, self.available))
            check_model_fits(self._model, "model.teacher", self.data.max_length, node)
            remember(self._model, self.identity())
        return self._model

    def release(self) -> None:
        self._model = None
        gc.collect()

    def identity(self) -> str:
        """A hash of the teacher's weight files and config node (the node's cache_dir excluded)."""
        if self._identity is None:
            node = self.cfg.model.teacher
            spec = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "cache_dir"}
            directory = weights_dir(node, self.available)
            files = files_fingerprint(directory) if directory is not None else model_fingerprint(self.model())
            self._identity = sha256_json({"files": files, "node": spec})
        return self._identity

    def label_unlabelled(self, data: TaskData | None = None, bridge: TokenizerBridge | None = None) -> None:
        """The unlabelled training prompts of ``data`` (the student's; default: the teacher's own data) get the
        teacher's greedy responses (cached under ``<cache>/generations``), through ``bridge`` when the student
        has its own tokenizer: see :func:`distill.teacher.label_unlabelled`."""
        data = data or self.data
        if not data.has_unlabelled:
            return
        directory, progress = self.root / "generations", self.available["progress"]
        n = label_unlabelled(data, self.model(), directory, progress=progress, bridge=bridge)
        rows = len(data.train) - data.num_labelled
        print(f"training set: {data.num_labelled} labelled examples and {rows} examples of {n} distinct prompts "
              "the teacher labelled")  # fmt: skip

    def targets(self) -> TeacherLogitCache:
        """The teacher-logit cache: reused, or built by one pass of the teacher (then released)."""
        d, data = self.cfg.distiller, self.data
        settings = CacheSettings(
            d.teacher_cache,
            d.get("teacher_cache_size", DEFAULT_SIZE),
            temperature=d.get("teacher_cache_temperature", DEFAULT_DRAW_TEMPERATURE),
            tail=d.get("teacher_cache_tail", False),
        )
        key = cache_key(self.identity(), data.train, settings)
        root = Path(d.cache_dir) if d.get("cache_dir") else self.root / "teacher-logits"

        def build_fn(path: Path) -> None:
            log.info("building the teacher cache: one pass of the teacher over %d training examples", len(data.train))
            teacher = self.model()
            width = min(output_width(teacher), len(self.tokenizer))
            chunks = partial(teacher_logit_chunks, teacher, width=width)
            build_cache(path, data.ordered_loader("train"), chunks, settings, len(data.train), {"width": width})
            self.release()

        cache, built = open_or_build(root, key, build_fn, log)
        print(f"teacher cache {'built' if built else 'reused'}: {cache.path} ({cache.bytes_per_token} bytes per "
              "token); training does not load the teacher")  # fmt: skip
        return cache

    def metrics(self) -> dict[str, float]:
        """``teacher/<m>`` (validation), ``teacher/test_<m>`` and ``teacher/params``, each computed once
        per teacher and split and kept under ``<cache>/teacher-metrics`` (under torchrun, by rank 0;
        a teacher sharded with FSDP2 is evaluated by every rank, in step, and not cached)."""
        metrics: dict[str, float] = {}
        data = self.data
        sharded = self._model is not None and ranks.is_sharded(self._model)
        for prefix, split in (("", "validation"), ("test_", "test")):
            if getattr(data, split) is None:
                continue
            key = {"teacher": self.identity(), "data": data.fingerprint(split), "max_new_tokens": data.max_new_tokens}
            compute = partial(self._evaluate, split)
            values = (
                compute()
                if sharded
                else ranks.main_first(partial(cached_json, self.root / "teacher-metrics", key, compute))
            )
            metrics.update({f"teacher/{prefix}{k}": v for k, v in values.items()})
        return metrics

    def _evaluate(self, split: str) -> dict[str, float]:
        data, model = self.data, self.model()
        loader = data.val_loader() if split == "validation" else data.test_loader()
        chunk_size = self.cfg.distiller.get("chunk_size", DEFAULT_CHUNK_SIZE) or None  # the run's loss path
        values = evaluate_model(
            model, loader, self.tokenizer, data.max_new_tokens, data.task, chunk_size=chunk_size, shard=False
        )[0]
        return {**values, **({"params": num_parameters(model)} if split == "validation" else {})}
