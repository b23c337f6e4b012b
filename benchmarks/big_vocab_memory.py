"""Peak memory of a 3-step logit run with a 151,936-token vocabulary: chunked loss against materialised logits.

    python -m benchmarks.big_vocab_memory [--threads 1] [--no-teacher-eval] [--trace]

Runs ``python train.py`` (the real command line, in a subprocess, from the repository root) twice, chunked
(the default ``distiller.chunk_size``) then materialised (``distiller.chunk_size=0``), with:

    a GPT-2 teacher and student built by distill.models.from_config with vocab_size=151936 (random weights; the
    tokenizer's ~100 tokens are the first rows): teacher 4 layers x 64 (2 heads), student 3 x 64 (2 heads), each
    ~10M parameters, ~9.7M of them the (tied) embedding, ~40 MB of float32 weights each
    data.batch_size=32, train.max_steps=3, train.eval_every=0 (validation once, at the end), 64 validation and 64
    test problems (data.max_eval_examples=64), logger=none, the teacher evaluated at the end unless
    --no-teacher-eval (evaluate_teacher=false); each run's directory and caches (paths.cache_dir) in a fresh
    temporary directory, so no run reuses another's cached teacher metrics

How it measures: each run's peak RSS is its ``ru_maxrss`` from os.wait4 on that child (per child, unlike
RUSAGE_CHILDREN, which keeps the maximum over all children), and its wall time. One run per variant (the peak of a
deterministic run barely varies). The runs use one torch thread (train.num_threads and OMP_NUM_THREADS).

``--trace`` adds one run per variant of the same command inside ``python -m benchmarks.big_vocab_memory
--trace-child``, which wraps a few functions of the run (in that process only; no project file changes) to print,
at the end of each phase, the current RSS (VmRSS) and the peak RSS during the phase (VmHWM, reset after each
report by writing 5 to /proc/self/clear_refs): the models, each training step, and within each evaluation (student
validation, test split, teacher) its forward pass, CE loss and greedy generation. The phase with the highest peak is
what holds the memory. (The reset also lowers that run's ru_maxrss, so a traced run reports phases only.)
``--what-if`` adds one traced chunked run in which the evaluations get the default chunk_size (patched in that
process only): what the peak would be if validation and the teacher's evaluation used the chunked loss.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 151_936
TARGET_GB = 1.5
GB = 1e9
MODEL = ("model_type=gpt2", "n_embd=64", "n_head=2", "n_positions=128")
VARIANTS = {"chunked": [], "materialised": ["distiller.chunk_size=0"]}
PROBE = "[rss]"


def overrides(tmp: Path, name: str, run_dir: str, args: argparse.Namespace) -> list[str]:
    """train.py overrides of variant ``name``: from_config models at V = ``args.vocab``, 3 steps, small validation."""
    teacher = [
        "model.teacher._target_=distill.models.from_config",
        "~model.teacher.architecture",
        "~model.teacher.recipe",
        "~model.teacher.cache_dir",
        "+model.teacher.n_layer=4",
        *(f"+model.teacher.{kv}" for kv in MODEL),
        f"+model.teacher.vocab_size={args.vocab}",
    ]
    data = [f"data.source.n_train={args.train_examples}"] if args.train_examples else []
    return [
        *teacher,
        f"+model.student.vocab_size={args.vocab}",
        *data,
        "data.batch_size=32",
        f"data.max_eval_examples={args.eval_examples}",
        "train.max_steps=3",
        "train.eval_every=0",
        f"train.num_threads={args.threads}",
        "train.progress=false",
        "logger=none",
        f"evaluate_teacher={str(not args.no_teacher_eval).lower()}",
        f"paths.cache_dir={tmp / run_dir / 'cache'}",  # per run: no run reuses another's teacher metrics
        f"hydra.run.dir={tmp / run_dir}",
        *VARIANTS[name],
    ]


def run_child(command: list[str], log_path: Path, threads: int) -> tuple[int, float, float]:
    """Run ``command`` from the repository root with its output in ``log_path``: (exit code, peak bytes, seconds)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="disabled", TOKENIZERS_PARALLELISM="false")
    start = time.perf_counter()
    with log_path.open("w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: tell Popen, so it does not wait again
    return proc.returncode, usage.ru_maxrss * 1024, time.perf_counter() - start  # ru_maxrss: KiB on Linux


# ----------------------------------------------------------------------------- --trace-child: RSS after each phase


def memory() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in GB: the current resident set and its peak since the last reset."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024 / GB
    return values["VmRSS"], values["VmHWM"]


def report(label: str) -> None:
    """Print the RSS now and the peak since the previous report, then reset the peak (Linux clear_refs 5)."""
    rss, peak = memory()
    print(f"{PROBE} {label:34} rss {rss:5.2f} GB, peak during the phase {peak:5.2f} GB", file=sys.stderr, flush=True)
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def probe(owner: Any, name: str, label: Callable[[], str]) -> None:
    """Replace ``owner.name`` by a wrapper that reports after each call (the phase ends with the call); a name the
    project no longer has is reported and skipped."""
    original = getattr(owner, name, None)
    if original is None:
        print(f"{PROBE} no probe: {getattr(owner, '__name__', owner)}.{name} not found", file=sys.stderr, flush=True)
        return

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        report(label())
        return result

    setattr(owner, name, wrapper)


def install_probes() -> None:
    """Probes on the phases of distill.run.experiment.run and of each evaluation (module attributes, looked up at call
    time), each reporting the peak RSS since the previous one."""
    from distill.distillers.distiller import Distiller
    from distill.teacher.source import TeacherSource

    experiment, loop = importlib.import_module("distill.run.experiment"), importlib.import_module("distill.loop.fit")
    evaluation = importlib.import_module("distill.inference.evaluation")
    steps = iter(range(1, 10**6))
    probe(experiment, "build_student", lambda: "student built")
    probe(TeacherSource, "model", lambda: "teacher built (or reused)")
    probe(loop, "_optimizer_step", lambda: f"training step {next(steps)}")
    probe(evaluation, "forward", lambda: "  evaluation: forward")
    probe(evaluation, "objective_loss", lambda: "  evaluation: CE loss")
    probe(evaluation, "generate_texts", lambda: "  evaluation: greedy generation")
    probe(Distiller, "validate", lambda: "student validated (val or test)")
    probe(experiment, "test_metrics", lambda: "test split done")
    probe(TeacherSource, "metrics", lambda: "teacher evaluated")


def chunk_evaluations() -> None:
    """What if evaluations used the chunked loss: the student's validation and the teacher's evaluation call
    distill.inference.evaluation.evaluate_model with the default chunk_size (a patch in this process only)."""
    from distill.losses import DEFAULT_CHUNK_SIZE

    for module in ("distill.distillers.base", "distill.teacher.source"):
        owner = importlib.import_module(module)
        owner.evaluate_model = functools.partial(owner.evaluate_model, chunk_size=DEFAULT_CHUNK_SIZE)


def trace_child(train_args: list[str], chunked_eval: bool) -> None:
    """Run train.py's main in this process with the probes installed (and, if asked, chunked evaluations)."""
    import train

    if chunked_eval:
        chunk_evaluations()
    install_probes()
    report("imports done")
    sys.argv = ["train.py", *train_args]
    train.main()


# ----------------------------------------------------------------------------- the parent


def measure(name: str, tmp: Path, args: argparse.Namespace, how: str = "") -> tuple[int, float, float, Path]:
    """One train.py run of ``name``, plain or (``how``) ``trace`` or ``chunked-eval`` (traced, evaluations chunked):
    exit code, peak bytes, seconds, log file."""
    trace = bool(how)
    run_name = f"{name}-{how}" if how else name
    train_args = overrides(tmp, name, run_name, args)
    if trace:
        what_if = ["--chunked-eval"] if how == "chunked-eval" else []
        command = [sys.executable, "-m", "benchmarks.big_vocab_memory", *what_if, "--trace-child", *train_args]
    else:
        command = [sys.executable, "train.py", *train_args]
    log_path = tmp / f"{run_name}.log"
    code, peak, seconds = run_child(command, log_path, args.threads)
    shown = "peak RSS per phase below" if trace else f"peak RSS {peak / GB:.2f} GB"  # trace resets the peak
    print(f"  {run_name}: exit {code}, {shown}, {seconds:.0f} s", flush=True)
    if code != 0:
        print(log_path.read_text()[-3000:], file=sys.stderr)
    if trace:
        print("\n".join("    " + line for line in log_path.read_text().splitlines() if line.startswith(PROBE)))
    return code, peak, seconds, log_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of the runs")
    parser.add_argument("--no-teacher-eval", action="store_true", help="evaluate_teacher=false")
    parser.add_argument("--vocab", type=int, default=VOCAB, help="vocab_size of both models")
    parser.add_argument("--eval-examples", type=int, default=64, help="data.max_eval_examples (validation and test)")
    parser.add_argument("--train-examples", type=int, default=0, help="data.source.n_train (0: the config's)")
    parser.add_argument("--trace", action="store_true", help="also one traced run per variant: RSS after each phase")
    parser.add_argument(
        "--what-if", action="store_true", help="also a traced chunked run whose evaluations are chunked"
    )
    parser.add_argument("--chunked-eval", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trace-child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trace_child is not None:
        trace_child(args.trace_child, args.chunked_eval)
        return 0
    evaluated = "the teacher evaluated" if not args.no_teacher_eval else "evaluate_teacher=false"
    print(f"train.py, V={args.vocab}, batch 32, 3 steps, {args.eval_examples} validation + {args.eval_examples} "
          f"test problems, {evaluated}, {args.threads} thread(s)", flush=True)  # fmt: skip
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in VARIANTS:
            results[name] = measure(name, Path(tmp), args)
            if args.trace:
                measure(name, Path(tmp), args, "trace")
        if args.what_if:
            measure("chunked", Path(tmp), args, "chunked-eval")
    print_table(results, args.vocab)
    return 0 if all(r[0] == 0 for r in results.values()) else 1


def print_table(results: dict[str, tuple[int, float, float, Path]], vocab: int) -> None:
    """Peak RSS and wall time of each variant, and the target."""
    print(f"\n{'variant':13} {'chunk_size':>10} {'peak RSS GB':>12} {'wall s':>7} {'exit':>5}")
    for name, (code, peak, seconds, _) in results.items():
        chunk = "0" if VARIANTS[name] else "default"
        print(f"{name:13} {chunk:>10} {peak / GB:12.2f} {seconds:7.0f} {code:5d}")
    code, peak = results["chunked"][0], results["chunked"][1] / GB
    verdict = "PASS" if code == 0 and peak < TARGET_GB else "FAIL"
    note = "" if vocab == VOCAB else f" (the target is for V={VOCAB})"
    print(f"target: chunked peak RSS < {TARGET_GB} GB: {peak:.2f} GB -> {verdict}{note}")


if __name__ == "__main__":
    sys.exit(main())
