"""``train.py`` end to end: the smoke experiment in-process (metrics.json, student, history, W&B
offline files), the cached teacher, ``--cfg job``, and the command line's one-line errors."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import cli, cli_subprocess, read_jsonl, run_experiment
from tests.wandb_offline import offline_runs


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("smoke")
    result = cli("experiment=smoke", f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_smoke_run_writes_metrics_and_student(smoke):
    out, result = smoke
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "student/accuracy",
        "teacher/accuracy",
        "student/loss",
        "teacher/loss",
        "student/params",
        "teacher/params",
    ):
        assert key in metrics, key
    assert 0.0 <= metrics["student/accuracy"] <= 1.0 and metrics["student/loss"] > 0
    assert metrics["student/params"] * 2 < metrics["teacher/params"]
    assert metrics["overrides"] == ["experiment=smoke"] and metrics["distiller"] == "logit"
    assert "student/accuracy" in result.stdout and "teacher/accuracy" in result.stdout  # the printed table
    assert (out / "student" / "model.safetensors").exists() and (out / "student" / "tokenizer.json").exists()
    history = read_jsonl(out / "history.jsonl")
    assert [h["step"] for h in history if "val/accuracy" in h] == [6, 12]
    assert any("train/kd" in h and "train/ce" in h for h in history)


def test_wandb_offline_run_has_resolved_config(smoke):
    out, _ = smoke
    (run,) = offline_runs(out / "wandb")
    cfg = run["config"]
    assert cfg["distiller"]["_target_"] == "distill.distillers.LogitDistiller"
    assert cfg["train"]["max_steps"] == 12 and cfg["data"]["max_new_tokens"] == 24
    assert "${" not in json.dumps(cfg)  # interpolations resolved (paths.cache_dir, seed, ...)
    assert run["job_type"] == "logit" and run["exit_code"] == 0
    assert run["summary"]["student/params"] > 0


def test_second_run_uses_cached_teacher(smoke, tmp_path, caplog):
    caplog.set_level("INFO")
    metrics = run_experiment(tmp_path, "experiment=smoke", "train.max_steps=2", "logger=none")
    assert "using the cached teacher" in caplog.text and "training the embedded teacher" not in caplog.text
    first = json.loads((smoke[0] / "metrics.json").read_text())
    assert metrics["teacher/loss"] == first["teacher/loss"]  # the same teacher


def test_same_seed_same_metrics(smoke, tmp_path):
    again = run_experiment(tmp_path, "experiment=smoke", "logger=none")
    first = json.loads((smoke[0] / "metrics.json").read_text())
    assert {k: v for k, v in again.items() if k.startswith(("student/", "teacher/"))} == {
        k: v for k, v in first.items() if k.startswith(("student/", "teacher/"))
    }


def test_cfg_job_shows_every_group():
    result = cli("--cfg", "job")
    assert result.returncode == 0, result.stderr
    for section in ("model:", "distiller:", "data:", "optimizer:", "train:", "paths:"):
        assert f"\n{section}" in "\n" + result.stdout, section
    assert result.stdout.count("_target_") >= 6


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["distiller.temperature=0"], "distiller.temperature"),
        (["+distiller.temprature=2"], "distiller.temprature"),
        (["distiller.divergence=jsd", "distiller.beta=0"], "distiller.beta"),
        (["+train.seed=1"], "train.seed"),
        (["+train.output_dir=x"], "train.output_dir"),
        (["model.student.n_positions=8"], "model.student.n_positions"),
        (["model.student.n_layer=0"], "model.student.n_layer"),
    ],
)
def test_bad_config_is_one_line_and_nonzero(overrides, key, tmp_path):
    result = cli(*overrides, "experiment=smoke", "logger=none", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    errors = result.error_lines()
    assert len(errors) == 1 and key in errors[0], result.stderr


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.max_steps=abc", "Error merging override train.max_steps=abc"),
        ("experiment=any_typo", "Available options in 'experiment'"),
    ],
)
def test_hydra_refuses_with_its_own_message(override, expected):
    result = cli(override)
    assert result.returncode == 1 and expected in result.stderr and "Traceback" not in result.stderr
    assert override.split("=")[0] in result.stderr.splitlines()[0] or "any_typo" in result.stderr.splitlines()[0]


@pytest.mark.parametrize(
    "override, key",
    [
        ("distiller.chunk_size=-1", "distiller.chunk_size"),
        ("distiller.teacher_cache_size=0", "distiller.teacher_cache_size"),
        ("distiller.temperature=0", "distiller.temperature"),
        ("distiller.layer_map=[7]", "distiller.layer_map"),
    ],
)
def test_a_bad_distiller_value_is_refused_before_any_teacher_is_built(override, key, tmp_path):
    """On a fresh cache: one line within seconds, and nothing built (a teacher would take minutes to train)."""
    cache = tmp_path / "fresh-cache"
    started = time.perf_counter()
    result = cli(override, "logger=none", f"paths.cache_dir={cache}", f"hydra.run.dir={tmp_path / 'run'}")
    elapsed = time.perf_counter() - started
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.error_lines()
    assert key in line
    assert not cache.exists() or not any(cache.iterdir())  # no teacher, cache or tokenized data was made
    assert elapsed < 60, f"{elapsed:.0f} s: the check ran after expensive work"


def test_command_line_error_in_a_real_process(tmp_path):
    proc = cli_subprocess("distiller.divergence=jsd", "distiller.beta=0", "logger=none", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: distiller.beta=0.0 is invalid: must be in the open interval (0, 1) for jsd"
    ]


@pytest.mark.parametrize("progress", [True, False])
def test_the_teachers_training_follows_train_progress(tmp_path, progress):
    """A teacher trained for the run shows its progress bar only when the run does."""
    result = cli(
        "experiment=smoke", "logger=none", "train.max_steps=2", f"train.progress={str(progress).lower()}",
        f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training the teacher" in result.stdout  # a fresh cache: the teacher trained in this run
    assert ("teacher: 100%" in result.stderr) is progress
