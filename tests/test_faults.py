"""Fault injection: every fault ends in one line, loses nothing already written, and the exit
code says what happened. Truncated weights, a corrupted trainer state, a resume with a changed
config, a full disk while checkpointing, and a W&B server that cannot be reached."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
import yaml

import distill.loop.checkpoint as checkpoint
from distill.core.errors import ConfigError
from distill.loggers import WandbLogger
from distill.loop import checkpoint_dirs, read_checkpoint_state
from tests.conftest import cli

SMOKE = ("experiment=smoke", "logger=none", "train.progress=false", "train.checkpoint_every=4", "train.eval_every=0")


def run(out: Path, *overrides: str):
    return cli(*SMOKE, f"hydra.run.dir={out}", *overrides)


@pytest.fixture
def stopped_run(tmp_path) -> Path:
    """A finished 8-step run: checkpoints at steps 4 and 8, resumable to 12 steps."""
    out = tmp_path / "run"
    result = run(out, "train.max_steps=8")
    assert result.returncode == 0, result.stderr[-2000:]
    assert [p.name for p in checkpoint_dirs(out)] == ["step-000008", "step-000004"]
    return out


def everything_in(out: Path) -> dict[str, bytes]:
    """Every file of a run, by path; the log only up to its first line (it grows by design)."""
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    if "train.log" in files:
        files["train.log"] = files["train.log"].splitlines()[0]
    return files


def test_truncated_weights_fall_back_to_the_previous_checkpoint(stopped_run):
    weights = stopped_run / "checkpoints" / "step-000008" / "student.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    result = run(stopped_run, "train.max_steps=12", "train.resume=true")
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout + result.stderr
    assert f"checkpoint {weights}: " in out and "falling back to the one before" in out
    assert f"resumed from {stopped_run / 'checkpoints' / 'step-000004'} at step 4" in out
    assert "Traceback" not in out
    assert read_checkpoint_state(checkpoint_dirs(stopped_run)[0])["step"] == 12


def test_corrupted_trainer_state_is_one_line_and_never_advises_unsafe_loading(stopped_run):
    for ckpt in checkpoint_dirs(stopped_run):
        (ckpt / "trainer_state.pt").write_bytes(b"\x80\x04not a trainer state" * 20)
    before = everything_in(stopped_run / "checkpoints")
    result = run(stopped_run, "train.max_steps=12", "train.resume=true")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.error_lines()
    assert (
        line.startswith(f"error: no readable checkpoint in {stopped_run / 'checkpoints'}")
        and "trainer_state.pt" in line
    )
    assert "weights_only" not in result.stdout + result.stderr
    assert everything_in(stopped_run / "checkpoints") == before  # nothing deleted or rewritten


def test_resume_with_a_changed_temperature_is_refused_and_records_survive(stopped_run):
    records = everything_in(stopped_run)
    result = run(stopped_run, "train.max_steps=12", "train.resume=true", "distiller.temperature=3")
    assert result.returncode == 2
    (line,) = result.error_lines()
    assert "distiller.temperature (2.0 -> 3.0)" in line and "train.resume_allow_changes" in line
    assert "train.max_steps" not in line  # extending a run is safe
    assert everything_in(stopped_run) == records  # .hydra/ restored, nothing earlier overwritten
    # ... and an explicit allowance lets it through, as a new segment of the run
    result = run(stopped_run, "train.max_steps=12", "train.resume=true", "distiller.temperature=3",
                 "train.resume_allow_changes=[distiller.temperature]")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    segments = sorted((stopped_run / "segments").iterdir())
    assert [json.loads((s / "segment.json").read_text())["start_step"] for s in segments] == [0, 8]
    assert "distiller.temperature=3" not in (segments[0] / "overrides.yaml").read_text()
    assert "distiller.temperature=3" in yaml.safe_load((segments[1] / "overrides.yaml").read_text())


def test_a_fresh_start_over_a_run_with_checkpoints_is_refused(stopped_run):
    records = everything_in(stopped_run)
    result = run(stopped_run, "train.max_steps=8")
    assert result.returncode == 2 and "train.resume=true" in result.error_lines()[0]
    assert everything_in(stopped_run) == records


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    real_save, calls = checkpoint.save_model, {"n": 0}

    def disk_full_at_the_second(model, path):
        calls["n"] += 1
        if calls["n"] >= 2:
            Path(path).write_bytes(b"partial")  # a half-written file, then the disk is full
            raise OSError(28, "No space left on device")
        real_save(model, path)

    monkeypatch.setattr(checkpoint, "save_model", disk_full_at_the_second)
    out = tmp_path / "run"
    result = run(out, "train.max_steps=12")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.error_lines()
    first = out / "checkpoints" / "step-000004"
    assert "could not write the checkpoint of step 8 (No space left on device)" in line
    assert f"the previous checkpoint {first} is intact" in line
    assert checkpoint_dirs(out) == [first] and not list((out / "checkpoints").glob("*.tmp"))
    checkpoint.load_file(str(first / "student.safetensors"))  # still whole
    assert read_checkpoint_state(first)["step"] == 4 and not (out / "metrics.json").exists()


def test_unreachable_wandb_server_falls_back_offline_within_20_seconds(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.delenv("WANDB_MODE", raising=False)
    started = time.time()
    with caplog.at_level(logging.WARNING):
        logger = WandbLogger(mode="online", dir=tmp_path, run_config={"a": 1})
    elapsed = time.time() - started
    try:
        assert logger.mode == "offline" and logger.run is not None
        assert elapsed < 20, f"W&B took {elapsed:.0f} s to give up"
        (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert line.startswith("W&B could not start online") and f"wandb sync {tmp_path}/wandb/offline-run-*" in line
    finally:
        logger.finish()


def test_wandb_log_failure_does_not_stop_training(monkeypatch, tmp_path, caplog):
    logger = WandbLogger(mode="offline", dir=tmp_path, run_config={"a": 1})

    def broken_log(*args, **kwargs):
        raise ConnectionError("lost the network")

    monkeypatch.setattr(logger.run, "log", broken_log)
    with caplog.at_level(logging.WARNING):
        logger.log({"train/loss": 1.0}, step=1)
    assert "wandb.log failed at step 1: lost the network" in caplog.text
    logger.finish()


def test_a_checkpoint_saved_under_the_old_module_names_resumes():
    """Version 0.2 wrote ``_target_`` values by their old module paths into a checkpoint's config."""
    from distill.run.record import check_resume

    def config(logger: str, student: str) -> dict:
        return {"logger": {"_target_": logger}, "model": {"student": {"_target_": student, "layers": "every_other"}}}

    saved = config("distill.tracking.NullLogger", "distill.student_init.student_from_teacher")
    now = config("distill.loggers.NullLogger", "distill.models.student_from_teacher")
    assert check_resume(saved, now) == []  # read as their new names: nothing changed
    with pytest.raises(ConfigError, match=r"model.student.layers"):
        check_resume(saved, {**now, "model": {"student": {**now["model"]["student"], "layers": "first_n"}}})
