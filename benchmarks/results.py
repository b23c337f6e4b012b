"""Regenerate the README's results on the embedded task: every figure over 3 seeds.

    python -m benchmarks.results [--runs outputs/results] [--out docs/results] [--seeds 0,1,2] [--jobs 2]
                                 [--sweeps supervised cache grid text] [override ...]

Runs these sweeps with ``train.py -m`` (``--jobs`` jobs at a time with the joblib launcher, each
with cores // jobs threads), then ``python -m distill.report`` over all of them, which groups the
runs that differ only in their seed (mean ± std, n) into ``<out>/report.md``:

    default     the default experiment (logit, T = 2, alpha = 0.5): its runs are also the grid's, so
                it runs only when named (--sweeps default supervised: the headline alone)
    supervised  the same student on the labels only
    cache       the default run with the offline teacher cache, top_k and sampled (k = 16)
    grid        the logit distiller over temperature 1, 2, 4 x alpha 0.5, 0.9
    text        language (sequence-level) and onpolicy (GKD)

The runs go to ``<runs>/<sweep>/<job>/`` (git-ignored), the report (Markdown, CSV, plots) to
``<out>``. Before the sweeps, the teacher is trained (once, cached) in this process with torch's
default thread count (every core), not inside the first job at one thread: the teacher, and so
every figure, then does not depend on ``--jobs`` (a recipe seed gives a different teacher at 1
and at 2 threads). Prints the wall time of each sweep.
Extra overrides go to every job: the README's table used ``train.eval_every=0`` (validation once,
at the end: the same final student, without the intermediate validations' cost).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = {
    "default": [],
    "supervised": ["distiller=supervised"],
    "cache": ["distiller.teacher_cache=top_k,sampled"],
    "grid": ["distiller.temperature=1,2,4", "distiller.alpha=0.5,0.9"],
    "text": ["distiller=language,onpolicy"],
}


def sweep_command(
    name: str,
    overrides: list[str],
    runs: Path,
    seeds: str,
    jobs: int,
    extra: list[str],
    logger: tuple[str, ...] = ("logger=none",),
) -> list[str]:
    launcher = ["hydra/launcher=local_parallel", f"hydra.launcher.n_jobs={jobs}"] if jobs > 1 else []
    return [
        sys.executable, "train.py", "-m", *launcher, f"seed={seeds}", *overrides, *logger,
        "train.progress=false", f"hydra.sweep.dir={runs / name}", *extra,
    ]  # fmt: skip


def run_sweep(command: list[str], name: str, directory: Path, dry_run: bool = False) -> bool:
    """Print the sweep's command and (unless ``dry_run``) run it, printing its wall time; False if it failed."""
    print(" ".join(command[1:]), flush=True)
    if dry_run:
        return True
    started = time.time()
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        print(f"sweep {name} failed; see {directory}", file=sys.stderr)
        return False
    print(f"sweep {name}: {time.time() - started:.0f} s", flush=True)
    return True


def prepare_teacher(extra: list[str]) -> None:
    """Find or train (and cache) the teacher the sweeps will use, with every core."""
    import torch
    from hydra import compose, initialize_config_dir

    from distill.config import schemas
    from distill.core.instantiate import build
    from distill.run import fit_teacher
    from distill.teacher import TeacherSource

    schemas.register()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("config", overrides=["logger=none", *extra])
    tokenizer = build(cfg.model.tokenizer)
    data = build(cfg.data, tokenizer=tokenizer)
    started = time.time()
    TeacherSource(cfg, tokenizer, data, fit_teacher=fit_teacher).model()
    print(f"teacher ready ({torch.get_num_threads()} threads): {time.time() - started:.0f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=ROOT / "outputs" / "results")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "results")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--jobs", type=int, default=2, help="jobs at a time (each gets cores // jobs threads)")
    everything = [name for name in SWEEPS if name != "default"]  # the grid holds the default's runs
    parser.add_argument("--sweeps", nargs="*", default=everything, choices=list(SWEEPS))
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args, extra = parser.parse_known_args()
    if not args.dry_run:
        prepare_teacher(extra)
    for name in args.sweeps:
        command = sweep_command(name, SWEEPS[name], args.runs, args.seeds, args.jobs, extra)
        if not run_sweep(command, name, args.runs / name, args.dry_run):
            return 1
    report = [sys.executable, "-m", "distill.report", *(str(args.runs / n) for n in args.sweeps)]
    report += ["--out", str(args.out)]
    print(" ".join(report[1:]), flush=True)
    return 0 if args.dry_run else subprocess.run(report, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main())
