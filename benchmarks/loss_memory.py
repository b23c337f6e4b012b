"""Peak memory and time of the objective on materialised logits against the chunked objective.

    python -m benchmarks.loss_memory [--positions 2048] [--hidden 896] [--vocab 32000 50257 151936]
        [--divergences forward_kl reverse_kl jsd tvd uld gold] [--teacher-vocab V_t] [--repeats 3] [--chunk-size N]
        [--threads 1]

Both variants start from the same float32 tensors: student and teacher hidden states (N, H), student and
teacher heads (V, H), and targets (N,), with kd_weight = ce_weight = 0.5 and T = 2. ``uld`` and ``gold`` are the
cross-tokenizer losses (distill.losses.cross_vocab) against a teacher head of ``--teacher-vocab`` rows (default:
V), every position paired, the hybrid's KL on 19 of every 20 positions over V_min / 2 shared tokens:

    materialised  logits = h @ W.T for the student (with gradients) and the teacher (without), then
                  distill.losses.objective_loss, then backward
    chunked       distill.losses.chunked.chunked_objective_loss from the hidden states, then backward

How it measures: each run of a variant is a fresh subprocess (``--worker``), because CPU allocators keep
freed memory and the peak RSS of a process never goes down. The worker allocates the inputs, runs both
code paths once on 8 positions (warm-up, a few MB), reads its RSS from /proc/self/status, times one
forward + backward (time.perf_counter), and prints its peak RSS (resource.getrusage ru_maxrss) minus that
RSS: the extra peak memory of the loss, d W included. The parent interleaves the variants (A, B, A, B, ...)
``--repeats`` times per vocabulary and divergence and prints the medians, and refuses to start a variant
whose estimated peak does not fit in MemAvailable. Runs on the CPU, one torch thread by default.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from benchmarks.memory import available_bytes, rss_bytes
from distill.losses import CROSS_TOKENIZER, DIVERGENCES, CrossTeacher, Hidden, Objective, objective_loss
from distill.losses.chunked import DEFAULT_CHUNK_SIZE, Head, chunk_rows, chunked_objective_loss

OBJECTIVE = dict(kd_weight=0.5, ce_weight=0.5, temperature=2.0)
GB = 1e9
# Extra peak per N x V (materialised) or chunk x V (chunked) float32 value, measured at V = 32,000 plus a
# margin of ~2: a variant is started only if its estimate fits in 90% of MemAvailable.
MATERIALISED_VALUES = {
    "forward_kl": 11,
    "reverse_kl": 12,
    "jsd": 19,
    "tvd": 10,
    "skew_forward_kl": 14,
    "skew_reverse_kl": 14,
    "uld": 16,
    "gold": 16,
}
CHUNKED_VALUES = 8


def inputs(n: int, size: int, vocab: int, teacher_vocab: int | None = None) -> dict:
    """Random float32 hidden states, heads and targets (seeded: every worker gets the same numbers)."""
    g = torch.Generator().manual_seed(0)
    return dict(
        h_s=torch.randn(n, size, generator=g).requires_grad_(),
        h_t=torch.randn(n, size, generator=g),
        w_s=(torch.randn(vocab, size, generator=g) * size**-0.5).requires_grad_(),
        w_t=torch.randn(teacher_vocab or vocab, size, generator=g) * size**-0.5,
        y=torch.randint(0, vocab, (n,), generator=g),
    )


def cross_teacher(x: dict, mode: str, outputs: torch.Tensor | Hidden) -> CrossTeacher:
    """Every position paired; for ``gold``, 19 of every 20 matched over the first V_min / 2 ids of both."""
    n, shared = len(x["y"]), torch.arange(min(len(x["w_s"]), len(x["w_t"])) // 2)
    aligned = torch.ones(n, dtype=torch.bool)
    if mode == "uld":
        return CrossTeacher(outputs, aligned)
    return CrossTeacher(outputs, aligned, torch.arange(n) % 20 != 0, (shared, shared))


def step(variant: str, x: dict, rows: slice, objective: Objective, chunk_size: int, cross: str | None = None) -> None:
    """One forward + backward of ``variant`` on positions ``rows`` (``cross``: ``uld`` or ``gold``)."""
    h_s, h_t, y = x["h_s"][rows], x["h_t"][rows], x["y"][rows]
    if cross is not None:  # a teacher with another vocabulary
        part = {**x, "y": y}
        if variant == "materialised":
            with torch.no_grad():
                teacher = cross_teacher(part, cross, h_t @ x["w_t"].T)
            loss = objective_loss(h_s @ x["w_s"].T, teacher, y, objective)["loss"]
        else:
            teacher = cross_teacher(part, cross, Hidden(h_t, Head(x["w_t"])))
            loss = objective_loss(Hidden(h_s, Head(x["w_s"])), teacher, y, objective, chunk_size=chunk_size)["loss"]
    elif variant == "materialised":
        student = h_s @ x["w_s"].T
        with torch.no_grad():
            teacher = h_t @ x["w_t"].T
        loss = objective_loss(student, teacher, y, objective)["loss"]
    else:
        loss = chunked_objective_loss(
            h_s, Head(x["w_s"]), h_t, y, objective, teacher_head=Head(x["w_t"]), chunk_size=chunk_size
        )["loss"]
    loss.backward()


def worker(args: argparse.Namespace) -> None:
    """Print ``{"seconds", "extra_bytes"}`` of one forward + backward of ``args.variant``."""
    torch.set_num_threads(args.threads)
    cross = args.divergences[0] if args.divergences[0] in CROSS_TOKENIZER else None
    x = inputs(args.positions, args.hidden, args.vocab[0], args.teacher_vocab if cross else None)
    objective = Objective(divergence="forward_kl" if cross else args.divergences[0], **OBJECTIVE)
    step(args.variant, x, slice(0, 8), objective, args.chunk_size, cross)  # warm-up
    x["h_s"].grad = x["w_s"].grad = None
    before = rss_bytes()
    start = time.perf_counter()
    step(args.variant, x, slice(None), objective, args.chunk_size, cross)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"seconds": seconds, "extra_bytes": peak - before}))


def estimate(variant: str, args: argparse.Namespace, vocab: int, divergence: str) -> float:
    """Bytes a worker is expected to need: its inputs, d W, and the loss's extra values (with a margin)."""
    if variant == "materialised":
        values = MATERIALISED_VALUES[divergence] * args.positions * vocab
    else:
        values = CHUNKED_VALUES * min(chunk_rows(args.chunk_size, vocab), args.positions) * vocab
    return 4 * (3 * vocab * args.hidden + 3 * args.positions * args.hidden + values)


def spawn(variant: str, args: argparse.Namespace, vocab: int, divergence: str) -> dict | None:
    """Run one worker; None (with a note) when its estimated peak does not fit in the available memory."""
    need, free = estimate(variant, args, vocab, divergence), available_bytes()
    if need > 0.9 * free:
        print(f"  skip {variant} V={vocab} {divergence}: needs ~{need / GB:.1f} GB, {free / GB:.1f} GB available")
        return None
    command = [sys.executable, "-m", "benchmarks.loss_memory", "--worker", "--variant", variant]
    command += ["--positions", str(args.positions), "--hidden", str(args.hidden), "--vocab", str(vocab)]
    command += ["--divergences", divergence, "--chunk-size", str(args.chunk_size), "--threads", str(args.threads)]
    command += ["--teacher-vocab", str(args.teacher_vocab)] if args.teacher_vocab else []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} worker failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(args: argparse.Namespace, vocab: int, divergence: str) -> tuple[float, ...] | None:
    """Median (materialised GB, chunked GB, materialised s, chunked s) over A/B-interleaved repeats."""
    runs: dict[str, list[dict]] = {"materialised": [], "chunked": []}
    for r in range(args.repeats):
        for variant in runs:
            result = spawn(variant, args, vocab, divergence)
            if result is None:
                return None
            runs[variant].append(result)
            gb, seconds = result["extra_bytes"] / GB, result["seconds"]
            print(f"  round {r + 1} V={vocab} {divergence} {variant}: {gb:.2f} GB, {seconds:.2f} s", flush=True)

    def median(variant: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[variant])

    gb = [median(v, "extra_bytes") / GB for v in runs]
    return gb[0], gb[1], median("materialised", "seconds"), median("chunked", "seconds")


def chunk_size_arg(value: str) -> int | str:
    """``--chunk-size``: ``auto`` (the default's rule) or a number of positions."""
    return value if value == "auto" else int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positions", type=int, default=2048, help="N, positions that count")
    parser.add_argument("--hidden", type=int, default=896, help="H, hidden size of student and teacher")
    parser.add_argument("--vocab", type=int, nargs="+", default=[32000, 50257, 151936])
    parser.add_argument("--divergences", nargs="+", default=list(DIVERGENCES), choices=(*DIVERGENCES, *CROSS_TOKENIZER))
    parser.add_argument("--teacher-vocab", type=int, default=None, help="V_t for uld and gold (default: V)")
    parser.add_argument("--repeats", type=int, default=3, help="A/B rounds (fresh processes each)")
    parser.add_argument("--chunk-size", type=chunk_size_arg, default=DEFAULT_CHUNK_SIZE, help="'auto' or positions")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads in the workers")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=("materialised", "chunked"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    print(f"N={args.positions} H={args.hidden} chunk={args.chunk_size} threads={args.threads} float32, fwd+bwd")
    rows = [
        (vocab, divergence, compare(args, vocab, divergence)) for vocab in args.vocab for divergence in args.divergences
    ]
    print(f"\ntorch threads: {args.threads}; medians of {args.repeats} A/B-interleaved runs; extra peak RSS")
    header = ("V", "divergence", "mat. GB", "chunk GB", "mem ×", "mat. s", "chunk s", "time ×")
    print("{:>7} {:10} {:>8} {:>8} {:>6} {:>7} {:>7} {:>6}".format(*header))
    for vocab, divergence, result in rows:
        if result is None:
            print(f"{vocab:>7} {divergence:10} skipped: does not fit in the available memory")
            continue
        m_gb, c_gb, m_s, c_s = result
        ratios = f"{m_gb / c_gb:6.1f} {m_s:7.2f} {c_s:7.2f} {c_s / m_s:6.2f}"
        print(f"{vocab:>7} {divergence:10} {m_gb:8.2f} {c_gb:8.2f} {ratios}")


if __name__ == "__main__":
    main()
