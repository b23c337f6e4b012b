"""Plots: the student's metric against a varied setting, and training curves per run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from distill.report.curves import read_curves
from distill.report.tables import cell, column_names, distiller_of, is_number, monitor_of, setting, varied_keys

PREFERRED_X = ("distiller.temperature", "distiller.alpha")  # x axis of the metric plot, in this order


def numeric_where_set(runs: Sequence[dict[str, Any]], key: str) -> bool:
    """Whether ``key`` is a number in every run that has it, and in at least two runs."""
    values = [setting(r, key) for r in runs]
    present = [v for v in values if v is not None]
    return len(present) > 1 and all(is_number(v) for v in present)


def plot_metric(runs: Sequence[dict[str, Any]], out: Path, max_lines: int = 8) -> Path | None:
    """The student's validation metric against a numeric varied override (the temperature when
    it varies), one line per combination of the other varied overrides (a grid sweep; runs that
    differ only in ``seed`` are one point, their mean, with a standard-deviation error bar), or a
    scatter coloured by the next numeric override when there are more than ``max_lines`` such
    combinations (a random or Optuna search). None if no numeric override varies."""
    import matplotlib.pyplot as plt

    done = [r for r in runs if r["status"] == "ok"]
    keys = [k for k in varied_keys(done) if k != "seed"] if len(done) > 1 else []
    numeric = [k for k in keys if numeric_where_set(done, k)]
    if not numeric:
        return None
    x_key = next((k for k in PREFERRED_X if k in numeric), numeric[0])
    done = [r for r in done if is_number(setting(r, x_key))]  # runs without it (distiller=supervised) sit out
    others = [k for k in keys if k != x_key]
    names = column_names(keys)
    metric = f"student/{monitor_of(done)}"
    several = len({str(distiller_of(r)) for r in done}) > 1

    def prefix(run: dict[str, Any]) -> list[str]:  # the distiller names the line when several are plotted
        return [str(distiller_of(run))] if several else []

    points = pd.DataFrame(
        {
            "x": float(setting(r, x_key)),
            "y": r["metrics"].get(metric, math.nan),
            "line": ", ".join([*prefix(r), *(f"{names[k]}={cell(setting(r, k))}" for k in others)]) or metric,
        }
        for r in done
    )
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    if points["line"].nunique() <= max_lines:
        for label, group in points.groupby("line", sort=True):
            stats = group.groupby("x")["y"].agg(["mean", "std"]).sort_index()  # seeds: mean, error bar = std
            ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label=label)
        ax.legend(fontsize="small")
    else:
        color_key = next((k for k in others if k in numeric and all(is_number(setting(r, k)) for r in done)), None)
        colors = [float(setting(r, color_key)) for r in done] if color_key else None
        dots = ax.scatter(points["x"], points["y"], c=colors, cmap="viridis")
        if color_key:
            fig.colorbar(dots, ax=ax, label=names[color_key])
    ax.set_xlabel(names[x_key])
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against {names[x_key]}")
    ax.grid(alpha=0.3)
    path = out / f"metric_vs_{names[x_key].replace('.', '_').replace('/', '_')}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(runs: Sequence[dict[str, Any]], out: Path, name: str = "curves.png") -> Path | None:
    """The monitored metric against the step and against the training seconds, one line per method
    (the mean over its seeds, a band from the lowest to the highest seed), and the teacher's value as a
    dashed line (:mod:`distill.report.curves`). None unless a run was evaluated more than once."""
    import matplotlib.pyplot as plt

    curves, key = read_curves(runs)
    if not any(len(c.points) > 1 for c in curves):  # evaluated once, at the end: no curve to draw
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained", sharey=True)
    for index, method in enumerate(dict.fromkeys(c.method for c in curves)):
        group = [c for c in curves if c.method == method]
        frame = pd.DataFrame([(c.seed, *p) for c in group for p in c.points], columns=["seed", "step", "y", "s"])
        stats = frame.groupby("step").agg(mean=("y", "mean"), low=("y", "min"), high=("y", "max"), s=("s", "mean"))
        color = f"C{index % 10}"
        label = f"{method} (n={len(group)})"
        for ax, x in zip(axes, (stats.index, stats["s"])):
            ax.plot(x, stats["mean"], color=color, marker="." if len(stats) < 30 else None, label=label)
            if len(group) > 1:
                ax.fill_between(x, stats["low"], stats["high"], color=color, alpha=0.2, linewidth=0)
    teachers = sorted({c.teacher for c in curves if not math.isnan(c.teacher)})
    for ax, xlabel in zip(axes, ("optimizer step", "training seconds (evaluation excluded)")):
        for teacher in teachers:
            ax.axhline(teacher, color="black", linestyle="--", linewidth=1, label=f"teacher ({teacher:.3f})")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(key)
    handles = {label: h for h, label in zip(*axes[0].get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="outside right center", fontsize="small")
    fig.suptitle(f"{key} during training: mean over seeds, band = lowest to highest seed")
    path = out / name
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
