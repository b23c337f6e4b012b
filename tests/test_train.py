"""``python train.py`` end to end in a subprocess: metrics.json, W&B offline files, CLI errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.wandb_offline import offline_runs

ROOT = Path(__file__).resolve().parents[1]


def train(*overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", *overrides], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("smoke")
    proc = train("experiment=smoke", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_smoke_run_writes_metrics_and_student(smoke_run):
    out, proc = smoke_run
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("student/accuracy", "teacher/accuracy", "student/loss", "teacher/loss", "student/params", "teacher/params"):
        assert key in metrics, key
    assert 0.0 <= metrics["student/accuracy"] <= 1.0
    assert metrics["student/params"] * 2 < metrics["teacher/params"]
    assert metrics["overrides"] == ["experiment=smoke"] and metrics["distiller"] == "logit"
    assert "student/accuracy" in proc.stdout and "teacher" in proc.stdout  # the printed table
    assert (out / "student" / "model.safetensors").exists() and (out / "student" / "tokenizer.json").exists()
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert any("val/accuracy" in h for h in history) and any("train/kd" in h for h in history)


def test_wandb_offline_run_has_resolved_config(smoke_run):
    out, _ = smoke_run
    (run,) = offline_runs(out / "wandb")
    cfg = run["config"]
    assert cfg["distiller"]["_target_"] == "distill.distillers.LogitDistiller"
    assert cfg["distiller"]["max_new_tokens"] == 24  # ${data.max_new_tokens}, resolved
    assert "${" not in json.dumps(cfg)
    assert run["job_type"] == "logit" and run["exit_code"] == 0
    assert run["summary"]["student/params"] > 0


def test_second_run_uses_cached_teacher(smoke_run, tmp_path):
    proc = train("experiment=smoke", "train.max_steps=2", "logger=none", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "using the cached teacher" in proc.stdout + proc.stderr
    assert "Training the teacher" not in proc.stdout


def test_cfg_job_shows_targets():
    proc = train("--cfg", "job")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for section in ("model:", "distiller:", "data:", "optimizer:"):
        assert section in text
    assert text.count("_target_") >= 6


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["distiller.temperature=0"], "distiller.temperature"),
        (["+distiller.temprature=2"], "distiller.temprature"),
        (["distiller.divergence=jsd", "distiller.beta=2"], "distiller.beta"),
    ],
)
def test_bad_config_is_one_line_and_nonzero(overrides, key, tmp_path):
    proc = train(*overrides, f"hydra.run.dir={tmp_path}", timeout=120)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and key in errors[0]
