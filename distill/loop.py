"""The training loop: one plain PyTorch loop shared by ``train.py`` and the Python API.

    for each micro-batch:   distiller.train_step(batch, 1 / grad_accum)    (forward + backward)
    every grad_accum:       clip -> optimizer.step -> scheduler.step -> zero_grad   (one "step")
    every log_every:        logger.log(train/*)
    every eval_every:       distiller.validate(val_loader) -> logger.log(val/*)
    every checkpoint_every: atomic checkpoint (student, optimizer, scheduler, RNG, data position)

The loop owns steps, devices, precision, checkpoints and signals; the distiller owns losses.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import random
import shutil
import signal
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm
from transformers import get_scheduler, set_seed

from distill.data import EpochSampler
from distill.distillers.base import BaseDistiller
from distill.errors import DistillError, require

log = logging.getLogger(__name__)
NONFINITE_POLICIES = ("stop", "skip")


@dataclass
class TrainConfig:
    """Loop options (the ``train`` config group of ``train.py``)."""

    max_steps: int | None = 500  # optimizer steps; None: run ``epochs`` epochs
    epochs: int | None = None  # if both are set, whichever ends first
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    lr: float = 5e-4  # used only when no optimizer is passed (the Python API)
    weight_decay: float = 0.0
    lr_scheduler: str = "cosine"  # any name transformers.get_scheduler knows
    warmup_steps: int = 0
    eval_every: int = 100  # 0: only at the end
    log_every: int = 10
    checkpoint_every: int = 0  # 0: only at the end (when output_dir is set)
    output_dir: str | None = None
    seed: int = 0
    device: str = "auto"  # auto: cuda if available, else cpu
    precision: str = "auto"  # auto: bf16 autocast on GPUs that support it, else fp32
    resume: bool = False
    on_nonfinite: str = "stop"  # stop: fail naming the step; skip: drop the batch's update
    progress: bool = True
    desc: str = "train"

    def __post_init__(self) -> None:
        require(self.max_steps is None or self.max_steps > 0, "train.max_steps", self.max_steps, "must be a positive integer")
        require(self.epochs is None or self.epochs > 0, "train.epochs", self.epochs, "must be a positive integer")
        require(self.max_steps is not None or self.epochs is not None, "train.max_steps", None, "set max_steps or epochs")
        require(self.grad_accum >= 1, "train.grad_accum", self.grad_accum, "must be >= 1")
        require(self.eval_every >= 0, "train.eval_every", self.eval_every, "must be >= 0")
        require(self.log_every >= 1, "train.log_every", self.log_every, "must be >= 1")
        require(self.checkpoint_every >= 0, "train.checkpoint_every", self.checkpoint_every, "must be >= 0")
        require(self.warmup_steps >= 0, "train.warmup_steps", self.warmup_steps, "must be >= 0")
        require(self.on_nonfinite in NONFINITE_POLICIES, "train.on_nonfinite", self.on_nonfinite, "must be stop or skip")
        require(self.precision in ("auto", "fp32", "bf16"), "train.precision", self.precision, "must be auto, fp32 or bf16")


class Interrupted(DistillError):
    """SIGTERM/SIGINT arrived; a checkpoint was written first."""

    def __init__(self, signum: int, step: int, where: Path | None) -> None:
        saved = f"checkpoint saved in {where}; rerun with train.resume=true" if where else "no output_dir, nothing saved"
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}: {saved}")
        self.exit_code = 128 + signum


class _StopRequest:
    """Turns SIGTERM/SIGINT into a flag checked after each optimizer step (SLURM preemption)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        with contextlib.suppress(ValueError):  # signals can only be set from the main thread
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        log.warning("received %s: finishing the current step and writing a checkpoint", signal.Signals(signum).name)
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def resolve_device(name: str = "auto") -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if device.type == "cuda" and precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def total_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    by_epochs = math.ceil(cfg.epochs * batches_per_epoch / cfg.grad_accum) if cfg.epochs else None
    return min(s for s in (cfg.max_steps, by_epochs) if s is not None)


# ----------------------------------------------------------------------------- checkpoints

CHECKPOINT, STATE_FILE, WEIGHTS_FILE = "checkpoint", "trainer_state.pt", "student.safetensors"


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(out_dir: Path, distiller: BaseDistiller, state: dict[str, Any]) -> Path:
    """Write ``out_dir/checkpoint`` atomically: into a temp dir, then renamed over the old one.

    A failure at any point (disk full, ...) leaves the previous checkpoint as it was.
    """
    final, tmp, old = out_dir / CHECKPOINT, out_dir / f"{CHECKPOINT}.tmp", out_dir / f"{CHECKPOINT}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        save_model(distiller.student, str(tmp / WEIGHTS_FILE))
        torch.save(state, tmp / STATE_FILE)
        if final.exists():
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not final.exists():
            old.rename(final)
        raise
    return final


def find_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint (``checkpoint``, else one left mid-rename as ``checkpoint.old``)."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        path = out_dir / name
        if (path / STATE_FILE).exists() and (path / WEIGHTS_FILE).exists():
            return path
    return None


def read_checkpoint_state(path: Path) -> dict[str, Any]:
    return torch.load(path / STATE_FILE, weights_only=True, map_location="cpu")


# ----------------------------------------------------------------------------- the loop


class _History:
    """Appends every logged dict to ``history.jsonl`` (the report's training curves) and the logger."""

    def __init__(self, out_dir: Path | None, logger: Any) -> None:
        self.path = out_dir / "history.jsonl" if out_dir else None
        self.logger = logger

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        if self.logger is not None:
            self.logger.log(metrics, step=step)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, **metrics}) + "\n")


def _iter_without_rng(loader: Iterable[Any]) -> Iterator[Any]:
    """``iter(loader)`` without touching the global RNG (a DataLoader draws a base seed from it),
    so a resumed run's dropout masks match the uninterrupted run's exactly."""
    with torch.random.fork_rng(devices=[]):
        return iter(loader)


def _batches(loader: Iterable[Any], micro: int, batches_per_epoch: int) -> Iterator[Any]:
    """Endless micro-batches starting at global micro-batch index ``micro`` (epoch after epoch)."""
    for epoch in itertools.count(micro // batches_per_epoch):
        offset = micro - epoch * batches_per_epoch if epoch == micro // batches_per_epoch else 0
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, EpochSampler):  # jump straight to the position: no data is read twice
            sampler.set_position(epoch, offset * loader.batch_size)
            yield from _iter_without_rng(loader)
        else:
            yield from itertools.islice(_iter_without_rng(loader), offset, None)


def fit(
    distiller: BaseDistiller,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any] | None = None,
    cfg: TrainConfig | None = None,
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    logger: Any = None,
) -> dict[str, float]:
    """Train ``distiller.student`` and return the final validation metrics (empty without ``val_loader``).

    ``optimizer`` is a partial taking the parameters (Hydra ``_partial_: true``); by default
    AdamW(lr, weight_decay). With ``cfg.output_dir`` the loop writes checkpoints, ``history.jsonl``
    and the final student; with ``cfg.resume`` it continues from the checkpoint there.
    """
    cfg = cfg or TrainConfig()
    out_dir = Path(cfg.output_dir) if cfg.output_dir else None
    device = resolve_device(cfg.device)
    set_seed(cfg.seed)
    distiller.to(device)
    if hasattr(distiller, "prepare"):  # one-off work before training, e.g. the language distiller's teacher generations
        distiller.prepare(train_loader, val_loader)
    params = list(distiller.parameters())
    opt = optimizer(params) if optimizer else torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches_per_epoch = len(train_loader)  # type: ignore[arg-type]
    if batches_per_epoch == 0:
        raise DistillError("the training loader yields no batches")
    total = total_steps(cfg, batches_per_epoch)
    scheduler = get_scheduler(cfg.lr_scheduler, opt, num_warmup_steps=cfg.warmup_steps, num_training_steps=total)
    step, micro, skipped = 0, 0, 0
    extra_state = dict(getattr(logger, "checkpoint_state", lambda: {})())
    if cfg.resume and out_dir is not None and (ckpt := find_checkpoint(out_dir)) is not None:
        state = read_checkpoint_state(ckpt)
        load_model(distiller.student, str(ckpt / WEIGHTS_FILE), device=str(device))
        opt.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        step, micro, skipped = state["step"], state["micro"], state.get("skipped", 0)
        log.info("resumed from %s at step %d", ckpt, step)
    elif cfg.resume:
        log.warning("train.resume=true but no checkpoint in %s: starting from scratch", out_dir)

    def checkpoint() -> Path | None:
        if out_dir is None:
            return None
        state = {
            "step": step, "micro": micro, "skipped": skipped, "optimizer": opt.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": _rng_state(), "config": asdict(cfg), **extra_state,
        }
        try:
            return save_checkpoint(out_dir, distiller, state)
        except OSError as e:
            log.error("checkpoint at step %d failed (%s); the previous checkpoint is intact", step, e)
            return None

    record = _History(out_dir, logger)
    autocast = _autocast(device, cfg.precision)
    val_metrics: dict[str, float] = {}
    running: dict[str, list[float]] = defaultdict(list)
    bad_loss = False
    opt.zero_grad(set_to_none=True)
    bar = tqdm(total=total, initial=step, desc=cfg.desc, disable=not cfg.progress, dynamic_ncols=True)
    with _StopRequest() as stop:
        for batch in _batches(train_loader, micro, batches_per_epoch):
            if step >= total:
                break
            with autocast:
                parts = distiller.train_step(batch, loss_scale=1.0 / cfg.grad_accum)
            micro += 1
            bad_loss |= not math.isfinite(parts["loss"])
            for k, v in parts.items():
                running[k].append(v)
            if micro % cfg.grad_accum:
                continue
            # one optimizer step
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm or float("inf"))
            if bad_loss or not torch.isfinite(grad_norm):
                what = "loss" if bad_loss else "gradient norm"
                if cfg.on_nonfinite == "stop":
                    raise DistillError(
                        f"non-finite {what} at step {step + 1}; weights left as after step {step} "
                        "(set train.on_nonfinite=skip to drop such batches)"
                    )
                log.warning("non-finite %s at step %d: update skipped", what, step + 1)
                skipped += 1
            else:
                opt.step()
            scheduler.step()
            opt.zero_grad(set_to_none=True)
            step, bad_loss = step + 1, False
            bar.update(1)
            if step % cfg.log_every == 0 or step == total:
                means = {f"train/{k}": sum(v) / len(v) for k, v in running.items()}
                means.update({"train/lr": scheduler.get_last_lr()[0], "train/grad_norm": float(grad_norm)})
                if skipped:
                    means["train/skipped_steps"] = skipped
                record(means, step)
                bar.set_postfix(loss=f"{means['train/loss']:.4f}")
                running.clear()
            if val_loader is not None and ((cfg.eval_every and step % cfg.eval_every == 0) or step == total):
                with autocast:
                    val_metrics = distiller.validate(val_loader)
                record({f"val/{k}": v for k, v in val_metrics.items()}, step)
                if logger is not None and hasattr(logger, "log_samples"):
                    logger.log_samples(getattr(distiller, "last_samples", []), step)
                bar.write(f"step {step}: " + "  ".join(f"val/{k}={v:.4f}" for k, v in val_metrics.items()))
            if step == total or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                checkpoint()
            if stop.signum is not None:
                bar.close()
                raise Interrupted(stop.signum, step, checkpoint())
    bar.close()
    if out_dir is not None:
        save_student(distiller, out_dir / "student")
    return val_metrics


def save_student(distiller: BaseDistiller, path: Path) -> None:
    """The trained student as safetensors: ``save_pretrained`` (+ tokenizer) for HF models."""
    path.mkdir(parents=True, exist_ok=True)
    if hasattr(distiller.student, "save_pretrained"):
        distiller.student.save_pretrained(path)
        if distiller.tokenizer is not None:
            distiller.tokenizer.save_pretrained(path)
    else:
        save_model(distiller.student, str(path / WEIGHTS_FILE))
