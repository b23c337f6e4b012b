"""Four students, one architecture: what the teacher's layers and its hidden states add to logit KD.

    python -m benchmarks.four_way [--tasks causal classifier] [--seeds 0,1,2] [--runs outputs/four_way]
                                  [--out docs/four_way] [--jobs 2] [override ...]

For each task every student has the teacher's width and half its depth, and the same steps:

    (a) label-only                        distiller=supervised, random init
    (b) logit KD from random init         distiller=logit
    (c) logit KD from the teacher's layers the teacher's layers 0 and 2 (every_other), weights copied
    (d) (c) plus hidden-state matching    distiller.hidden_weight=1 distiller.hidden_loss=cosine

Tasks: ``causal`` (the default embedded arithmetic teacher, GPT-2 4 x 128; students 2 x 128 trained for
300 steps, half the default budget, which keeps the sweep at ~10 minutes on 2 cores;
model=embedded_half, random, and model=embedded_layers, born from the teacher) and ``classifier``
(experiment=embedded_classifier, BERT 4 x 128; model=embedded_classifier_half and
model=embedded_classifier). Each task is two ``train.py -m`` sweeps, random init (a, b) and the
teacher's layers (c, d), over the seeds, ``--jobs`` at a time (hydra/launcher=local_parallel,
logger=none, one thread per job), into ``<runs>/<task>/{random,layers}`` (a log next to each); then
``python -m distill.report`` groups the seeds (mean ± std) into ``<out>/<task>/report.md``. A sweep
directory that is already complete is reused; an incomplete one is an error (remove it, or pick
another ``--runs``). Extra overrides go to every job, e.g. ``train.max_steps=20`` for a toy run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS: dict[str, dict[str, list[str]]] = {
    "causal": {"base": ["train.max_steps=300"], "random": ["model/student=gpt2_half"]},  # 300: the README's budget
    "classifier": {"base": ["experiment=embedded_classifier"], "random": ["model/student=bert_half"]},
}
LAYERS = ["model/student=from_teacher", "distiller.hidden_weight=0,1", "distiller.hidden_loss=cosine"]


def sweeps(task: str) -> dict[str, list[str]]:
    """The task's two sweeps: name -> overrides (besides seeds, launcher and extras)."""
    spec = TASKS[task]
    return {
        "random": [*spec["base"], *spec["random"], "distiller=supervised,logit"],
        "layers": [*spec["base"], *LAYERS],
    }


def command(overrides: Sequence[str], seeds: str, sweep_dir: Path, jobs: int, extra: Sequence[str]) -> list[str]:
    """``python train.py -m ...`` for one sweep (an extra override replaces the task's own for its key)."""
    launcher = ["hydra/launcher=local_parallel", f"hydra.launcher.n_jobs={jobs}", f"hydra.sweep.dir={sweep_dir}"]
    replaced = {e.split("=")[0] for e in extra}
    overrides = [o for o in overrides if o.split("=")[0] not in replaced]
    return [sys.executable, "train.py", "-m", *launcher, "logger=none", *overrides, f"seed={seeds}", *extra]


def finished(sweep_dir: Path, n_jobs: int) -> bool | None:
    """True: all ``n_jobs`` jobs wrote metrics.json; None: nothing there yet; False: a partial sweep."""
    if not sweep_dir.exists() or not any(sweep_dir.iterdir()):
        return None
    return len(list(sweep_dir.glob("*/metrics.json"))) == n_jobs


def run_sweep(name: str, cmd: list[str], sweep_dir: Path, n_jobs: int) -> bool:
    """Run one sweep (its output into ``<sweep_dir>.log``); True when every job finished."""
    state = finished(sweep_dir, n_jobs)
    if state:
        print(f"{name}: reusing the complete sweep in {sweep_dir}")
        return True
    if state is False:
        raise SystemExit(f"error: {sweep_dir} holds an incomplete sweep: remove it or choose another --runs")
    sweep_dir.parent.mkdir(parents=True, exist_ok=True)
    log = sweep_dir.with_suffix(".log")
    print(f"{name}: {' '.join(cmd[1:])}\n  log: {log}", flush=True)
    started = time.time()
    with log.open("w") as f:
        code = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=job_env()).returncode
    print(f"{name}: {'done' if code == 0 else f'exit {code}'} in {time.time() - started:.0f} s", flush=True)
    return code == 0


def job_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=["causal", "classifier"])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--runs", type=Path, default=Path("outputs/four_way"), help="where the sweeps go")
    parser.add_argument("--out", type=Path, default=Path("docs/four_way"), help="where the reports go")
    parser.add_argument("--jobs", type=int, default=2, help="jobs at a time (default 2)")
    parser.add_argument("overrides", nargs="*", help="extra overrides for every job, e.g. train.max_steps=20")
    args = parser.parse_args(argv)
    n_seeds = len(args.seeds.split(","))
    ok, started = True, time.time()
    for task in args.tasks:
        dirs = []
        for name, overrides in sweeps(task).items():
            sweep_dir = (args.runs / task / name).resolve()
            ok &= run_sweep(f"{task}/{name}", command(overrides, args.seeds, sweep_dir, args.jobs, args.overrides),
                            sweep_dir, 2 * n_seeds)  # fmt: skip
            dirs.append(str(sweep_dir))
        out = (args.out / task).resolve()
        report = [sys.executable, "-m", "distill.report", *dirs, "--out", str(out)]
        ok &= subprocess.run(report, cwd=ROOT, env=job_env()).returncode == 0
    print(
        f"four_way: {'done' if ok else 'some jobs failed (see the logs and reports)'} in {time.time() - started:.0f} s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
