"""``python -m distill.report`` on synthetic run directories: exact rows, files, errors."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from distill.report import column_names, main, parse_overrides, varied_keys

ROOT = Path(__file__).resolve().parents[1]


def make_job(
    job_dir: Path,
    overrides: list[str],
    temperature: float,
    alpha: float,
    metrics: dict | None,
    history: list[dict] | None = None,
    log: str = "",
) -> Path:
    """A job directory as train.py leaves it: .hydra/*.yaml, and metrics.json if it finished."""
    (job_dir / ".hydra").mkdir(parents=True)
    config = {
        "distiller": {"temperature": temperature, "alpha": alpha},
        "monitor": "accuracy",
        "train": {"max_steps": 4},
    }
    (job_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (job_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    choices = {"distiller": "logit", "model": "embedded", "hydra/launcher": "basic"}
    (job_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    if metrics is not None:
        (job_dir / "metrics.json").write_text(json.dumps({**metrics, "distiller": "logit", "overrides": overrides}))
    if history:
        (job_dir / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    (job_dir / "train.log").write_text(log)
    return job_dir


def student(accuracy: float, **extra: float) -> dict:
    return {
        "student/loss": 1.0,
        "student/accuracy": accuracy,
        **extra,
        "student/params": 6960,
        "teacher/loss": 0.5,
        "teacher/accuracy": 0.9,
        "teacher/params": 20064,
        "wall_time_s": 12.5,
    }


HISTORY = [
    {"step": 2, "train/loss": 2.0, "train/kd": 0.1, "val/accuracy": 0.125},
    {"step": 4, "train/loss": 1.5, "val/loss": 1.2, "val/accuracy": 0.25},
]


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    """Jobs 0-3 of ``distiller.temperature=1,2 distiller.alpha=0.3,0.7``, job 10 that failed and
    job 11 that has not finished (no metrics.json, no error logged)."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    accuracy = {(1, 0.3): 0.5, (1, 0.7): 0.625, (2, 0.3): 0.75, (2, 0.7): 0.5}
    for job, ((t, a), acc) in enumerate(accuracy.items()):
        extra = {"student/agreement_exact_match": acc / 2} if job == 2 else {}
        make_job(
            sweep / str(job),
            ["experiment=smoke", f"distiller.temperature={t}", f"distiller.alpha={a}"],
            t,
            a,
            student(acc, **extra),
            HISTORY,
        )
    make_job(
        sweep / "10",
        ["experiment=smoke", "distiller.temperature=-1", "distiller.alpha=0.3"],
        -1,
        0.3,
        None,
        log="[2026-01-01 00:00:00,000][distill][ERROR] - job 10 failed (distiller.temperature=-1 distiller.alpha=0.3): "
        "distiller.temperature=-1 is invalid: must be > 0\n",
    )
    make_job(sweep / "11", ["experiment=smoke", "distiller.temperature=4", "distiller.alpha=0.3"], 4, 0.3, None)
    return sweep


def test_report_rows_of_a_sweep(sweep_dir: Path, capsys):
    assert main([str(sweep_dir)]) == 0
    table = pd.read_csv(sweep_dir / "report.csv")
    assert list(table.columns) == [
        "run",
        "status",
        "distiller",
        "temperature",
        "alpha",
        "student/accuracy",
        "student/agreement_exact_match",
        "student/params",
        "teacher/accuracy",
        "teacher/params",
        "wall_time_s",
        "error",
    ]
    assert list(table["run"]) == [0, 1, 2, 3, 10, 11]  # job order, not string order
    assert list(table["status"]) == ["ok", "ok", "ok", "ok", "failed", "unfinished"]
    assert list(table["temperature"]) == [1, 1, 2, 2, -1, 4]
    assert list(table["alpha"]) == [0.3, 0.7, 0.3, 0.7, 0.3, 0.3]
    assert list(table["student/accuracy"].fillna(-1)) == [0.5, 0.625, 0.75, 0.5, -1, -1]
    assert list(table["student/agreement_exact_match"].fillna(-1)) == [-1, -1, 0.375, -1, -1, -1]
    assert table["error"].iloc[4] == "distiller.temperature=-1 is invalid: must be > 0"

    markdown = (sweep_dir / "report.md").read_text()
    assert "4 of 6 run(s) finished." in markdown
    assert "Best: run 2 (student/accuracy 0.75)" in markdown
    assert "| 2 | ok | logit | 2 | 0.3 | 0.75 | 0.375 | 6960 | 0.9 | 20064 | 12.5 |" in markdown
    failed = "- 10 (experiment=smoke distiller.temperature=-1 distiller.alpha=0.3): distiller.temperature=-1 is invalid"
    assert failed in markdown
    assert "- 11 (experiment=smoke distiller.temperature=4 distiller.alpha=0.3): no error logged" in markdown
    assert "| 2 | ok | logit | 2 | 0.3 | 0.75 |" in capsys.readouterr().out  # the table is printed too
    for plot in ("metric_vs_temperature.png", "curves.png"):
        assert (sweep_dir / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot


def test_report_compares_run_directories_into_out(tmp_path: Path):
    a = make_job(tmp_path / "outputs" / "a", ["distiller.temperature=2"], 2.0, 0.5, student(0.5))
    b = make_job(tmp_path / "outputs" / "b", ["distiller=logit", "train.max_steps=8"], 2.0, 0.5, student(0.25))
    out = tmp_path / "cmp"
    assert main([str(a), str(b), "--out", str(out)]) == 0
    table = pd.read_csv(out / "report.csv")
    # temperature is 2 in both (one by override, one by default): only max_steps differs
    assert list(table.columns[:3]) == ["run", "distiller", "max_steps"] and "temperature" not in table
    assert list(table["run"]) == ["a", "b"] and list(table["max_steps"]) == [4, 8]
    assert "teacher/accuracy" in table and "status" not in table and "error" not in table
    assert (out / "report.md").exists() and not (out / "curves.png").exists()  # no history, no curves


def test_report_errors_are_one_line(tmp_path: Path):
    empty = tmp_path / "empty"
    (empty / "0" / "wandb").mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-m", "distill.report", str(empty)], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2
    message = f"error: no metrics.json under {empty}: give a run or sweep directory of train.py"
    assert proc.stderr.strip().splitlines() == [message]
    make_job(tmp_path / "only_failed" / "0", ["distiller.temperature=-1"], -1, 0.5, None)
    assert main([str(tmp_path / "only_failed")]) == 2
    assert main([str(tmp_path / "missing")]) == 2
    assert main([str(empty), str(tmp_path / "only_failed")]) == 2  # several dirs need --out


def test_varied_keys_and_column_names():
    runs = [
        {"overrides": parse_overrides(o), "choices": {}, "config": None}
        for o in (
            ["distiller.temperature=1", "train.max_steps=4", "model.teacher.recipe.max_steps=4", "x=a"],
            ["distiller.temperature=2", "train.max_steps=8", "model.teacher.recipe.max_steps=8", "x=a"],
        )
    ]
    assert runs[0]["overrides"] == {
        "distiller.temperature": 1,
        "train.max_steps": 4,
        "model.teacher.recipe.max_steps": 4,
        "x": "a",
    }
    keys = varied_keys(runs)
    assert keys == ["distiller.temperature", "train.max_steps", "model.teacher.recipe.max_steps"]
    assert column_names(keys) == {
        "distiller.temperature": "temperature",
        "train.max_steps": "train.max_steps",
        "model.teacher.recipe.max_steps": "model.teacher.recipe.max_steps",
    }
    assert parse_overrides(["~train.epochs", "hydra.verbose=true", "+tag='a b'"]) == {"tag": "a b"}


def test_runs_that_differ_only_in_seed_are_grouped(tmp_path: Path):
    sweep = tmp_path / "seeds"
    accuracy = {(1, 0): 0.5, (1, 1): 0.6, (1, 2): 0.7, (2, 0): 0.8, (2, 1): 0.8, (2, 2): 0.9}
    for job, ((t, seed), acc) in enumerate(accuracy.items()):
        make_job(
            sweep / str(job),
            [f"distiller.temperature={t}", f"seed={seed}"],
            t,
            0.5,
            student(acc, **{"student/test_accuracy": acc - 0.1}),
            HISTORY,
        )
    assert main([str(sweep)]) == 0
    groups = pd.read_csv(sweep / "report_seeds.csv")
    assert list(groups["temperature"]) == [1, 2] and list(groups["n"]) == [3, 3]
    assert groups["student/accuracy mean"].tolist() == pytest.approx([0.6, 0.8 + 0.1 / 3])
    assert groups["student/accuracy std"].tolist() == pytest.approx([0.1, (1 / 300) ** 0.5])  # sample std (n - 1)
    assert groups["student/test_accuracy mean"].tolist() == pytest.approx([0.5, 0.7 + 0.1 / 3])
    markdown = (sweep / "report.md").read_text()
    assert "| logit | 1 | 3 | 0.6000 ± 0.1000 |" in markdown  # distiller, temperature, n, accuracy
    assert (sweep / "metric_vs_temperature.png").stat().st_size > 0


def test_a_config_group_choice_is_a_setting_not_a_metric(tmp_path: Path):
    """``model/student=...`` has a slash like ``student/accuracy`` but is what the runs differ in."""
    sweep = tmp_path / "groups"
    for job, (choice, seed) in enumerate((c, s) for c in ("gpt2_half", "from_teacher") for s in (0, 1)):
        acc = 0.5 + 0.2 * (choice == "from_teacher") + 0.1 * seed
        make_job(sweep / str(job), [f"model/student={choice}", f"seed={seed}"], 2, 0.5, student(acc), HISTORY)
    assert main([str(sweep)]) == 0
    groups = pd.read_csv(sweep / "report_seeds.csv")
    assert list(groups["model/student"]) == ["gpt2_half", "from_teacher"] and list(groups["n"]) == [2, 2]
    assert groups["student/accuracy mean"].tolist() == pytest.approx([0.55, 0.75])


def test_metric_plot_skips_runs_without_the_varied_setting(tmp_path: Path):
    """A report over a temperature grid and a label-only run (no temperature at all) still plots the grid."""
    for job, t in enumerate([1, 2]):
        make_job(tmp_path / "grid" / str(job), [f"distiller.temperature={t}"], t, 0.5, student(0.5 + t / 10))
    labels = make_job(tmp_path / "labels" / "0", ["distiller=supervised"], 2, 0.5, student(0.4))
    (labels / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"distiller": {}, "monitor": "accuracy"}))
    out = tmp_path / "report"
    assert main([str(tmp_path / "grid"), str(tmp_path / "labels"), "--out", str(out)]) == 0
    assert (out / "metric_vs_temperature.png").stat().st_size > 0
