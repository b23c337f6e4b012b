"""The comparison table: one row per run, the overrides that differ, the metrics that matter."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
from omegaconf import DictConfig, ListConfig, OmegaConf

from distill.core.errors import is_number


def setting(run: dict[str, Any], key: str) -> Any:
    """A run's value for ``key``: its override, else the chosen config group, else its config."""
    if key in run["overrides"]:
        return run["overrides"][key]
    if key in run["choices"]:
        return run["choices"][key]
    if run["config"] is not None:
        value = OmegaConf.select(run["config"], key, default=None, throw_on_resolution_failure=False)
        return None if isinstance(value, (DictConfig, ListConfig)) else value
    return None


def distiller_of(run: dict[str, Any]) -> Any:
    """The run's distiller (``logit``, ``supervised``, ...): from metrics.json, else its config choice."""
    return run["metrics"].get("distiller") or run["choices"].get("distiller") or setting(run, "distiller")


def varied_keys(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Overridden keys whose value differs between runs (all of them for a single run)."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run["overrides"] if k not in keys and k != "distiller"]
    if len(runs) == 1:
        return keys
    return [k for k in keys if len({_canonical(setting(r, k)) for r in runs}) > 1]


def _canonical(value: Any) -> str:
    """A comparable form of a setting: ``2`` and ``2.0`` are the same value."""
    if is_number(value):
        return repr(float(value))
    return json.dumps(value, sort_keys=True, default=str)


def column_names(keys: Sequence[str]) -> dict[str, str]:
    """Short column names for override keys (``distiller.temperature`` -> ``temperature``)
    unless two keys share the last part."""
    last = [k.split(".")[-1] for k in keys]
    return {k: (short if last.count(short) == 1 else k) for k, short in zip(keys, last)}


def monitor_of(runs: Sequence[dict[str, Any]]) -> str:
    """The metric the runs were optimised for (``monitor`` in their config; ``accuracy`` by default)."""
    for run in runs:
        if run["config"] is not None and isinstance(run["config"].get("monitor"), str):
            return run["config"]["monitor"]
    return "accuracy"


def build_table(runs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per run; columns as in the module docstring (``status``/``error`` only if a run failed)."""
    keys = varied_keys(runs)
    names = column_names(keys)
    monitor = monitor_of(runs)
    student = ["student/accuracy"] + ([f"student/{monitor}"] if monitor != "accuracy" else [])
    student += [c.replace("student/", "student/test_") for c in student]
    agreement = sorted({k for r in runs for k in r["metrics"] if k.startswith("student/agreement_")})
    teacher = ["teacher/accuracy", "teacher/test_accuracy", "teacher/params"]
    metric_cols = [*student, *agreement, "student/params", *teacher, "wall_time_s"]
    any_failed = any(r["status"] != "ok" for r in runs)
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run": run["run"]}
        if any_failed:
            row["status"] = run["status"]
        row["distiller"] = distiller_of(run)
        row.update({names[k]: setting(run, k) for k in keys})
        row.update({c: run["metrics"].get(c) for c in metric_cols})
        if any_failed:
            row["error"] = run["error"]
        rows.append(row)
    table = pd.DataFrame(rows)
    present = [c for c in metric_cols if c in ("student/accuracy", "student/params") or table[c].notna().any()]
    return table.drop(columns=[c for c in metric_cols if c not in present])


def cell(value: Any) -> str:
    """A Markdown cell: ``-`` for missing, floats to 4 decimals without trailing zeros."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value).replace("|", "\\|")


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table; numbers right-aligned, floats to 4 decimals."""
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in table.columns]
    lines = [
        "| " + " | ".join(str(c) for c in table.columns) + " |",
        "|" + "|".join("---:" if n else ":---" for n in numeric) + "|",
    ]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def best_run(table: pd.DataFrame, metric: str) -> str | None:
    """``"Best: run 3 (student/accuracy 0.81)"``, or None unless the finished runs differ on it."""
    column = f"student/{metric}"
    if column not in table or table[column].nunique(dropna=True) < 2:
        return None
    lower_is_better = "loss" in metric or "perplexity" in metric
    best = table.loc[table[column].idxmin() if lower_is_better else table[column].idxmax()]
    return f"Best: run {best['run']} ({column} {cell(float(best[column]))})"


METRIC_PREFIXES = ("student/", "teacher/", "train/", "val/")


def is_metric(column: str) -> bool:
    """A measured column (``student/accuracy``), not a setting (``model/student``, a config group's choice)."""
    return column.startswith(METRIC_PREFIXES) or column == "wall_time_s"


def seed_groups(table: pd.DataFrame) -> pd.DataFrame | None:
    """Finished runs that differ only in ``seed``, one row each: ``n`` and, per metric, its mean
    and sample standard deviation (``<metric> mean``, ``<metric> std``). None unless seeds vary."""
    if "seed" not in table.columns:
        return None
    done = table[table["status"] == "ok"] if "status" in table.columns else table
    keys = [c for c in done.columns if c not in ("run", "status", "error", "seed") and not is_metric(c)]
    metrics = [c for c in done.columns if is_metric(c) and not c.endswith("/params")]
    groups = done.groupby(keys, sort=False, dropna=False) if keys else [((), done)]
    rows = []
    for key, group in groups:
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row["n"] = len(group)
        for m in metrics:
            values = group[m].dropna().astype(float)
            row[f"{m} mean"] = values.mean() if len(values) else math.nan
            row[f"{m} std"] = values.std(ddof=1) if len(values) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def seeds_markdown(groups: pd.DataFrame) -> str:
    """The seed groups as Markdown, each metric as ``mean ± std``."""
    shown = groups[[c for c in groups.columns if not c.endswith((" mean", " std"))]].copy()
    for column in groups.columns:
        if column.endswith(" mean"):
            name = column.removesuffix(" mean")
            shown[name] = [
                "-" if math.isnan(m) else (f"{m:.4f}" if math.isnan(sd) else f"{m:.4f} ± {sd:.4f}")
                for m, sd in zip(groups[column], groups[f"{name} std"])
            ]
    return to_markdown(shown)
