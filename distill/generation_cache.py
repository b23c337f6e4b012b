"""The on-disk cache of teacher generations, and the fingerprints that key it.

:func:`cached_generations` stores one JSON file per (teacher, tokenizer, prompt set, generation
settings) under ``cache_dir``: the teacher is identified by a hash of its config and weights,
the prompt set by a hash of its prompts and their token ids. A file lock makes parallel runs
wait for one generation; the file is written to a temp name and renamed, so a reader never
sees half a file.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from filelock import FileLock
from torch import nn
from transformers import PreTrainedTokenizerBase

from distill import ranks
from distill.fingerprints import model_fingerprint, sha256_json, tokenizer_fingerprint
from distill.generation import Completions, GenerationSettings, generate_completions

log = logging.getLogger(__name__)


def generation_cache_key(
    model_fp: str, tokenizer_fp: str, prompts: dict[str, list[int]], settings: GenerationSettings
) -> str:
    """The cache key: a hash of the teacher, the tokenizer, the prompt set and the settings."""
    prompt_set = sha256_json(sorted(prompts.items()))
    parts = {"model": model_fp, "tokenizer": tokenizer_fp, "prompts": prompt_set, "settings": settings.key_fields()}
    return sha256_json(parts)[:20]


def cached_generations(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: dict[str, list[int]],
    settings: GenerationSettings,
    cache_dir: str | Path,
    name: str = "generations",
    batch_size: int = 64,
    model_fp: str | None = None,
    progress: bool = True,
) -> tuple[Completions, Path]:
    """The model's completions of ``prompts``: read from ``cache_dir`` or generated and stored.

    ``name`` labels the file (``<name>-<key>.json``); it is not part of the key. Pass
    ``model_fp`` (a :func:`model_fingerprint`) to skip hashing the weights again. Under torchrun
    every rank generates its share of the prompts (each prompt once) and rank 0 writes the file.
    Returns the completions (prompt text -> num_samples token lists) and the cache file.
    """
    model_fp = model_fp or model_fingerprint(model)
    key = generation_cache_key(model_fp, tokenizer_fingerprint(tokenizer), prompts, settings)
    root = Path(cache_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}-{key}.json"
    if ranks.world() > 1 and not ranks.is_sharded(model):
        if not ranks.broadcast(path.exists()):
            share = {p: ids for i, (p, ids) in enumerate(sorted(prompts.items())) if i % ranks.world() == ranks.rank()}
            generated = generate_completions(model, tokenizer, share, settings, batch_size, progress=False)
            log.info("teacher generations: rank %d generated %d of %d prompts (%s)", ranks.rank(), len(share),
                     len(prompts), path.name)  # fmt: skip
            merged = {p: c for part in ranks.gather_objects(generated) for p, c in part.items()}
            if ranks.is_main():
                _write(path, {"settings": asdict(settings), "model": model_fp, "completions": merged})
            ranks.barrier()
        return _read(path), path
    with FileLock(str(path) + ".lock"):
        if path.exists():
            return _read(path), path
        log.info("teacher generations: generating %d per prompt for %d prompts into %s", settings.num_samples,
                 len(prompts), path)  # fmt: skip
        completions = generate_completions(
            model, tokenizer, prompts, settings, batch_size, desc=f"teacher {name}", progress=progress
        )
        _write(path, {"settings": asdict(settings), "model": model_fp, "completions": completions})
    return completions, path


def _read(path: Path) -> Completions:
    completions = json.loads(path.read_text())["completions"]
    log.info("teacher generations: using cache %s (%d prompts)", path, len(completions))
    if ranks.is_main():
        print(f"teacher generations: using cache {path} ({len(completions)} prompts)")
    return completions


def _write(path: Path, record: dict[str, Any]) -> None:
    """Write to a temporary name, then rename: a reader never sees half a file."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
