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
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from distill.core.errors import DistillError
from distill.report.plots import plot_curves, plot_metric
from distill.report.runs import collect
from distill.report.tables import best_run, build_table, monitor_of, seed_groups, seeds_markdown, to_markdown


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
    groups = seed_groups(table)
    if groups is not None:
        lines += [
            "",
            "Mean ± standard deviation over seeds (n runs each):",
            "",
            seeds_markdown(groups),
            "",
            "Every run:",
        ]
    elif (best := best_run(table, monitor_of(runs))) is not None:
        lines.append(best)
    lines += ["", to_markdown(table.drop(columns=["error"], errors="ignore"))]
    failed = [r for r in runs if r["status"] != "ok"]
    if failed:
        lines += ["", "Failed or unfinished (no metrics.json):", ""]
        lines += [f"- {r['run']} ({' '.join(r['raw_overrides'])}): {r['error'] or 'no error logged'}" for r in failed]
    written = [out / "report.md", out / "report.csv"]
    if groups is not None:
        groups.to_csv(out / "report_seeds.csv", index=False)
        written.append(out / "report_seeds.csv")
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
    parser.add_argument(
        "dirs", nargs="+", type=Path, help="a sweep directory (outputs/multirun/...) or run directories"
    )
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
