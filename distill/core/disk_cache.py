"""The one on-disk cache: keyed entries, built once under a file lock, written atomically.

Every cache of the project (trained teachers, teacher logits, teacher generations, teacher metrics)
is an entry ``<root>/<name>``: a file or a directory. :func:`get_or_build` takes the entry's lock
(``<name>.lock``), and if the entry is not ready builds it into ``<name>.<pid>.tmp`` and renames it,
so parallel jobs build it once and a reader never sees half an entry. :func:`write_atomic` is the
same temp-and-rename step without the lock (one writer by construction, e.g. rank 0).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from distill.core.fingerprints import sha256_json

log = logging.getLogger(__name__)
CACHE_ENV, DEFAULT_CACHE = "DISTILL_CACHE", "~/.cache/distill"


def cache_dir(path: str | Path | None = None, sub: str = "") -> Path:
    """``path`` if given, else ``$DISTILL_CACHE``, else ``~/.cache/distill``; then ``/sub``."""
    root = path or os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(root).expanduser() / sub


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)`` creates ``tmp`` (a file or a directory), which then replaces ``path`` in one rename.
    A failed write leaves ``path`` as it was and no temp behind."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    _remove(tmp)
    try:
        write(tmp)
        if tmp.is_dir() and path.exists():
            _remove(path)  # a directory cannot be replaced in one rename: only a stale, unready entry is here
        os.replace(tmp, path)
    finally:
        _remove(tmp)


def get_or_build(path: Path, build: Callable[[Path], None], ready: Callable[[Path], bool] = Path.exists) -> bool:
    """The entry ``path``, built by ``build(tmp)`` under its lock unless ``ready(path)``; whether this call built it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if ready(path):
            return False
        write_atomic(path, build)
        return True


def cached_json(root: Path, key_parts: dict[str, Any], compute: Callable[[], Any]) -> Any:
    """``compute()``'s JSON-able result for ``key_parts``: read from ``root/<key>.json``, or computed and stored."""
    path = root / f"{sha256_json(key_parts)[:20]}.json"
    result: list[Any] = []

    def build(tmp: Path) -> None:
        result.append(compute())
        tmp.write_text(json.dumps(result[0], indent=2))

    if not get_or_build(path, build):
        log.info("read from the cache %s", path)
        return json.loads(path.read_text())
    return result[0]
