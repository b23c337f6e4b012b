"""The training loop: one plain PyTorch loop shared by ``train.py``, the Python API and torchrun.

    for each micro-batch:   distiller.train_step(batch, 1 / grad_accum)    (forward + backward)
    every grad_accum:       clip -> optimizer.step -> scheduler.step -> zero_grad   (one "step")
    every log_every:        logger.log(train/*)                       (averaged over ranks)
    every eval_every:       distiller.validate(val_loader) -> logger.log(val/*)   (sharded, gathered)
    every checkpoint_every: atomic checkpoint (student, optimizer, scheduler, RNG, data position)

The loop owns steps, devices, ranks, precision, checkpoints and signals; the distiller owns
losses. Under torchrun each rank reads its own micro-batches (a step sees ``batch_size x world x
grad_accum`` examples) and only rank 0 writes (history, checkpoints, the student).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import get_scheduler, set_seed

from distill.core import ranks
from distill.core.errors import DistillError
from distill.data.sampler import EpochSampler
from distill.loop.batches import batches_from
from distill.loop.checkpoint import save_student
from distill.loop.placement import gathered_state, place, resolve_device, resolve_strategy, unplace
from distill.loop.protocols import Logger, Trainable
from distill.loop.session import History, Session, checkpoint, resume
from distill.loop.settings import TrainConfig
from distill.loop.signals import Interrupted, StopRequest

log = logging.getLogger(__name__)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if device.type == "cuda" and precision in ("auto", "bf16") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def total_steps(cfg: TrainConfig, batches_per_epoch: int, grad_accum: int | None = None) -> int:
    accum = grad_accum or cfg.grad_accum
    by_epochs = math.ceil(cfg.epochs * batches_per_epoch / accum) if cfg.epochs else None
    return min(s for s in (cfg.max_steps, by_epochs) if s is not None)


def _optimizer_step(s: Session, bad_loss: bool) -> torch.Tensor:
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


def _log_train(s: Session, running: dict[str, list[float]], grad_norm: torch.Tensor, bar: tqdm) -> None:
    """Every ``log_every`` steps: the means of the logged parts since the last time, over all ranks."""
    if s.step % s.cfg.log_every and s.step != s.total:
        return
    means = {f"train/{k}": sum(v) / len(v) for k, v in sorted(running.items())}
    if s.world > 1:
        means = ranks.mean_over_ranks(means)
    means.update({"train/lr": s.scheduler.get_last_lr()[0], "train/grad_norm": float(grad_norm)})
    if s.skipped:
        means["train/skipped_steps"] = s.skipped
    s.record(means, s.step)
    bar.set_postfix(loss=f"{means['train/loss']:.4f}")
    running.clear()


def _validate(
    s: Session, loader: Iterable[Any], autocast: contextlib.AbstractContextManager, bar: tqdm, split: str = "val"
) -> dict:
    """The distiller's metrics on ``loader``, recorded as ``<split>/<m>`` (and, for ``val``, its samples)."""
    with autocast:
        metrics = s.distiller.validate(loader)
    s.record({f"{split}/{k}": v for k, v in metrics.items()}, s.step)
    logger = s.record.logger
    if split == "val" and logger is not None and hasattr(logger, "log_samples"):
        logger.log_samples(getattr(s.distiller, "last_samples", []), s.step)
    if s.out_dir is not None or s.world == 1:
        bar.write(f"step {s.step}: " + "  ".join(f"{split}/{k}={v:.4f}" for k, v in metrics.items()))
    return metrics


def _batches_per_epoch(loader: Iterable[Any], world: int) -> int:
    """This rank's micro-batches per epoch, its sampler dealt to the ``world`` ranks."""
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, EpochSampler):
        if world > 1 and sampler.batch_size != loader.batch_size:  # type: ignore[attr-defined]
            raise DistillError("under torchrun the EpochSampler's batch_size must be the DataLoader's")
        sampler.set_ranks(ranks.rank() if world > 1 else 0, world)
        sampler.set_position(0, 0)
    elif world > 1:
        raise DistillError("under torchrun, train with an EpochSampler loader (distill.data.TaskData.train_loader)")
    n = len(loader)  # type: ignore[arg-type]
    if n == 0:
        raise DistillError("the training loader yields no batches")
    return n


def _start(
    distiller: Trainable,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any] | None,
    cfg: TrainConfig,
    optimizer: Callable[..., torch.optim.Optimizer] | None,
    logger: Logger | None,
    extra: dict[str, Any],
) -> Session:
    """Strategy, device, one-off preparation, optimizer, scheduler and (with ``train.resume``) the checkpoint."""
    strategy, device = resolve_strategy(cfg.strategy), resolve_device(cfg.device)
    set_seed(cfg.seed)
    student = place(distiller, strategy, device, cfg.precision, cfg.shard_teacher)
    if hasattr(distiller, "prepare"):  # one-off work, e.g. the language distiller's teacher generations
        distiller.prepare(train_loader, val_loader)
    params = list(distiller.parameters())
    opt = optimizer(params) if optimizer else torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    world = 1 if strategy == "single" else ranks.world()
    batches_per_epoch = _batches_per_epoch(train_loader, world)
    total = total_steps(cfg, batches_per_epoch)
    scheduler = get_scheduler(cfg.lr_scheduler, opt, num_warmup_steps=cfg.warmup_steps, num_training_steps=total)
    read_dir = Path(cfg.output_dir) if cfg.output_dir else None
    out_dir = read_dir if world == 1 or ranks.is_main() else None
    if logger is not None and hasattr(logger, "checkpoint_state"):
        extra = {**extra, **logger.checkpoint_state()}
    batch_size = getattr(train_loader, "batch_size", None) or 1
    s = Session(distiller, cfg, out_dir, read_dir, strategy, student, params, opt, scheduler, batch_size,
                 cfg.grad_accum, total, History(out_dir, logger), extra)  # fmt: skip
    resume(s)
    if s.world > 1 and ranks.is_main():
        log.info("%s on %d processes: global batch %d (data.batch_size %d x %d processes x train.grad_accum %d)",
                 strategy, s.world, batch_size * s.world * s.grad_accum, batch_size, s.world, s.grad_accum)  # fmt: skip
    return s


def fit(
    distiller: Trainable,
    train_loader: Iterable[Any],
    val_loader: Iterable[Any] | None = None,
    cfg: TrainConfig | None = None,
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    logger: Logger | None = None,
    state: dict[str, Any] | None = None,
    test_loader: Iterable[Any] | None = None,
) -> dict[str, float]:
    """Train ``distiller.student`` and return the final validation metrics (empty without ``val_loader``).

    ``test_loader`` (``train.eval_test``) is evaluated at every validation too, recorded as ``test/<m>``:
    learning curves on the held-out split (nothing selects on it).

    ``optimizer`` is a partial taking the parameters (Hydra ``_partial_: true``); by default
    AdamW(lr, weight_decay). With ``cfg.output_dir`` the loop writes checkpoints (each also holding
    ``state``, e.g. the run's config), ``history.jsonl`` and the final student; with ``cfg.resume``
    it continues from the newest readable checkpoint there.
    """
    cfg = cfg or TrainConfig()
    s = _start(distiller, train_loader, val_loader, cfg, optimizer, logger, dict(state or {}))
    try:
        val_metrics = _train(s, train_loader, val_loader, test_loader)
    finally:
        unplace(distiller, s.student)
    if s.out_dir is not None or s.strategy == "fsdp":  # FSDP2: every rank helps gather the weights
        weights = gathered_state(distiller.student, s.opt, s.strategy)[0] if s.strategy == "fsdp" else None
        if s.out_dir is not None:
            save_student(s.student, distiller.tokenizer, s.out_dir / "student", weights)
    return val_metrics


def _train(
    s: Session, train_loader: Iterable[Any], val_loader: Iterable[Any] | None, test_loader: Iterable[Any] | None
) -> dict[str, float]:
    """The steps, from ``s.step`` to ``s.total``; the final validation metrics."""
    autocast = _autocast(resolve_device(s.cfg.device), s.cfg.precision)
    val_metrics: dict[str, float] = {}
    running: dict[str, list[float]] = defaultdict(list)
    bad_loss = False
    s.opt.zero_grad(set_to_none=True)
    bar = tqdm(total=s.total, initial=s.step, desc=s.cfg.desc, disable=not s.cfg.progress or (s.out_dir is None
               and s.world > 1), dynamic_ncols=True)  # fmt: skip
    clock = time.perf_counter()
    with StopRequest() as stop:
        for batch in batches_from(train_loader, s.micro, len(train_loader)):  # type: ignore[arg-type]
            if s.step >= s.total:
                break
            if hasattr(s.distiller, "set_step"):  # a distiller whose schedule follows the step (onpolicy's lmbda)
                s.distiller.set_step(s.step)
            with autocast:
                parts = s.distiller.train_step(batch, loss_scale=1.0 / s.grad_accum)
            s.micro += 1
            bad_loss |= not math.isfinite(parts["loss"])
            for k, v in parts.items():
                running[k].append(v)
            if s.micro % s.grad_accum:
                continue
            bad_loss, stopping = (any(f) for f in zip(*s.gather((bad_loss, stop.signum is not None))))
            grad_norm = _optimizer_step(s, bad_loss)
            bad_loss = False
            bar.update(1)
            _log_train(s, running, grad_norm, bar)
            s.train_seconds += time.perf_counter() - clock
            if val_loader is not None and ((s.cfg.eval_every and s.step % s.cfg.eval_every == 0) or s.step == s.total):
                s.record({"time/train_s": round(s.train_seconds, 3)}, s.step)
                val_metrics = _validate(s, val_loader, autocast, bar)
                if test_loader is not None:
                    _validate(s, test_loader, autocast, bar, "test")
            if s.step == s.total or (s.cfg.checkpoint_every and s.step % s.cfg.checkpoint_every == 0):
                checkpoint(s)
            clock = time.perf_counter()
            if stopping:
                bar.close()
                raise Interrupted(stop.signum or 15, s.step, checkpoint(s))
    bar.close()
    return val_metrics
