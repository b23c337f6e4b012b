"""Learning curves: a metric against the training step, per method (the runs that differ only in their
seed), with steps to reach a share of the teacher and the area under the curve.

A run's curve is read from its ``history.jsonl``: ``test/<metric>`` when the run evaluated the test split
at every validation (``train.eval_test=true``), else ``val/<metric>``; each point also carries
``time/train_s``, the seconds spent in training steps so far (evaluation excluded).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from distill.report.tables import cell, column_names, distiller_of, monitor_of, setting, to_markdown, varied_keys


@dataclass
class Curve:
    """One run's curve: its method label, seed, points ``(step, value, train seconds)`` and the teacher's value."""

    method: str
    seed: Any
    points: list[tuple[int, float, float]]
    teacher: float


def curve_split(runs: Sequence[dict[str, Any]]) -> str:
    """``test`` when any run's history holds test-split evaluations, else ``val``."""
    return "test" if any(k.startswith("test/") for r in runs for h in r["history"] for k in h) else "val"


def method_of(run: dict[str, Any], keys: Sequence[str], names: dict[str, str]) -> str:
    """The run's distiller and those of its own overrides that vary between runs, except the seed, e.g.
    ``logit temperature=4``."""
    own = [k for k in keys if k != "seed" and k in run["overrides"]]
    return " ".join([str(distiller_of(run)), *(f"{names[k]}={cell(run['overrides'][k])}" for k in own)])


def read_curves(runs: Sequence[dict[str, Any]], metric: str | None = None) -> tuple[list[Curve], str]:
    """The finished runs' curves of ``<split>/<metric>`` (the runs' monitored metric by default) and the key."""
    done = [r for r in runs if r["status"] == "ok" and r["history"]]
    split, metric = curve_split(done), metric or monitor_of(runs)
    key = f"{split}/{metric}"
    keys = varied_keys(done) if len(done) > 1 else []
    names = column_names(keys)
    teacher_key = f"teacher/{'test_' if split == 'test' else ''}{metric}"
    curves = []
    for run in done:
        by_step: dict[int, dict[str, Any]] = {}  # one step's records (train, time, val, test) as one dict
        for record in run["history"]:
            by_step.setdefault(record.get("step", -1), {}).update(record)
        history = [h for h in by_step.values() if key in h]
        points = [(h["step"], float(h[key]), float(h.get("time/train_s", math.nan))) for h in history]
        if points:
            teacher = float(run["metrics"].get(teacher_key, math.nan))
            curves.append(Curve(method_of(run, keys, names), setting(run, "seed"), points, teacher))
    return curves, key


def steps_to(curve: Curve, target: float) -> int | None:
    """The first evaluated step whose value reaches ``target`` (None: never within the run)."""
    return next((step for step, value, _ in curve.points if value >= target), None)


def area_under(curve: Curve) -> float:
    """The curve's mean value over training: the trapezoid area from step 0 (value 0) to the last step,
    divided by the last step (1.0: at the ceiling from the first step)."""
    steps = [0, *(p[0] for p in curve.points)]
    values = [0.0, *(p[1] for p in curve.points)]
    area = sum((s1 - s0) * (v0 + v1) / 2 for s0, s1, v0, v1 in zip(steps, steps[1:], values, values[1:]))
    return area / steps[-1] if steps[-1] else math.nan


def mean_std(values: Sequence[float], digits: int = 3) -> str:
    """``mean ± std`` (sample std) of the values, ``-`` for none."""
    if not values:
        return "-"
    series = pd.Series(values, dtype=float)
    return f"{series.mean():.{digits}f}" + (f" ± {series.std(ddof=1):.{digits}f}" if len(series) > 1 else "")


def summary(curves: Sequence[Curve], share: float = 0.95) -> pd.DataFrame:
    """Per method: seeds, final value, steps to reach ``share`` of the teacher (mean ± std over the seeds
    that reach it, and how many do), training seconds to reach it, and the area under the curve."""
    rows = []
    for method in dict.fromkeys(c.method for c in curves):
        group = [c for c in curves if c.method == method]
        reached = [(c, steps_to(c, share * c.teacher)) for c in group]
        hit = [(c, s) for c, s in reached if s is not None]
        seconds = [next(t for step, _, t in c.points if step == s) for c, s in hit]
        rows.append({
            "method": method,
            "seeds": len(group),
            "final": mean_std([c.points[-1][1] for c in group]),
            f"steps to {share:.0%} of teacher": mean_std([s for _, s in hit], digits=0),
            "seeds reaching it": f"{len(hit)} of {len(group)}",
            "train seconds to it": mean_std([t for t in seconds if not math.isnan(t)], digits=0),
            "area under curve": mean_std([area_under(c) for c in group]),
            "teacher": mean_std(sorted({c.teacher for c in group})),
        })  # fmt: skip
    return pd.DataFrame(rows)


def summary_markdown(curves: Sequence[Curve], key: str, share: float = 0.95) -> str:
    """The summary table with a line saying what it measures."""
    steps = sorted({p[0] for c in curves for p in c.points})
    head = (
        f"`{key}` evaluated at {len(steps)} steps, {steps[0]} to {steps[-1]} (mean ± std over seeds; steps to "
        f"{share:.0%} of the teacher's value: over the seeds that reach it):"
    )
    return head + "\n\n" + to_markdown(summary(curves, share))
