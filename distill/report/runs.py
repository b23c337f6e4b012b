"""Reading finished (and failed) runs: job directories, their overrides, configs, metrics and logs."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from distill.core.errors import DistillError

METRICS, HISTORY = "metrics.json", "history.jsonl"
HYDRA_DIR = ".hydra"
_ERROR_LINE = re.compile(r"\]\[ERROR\] - (?:job \S+ failed \(.*?\): )?(.*)")


def _natural(path: Path) -> tuple[int, int, str]:
    """Sort job directories 0, 1, 2, ..., 10 rather than 0, 1, 10, 2."""
    return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)


def find_runs(root: Path) -> list[Path]:
    """``root`` itself if it is a run directory, else the run directories below it (sorted).

    A run directory holds ``metrics.json`` or ``.hydra/overrides.yaml`` (a job that failed
    before writing its metrics still has the latter).
    """
    if not root.is_dir():
        raise DistillError(f"{root} is not a directory")
    if (root / METRICS).is_file() or (root / HYDRA_DIR / "overrides.yaml").is_file():
        return [root]
    found = {p.parent for p in root.rglob(METRICS)}
    found |= {p.parent.parent for p in root.rglob("overrides.yaml") if p.parent.name == HYDRA_DIR}
    return sorted(found, key=lambda p: [_natural(Path(part)) for part in p.relative_to(root).parts])


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["distiller.temperature=2", "distiller=logit", "+x=1"]`` -> ``{key: typed value}``.

    Uses Hydra's own override parser (so quoting and types match the command line); deletions
    (``~key``) and ``hydra.*`` keys are left out.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed: dict[str, Any] = {}
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if override.is_delete() or override.key_or_group.startswith("hydra"):
            continue
        value = override.value()
        parsed[override.key_or_group] = (
            OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
        )
    return parsed


def _last_error(run_dir: Path) -> str:
    """The message of the last ``[ERROR]`` line in the job's Hydra log files, or ``""``."""
    message = ""
    for log_file in sorted(run_dir.glob("*.log")):
        for line in log_file.read_text(errors="replace").splitlines():
            if (m := _ERROR_LINE.search(line)) is not None:
                message = m.group(1).strip()
    return message


def load_run(run_dir: Path, name: str) -> dict[str, Any]:
    """Everything the report needs from one run directory.

    Returns ``{"run", "dir", "status", "metrics", "overrides" (parsed),
    "raw_overrides", "config" (DictConfig or None), "choices" (config group -> option), "error",
    "history"}``. ``status`` is ``ok`` (metrics.json written), ``failed`` (no metrics, an error
    in the job's log) or ``unfinished`` (neither: still running, or killed).
    """
    metrics: dict[str, Any] = {}
    if (run_dir / METRICS).is_file():
        try:
            metrics = json.loads((run_dir / METRICS).read_text())
        except json.JSONDecodeError as e:
            raise DistillError(f"{run_dir / METRICS} is not valid JSON: {e}") from None
    hydra_dir = run_dir / HYDRA_DIR
    raw_overrides: list[str] = list(metrics.get("overrides", []))
    if (hydra_dir / "overrides.yaml").is_file():
        raw_overrides = [str(o) for o in OmegaConf.load(hydra_dir / "overrides.yaml")]
    config = OmegaConf.load(hydra_dir / "config.yaml") if (hydra_dir / "config.yaml").is_file() else None
    choices: dict[str, Any] = {}
    if (hydra_dir / "hydra.yaml").is_file():
        node = OmegaConf.select(OmegaConf.load(hydra_dir / "hydra.yaml"), "hydra.runtime.choices", default=None)
        choices = dict(OmegaConf.to_container(node)) if node is not None else {}
    history = []
    if (run_dir / HISTORY).is_file():
        history = [json.loads(line) for line in (run_dir / HISTORY).read_text().splitlines() if line.strip()]
    error = "" if metrics else _last_error(run_dir)
    return {
        "run": name,
        "dir": run_dir,
        "status": "ok" if metrics else "failed" if error else "unfinished",
        "metrics": metrics,
        "overrides": parse_overrides(raw_overrides),
        "raw_overrides": raw_overrides,
        "config": config,
        "choices": choices,
        "error": error,
        "history": history,
    }


def collect(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """The runs under ``paths`` in order (a sweep's jobs by number); an error if none finished."""
    runs: list[dict[str, Any]] = []
    seen: set[Path] = set()
    for root in paths:
        if not root.exists():
            raise DistillError(f"{root} does not exist")
        for run_dir in find_runs(root):
            if run_dir.resolve() in seen:
                continue
            seen.add(run_dir.resolve())
            name = run_dir.relative_to(root).as_posix() if run_dir != root else run_dir.name
            if run_dir == root and run_dir.name.isdigit():  # a sweep's job given alone: "<sweep>/<n>"
                name = f"{run_dir.parent.name}/{run_dir.name}"
            elif run_dir != root and len(paths) > 1:  # jobs of several sweeps: "<sweep>/<n>"
                name = f"{root.name}/{name}"
            runs.append(load_run(run_dir, name))
    if not any(r["status"] == "ok" for r in runs):
        failed = f" ({len(runs)} job(s) without results: failed or still running)" if runs else ""
        where = ", ".join(str(p) for p in paths)
        raise DistillError(f"no {METRICS} under {where}{failed}: give a run or sweep directory of train.py")
    return runs
