"""One experiment, from a composed config to ``metrics.json``: what ``train.py`` runs.

    validate config -> tokenizer -> data -> teacher, student -> distiller -> logger
    -> loop (distill.loop.fit) -> evaluate teacher -> metrics.json + printed table
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from transformers import set_seed

import datasets
import transformers

from distill.config import build, validate_config
from distill.evaluation import evaluate_model
from distill.loop import TrainConfig, find_checkpoint, fit, read_checkpoint_state
from distill.models import check_same_tokenizer, num_parameters

log = logging.getLogger(__name__)
datasets.disable_progress_bars()  # our own bars (teacher, train, generation) are the ones to watch
transformers.utils.logging.disable_progress_bar()


def hydra_context() -> dict[str, Any]:
    """Overrides, output dir and sweep name of the running Hydra job (empty outside one)."""
    if not HydraConfig.initialized():
        return {"overrides": [], "output_dir": None, "sweep": None, "distiller": None}
    hc = HydraConfig.get()
    sweep = Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None
    return {
        "overrides": list(hc.overrides.task), "output_dir": hc.runtime.output_dir, "sweep": sweep,
        "distiller": hc.runtime.choices.get("distiller"),
    }


def run_name(distiller: str, overrides: list[str]) -> str:
    """A readable W&B run name: the distiller and the overrides, e.g. ``logit T=2 a=0.3``."""
    short = {"distiller.temperature": "T", "distiller.alpha": "a", "distiller.beta": "b", "distiller.divergence": "div"}
    parts = []
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        if key in ("distiller", "train.resume") or key.startswith("hydra"):
            continue
        parts.append(f"{short.get(key, key.split('.')[-1])}={value}")
    return " ".join([distiller, *parts])


def format_metrics(metrics: dict[str, float]) -> str:
    """``teacher/*`` then ``student/*`` metrics, one ``key  value`` line each."""
    keys = [k for who in ("teacher/", "student/") for k in sorted(metrics) if k.startswith(who)]
    width = max(map(len, keys), default=0) + 2
    return "\n".join(
        f"{k:<{width}}{metrics[k]:,d}" if isinstance(metrics[k], int) else f"{k:<{width}}{metrics[k]:.4f}" for k in keys
    )


def run(cfg: DictConfig, output_dir: str | Path | None = None) -> float:
    """Run the experiment ``cfg`` writing into ``output_dir`` (the Hydra run dir by default).

    Returns the student's final ``val/<cfg.monitor>`` so a sweeper can optimise it.
    """
    started = time.time()
    ctx = hydra_context()
    out = Path(output_dir or ctx["output_dir"] or cfg.train.get("output_dir") or "outputs/run")
    out.mkdir(parents=True, exist_ok=True)
    validate_config(cfg)
    set_seed(cfg.seed)

    distiller_cls = get_class(cfg.distiller._target_)
    distiller_name = ctx["distiller"] or distiller_cls.__name__.removesuffix("Distiller").lower()
    tokenizer = build(cfg.model.tokenizer)
    if cfg.model.get("teacher_tokenizer") is not None:  # models with their own tokenizers must agree
        check_same_tokenizer(tokenizer, build(cfg.model.teacher_tokenizer))
    data = build(cfg.data, tokenizer=tokenizer)
    teacher = None
    if distiller_cls.requires_teacher or cfg.get("evaluate_teacher", True):
        teacher = build(cfg.model.teacher, tokenizer=tokenizer)
    set_seed(cfg.seed)  # the student's initialisation does not depend on whether a teacher was built
    student = build(cfg.model.student, tokenizer=tokenizer)
    distiller = build(
        cfg.distiller, student_model=student, tokenizer=tokenizer,
        **({"teacher_model": teacher} if distiller_cls.requires_teacher else {}),
    )

    train_cfg = TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True), output_dir=str(out), seed=cfg.seed)
    run_id = None
    if train_cfg.resume and (ckpt := find_checkpoint(out)) is not None:
        run_id = read_checkpoint_state(ckpt).get("wandb_run_id")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    logger_kwargs: dict[str, Any] = {"dir": str(out), "run_config": resolved, "run_id": run_id}
    if "WandbLogger" in str(cfg.logger.get("_target_", "")):
        logger_kwargs.update(
            name=cfg.logger.get("name") or run_name(distiller_name, ctx["overrides"]),
            group=cfg.logger.get("group") or ctx["sweep"],
            job_type=cfg.logger.get("job_type") or distiller_name,
        )
    logger = build(cfg.logger, _partial_=True)(**logger_kwargs)  # the config dict is data, not nodes
    try:
        student_metrics = fit(
            distiller, data.train_loader(seed=cfg.seed), data.val_loader(), train_cfg, build(cfg.optimizer), logger
        )
        metrics = {f"student/{k}": v for k, v in student_metrics.items()}
        metrics["student/params"] = num_parameters(student)
        if teacher is not None:
            teacher_metrics, _ = evaluate_model(teacher, data.val_loader(), tokenizer, data.max_new_tokens)
            metrics.update({f"teacher/{k}": v for k, v in teacher_metrics.items()})
            metrics["teacher/params"] = num_parameters(teacher)
        metrics["wall_time_s"] = round(time.time() - started, 1)
        logger.summary(metrics)
        record = {**metrics, "distiller": distiller_name, "overrides": ctx["overrides"]}
        (out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"\nFinal validation metrics\n{format_metrics(metrics)}\nwritten to {out / 'metrics.json'}")
    except BaseException as e:
        logger.finish(exit_code=getattr(e, "exit_code", 1))
        raise
    logger.finish(0)
    return float(metrics.get(f"student/{cfg.monitor}", float("nan")))
