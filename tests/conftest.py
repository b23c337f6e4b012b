"""Shared test settings and helpers: no network, W&B offline, one teacher cache per session,
tiny models, and three ways to run an experiment (compose + run in-process, the CLI in-process,
the CLI in a subprocess)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import absl.logging
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ["HYDRA_FULL_ERROR"] = "0"
os.environ.pop("WANDB_API_KEY", None)
# rouge-score imports absl, whose handler keeps the sys.stderr of the moment and closes it when a later
# logging.config.dictConfig (Hydra's, in cli() below) shuts handlers down while stderr is redirected: point
# it at the real stderr, which it never closes.
absl.logging.get_absl_handler().python_handler.stream = sys.__stderr__


@pytest.fixture(scope="session", autouse=True)
def teacher_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One teacher cache per test session (tiny teachers train in seconds)."""
    path = tmp_path_factory.mktemp("distill-cache")
    os.environ["DISTILL_CACHE"] = str(path)
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; two threads on a busy machine can be ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def compose(*overrides: str, return_hydra_config: bool = False):
    """``conf/config.yaml`` composed with ``overrides`` through Hydra's compose API."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from distill.config import schemas

    schemas.register()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def run_experiment(out: Path, *overrides: str) -> dict:
    """Compose and run an experiment in this process; returns its ``metrics.json``."""
    from distill.run.experiment import run

    run(compose(*overrides), output_dir=out)
    return json.loads((out / "metrics.json").read_text())


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("error:")]


def cli(*args: str) -> CliResult:
    """``python train.py ARGS`` in this process (Hydra's real command line, sys.exit caught)."""
    import train

    out, err = io.StringIO(), io.StringIO()
    argv, root = sys.argv, logging.getLogger()
    handlers, level = list(root.handlers), root.level
    sys.argv = ["train.py", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            train.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = argv
        for handler in set(root.handlers) - set(handlers):  # Hydra's handlers write to the streams captured above
            root.removeHandler(handler)
            handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    return CliResult(code, out.getvalue(), err.getvalue())


def cli_subprocess(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python train.py ARGS`` in a new process, one thread (for what needs a real process)."""
    return subprocess.run(
        [sys.executable, "train.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------- tiny models and data


@pytest.fixture(scope="session")
def tok():
    from distill.data.arithmetic import build_tokenizer

    return build_tokenizer()


def task_data(tok, n_train: int = 64, n_eval: int = 8, **options):
    from distill.data import TaskData
    from distill.data.arithmetic import make_splits

    options = {"max_length": 64, "batch_size": 8, "eval_batch_size": 8, "max_new_tokens": 8, **options}
    return TaskData(make_splits(n_train=n_train, n_validation=n_eval, n_test=n_eval), tok, **options)


def gpt2(tok, seed: int = 0, n_layer: int = 1, n_embd: int = 32, **config):
    """A tiny GPT-2 sized to the tokenizer, seeded, without dropout."""
    from distill.models import from_config

    torch.manual_seed(seed)
    return from_config(
        "gpt2",
        tokenizer=tok,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=2,
        n_positions=128,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        **config,
    )
