"""Sweeps: ``train.py -m`` job directories and W&B offline runs, the Hydra launcher/sweeper
presets in conf/hydra/, failing jobs, and the report on a real multirun."""

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from distill.report import main as report_main
from tests.conftest import cli, cli_subprocess, compose
from tests.wandb_offline import offline_runs

TINY = ("experiment=smoke", "train.progress=false")  # + the overrides of each test


# ----------------------------------------------------------------------------- a 2x2 sweep, in real processes


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``-m`` over a 2x2 grid, two jobs at a time (joblib), with a fresh teacher cache: every job
    wants the teacher at once."""
    root = tmp_path_factory.mktemp("sweep")
    out, cache = root / "kd-grid", root / "cache"
    proc = cli_subprocess(
        "-m",
        *TINY,
        "hydra/launcher=local_parallel",
        "distiller.temperature=1,2",
        "distiller.alpha=0.3,0.7",
        "train.max_steps=4",
        "train.eval_every=2",
        "model.teacher.recipe.max_steps=4",
        f"hydra.sweep.dir={out}",
        env={"DISTILL_CACHE": str(cache)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    return out, cache


EXPECTED = {"0": (1, 0.3), "1": (1, 0.7), "2": (2, 0.3), "3": (2, 0.7)}  # job -> (temperature, alpha)


def test_multirun_writes_one_directory_per_job(sweep):
    out, _ = sweep
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(EXPECTED)
    for job, (t, a) in EXPECTED.items():
        metrics = json.loads((out / job / "metrics.json").read_text())
        assert metrics["distiller"] == "logit"
        assert f"distiller.temperature={t}" in metrics["overrides"] and f"distiller.alpha={a}" in metrics["overrides"]
        config = yaml.safe_load((out / job / ".hydra" / "config.yaml").read_text())
        assert (config["distiller"]["temperature"], config["distiller"]["alpha"]) == (t, a)
        assert (out / job / "history.jsonl").is_file()


def test_multirun_jobs_are_wandb_runs_of_one_group(sweep):
    out, _ = sweep
    for job, (t, a) in EXPECTED.items():
        (run,) = offline_runs(out / job / "wandb")
        assert (run["config"]["distiller"]["temperature"], run["config"]["distiller"]["alpha"]) == (t, a)
        assert run["group"] == f"kd-grid/{run['name']}"  # the sweep, and the settings but the seed (none here)
        assert "kd-grid" in run["tags"]
        assert run["job_type"] == "logit"
        assert run["name"].startswith("logit ") and f"T={t} a={a}" in run["name"]
        assert run["exit_code"] == 0
        summary = run["summary"]
        history = [json.loads(line) for line in (out / job / "history.jsonl").read_text().splitlines()]
        val = [h for h in history if "val/loss" in h]
        assert len(val) == 2  # steps 2 and 4; the summaries hold the best of them
        assert summary["val/accuracy"] == {"max": pytest.approx(max(h["val/accuracy"] for h in val))}
        assert summary["val/loss"] == {"min": pytest.approx(min(h["val/loss"] for h in val))}
        assert summary["student/params"] > 0
    assert len({r["id"] for r in offline_runs(out)}) == 4


def test_report_on_the_multirun(sweep, capsys):
    out, _ = sweep
    assert report_main([str(out)]) == 0
    printed = capsys.readouterr().out
    lines = (out / "report.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| run"))
    table = [[c.strip() for c in line.strip("|").split("|")] for line in lines[start:] if line.startswith("|")]
    assert table[0][:4] == ["run", "distiller", "temperature", "alpha"]
    assert [tuple(row[:4]) for row in table[2:]] == [(j, "logit", str(t), str(a)) for j, (t, a) in EXPECTED.items()]
    assert lines[start] in printed
    for name in ("report.csv", "metric_vs_temperature.png", "curves.png"):
        assert (out / name).stat().st_size > 0, name


# ----------------------------------------------------------------------------- failures


def test_failing_jobs_do_not_stop_the_sweep(tmp_path):
    # job 0 and 1: rejected at start-up (before W&B); job 2: fails in the loop (W&B run started);
    # job 3: fine and still runs after the three failures.
    out = tmp_path / "failing"
    result = cli(
        "-m",
        *TINY,
        "distiller.temperature=-1,1",
        "train.device=bogus,cpu",
        "train.max_steps=2",
        "train.eval_every=0",
        "evaluate_teacher=false",
        f"hydra.sweep.dir={out}",
    )
    assert result.returncode != 0
    assert "Error executing job with overrides" in result.stderr  # Hydra's end-of-sweep message
    assert "distiller.temperature=-1.0 is invalid" in result.stderr
    assert [(out / j / "metrics.json").exists() for j in "0123"] == [False, False, False, True]
    for job in "012":  # each failure is logged, with its reason, in the job's own log
        log = (out / job / "train.log").read_text()
        assert f"job {job} failed" in log, log
    assert "distiller.temperature=-1.0 is invalid" in (out / "0" / "train.log").read_text()
    assert not (out / "0" / "wandb").exists()  # rejected before W&B started
    (failed,) = offline_runs(out / "2" / "wandb")
    (passed,) = offline_runs(out / "3" / "wandb")
    assert failed["exit_code"] == 1 and passed["exit_code"] == 0  # W&B marks the run failed

    report = tmp_path / "report"
    assert report_main([str(out), "--out", str(report)]) == 0
    table = pd.read_csv(report / "report.csv")
    assert list(table.columns[:5]) == ["run", "status", "distiller", "temperature", "device"]
    assert list(table["status"]) == ["failed", "failed", "failed", "ok"]
    assert "distiller.temperature=-1.0 is invalid: must be > 0" in (report / "report.md").read_text()


# ----------------------------------------------------------------------------- presets


def test_launcher_and_sweeper_presets_compose():
    cfg = compose("hydra/launcher=local_parallel", return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2

    cfg = compose(
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=30",
        "hydra.launcher.gpus_per_node=2",
        return_hydra_config=True,
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_node) == ("gpu", 30, 2)

    cfg = compose("hparams_search=kd_search", return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert dict(sweeper.params) == {
        "distiller.temperature": "interval(1.0, 8.0)",
        "distiller.alpha": "interval(0.1, 0.9)",
    }
    assert cfg.monitor == "accuracy"  # what train.py returns, so what the sweeper maximises


def test_parallel_jobs_share_one_teacher(sweep):
    out, cache = sweep
    logs = [(out / job / "train.log").read_text() for job in EXPECTED]
    assert sum("training the embedded teacher" in log for log in logs) == 1  # one trains ...
    assert all("using the cached teacher" in log for log in logs if "training the embedded teacher" not in log)
    teachers = [p.name for p in cache.iterdir() if p.is_dir() and p.name not in ("teacher-metrics",)]
    assert len(teachers) == 1 and teachers[0].startswith("teacher-")  # ... the others wait and load it; no .tmp
    assert len(list((cache / "teacher-metrics").glob("*.json"))) == 2  # evaluated once: validation and test
    losses = {json.loads((out / job / "metrics.json").read_text())["teacher/loss"] for job in EXPECTED}
    assert len(losses) == 1  # the same teacher


def test_optuna_preset_maximises_what_train_returns(tmp_path):
    out = tmp_path / "optuna"
    result = cli(
        *TINY,
        "hparams_search=kd_search",
        "hydra.sweeper.n_trials=2",
        "train.max_steps=2",
        "train.eval_every=0",
        "evaluate_teacher=false",
        "logger=none",
        f"hydra.sweep.dir={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    result = yaml.safe_load((out / "optimization_results.yaml").read_text())
    best = result["best_params"]
    assert 1.0 <= best["distiller.temperature"] <= 8.0 and 0.1 <= best["distiller.alpha"] <= 0.9
    accuracies = [json.loads((out / job / "metrics.json").read_text())["student/accuracy"] for job in "01"]
    assert result["best_value"] == pytest.approx(max(accuracies))


def test_runs_that_differ_only_in_seed_share_a_wandb_group_name():
    from distill.run.experiment import run_name

    overrides = ["distiller.temperature=2", "distiller.alpha=0.3", "seed=1"]
    assert run_name("logit", overrides) == "logit T=2 a=0.3 seed=1"
    assert run_name("logit", overrides, seed=False) == "logit T=2 a=0.3" == run_name("logit", overrides[:2], seed=False)
