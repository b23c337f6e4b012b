"""Training-step throughput of the project's logit step against a naive PyTorch KD loop and TRL's GKDTrainer.

    python -m benchmarks.step_throughput [--sizes tiny big] [--repeats 3] [--steps N] [--threads 1]

Models and data (identical for every variant): a GPT-2 teacher (4 layers x 128, 4 heads) and student (3 x 64, 2
heads) built with distill.models.from_config, seeded, dropout 0, sized to the embedded tokenizer (``tiny``, V = 100)
or with their heads padded to V = 151,936 (``big``; both models, so the divergence runs over all 151,936 columns).
The batches are the first (warm-up + steps) x 32 examples of the embedded task's training split (max_length 96),
in dataset order, collated by TaskData's collator: every variant trains on the same batches in the same order.
Optimizer for all: torch AdamW (lr 5e-3, betas 0.9/0.95, no weight decay, not fused), gradients clipped at norm 1,
a constant learning-rate schedule.

Variants (what one timed step is):

    project  LogitDistiller(student, teacher, T=2, alpha=0.5, forward_kl).train_step(batch), then what
             distill.loop.fit does per step: clip_grad_norm_, optimizer.step, scheduler.step, zero_grad. With the
             distiller's defaults: the chunked loss on response positions (chunk_size auto: one chunk at V = 100),
             fast_activations (GPT-2's gelu_new as distill.models.activations.TanhGELU, the same function), no KV cache
             and no last token (it predicts nothing) in the training forward
    naive    plain PyTorch written here: student and teacher full forward (all positions, all V logits), keep the
             response positions (labels != -100, shifted), alpha * T^2 KL(p_T || p_S) + (1 - alpha) CE with T = 2,
             alpha = 0.5, backward, then the same optimizer work as ``project``
    trl      trl.experimental.gkd.GKDTrainer with lmbda=0 (never on-policy: every batch is the dataset's) and
             beta=0, which TRL defines as KL(p_T || p_S), the forward KL. Its loss is that divergence alone (no CE
             term) at temperature 1 (GKDConfig.temperature is the sampling temperature; compute_loss does not pass
             it to the loss), summed over response positions / their count. Timed per optimizer step from a
             TrainerCallback's on_step_begin to on_step_end: forward, backward, clipping, optimizer and scheduler
             step, zero_grad and the Trainer's per-step bookkeeping; the data loading before on_step_begin and the
             logging after on_step_end are not timed (as the other variants time pre-collated batches).

    onpolicy OnPolicyDistiller(student, teacher, its defaults, lmbda=1 with no warm start: every step samples)
             .train_step(batch) and the same optimizer work: the student generates a completion of each of the
             batch's prompts (transformers' generate, KV cache, sampled at T = 1), capped at the batch's longest
             dataset response (EOS included) so that the sampled batch is as long as the dataset one (the
             untrained student rarely stops earlier), then the student's and the teacher's forward on it and
             the loss. Its target: at most 1.5x the project's median step.

How it measures. A worker (``--worker``, a fresh subprocess) builds the models and batches, reads its RSS (``setup
GB``: libraries, models, data), runs ``--steps`` timed steps after the untimed warm-up ones (tiny: 3, big: 1;
time.perf_counter; default tiny 30, big 1: one big naive or trl step is ~25 s of work) and reports tokens/s =
response tokens of the timed batches (the positions the loss is taken on: shifted labels != -100) / the summed step
time, the median step time, and its peak RSS (``peak GB``, ru_maxrss, libraries included).

- tiny: one worker per round runs the variants step by step in turn, each on its own copies of the models:
  TRL's loop drives, and after each of its steps a callback runs the other variants on the same batch (in an
  order that flips every step). A slow spell of the machine then hits all alike: run in
  separate processes, the same variant's tokens/s moved by up to 40 % from process to process here, more than
  the differences measured. The peak RSS is then the one process's, for all of them together.
- big: one worker per variant (project, naive, trl, project, ...), so each peak RSS is its own.

The table gives the medians over ``--repeats`` rounds, and each ratio is the median over the rounds of that round's
ratio. CPU, one torch thread by default (OMP_NUM_THREADS too). Without TRL installed its column reads "TRL not
installed" and the rest still runs. A full run takes ~3 minutes for ``tiny`` and ~10 for ``big`` on 2 cores
(``--sizes tiny`` for the quick part).

Allocator: by default glibc malloc returns every large freed block to the kernel and takes fresh pages (page faults)
for the next one. With ``MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000`` in the environment
(passed on to the workers) freed memory is kept and reused, roughly as a GPU's caching allocator does: at the tiny
size that removes most of the step-to-step noise, and at the big size it made the full-logit variants (naive, trl)
2.0-2.4x faster (the project 1.4x), since each of their steps frees and retakes several GB. State which one a
table used.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from importlib import metadata, util
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.memory import available_bytes, rss_bytes

BIG_VOCAB = 151_936
SIZES = {"tiny": None, "big": BIG_VOCAB}
IN_ONE_PROCESS = {"tiny": True, "big": False}  # tiny: variants step by step in one process; big: one process each
DEFAULT_STEPS = {"tiny": 30, "big": 1}  # a big naive or trl step takes ~25 s on one thread
WARMUP = {"tiny": 3, "big": 1}
VARIANTS = ("project", "naive", "trl", "onpolicy")
NO_DROPOUT = dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, n_positions=128)
TEACHER = dict(model_type="gpt2", n_layer=4, n_embd=128, n_head=4, **NO_DROPOUT)
STUDENT = dict(model_type="gpt2", n_layer=3, n_embd=64, n_head=2, **NO_DROPOUT)
BATCH_SIZE, MAX_LENGTH = 32, 96
TEMPERATURE, ALPHA, LR, BETAS, MAX_GRAD_NORM = 2.0, 0.5, 5e-3, (0.9, 0.95), 1.0
GB = 1e9
# Peak bytes of the full-logit variants per (positions x V) float32 value, measured here at V = 151,936 plus a margin:
# a big naive or trl worker starts only when its estimate fits in 90% of MemAvailable.
FULL_LOGIT_VALUES = 10
Runs = dict[str, list[dict[str, Any]] | str]  # per variant: its runs, or why it has none


def trl_available() -> bool:
    """Whether ``import trl`` would find a package."""
    try:
        return util.find_spec("trl") is not None
    except (ImportError, ValueError):  # ValueError: a module stubbed out as None in sys.modules
        return False


def version(package: str) -> str:
    """The installed version of ``package``, or "not installed"."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


# ----------------------------------------------------------------------------- the worker: models, batches, steps


def setup(size: str, n_batches: int) -> tuple[Any, nn.Module, nn.Module, list[dict[str, Any]]]:
    """The TaskData, the seeded teacher and student, and ``n_batches`` batches of the training split in order."""
    from distill.data import TaskData
    from distill.data.arithmetic import build_tokenizer, make_splits
    from distill.models import from_config

    tokenizer = build_tokenizer()
    n = n_batches * BATCH_SIZE
    data = TaskData(make_splits(n_train=n, n_validation=8, n_test=8), tokenizer, max_length=MAX_LENGTH)
    vocab = {"vocab_size": SIZES[size]} if SIZES[size] else {}
    torch.manual_seed(0)
    teacher = from_config(tokenizer=tokenizer, **TEACHER, **vocab)
    torch.manual_seed(1)
    student = from_config(tokenizer=tokenizer, **STUDENT, **vocab)
    rows = data.train.select(range(n))
    batches = [data.collator([rows[i] for i in range(s, s + BATCH_SIZE)]) for s in range(0, n, BATCH_SIZE)]
    return data, teacher, student, batches


def longest_response(batch: dict[str, Any]) -> int:
    """The most response tokens of one example of the batch (EOS included): the on-policy samples' length cap."""
    return int((batch["labels"] != -100).sum(-1).max())


def response_tokens(batch: dict[str, Any]) -> int:
    """The positions the loss is taken on: shifted labels that are not -100."""
    return int((batch["labels"][:, 1:] != -100).sum())


def optimizer_work(student: nn.Module) -> Callable[[], None]:
    """What distill.loop.fit does after each backward: clip, optimizer step, scheduler step, zero_grad."""
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, betas=BETAS, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)

    def work() -> None:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        if torch.isfinite(grad_norm):
            opt.step()
        scheduler.step()
        opt.zero_grad(set_to_none=True)

    return work


def naive_loss(student: nn.Module, teacher: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """Full forward of both models, full logits, response positions kept, alpha * T^2 KL + (1 - alpha) CE."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    student_logits = student(**inputs).logits[:, :-1]
    with torch.no_grad():
        teacher_logits = teacher(**inputs).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    mask = targets != -100
    s, t = student_logits[mask], teacher_logits[mask]
    log_p_s, log_p_t = F.log_softmax(s / TEMPERATURE, -1), F.log_softmax(t / TEMPERATURE, -1)
    kd = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * TEMPERATURE**2
    return ALPHA * kd + (1 - ALPHA) * F.cross_entropy(s, targets[mask])


def step_function(variant: str, teacher: nn.Module, student: nn.Module) -> Callable[[dict[str, Any]], None]:
    """One training step of ``project``, ``naive`` or ``onpolicy`` on a batch."""
    work = optimizer_work(student)
    if variant == "onpolicy":
        from distill.data.arithmetic import build_tokenizer
        from distill.distillers import OnPolicyDistiller

        on_every_batch = dict(lmbda=1.0, lmbda_warmup_steps=0, lmbda_ramp_steps=0)  # every step samples
        distiller = OnPolicyDistiller(student, teacher, build_tokenizer(), **on_every_batch)

        def onpolicy_step(batch: dict[str, Any]) -> None:
            distiller.settings = replace(distiller.settings, max_new_tokens=longest_response(batch))
            distiller.train_step(batch)
            work()

        return onpolicy_step
    if variant == "project":
        from distill.distillers import LogitDistiller

        distiller = LogitDistiller(student, teacher, temperature=TEMPERATURE, alpha=ALPHA, divergence="forward_kl")

        def project_step(batch: dict[str, Any]) -> None:
            distiller.train_step(batch)
            work()

        return project_step
    teacher.eval()
    student.train()

    def naive_step(batch: dict[str, Any]) -> None:
        naive_loss(student, teacher, batch).backward()
        work()

    return naive_step


def timed_loop(variant: str, teacher: nn.Module, student: nn.Module, batches: list) -> list[float]:
    """Seconds of each step (project or naive), one variant alone in its process."""
    step = step_function(variant, teacher, student)
    seconds = []
    for batch in batches:
        start = time.perf_counter()
        step(batch)
        seconds.append(time.perf_counter() - start)
    return seconds


def trl_loop(
    teacher: nn.Module, student: nn.Module, data: Any, batches: list, after_step: Callable[[int], None] | None = None
) -> list[float]:
    """Seconds of each GKDTrainer optimizer step (on_step_begin -> on_step_end); ``after_step(i)`` runs, untimed
    for TRL, after its step on batch ``i``."""
    from transformers import TrainerCallback
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.start = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.seconds.append(time.perf_counter() - self.start)
            if after_step is not None:
                after_step(len(self.seconds) - 1)

    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = data.collator(rows)
        return {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}

    times = StepTimes()
    with tempfile.TemporaryDirectory() as out:
        args = GKDConfig(
            output_dir=out, lmbda=0.0, beta=0.0, max_steps=len(batches), per_device_train_batch_size=BATCH_SIZE,
            learning_rate=LR, adam_beta1=BETAS[0], adam_beta2=BETAS[1], weight_decay=0.0, optim="adamw_torch",
            lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=MAX_GRAD_NORM, bf16=False, fp16=False,
            activation_checkpointing=False, use_cpu=True, report_to="none", save_strategy="no", logging_steps=10**6,
            disable_tqdm=True, dataloader_num_workers=0, train_sampling_strategy="sequential", seed=0,
            max_length=MAX_LENGTH,
        )  # fmt: skip
        trainer = GKDTrainer(
            model=student, teacher_model=teacher, args=args, data_collator=collate,
            train_dataset=data.train.select(range(len(batches) * BATCH_SIZE)), processing_class=data.tokenizer,
            callbacks=[times],
        )  # fmt: skip
        trainer.train()
    return times.seconds


def interleaved(
    teacher: nn.Module, student: nn.Module, data: Any, batches: list, variants: list[str]
) -> dict[str, list[float]]:
    """Seconds of every step of each variant, the variants run step by step in turn on the same batch.

    Each variant trains its own copies of the two models. TRL's loop drives (its callback runs the
    other variants on the batch it has just trained on); without TRL a plain loop does. Their order
    flips every step, so none always runs right after TRL.
    """
    steps = {v: step_function(v, copy.deepcopy(teacher), copy.deepcopy(student)) for v in variants if v != "trl"}
    seconds: dict[str, list[float]] = {v: [] for v in steps}

    def others(i: int) -> None:
        for variant in list(steps)[:: 1 if i % 2 == 0 else -1]:
            start = time.perf_counter()
            steps[variant](batches[i])
            seconds[variant].append(time.perf_counter() - start)

    if "trl" in variants:
        seconds["trl"] = trl_loop(copy.deepcopy(teacher), copy.deepcopy(student), data, batches, after_step=others)
    else:
        for i in range(len(batches)):
            others(i)
    return seconds


def worker(args: argparse.Namespace) -> None:
    """Print one JSON line per variant run here: tokens, seconds, step times, setup and peak RSS, threads."""
    if args.threads:
        torch.set_num_threads(args.threads)
    data, teacher, student, batches = setup(args.size, args.warmup + args.steps)
    setup_bytes = rss_bytes()
    if args.variant == "all":
        variants = [v for v in args.variants if v != "trl" or trl_available()]
        seconds = interleaved(teacher, student, data, batches, variants)
    elif args.variant == "trl":
        seconds = {"trl": trl_loop(teacher, student, data, batches)}
    else:
        seconds = {args.variant: timed_loop(args.variant, teacher, student, batches)}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    tokens = sum(response_tokens(b) for b in batches[args.warmup :])
    results = {}
    for variant, times in seconds.items():
        timed = times[args.warmup :]
        if len(timed) != args.steps:
            raise RuntimeError(f"{variant}: timed {len(timed)} steps, expected {args.steps}")
        step_ms = 1000 * statistics.median(timed)
        results[variant] = dict(tokens=tokens, seconds=sum(timed), step_ms=step_ms, setup=setup_bytes, peak=peak)
    print(json.dumps({"runs": results, "threads": torch.get_num_threads()}))


# ----------------------------------------------------------------------------- the parent: interleaved workers


def estimate(size: str, variant: str) -> float:
    """Bytes a worker is expected to need: ~1 GB of libraries and models, plus the full logits' temporaries (big)."""
    if SIZES[size] is None or variant in ("project", "onpolicy"):
        return 1.0 * GB
    return 1.0 * GB + FULL_LOGIT_VALUES * BATCH_SIZE * MAX_LENGTH // 2 * SIZES[size] * 4


def spawn(variant: str, size: str, steps: int, args: argparse.Namespace) -> dict[str, Any] | str:
    """Run one worker (``variant`` or ``all``); its result, or a short reason why there is none."""
    if variant == "trl" and not trl_available():
        return "TRL not installed"
    need, free = estimate(size, variant), available_bytes()
    if need > 0.9 * free:
        return f"skipped: needs ~{need / GB:.1f} GB, {free / GB:.1f} GB available"
    command = [sys.executable, "-m", "benchmarks.step_throughput", "--worker", "--variant", variant, "--size", size]
    command += ["--steps", str(steps), "--warmup", str(WARMUP[size]), "--threads", str(args.threads)]
    command += ["--variants", *args.variants]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        print(f"  {variant} worker failed ({proc.returncode}): {proc.stderr[-3000:]}", file=sys.stderr)
        return f"failed: {tail[0][:80]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_size(size: str, args: argparse.Namespace) -> Runs:
    """``--repeats`` rounds of one size; per variant its runs, or why there are none. Tiny: one process per round
    runs the variants step by step in turn; big: one process per variant, the variants in turn."""
    steps = args.steps or DEFAULT_STEPS[size]
    runs: Runs = {v: [] for v in args.variants}
    if IN_ONE_PROCESS[size] and "trl" in runs and not trl_available():
        runs["trl"] = "TRL not installed"
    for r in range(args.repeats):
        for worker_variant in ["all"] if IN_ONE_PROCESS[size] else args.variants:
            wanted = [v for v in args.variants if worker_variant in ("all", v) and not isinstance(runs[v], str)]
            if not wanted:
                continue
            result = spawn(worker_variant, size, steps, args)
            for variant in wanted:
                run = result if isinstance(result, str) else result["runs"][variant]
                if isinstance(run, str):
                    runs[variant] = run
                    print(f"  round {r + 1} {size} {variant}: {run}", flush=True)
                    continue
                runs[variant].append(run)  # type: ignore[union-attr]
                print(
                    f"  round {r + 1} {size} {variant}: {run['tokens'] / run['seconds']:,.0f} tokens/s, "
                    f"{run['step_ms']:.1f} ms/step, peak {run['peak'] / GB:.2f} GB, {result['threads']} threads",  # type: ignore[index]
                    flush=True,
                )
    return runs


def medians(runs: list[dict[str, Any]] | str) -> dict[str, float] | None:
    """Median tokens/s, step ms, peak and setup GB of a variant's runs (None when it has none)."""
    if isinstance(runs, str) or not runs:
        return None
    return {
        "rate": statistics.median(r["tokens"] / r["seconds"] for r in runs),
        "step_ms": statistics.median(r["step_ms"] for r in runs),
        "peak": statistics.median(r["peak"] for r in runs) / GB,
        "setup": statistics.median(r["setup"] for r in runs) / GB,
    }


def rate(run: dict[str, Any]) -> float:
    """A run's tokens/s."""
    return run["tokens"] / run["seconds"]


def ratio(runs: Runs, a: str, b: str, value: Callable[[dict[str, Any]], float] = rate) -> float | None:
    """Median over rounds of value(a's run) / value(b's run) in the same round (None when a variant is missing)."""
    ra, rb = runs.get(a), runs.get(b)
    if not isinstance(ra, list) or not isinstance(rb, list) or not ra or not rb:
        return None
    return statistics.median(value(x) / value(y) for x, y in zip(ra, rb))


def print_table(results: dict[str, Runs], args: argparse.Namespace) -> None:
    """One row per size and variant: tokens/s, step ms, peak and setup RSS, ratios vs naive and vs TRL."""
    print(f"\ntorch threads: {args.threads or torch.get_num_threads()}; medians of {args.repeats} interleaved rounds "
          "(ratios: median of the per-round ratios)")  # fmt: skip
    print(f"torch {version('torch')}, transformers {version('transformers')}, trl {version('trl')}")
    kept = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    print(f"malloc: {f'MALLOC_MMAP_THRESHOLD_={kept} (freed memory kept)' if kept else 'glibc default'}")
    header = ("V", "variant", "tokens/s", "ms/step", "peak GB", "setup GB", "vs naive", "vs TRL")
    print("{:>7} {:8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}".format(*header))
    for size, runs in results.items():
        vocab = SIZES[size] or 100
        for variant in runs:
            stats = medians(runs[variant])
            if stats is None:
                print(f"{vocab:>7} {variant:8} {runs[variant]}")
                continue
            ratios = [ratio(runs, variant, other) for other in ("naive", "trl")]
            shown = " ".join(f"{x:7.2f}x" if x is not None else f"{'-':>8}" for x in ratios)
            row = f"{stats['rate']:10,.0f} {stats['step_ms']:8.1f} {stats['peak']:8.2f} {stats['setup']:8.2f}"
            print(f"{vocab:>7} {variant:8} {row} {shown}")
    print_targets(results)


def verdict(value: float | None, ok: bool, unit: str = "x") -> str:
    """``<value><unit> -> PASS`` or ``FAIL``, or n/a when a variant is missing."""
    return "n/a (a variant is missing)" if value is None else f"{value:.2f}{unit} -> {'PASS' if ok else 'FAIL'}"


def print_targets(results: dict[str, Runs]) -> None:
    """The acceptance targets, each with its measured value."""
    print("\ntargets:")
    if "tiny" in results:
        vs_naive, vs_trl = ratio(results["tiny"], "project", "naive"), ratio(results["tiny"], "project", "trl")
        within = verdict(vs_naive, (vs_naive or 0) >= 1 / 1.1)
        print(f"  tiny: project within 1.1x of naive tokens/s (>= 0.91x): {within}")
        print(f"  tiny: project >= 1.2x TRL tokens/s: {verdict(vs_trl, (vs_trl or 0) >= 1.2)}")
    for size, runs in results.items():
        slower = ratio(runs, "onpolicy", "project", lambda run: run["step_ms"])
        print(f"  {size}: onpolicy step <= 1.5x the project's (ms/step): {verdict(slower, (slower or 9) <= 1.5)}")
    if "big" in results:
        vs_trl = ratio(results["big"], "project", "trl")
        memory = ratio(results["big"], "project", "trl", lambda run: run["peak"])
        print(f"  V={BIG_VOCAB}: project >= 2x TRL tokens/s: {verdict(vs_trl, (vs_trl or 0) >= 2)}")
        print(f"  V={BIG_VOCAB}: project peak RSS <= 1/4 of TRL's: {verdict(memory, (memory or 1) <= 0.25, ' of TRL')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (a fresh process per run)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default: tiny 30, big 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads in the workers (0: torch's choice)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", choices=(*VARIANTS, "all"), help=argparse.SUPPRESS)
    parser.add_argument("--size", choices=list(SIZES), help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(f"batch {BATCH_SIZE}, T={TEMPERATURE}, alpha={ALPHA} (trl: KD only, T=1), AdamW lr {LR}, fp32, CPU")
    results = {size: run_size(size, args) for size in args.sizes}
    print_table(results, args)


if __name__ == "__main__":
    main()
