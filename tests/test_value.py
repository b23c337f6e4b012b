"""What the teacher buys: learning-curve figures against hand-computed ones, and the three benchmarks
(``python -m benchmarks.value curves|transfer|sizes``) in their seconds-long versions."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from distill.report.curves import Curve, area_under, read_curves, steps_to, summary
from distill.report.runs import collect
from tests.conftest import ROOT
from tests.test_report import make_job, student


def test_steps_to_a_share_of_the_teacher_and_the_area_under_the_curve():
    curve = Curve("logit", 0, [(100, 0.5, 1.0), (200, 0.9, 2.0), (300, 0.95, 3.0), (400, 1.0, 4.0)], 1.0)
    assert steps_to(curve, 0.95) == 300 and steps_to(curve, 0.9) == 200 and steps_to(curve, 1.01) is None
    # trapezoids from (0, 0): 100 * (0 + .5) / 2 + 100 * (.5 + .9) / 2 + 100 * (.9 + .95) / 2 + 100 * (.95 + 1) / 2
    assert area_under(curve) == pytest.approx((25 + 70 + 92.5 + 97.5) / 400)


def test_summary_counts_the_seeds_that_reach_the_target():
    fast = [Curve("logit", s, [(100, 0.96, 1.0), (200, 0.99, 2.0)], 1.0) for s in (0, 1)]
    slow = [Curve("supervised", 0, [(100, 0.5, 1.0), (200, 0.97, 2.0)], 1.0),
            Curve("supervised", 1, [(100, 0.4, 1.0), (200, 0.9, 2.0)], 1.0)]  # fmt: skip
    table = summary([*fast, *slow]).set_index("method")
    assert table.loc["logit", "steps to 95% of teacher"] == "100 ± 0"
    assert table.loc["supervised", "steps to 95% of teacher"] == "200"  # one seed reaches it
    assert table.loc["supervised", "seeds reaching it"] == "1 of 2"
    assert table.loc["supervised", "final"] == f"0.935 ± {math.sqrt(2 * 0.035**2):.3f}"


def test_curves_read_the_test_split_when_the_runs_evaluated_it(tmp_path: Path):
    history = [
        {"step": 5, "time/train_s": 1.5},
        {"step": 5, "val/accuracy": 0.2},
        {"step": 5, "test/accuracy": 0.25},
        {"step": 10, "time/train_s": 3.0},
        {"step": 10, "val/accuracy": 0.5},
        {"step": 10, "test/accuracy": 0.75},
    ]
    metrics = {**student(0.5), "teacher/test_accuracy": 0.8}
    make_job(tmp_path / "0", ["distiller.temperature=2", "seed=0"], 2, 0.5, metrics, history)
    curves, key = read_curves(collect([tmp_path / "0"]))
    assert key == "test/accuracy"
    assert curves[0].points == [(5, 0.25, 1.5), (10, 0.75, 3.0)] and curves[0].teacher == 0.8


def test_plotted_curves_have_one_line_per_method_and_the_teacher(tmp_path: Path):
    import matplotlib

    matplotlib.use("Agg")
    from distill.report.plots import plot_curves

    for seed in (0, 1):
        history = [{"step": 5, "val/accuracy": 0.2 + seed / 10}, {"step": 10, "val/accuracy": 0.5}]
        make_job(tmp_path / str(seed), [f"seed={seed}"], 2, 0.5, student(0.5), history)
    path = plot_curves(collect([tmp_path]), tmp_path)
    assert path is not None and path.stat().st_size > 0


def value(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.value", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=None)  # fmt: skip


def test_every_benchmark_is_one_command():
    for name, expected in [("curves", "train.eval_test=true"), ("transfer", "data.labelled_fraction=0.01,0.05,1.0"),
                           ("sizes", "model/student=gpt2_small,gpt2_tenth,gpt2_25th"),
                           ("onpolicy", "seed=0,1,2,3,4 distiller=onpolicy distiller.objective=gkd,reverse_kl_reward"),
                           ("cross_tokenizer", "distiller.cross_tokenizer=uld,gold distiller.temperature=1 "
                            "model=embedded_cross data.labelled_fraction=0.05,1.0"),
                           ]:  # fmt: skip
        proc = value(name, "--dry-run")
        assert proc.returncode == 0 and expected in proc.stdout, proc.stderr[-2000:]
    proc = value("sizes", "--dry-run", "--wandb")  # grouped per method by the runner, one job_type per benchmark
    assert proc.returncode == 0 and "logger=wandb logger.job_type=sizes" in proc.stdout
    assert "logger=none" not in proc.stdout


def test_the_transfer_benchmark_writes_its_table(tmp_path: Path):
    """The seconds-long version: the smoke experiment, two seeds, one job at a time."""
    out = tmp_path / "out"
    args = ["transfer", "--seeds", "0,1", "--jobs", "1", "--runs", str(tmp_path / "runs"), "--out", str(out)]
    proc = value(*args, "experiment=smoke", "train.max_steps=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "transfer" / "summary.md").read_text()
    for row in ("| 0.01 |", "| 0.05 |", "| 1.0 |"):
        assert row in text
    assert "supervised | logit top_k | language" in text and "(2) |" in text
    runs = json.loads((tmp_path / "runs" / "transfer" / "supervised" / "0" / "metrics.json").read_text())
    assert runs["overrides"][:2] == ["seed=0", "distiller=supervised"]
    assert (out / "transfer" / "test_accuracy_vs_labelled_fraction.png").exists()
    assert not (out / "transfer" / "curves.png").exists()  # evaluated once per run: no curve


def test_the_curves_benchmark_reports_steps_to_the_teacher(tmp_path: Path):
    out = tmp_path / "out"
    args = ["curves", "--seeds", "0,1", "--jobs", "1", "--runs", str(tmp_path / "runs"), "--out", str(out)]
    proc = value(*args, "--sweeps", "supervised,top_k", "experiment=smoke", "train.eval_every=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "curves" / "summary.md").read_text()
    assert "`test/accuracy` evaluated at 6 steps, 2 to 12" in text
    assert "| supervised | 2 |" in text and "| logit teacher_cache=top_k | 2 |" in text


def test_onpolicy_targets_compare_each_objective_with_logit_by_hand(tmp_path: Path):
    """Means and stds written out: at 1,500 steps gkd is within 0.5 points with a small std, the reward objective
    is not; at 600 steps gkd is above logit, the reward objective below."""
    from benchmarks.value import grid_summary, onpolicy_targets

    rows = []
    cells = {
        ("logit", None, 1500): [0.99, 0.98, 0.97], ("onpolicy", "gkd", 1500): [0.99, 0.975, 0.975],
        ("onpolicy", "reverse_kl_reward", 1500): [0.99, 0.80, 0.97],
        ("logit", None, 600): [0.70, 0.72, 0.74], ("onpolicy", "gkd", 600): [0.73, 0.74, 0.75],
        ("onpolicy", "reverse_kl_reward", 600): [0.50, 0.52, 0.54],
    }  # fmt: skip
    for (distiller, objective, steps), accuracies in cells.items():
        for seed, accuracy in enumerate(accuracies):
            metrics = {"student/test_accuracy": accuracy, "teacher/test_accuracy": 0.99}
            rows.append(dict(distiller=distiller, objective=objective, max_steps=steps, seed=seed, **metrics))
    pd.DataFrame(rows).to_csv(tmp_path / "report.csv", index=False)
    lines = onpolicy_targets(tmp_path).splitlines()
    assert "- onpolicy gkd, 1500 steps: mean 0.980 vs logit 0.980 - 0.005: met; std 0.009 vs 2 x 0.010: met" in lines
    assert any(line.startswith("- onpolicy reverse_kl_reward, 1500 steps: mean 0.920") and "NOT met; std" in line
               and line.endswith("NOT met") for line in lines)  # fmt: skip
    assert "- onpolicy gkd, 600 steps: mean 0.740 vs logit 0.720: met" in lines
    assert "- onpolicy reverse_kl_reward, 600 steps: mean 0.520 vs logit 0.720: NOT met" in lines
    table = grid_summary(tmp_path, "max_steps", "logit")
    assert "| max_steps | logit | onpolicy gkd | onpolicy reverse_kl_reward | onpolicy gkd - logit |" in table
    assert "| 600 | 0.720 ± 0.020 (3) | 0.740 ± 0.010 (3) | 0.520 ± 0.020 (3) | +2.0 points | -20.0 points |" in table


def test_methods_are_named_by_distiller_cache_objective_cross_tokenizer_temperature_and_alpha():
    import pandas as pd

    from benchmarks.value import method_column

    table = pd.DataFrame({
        "distiller": ["supervised", "logit", "logit", "logit", "onpolicy"],
        "cross_tokenizer": [None, "gold", "uld", "gold", None],
        "temperature": [float("nan"), 1.0, 1.0, float("nan"), float("nan")],
        "alpha": [float("nan"), float("nan"), float("nan"), 0.0, float("nan")],
        "objective": [None, None, None, None, "gkd"],
    })  # fmt: skip
    assert method_column(table).tolist() == [
        "supervised", "logit gold T=1", "logit uld T=1", "logit gold a=0", "onpolicy gkd",
    ]  # fmt: skip


def test_cross_targets_compare_each_cross_tokenizer_method_with_label_only_by_hand(tmp_path: Path):
    """At 5 % of the labels gold's lowest seed is above supervised's spread, uld's spread overlaps it."""
    from benchmarks.value import cross_targets

    cells = {
        ("supervised", None, 0.05): [0.60, 0.62, 0.64], ("logit", "gold", 0.05): [0.99, 0.98, 0.97],
        ("logit", "uld", 0.05): [0.55, 0.70, 0.85],
    }  # fmt: skip
    rows = [
        dict(distiller=d, cross_tokenizer=c, labelled_fraction=f, seed=seed, temperature=1.0 if c else float("nan"),
             **{"student/test_accuracy": a, "teacher/test_accuracy": 0.99})
        for (d, c, f), accuracies in cells.items() for seed, a in enumerate(accuracies)
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "report.csv", index=False)
    lines = cross_targets(tmp_path).splitlines()
    assert ("- logit gold T=1, labelled_fraction 0.05: 0.980 ± 0.010 (seeds 0.970 to 0.990) vs supervised 0.620 ± "
            "0.020 (0.600 to 0.640): above beyond the spread met") in lines  # fmt: skip
    assert any(line.startswith("- logit uld T=1, labelled_fraction 0.05: 0.700 ± 0.150") and line.endswith("NOT met")
               for line in lines)  # fmt: skip
