"""The same train.py under torchrun on CPU (gloo): 2 processes equal 1 process with the same global
batch (DDP and FSDP2), two simulated nodes equal one, a SIGTERM'd 2-process run resumes on 1
process, caches are built once, and only rank 0 writes. Slow (each launch starts 2 processes):
``python -m pytest -m slow``; CI runs them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import ROOT, read_jsonl
from tests.wandb_offline import offline_runs

pytestmark = pytest.mark.slow
SMOKE = ("experiment=smoke", "train.progress=false", "train.log_every=1")


def torchrun(*args: str, nproc: int = 2, extra: tuple[str, ...] = (), background: bool = False):
    command = [sys.executable, "-m", "torch.distributed.run", *(extra or ("--standalone",)),
               f"--nproc_per_node={nproc}", "train.py", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    if background:
        return proc
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the workers too, not just torchrun's agent
        raise
    assert proc.returncode == 0, err[-4000:]
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def single(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def assert_same_run(a: Path, b: Path, tol: float) -> None:
    """Equal training curves (every logged value but the clock, ``time/*``), validation metrics and final
    student weights."""
    ha, hb = read_jsonl(a / "history.jsonl"), read_jsonl(b / "history.jsonl")
    assert [h["step"] for h in ha] == [h["step"] for h in hb]
    for x, y in zip(ha, hb):
        assert x.keys() == y.keys()
        for k in (k for k in x if not k.startswith("time/")):
            assert y[k] == pytest.approx(x[k], abs=tol, rel=tol), (x["step"], k)
    wa, wb = load_file(a / "student" / "model.safetensors"), load_file(b / "student" / "model.safetensors")
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa.keys() & wb.keys()) <= tol


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One process, batch 16, grad_accum 2: the global batch of 2 processes x 16."""
    out = tmp_path_factory.mktemp("dist") / "one"
    single(*SMOKE, "logger=none", "train.grad_accum=2", f"hydra.run.dir={out}")
    return out


def test_ddp_two_processes_equal_one_with_the_same_global_batch(reference, tmp_path):
    out = tmp_path / "ddp"
    proc = torchrun(*SMOKE, "logger=wandb", f"hydra.run.dir={out}")
    assert "global batch 32 (data.batch_size 16 x 2 processes x train.grad_accum 1)" in proc.stdout + proc.stderr
    assert_same_run(reference, out, 1e-5)
    # only rank 0 wrote: one W&B run, one metrics.json, one segment, one set of checkpoints
    assert len(offline_runs(out)) == 1 and len(list(out.rglob("metrics.json"))) == 1
    assert len(list((out / "segments").iterdir())) == 1 and len(list((out / "checkpoints").iterdir())) == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["student/loss"] == pytest.approx(
        json.loads((reference / "metrics.json").read_text())["student/loss"]
    )


def test_fsdp_two_processes_equal_one(reference, tmp_path):
    out = tmp_path / "fsdp"
    torchrun(*SMOKE, "logger=none", "train.strategy=fsdp", f"hydra.run.dir={out}")
    assert_same_run(reference, out, 1e-4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_simulated_nodes_equal_one_node(reference, tmp_path):
    out, port = tmp_path / "nodes", _free_port()
    rdzv = ("--nnodes=2", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=distill-test")
    nodes = [torchrun(*SMOKE, "logger=none", f"hydra.run.dir={out}", nproc=1, extra=(*rdzv, f"--node-rank={r}"),
                      background=True) for r in (0, 1)]  # fmt: skip
    for node in nodes:
        _, err = node.communicate(timeout=600)
        assert node.returncode == 0, err[-4000:]
    assert_same_run(reference, out, 1e-5)


def test_teacher_cache_and_bounded_loss_under_two_processes(tmp_path):
    cache, one, two = tmp_path / "cache", tmp_path / "one", tmp_path / "two"
    args = (*SMOKE, "logger=none", "distiller.teacher_cache=sampled", f"paths.cache_dir={cache}")
    torchrun(*args, f"hydra.run.dir={two}")
    log = (two / "train.log").read_text()
    assert log.count("teacher cache built") == 1 and log.count("teacher cache reused") == 1  # rank 0, then rank 1
    single(*args, "train.grad_accum=2", f"hydra.run.dir={one}")
    assert "teacher cache reused" in (one / "train.log").read_text()
    assert_same_run(one, two, 1e-5)


def test_sigterm_on_two_processes_then_resume_on_one(tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    args = (*SMOKE, "logger=none", "train.max_steps=40", "train.checkpoint_every=2", "train.eval_every=20")
    torchrun(*args, f"hydra.run.dir={straight}")
    run = torchrun(*args, f"hydra.run.dir={stopped}", background=True)
    deadline = time.time() + 300
    while not list((stopped / "checkpoints").glob("step-00000[4-9]")):
        assert run.poll() is None and time.time() < deadline, run.communicate()[1][-3000:]
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)  # torchrun forwards it to both ranks
    run.communicate(timeout=300)
    assert not (stopped / "metrics.json").exists()
    single(*args, "train.resume=true", f"hydra.run.dir={stopped}")  # 1 process: grad_accum 2 keeps the global batch
    a, b = json.loads((straight / "metrics.json").read_text()), json.loads((stopped / "metrics.json").read_text())
    for key in ("student/loss", "student/accuracy", "student/test_loss"):
        assert b[key] == pytest.approx(a[key], abs=1e-5), key


def test_language_distiller_generates_each_prompt_once_under_two_processes(tmp_path):
    out, cache = tmp_path / "language", tmp_path / "cache"
    torchrun(*SMOKE, "logger=none", "distiller=language", "distiller.max_length=8", "train.max_steps=4",
             f"paths.cache_dir={cache}", f"hydra.run.dir={out}")  # fmt: skip
    lines = (out / "train.log").read_text().splitlines()
    generated = [int(line.split("generated ")[1].split(" of ")[0]) for line in lines
                 if "teacher generations: rank" in line and "(train-" in line]  # fmt: skip
    (train_file,) = (cache / "generations").glob("train-*.json")
    prompts = len(json.loads(train_file.read_text())["completions"])
    assert len(generated) == 2 and sum(generated) == prompts  # each prompt once, split between the ranks
    assert len(list((cache / "generations").glob("train-*.json"))) == 1
