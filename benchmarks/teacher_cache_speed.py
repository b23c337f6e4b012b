"""Step time of logit distillation with the teacher online, from a teacher cache (top_k, sampled), and label-only.

    python -m benchmarks.teacher_cache_speed [--repeats 3] [--steps 30] [--train-examples 2048] [--cache-size 16]
        [--threads 1]

Models and data: the GPT-2 teacher (4 layers x 128) and student (3 x 64) of benchmarks.step_throughput, random
weights (speed does not depend on them), sized to the embedded tokenizer; the embedded task's first
``--train-examples`` training problems (max_length 96) in TaskData, batches of 32 from its shuffled train loader
(seed 0, so they carry the ``index`` column a cache is keyed by). Every variant trains its own copy of the same
initial student, with AdamW (lr 5e-3, betas 0.9/0.95) and gradient clipping at 1, on the same batches:

    online      LogitDistiller(student, teacher, T=2, alpha=0.5): the teacher's forward pass in every step
    top_k       LogitDistiller(student, teacher_targets=<top_k cache>, T=2, alpha=0.5)
    sampled     LogitDistiller(student, teacher_targets=<sampled cache>, T=2, alpha=0.5)
    label-only  SupervisedDistiller(student): cross-entropy on the labels, no teacher

Both caches (``--cache-size`` tokens per position) are built once, before any timing, with
distill.teacher.logit_cache.cache_for_loader (one pass of the teacher over the training split, in dataset order) into a
temporary directory; their build time (time.perf_counter around that call) and bytes per cached token are printed.

What is timed: one step = ``distiller.train_step(batch)`` then what distill.loop.fit does per step (clip_grad_norm_,
optimizer.step, scheduler.step, zero_grad), each step timed with time.perf_counter. Each variant first runs
``--warmup`` untimed steps; then every round runs ``--steps`` steps of each variant in turn (online, top_k, sampled,
label-only: interleaved, in one process), and a round's figure is its mean step time. The table gives the median
over ``--repeats`` rounds of the step time and of the per-round ratio to label-only. CPU, one torch thread by default.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.step_throughput import ALPHA, MAX_LENGTH, STUDENT, TEACHER, TEMPERATURE, optimizer_work, version
from distill.data import TaskData
from distill.data.arithmetic import build_tokenizer, make_splits
from distill.distillers import LogitDistiller, SupervisedDistiller
from distill.models import from_config, shared_width
from distill.teacher.logit_cache import CacheSettings, TeacherLogitCache, cache_for_loader

VARIANTS = ("online", "top_k", "sampled", "label-only")
MODES = ("top_k", "sampled")
TARGET = 1.25  # a cached-teacher step should cost at most this many label-only steps
log = logging.getLogger("benchmarks.teacher_cache_speed")


def build_caches(teacher: nn.Module, data: TaskData, width: int, size: int, root: Path) -> dict[str, Any]:
    """Each mode's cache over the training split, with its build seconds."""
    caches: dict[str, Any] = {}
    for mode in MODES:
        start = time.perf_counter()
        cache = cache_for_loader(teacher, data.train_loader(), CacheSettings(mode, size), root, mode, width, log)
        caches[mode] = (cache, time.perf_counter() - start)
    return caches


def make_steps(
    teacher: nn.Module, student: nn.Module, caches: dict[str, Any]
) -> dict[str, Callable[[dict[str, Any]], None]]:
    """One training step per variant, each on its own copy of ``student`` with its own optimizer."""
    kd = dict(temperature=TEMPERATURE, alpha=ALPHA, divergence="forward_kl")

    def cached(cache: TeacherLogitCache) -> LogitDistiller:
        return LogitDistiller(copy.deepcopy(student), teacher_targets=cache, **kd)

    distillers = {
        "online": LogitDistiller(copy.deepcopy(student), teacher, **kd),
        "top_k": cached(caches["top_k"][0]),
        "sampled": cached(caches["sampled"][0]),
        "label-only": SupervisedDistiller(copy.deepcopy(student)),
    }

    def step_of(distiller: Any) -> Callable[[dict[str, Any]], None]:
        work = optimizer_work(distiller.student)

        def step(batch: dict[str, Any]) -> None:
            distiller.train_step(batch)
            work()

        return step

    return {name: step_of(d) for name, d in distillers.items()}


def mean_step_ms(step: Callable[[dict[str, Any]], None], batches: list[dict[str, Any]]) -> float:
    """Mean milliseconds of one step over ``batches``, each step timed on its own."""
    seconds = 0.0
    for batch in batches:
        start = time.perf_counter()
        step(batch)
        seconds += time.perf_counter() - start
    return 1000 * seconds / len(batches)


def rounds(steps: dict[str, Callable], batches: list, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Per variant, the mean step ms of each interleaved round (after ``warmup`` untimed steps each)."""
    for step in steps.values():
        for batch in batches[:warmup]:
            step(batch)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(repeats):
        for name, step in steps.items():
            times[name].append(mean_step_ms(step, batches[warmup:]))
        line = "  ".join(f"{name} {ms[-1]:.1f} ms" for name, ms in times.items())
        print(f"round {r + 1}: {line}", flush=True)
    return times


def print_table(times: dict[str, list[float]], caches: dict[str, Any], args: argparse.Namespace) -> None:
    """Step ms, ratio vs label-only, and each cache's bytes per token and build time; then the target."""
    print(f"\ntorch threads: {torch.get_num_threads()}; medians of {args.repeats} interleaved rounds of "
          f"{args.steps} steps; torch {version('torch')}, transformers {version('transformers')}")  # fmt: skip
    print("{:10} {:>8} {:>14} {:>11} {:>10}".format("variant", "step ms", "vs label-only", "cache B/tok", "build s"))
    base = times["label-only"]
    ratios = {name: statistics.median(a / b for a, b in zip(ms, base)) for name, ms in times.items()}
    for name, ms in times.items():
        cache, seconds = caches.get(name, (None, None))
        extra = f"{cache.bytes_per_token:>11} {seconds:>10.1f}" if cache is not None else f"{'-':>11} {'-':>10}"
        print(f"{name:10} {statistics.median(ms):8.1f} {ratios[name]:13.2f}x {extra}")
    tokens = {mode: caches[mode][0].meta["tokens"] for mode in MODES}
    print(f"caches: {args.train_examples} examples, {tokens['top_k']} response tokens, k={args.cache_size}")
    for mode in MODES:
        verdict = "PASS" if ratios[mode] <= TARGET else "FAIL"
        print(f"target: {mode} step <= {TARGET}x label-only: {ratios[mode]:.2f}x -> {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant per round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant before the first round")
    parser.add_argument("--train-examples", type=int, default=2048, help="training problems (the caches cover them)")
    parser.add_argument("--cache-size", type=int, default=16, help="teacher_cache_size: k, or draws per token")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = build_tokenizer()
    splits = make_splits(n_train=args.train_examples, n_validation=8, n_test=8)
    data = TaskData(splits, tokenizer, max_length=MAX_LENGTH, batch_size=32)
    torch.manual_seed(0)
    teacher = from_config(tokenizer=tokenizer, **TEACHER)
    torch.manual_seed(1)
    student = from_config(tokenizer=tokenizer, **STUDENT)
    batches = list(itertools.islice(itertools.cycle(data.train_loader(seed=0)), args.warmup + args.steps))
    with tempfile.TemporaryDirectory() as root:
        caches = build_caches(teacher, data, shared_width(teacher, student, tokenizer), args.cache_size, Path(root))
        times = rounds(make_steps(teacher, student, caches), batches, args.warmup, args.repeats)
        print_table(times, caches, args)


if __name__ == "__main__":
    main()
