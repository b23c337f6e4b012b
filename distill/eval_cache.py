"""Metrics computed once and kept on disk: a frozen teacher's scores on the evaluation splits do
not change from run to run, so a sweep evaluates it once (``<cache_dir>/teacher-metrics/``)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from distill.fingerprints import sha256_json

log = logging.getLogger(__name__)


def cached_metrics(root: Path, key_parts: dict[str, Any], compute: Callable[[], dict[str, float]]) -> dict[str, float]:
    """``compute()``'s result for ``key_parts``: read from ``root`` or computed and stored (locked, atomic)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{sha256_json(key_parts)[:20]}.json"
    with FileLock(str(path) + ".lock"):
        if path.exists():
            log.info("metrics from the cache %s", path)
            return json.loads(path.read_text())
        metrics = compute()
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(metrics, indent=2))
        os.replace(tmp, path)
    return metrics
