"""Compare runs without W&B: ``python -m distill.report DIR [DIR ...] [--out DIR]``.

Each DIR is a sweep directory of ``train.py -m`` (its job directories are found inside it) or
a single run directory. From every job it reads ``metrics.json`` (written at the end of a
successful run), ``.hydra/overrides.yaml``, ``.hydra/config.yaml`` and ``.hydra/hydra.yaml``
(the config groups chosen), and ``history.jsonl`` (the logged steps). It writes, into the
sweep directory or ``--out``:

    report.md       one row per job: run, distiller, the overrides that differ between jobs,
                    student/accuracy (and the monitored metric), student/agreement_*,
                    student/params, teacher/accuracy, teacher/params, wall_time_s;
                    jobs without metrics.json are listed with the error from their log
    report.csv      the same table
    metric_vs_<key>.png   the student's validation metric against the varied temperature (or
                    another numeric override), one line per value of the other varied overrides
    curves.png      train/loss and val/<metric> against the step, one line per job

and prints the table. A directory holding no metrics.json at all is an error (one line).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, ListConfig, OmegaConf

from distill.errors import DistillError

METRICS, HISTORY = "metrics.json", "history.jsonl"
HYDRA_DIR = ".hydra"
PREFERRED_X = ("distiller.temperature", "distiller.alpha")  # x axis of the metric plot, in this order
_ERROR_LINE = re.compile(r"\]\[ERROR\] - (?:job \S+ failed \(.*?\): )?(.*)")


# ----------------------------------------------------------------------------- reading runs


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
        parsed[override.key_or_group] = OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
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
        "run": name, "dir": run_dir, "status": "ok" if metrics else "failed" if error else "unfinished",
        "metrics": metrics, "overrides": parse_overrides(raw_overrides), "raw_overrides": raw_overrides,
        "config": config, "choices": choices, "error": error, "history": history,
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
            runs.append(load_run(run_dir, name))
    if not any(r["status"] == "ok" for r in runs):
        failed = f" ({len(runs)} job(s) without results: failed or still running)" if runs else ""
        where = ", ".join(str(p) for p in paths)
        raise DistillError(f"no {METRICS} under {where}{failed}: give a run or sweep directory of train.py")
    return runs


# ----------------------------------------------------------------------------- the table


def _setting(run: dict[str, Any], key: str) -> Any:
    """A run's value for ``key``: its override, else the chosen config group, else its config."""
    if key in run["overrides"]:
        return run["overrides"][key]
    if key in run["choices"]:
        return run["choices"][key]
    if run["config"] is not None:
        value = OmegaConf.select(run["config"], key, default=None, throw_on_resolution_failure=False)
        return None if isinstance(value, (DictConfig, ListConfig)) else value
    return None


def varied_keys(runs: Sequence[dict[str, Any]]) -> list[str]:
    """Overridden keys whose value differs between runs (all of them for a single run)."""
    keys: list[str] = []
    for run in runs:
        keys += [k for k in run["overrides"] if k not in keys and k != "distiller"]
    if len(runs) == 1:
        return keys
    return [k for k in keys if len({_canonical(_setting(r, k)) for r in runs}) > 1]


def _canonical(value: Any) -> str:
    """A comparable form of a setting: ``2`` and ``2.0`` are the same value."""
    if _is_number(value):
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
    agreement = sorted({k for r in runs for k in r["metrics"] if k.startswith("student/agreement_")})
    metric_cols = [*student, *agreement, "student/params", "teacher/accuracy", "teacher/params", "wall_time_s"]
    any_failed = any(r["status"] != "ok" for r in runs)
    rows = []
    for run in runs:
        row: dict[str, Any] = {"run": run["run"]}
        if any_failed:
            row["status"] = run["status"]
        row["distiller"] = run["metrics"].get("distiller") or run["choices"].get("distiller") or _setting(run, "distiller")
        row.update({names[k]: _setting(run, k) for k in keys})
        row.update({c: run["metrics"].get(c) for c in metric_cols})
        if any_failed:
            row["error"] = run["error"]
        rows.append(row)
    table = pd.DataFrame(rows)
    present = [c for c in metric_cols if c in ("student/accuracy", "student/params") or table[c].notna().any()]
    return table.drop(columns=[c for c in metric_cols if c not in present])


def _cell(value: Any) -> str:
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
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def best_run(table: pd.DataFrame, metric: str) -> str | None:
    """``"Best: run 3 (student/accuracy 0.81)"``, or None unless the finished runs differ on it."""
    column = f"student/{metric}"
    if column not in table or table[column].nunique(dropna=True) < 2:
        return None
    lower_is_better = "loss" in metric or "perplexity" in metric
    best = table.loc[table[column].idxmin() if lower_is_better else table[column].idxmax()]
    return f"Best: run {best['run']} ({column} {_cell(float(best[column]))})"


# ----------------------------------------------------------------------------- plots


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def plot_metric(runs: Sequence[dict[str, Any]], out: Path, max_lines: int = 8) -> Path | None:
    """The student's validation metric against a numeric varied override (the temperature when
    it varies), one line per combination of the other varied overrides (a grid sweep), or a
    scatter coloured by the next numeric override when there are more than ``max_lines`` such
    combinations (a random or Optuna search). None if no numeric override varies."""
    import matplotlib.pyplot as plt

    done = [r for r in runs if r["status"] == "ok"]
    keys = varied_keys(done) if len(done) > 1 else []
    numeric = [k for k in keys if all(_is_number(_setting(r, k)) for r in done)]
    if not numeric:
        return None
    x_key = next((k for k in PREFERRED_X if k in numeric), numeric[0])
    others = [k for k in keys if k != x_key]
    names = column_names(keys)
    metric = f"student/{monitor_of(done)}"
    points = pd.DataFrame(
        {"x": float(_setting(r, x_key)), "y": r["metrics"].get(metric, math.nan),
         "line": ", ".join(f"{names[k]}={_cell(_setting(r, k))}" for k in others) or metric}
        for r in done
    )
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    if points["line"].nunique() <= max_lines:
        for label, group in points.groupby("line", sort=True):
            mean = group.groupby("x")["y"].mean().sort_index()  # repeated settings (seeds) are averaged
            ax.plot(mean.index, mean.values, marker="o", label=label)
        ax.legend(fontsize="small")
    else:
        color_key = next((k for k in others if k in numeric), None)
        colors = [float(_setting(r, color_key)) for r in done] if color_key else None
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


def plot_curves(runs: Sequence[dict[str, Any]], out: Path) -> Path | None:
    """train/loss and val/<metric> against the step from each run's history.jsonl (None if no history)."""
    import matplotlib.pyplot as plt

    with_history = [r for r in runs if r["history"]]
    if not with_history:
        return None
    keys = varied_keys(runs)
    names = column_names(keys)
    panels = ("train/loss", f"val/{monitor_of(runs)}")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    for run in with_history:
        label = " ".join([str(run["run"]), *(f"{names[k]}={_cell(_setting(run, k))}" for k in keys)])
        for ax, key in zip(axes, panels):
            steps = [(h["step"], h[key]) for h in run["history"] if key in h and "step" in h]
            if steps:
                ax.plot(*zip(*steps), marker="." if len(steps) < 30 else None, label=label)
    for ax, key in zip(axes, panels):
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
    if len(with_history) <= 20:
        handles = {label: h for ax in axes for h, label in zip(*ax.get_legend_handles_labels())}
        ncol = 1 if max(map(len, handles)) > 60 else 2
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=ncol, fontsize="x-small")
    path = out / "curves.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- the command


def write_report(paths: Sequence[Path], out: Path) -> tuple[pd.DataFrame, str, list[Path]]:
    """Read the runs under ``paths``; write report.md, report.csv and the plots into ``out``.

    Returns the table, the Markdown text and the files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    runs = collect(paths)
    table = build_table(runs)
    out.mkdir(parents=True, exist_ok=True)
    finished = sum(r["status"] == "ok" for r in runs)
    lines = [f"# Runs: {', '.join(str(p) for p in paths)}", "", f"{finished} of {len(runs)} run(s) finished."]
    if (best := best_run(table, monitor_of(runs))) is not None:
        lines.append(best)
    lines += ["", to_markdown(table.drop(columns=["error"], errors="ignore"))]
    failed = [r for r in runs if r["status"] != "ok"]
    if failed:
        lines += ["", "Failed or unfinished (no metrics.json):", ""]
        lines += [f"- {r['run']} ({' '.join(r['raw_overrides'])}): {r['error'] or 'no error logged'}" for r in failed]
    written = [out / "report.md", out / "report.csv"]
    plots = [plot_metric(runs, out), plot_curves(runs, out)]
    written += [p for p in plots if p is not None]
    if any(p is not None for p in plots):
        lines += ["", *(f"![{p.stem}]({p.name})" for p in plots if p is not None)]
    markdown = "\n".join(lines) + "\n"
    (out / "report.md").write_text(markdown)
    table.to_csv(out / "report.csv", index=False)
    return table, markdown, written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m distill.report DIR [DIR ...] [--out DIR]``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m distill.report", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="a sweep directory (outputs/multirun/...) or run directories")
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: the one DIR given)")
    args = parser.parse_args(argv)
    try:
        if args.out is None and len(args.dirs) > 1:
            raise DistillError("comparing several directories: give --out DIR for the report")
        out = args.out or args.dirs[0]
        _, markdown, written = write_report(args.dirs, out)
    except DistillError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown)
    print("written: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
