"""Does the embedded teacher's recipe hold? Train it from scratch for several seeds and thread counts.

    python -m benchmarks.teacher_recipe [--seeds 0,1,2] [--threads 1,2] [--parallel-one-thread] [override ...]

Each training runs in its own process with a fresh cache directory (``OMP_NUM_THREADS`` and
``train.num_threads`` set to the thread count), trains the teacher of ``model=embedded`` with
``model.teacher.recipe.seed=<seed>``, and evaluates it on the validation and test splits (exact
match of the final answer). 2-thread trainings run one at a time; with ``--parallel-one-thread``
the 1-thread trainings run two at a time (one core each). Prints a Markdown table with the
training time of each. Extra overrides are Hydra overrides for the composed config.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(seed: int, threads: int, overrides: list[str]) -> dict[str, float]:
    """Train (into a fresh cache) and evaluate one teacher in this process."""
    import torch
    from hydra import compose, initialize_config_dir

    from distill.config import schemas
    from distill.core.instantiate import build
    from distill.run import fit_teacher
    from distill.teacher import TeacherSource

    torch.set_num_threads(threads)
    schemas.register()
    conf = str(ROOT / "conf")
    with tempfile.TemporaryDirectory() as cache, initialize_config_dir(version_base="1.3", config_dir=conf):
        cfg = compose(
            "config",
            overrides=[f"paths.cache_dir={cache}", f"model.teacher.recipe.seed={seed}", "logger=none", *overrides],
        )
        tokenizer = build(cfg.model.tokenizer)
        data = build(cfg.data, tokenizer=tokenizer)
        source = TeacherSource(cfg, tokenizer, data, fit_teacher=fit_teacher)
        started = time.perf_counter()
        source.model()  # trains it (the cache is empty)
        train_s = time.perf_counter() - started
        metrics = source.metrics()
    return {"seed": seed, "threads": threads, "train_s": train_s, **metrics}


def launch(seed: int, threads: int, overrides: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "benchmarks.teacher_recipe", "--worker", str(seed), str(threads), *overrides]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


def result(process: subprocess.Popen) -> dict[str, float]:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a teacher training failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def table(rows: list[dict[str, float]]) -> str:
    header = "| seed | threads | validation exact match | test exact match | training time (s) |"
    lines = [header, "|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["threads"], r["seed"])):
        lines.append(
            f"| {r['seed']} | {r['threads']} | {r['teacher/accuracy']:.4f} | {r['teacher/test_accuracy']:.4f} "
            f"| {r['train_s']:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--parallel-one-thread", action="store_true", help="run 1-thread trainings two at a time")
    parser.add_argument("--worker", nargs=2, type=int, metavar=("SEED", "THREADS"), help=argparse.SUPPRESS)
    args, overrides = parser.parse_known_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, overrides)))
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    rows: list[dict[str, float]] = []
    for threads in (int(t) for t in args.threads.split(",")):
        batch = 2 if threads == 1 and args.parallel_one_thread else 1
        for i in range(0, len(seeds), batch):
            processes = [launch(seed, threads, overrides) for seed in seeds[i : i + batch]]
            rows += [result(p) for p in processes]
            print(table(rows[-len(processes) :]).splitlines()[-1], flush=True)
    print(table(rows))
    accuracies = [r["teacher/accuracy"] for r in rows]
    print(f"validation exact match: min {min(accuracies):.4f}, mean {sum(accuracies) / len(accuracies):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
