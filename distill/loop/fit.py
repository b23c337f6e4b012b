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
import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model
from tqdm.auto import tqdm
from transformers import get_scheduler, set_seed

from distill.errors import DistillError
from distill.loop.batches import batches_from
from distill.loop.checkpoint import (
    WEIGHTS_FILE,
    load_latest,
    rng_state,
    save_checkpoint,
    save_student,
    set_rng_state,
)
from distill.loop.protocols import Logger, Trainable
from distill.loop.signals import Interrupted, StopRequest
from distill.settings import TrainConfig

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if device.type == "cuda" and precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def total_steps(cfg: TrainConfig, batches_per_epoch: int) -> int:
    by_epochs = math.ceil(cfg.epochs * batches_per_epoch / cfg.grad_accum) if cfg.epochs else None
    return min(s for s in (cfg.max_steps, by_epochs) if s is not None)


class _History:
    """Appends every logged dict to ``history.jsonl`` (the report's training curves) and the logger."""

    def __init__(self, out_dir: Path | None, logger: Logger | None) -> None:
        self.path = out_dir / "history.jsonl" if out_dir else None
        self.logger = logger

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        if self.logger is not None:
            self.logger.log(metrics, step=step)
        if self.path is not None:
            with self.path.open("a") as f:
                f.write(json.dumps({"step": step, **metrics}) + "\n")


@dataclass
class _Session:
    """One training run's moving parts; ``step``, ``micro`` and ``skipped`` are what a checkpoint restores."""

    distiller: Trainable
    cfg: TrainConfig
    out_dir: Path | None
    params: list[torch.nn.Parameter]
    opt: torch.optim.Optimizer
    scheduler: Any
    total: int
    record: _History
    extra_state: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    micro: int = 0
    skipped: int = 0


def _resume(s: _Session, device: torch.device) -> None:
    """With ``train.resume``, load the newest readable checkpoint in ``output_dir`` into the session."""
    if not s.cfg.resume:
        return
    found = load_latest(s.out_dir) if s.out_dir is not None else None
    if found is None:
        log.warning("train.resume=true but no checkpoint in %s: starting from scratch", s.out_dir)
        return
    ckpt, state = found
    load_model(s.distiller.student, str(ckpt / WEIGHTS_FILE), device=str(device))
    s.opt.load_state_dict(state["optimizer"])
    s.scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    if hasattr(s.distiller, "load_extra_state"):  # trainable state besides the student (e.g. projections)
        s.distiller.load_extra_state(state.get("extra_modules", {}))
    s.step, s.micro, s.skipped = state["step"], state["micro"], state.get("skipped", 0)
    log.info("resumed from %s at step %d", ckpt, s.step)


def _checkpoint(s: _Session) -> Path | None:
    """Write a checkpoint when there is an output_dir (a failed write raises one line)."""
    if s.out_dir is None:
        return None
    state = {
        "step": s.step,
        "micro": s.micro,
        "skipped": s.skipped,
        "optimizer": s.opt.state_dict(),
        "scheduler": s.scheduler.state_dict(),
        "rng": rng_state(),
        "config": asdict(s.cfg),
        "extra_modules": s.distiller.extra_state() if hasattr(s.distiller, "extra_state") else {},
        **s.extra_state,
    }
    return save_checkpoint(s.out_dir, s.distiller.student, state, keep=s.cfg.keep_checkpoints)


def _optimizer_step(s: _Session, bad_loss: bool) -> torch.Tensor:
    """Clip, then step unless the loss or the gradient norm is not finite (``train.on_nonfinite``)."""
    grad_norm = torch.nn.utils.clip_grad_norm_(s.params, s.cfg.max_grad_norm or float("inf"))
    if bad_loss or not torch.isfinite(grad_norm):
        what = "loss" if bad_loss else "gradient norm"
        if s.cfg.on_nonfinite == "stop":
            raise DistillError(
                f"non-finite {what} at step {s.step + 1}; weights left as after step {s.step} "
                "(set train.on_nonfinite=skip to drop such batches)"
            )
        log.warning("non-finite %s at step %d: update skipped", what, s.step + 1)
        s.skipped += 1
    else:
        s.opt.step()
    s.scheduler.step()
    s.opt.zero_grad(set_to_none=True)
    s.step += 1
    return grad_norm


def _log_train(s: _Session, running: dict[str, list[float]], grad_norm: torch.Tensor, bar: tqdm) -> None:
    """Every ``log_every`` steps: the means of the logged parts since the last time."""
    if s.step % s.cfg.log_every and s.step != s.total:
        return
    means = {f"train/{k}": sum(v) / len(v) for k, v in running.items()}
    means.update({"train/lr": s.scheduler.get_last_lr()[0], "train/grad_norm": float(grad_norm)})
    if s.skipped:
        means["train/skipped_steps"] = s.skipped
    s.record(means, s.step)
    bar.set_postfix(loss=f"{means['train/loss']:.4f}")
    running.clear()


def _validate(s: _Session, val_loader: Iterable[Any], autocast: contextlib.AbstractContextManager, bar: tqdm) -> dict:
    with autocast:
        metrics = s.distiller.validate(val_loader)
    s.record({f"val/{k}": v for k, v in metrics.items()}, s.step)
    logger = s.record.logger
    if logger is not None and hasattr(logger, "log_samples"):
        logger.log_samples(getattr(s.distiller, "last_samples", []), s.step)
    bar.write(f"step {s.step}: " + "  ".join(f"val/{k}={v:.4f}" for k, v in metrics.items()))
    return metrics


def _start(
    distiller: Trainable,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any] | None,
    cfg: TrainConfig,
    optimizer: Callable[..., torch.optim.Optimizer] | None,
    logger: Logger | None,
    extra: dict[str, Any],
) -> _Session:
    """Device, one-off preparation, optimizer, scheduler and (with ``train.resume``) the checkpoint."""
    device = resolve_device(cfg.device)
    set_seed(cfg.seed)
    distiller.to(device)
    if hasattr(distiller, "prepare"):  # one-off work, e.g. the language distiller's teacher generations
        distiller.prepare(train_loader, val_loader)
    params = list(distiller.parameters())
    opt = optimizer(params) if optimizer else torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batches_per_epoch = len(train_loader)  # type: ignore[arg-type]
    if batches_per_epoch == 0:
        raise DistillError("the training loader yields no batches")
    total = total_steps(cfg, batches_per_epoch)
    scheduler = get_scheduler(cfg.lr_scheduler, opt, num_warmup_steps=cfg.warmup_steps, num_training_steps=total)
    out_dir = Path(cfg.output_dir) if cfg.output_dir else None
    if logger is not None and hasattr(logger, "checkpoint_state"):
        extra = {**extra, **logger.checkpoint_state()}
    s = _Session(distiller, cfg, out_dir, params, opt, scheduler, total, _History(out_dir, logger), extra)
    _resume(s, device)
    return s


def fit(
    distiller: Trainable,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any] | None = None,
    cfg: TrainConfig | None = None,
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    logger: Logger | None = None,
    state: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Train ``distiller.student`` and return the final validation metrics (empty without ``val_loader``).

    ``optimizer`` is a partial taking the parameters (Hydra ``_partial_: true``); by default
    AdamW(lr, weight_decay). With ``cfg.output_dir`` the loop writes checkpoints (each also holding
    ``state``, e.g. the run's config), ``history.jsonl`` and the final student; with ``cfg.resume``
    it continues from the newest readable checkpoint there.
    """
    cfg = cfg or TrainConfig()
    s = _start(distiller, train_loader, val_loader, cfg, optimizer, logger, dict(state or {}))
    autocast = _autocast(resolve_device(cfg.device), cfg.precision)
    val_metrics: dict[str, float] = {}
    running: dict[str, list[float]] = defaultdict(list)
    bad_loss = False
    s.opt.zero_grad(set_to_none=True)
    bar = tqdm(total=s.total, initial=s.step, desc=cfg.desc, disable=not cfg.progress, dynamic_ncols=True)
    with StopRequest() as stop:
        for batch in batches_from(train_loader, s.micro, len(train_loader)):  # type: ignore[arg-type]
            if s.step >= s.total:
                break
            with autocast:
                parts = distiller.train_step(batch, loss_scale=1.0 / cfg.grad_accum)
            s.micro += 1
            bad_loss |= not math.isfinite(parts["loss"])
            for k, v in parts.items():
                running[k].append(v)
            if s.micro % cfg.grad_accum:
                continue
            grad_norm = _optimizer_step(s, bad_loss)
            bad_loss = False
            bar.update(1)
            _log_train(s, running, grad_norm, bar)
            if val_loader is not None and ((cfg.eval_every and s.step % cfg.eval_every == 0) or s.step == s.total):
                val_metrics = _validate(s, val_loader, autocast, bar)
            if s.step == s.total or (cfg.checkpoint_every and s.step % cfg.checkpoint_every == 0):
                _checkpoint(s)
            if stop.signum is not None:
                bar.close()
                raise Interrupted(stop.signum, s.step, _checkpoint(s))
    bar.close()
    if s.out_dir is not None:
        save_student(distiller.student, distiller.tokenizer, s.out_dir / "student")
    return val_metrics
