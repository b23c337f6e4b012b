"""The teacher's generated completions, cached on disk (sequence-level and on-policy distillation).

One JSON file per (teacher, tokenizer, prompt set, generation settings) under ``cache_dir``
(default ``<cache>/generations``): the teacher is known by its identity
(:func:`~distill.teacher.identity.teacher_identity`), the prompt set by a hash of its prompts and
their token ids. The file is an entry of the project's one disk cache (locked, written atomically).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.core import ranks
from distill.core.disk_cache import cache_dir as default_cache_dir
from distill.core.disk_cache import get_or_build, write_atomic
from distill.core.errors import require_int
from distill.core.fingerprints import sha256_json, tokenizer_fingerprint
from distill.data import TaskData
from distill.data.alignment import TokenizerBridge
from distill.inference.generation import Completions, GenerationSettings, generate_completions
from distill.teacher.identity import teacher_identity

log = logging.getLogger(__name__)


def generation_cache_key(
    identity: str, tokenizer_fp: str, prompts: dict[str, list[int]], settings: GenerationSettings
) -> str:
    """The cache key: a hash of the teacher's identity, the tokenizer, the prompt set and the settings."""
    prompt_set = sha256_json(sorted(prompts.items()))
    parts = {"model": identity, "tokenizer": tokenizer_fp, "prompts": prompt_set, "settings": settings.key_fields()}
    return sha256_json(parts)[:20]


def cached_generations(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: dict[str, list[int]],
    settings: GenerationSettings,
    cache_dir: str | Path,
    name: str = "generations",
    batch_size: int = 64,
    progress: bool = True,
) -> tuple[Completions, Path]:
    """The model's completions of ``prompts``: read from ``cache_dir`` or generated and stored.

    ``name`` labels the file (``<name>-<key>.json``); it is not part of the key. Under torchrun
    every rank generates its share of the prompts (each prompt once) and rank 0 writes the file.
    Returns the completions (prompt text -> num_samples token lists) and the cache file.
    """
    identity = teacher_identity(model)
    key = generation_cache_key(identity, tokenizer_fingerprint(tokenizer), prompts, settings)
    path = Path(cache_dir).expanduser() / f"{name}-{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)

    def record(completions: Completions) -> dict[str, Any]:
        return {"settings": asdict(settings), "model": identity, "completions": completions}

    if ranks.world() > 1 and not ranks.is_sharded(model):
        if not ranks.broadcast(path.exists()):
            share = {p: ids for i, (p, ids) in enumerate(sorted(prompts.items())) if i % ranks.world() == ranks.rank()}
            generated = generate_completions(model, tokenizer, share, settings, batch_size, progress=False)
            log.info("teacher generations: rank %d generated %d of %d prompts (%s)", ranks.rank(), len(share),
                     len(prompts), path.name)  # fmt: skip
            merged = {p: c for part in ranks.gather_objects(generated) for p, c in part.items()}
            if ranks.is_main():
                write_atomic(path, lambda tmp: tmp.write_text(json.dumps(record(merged))))
            ranks.barrier()
        return _read(path), path
    made: list[Completions] = []

    def build(tmp: Path) -> None:
        log.info("teacher generations: generating %d per prompt for %d prompts into %s", settings.num_samples,
                 len(prompts), path)  # fmt: skip
        made.append(generate_completions(model, tokenizer, prompts, settings, batch_size, desc=f"teacher {name}",
                                         progress=progress))  # fmt: skip
        tmp.write_text(json.dumps(record(made[0])))

    return (made[0] if get_or_build(path, build) else _read(path)), path


def _read(path: Path) -> Completions:
    completions = json.loads(path.read_text())["completions"]
    log.info("teacher generations: using cache %s (%d prompts)", path, len(completions))
    if ranks.is_main():
        print(f"teacher generations: using cache {path} ({len(completions)} prompts)")
    return completions


class TeacherGenerations:
    """The teacher's completions of a prompt set, cached on disk under ``cache_dir``
    (default ``<cache>/generations``) and keyed by the teacher's identity, the prompts and the settings.

    With a ``bridge`` (a teacher with its own tokenizer), prompts come and completions go back in the student's
    tokens: the teacher writes from its own prompt (:meth:`~distill.data.alignment.TokenizerBridge.teacher_prompt`),
    in its own tokens (what is cached), and its text is re-tokenised for the student."""

    def __init__(
        self,
        teacher: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        cache_dir: str | None = None,
        batch_size: int = 128,
        bridge: TokenizerBridge | None = None,
        progress: bool = True,
    ) -> None:
        self.check_batch_size(batch_size)
        self.teacher, self.tokenizer, self.batch_size, self.bridge = teacher, tokenizer, batch_size, bridge
        self.progress = progress
        self.cache_dir = str(Path(cache_dir).expanduser()) if cache_dir else str(default_cache_dir(sub="generations"))

    @staticmethod
    def check_batch_size(batch_size: object) -> None:
        require_int("distiller.generation_batch_size", batch_size)

    def __call__(
        self, prompts: dict[str, list[int]], settings: GenerationSettings, name: str, cached: bool = True
    ) -> Completions:
        """Completions of ``prompts`` (text -> the student's token ids), in the student's tokens: from the cache
        or generated and stored, or (``cached=False``) generated now and not stored."""
        bridge = self.bridge
        tokenizer = self.tokenizer if bridge is None else bridge.teacher_tok
        if bridge is not None:
            prompts = {text: bridge.teacher_prompt(ids) for text, ids in prompts.items()}
        if cached:
            completions, _ = cached_generations(
                self.teacher, tokenizer, prompts, settings, self.cache_dir, name, self.batch_size, self.progress
            )
        else:
            generate = generate_completions
            completions = generate(self.teacher, tokenizer, prompts, settings, self.batch_size, progress=False)
        if bridge is None:
            return completions
        return {text: [bridge.to_student(c) for c in outputs] for text, outputs in completions.items()}


def label_unlabelled(
    data: TaskData,
    teacher: nn.Module,
    cache_dir: str | Path | None = None,
    batch_size: int = 128,
    progress: bool = True,
    bridge: TokenizerBridge | None = None,
) -> int:
    """Give ``data``'s unlabelled training prompts (``data.labelled_fraction`` < 1) the teacher's greedy
    response, up to ``data.max_new_tokens`` tokens, generated once and cached (``<cache>/generations``), so
    the student trains on every prompt (:meth:`~distill.data.TaskData.fill_unlabelled`). With a ``bridge`` (a
    teacher with its own tokenizer) the teacher writes from its own prompts and its text is re-tokenised for the
    student. Returns how many distinct prompts the teacher labelled (a prompt may occur more than once)."""
    prompts = data.unlabelled_prompts()
    if not prompts:
        return 0
    directory = str(cache_dir or default_cache_dir(sub="generations"))
    generations = TeacherGenerations(teacher, data.tokenizer, directory, batch_size, bridge, progress)
    completions = generations(prompts, GenerationSettings(max_new_tokens=data.max_new_tokens), "unlabelled")
    data.fill_unlabelled({prompt: outputs[0] for prompt, outputs in completions.items()})
    return len(prompts)
