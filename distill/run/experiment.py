"""One experiment, from a composed config to ``metrics.json``: what ``train.py`` runs.

    checks -> tokenizer -> data -> student, teacher -> distiller -> logger
    -> loop (distill.loop.fit) -> evaluate teacher -> metrics.json + printed table

The groups meet only through the runtime objects the runner passes to constructors that
declare them: ``tokenizer`` and ``data`` to the ``model`` constructors; ``student_model``,
``teacher_model``, ``tokenizer`` and the data's ``task`` and ``max_new_tokens`` to the distiller.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from torch import nn
from transformers import set_seed

from distill.config.checks import validate_config
from distill.core import ranks
from distill.core.errors import ConfigError
from distill.core.instantiate import build, runtime_kwargs
from distill.data import TaskData
from distill.data.alignment import TokenizerBridge, prompt_pairs
from distill.data.rendering import check_same_end_of_response
from distill.loggers import NullLogger
from distill.loop import TrainConfig, checkpoint_dirs, fit, load_latest
from distill.models import check_model_fits, check_same_tokenizer, num_parameters
from distill.run.record import check_resume, record_segment, restore_hydra_files
from distill.run.teacher_fit import fit_teacher
from distill.teacher import TeacherSource

log = logging.getLogger(__name__)
datasets.disable_progress_bars()  # our own bars (teacher, train, generation) are the ones to watch
transformers.utils.logging.disable_progress_bar()


def hydra_context() -> dict[str, Any]:
    """Overrides, output dir, sweep name and parallel jobs of the running Hydra job (empty outside one)."""
    if not HydraConfig.initialized():
        return {"overrides": [], "output_dir": None, "sweep": None, "distiller": None, "n_jobs": 1}
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    return {
        "overrides": list(hc.overrides.task),
        "output_dir": hc.runtime.output_dir,
        "sweep": Path(hc.sweep.dir).name if multirun else None,
        "distiller": hc.runtime.choices.get("distiller"),
        "n_jobs": int(hc.launcher.get("n_jobs") or 1) if multirun else 1,
    }


def set_threads(requested: int | None, n_jobs: int) -> int:
    """Torch's CPU threads: ``train.num_threads``, else this machine's cores shared among the jobs
    a parallel launcher runs at once (two 2-thread jobs on 2 cores run several times slower than one
    thread each). Set before the first heavy op, so torch's pools start at that size."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = requested or max(1, cores // max(n_jobs if n_jobs > 0 else cores, 1))
    torch.set_num_threads(threads)
    return threads


def run_name(distiller: str, overrides: list[str], seed: bool = True) -> str:
    """A readable W&B run name: the distiller and the overrides, e.g. ``logit T=2 a=0.3 seed=1``
    (without the seed: the name of the group of runs that differ only in their seed)."""
    short = {"distiller.temperature": "T", "distiller.alpha": "a", "distiller.beta": "b", "distiller.divergence": "div"}
    parts = []
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        if key in ("distiller", "train.resume") or key.startswith("hydra") or (key == "seed" and not seed):
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


def build_student(cfg: DictConfig, tokenizer: Any, data: TaskData, teacher: TeacherSource) -> nn.Module:
    """The student from ``set_seed(cfg.seed)``, checked against the data before any teacher is loaded
    (unless its constructor takes the ``teacher``, as :func:`distill.models.student_from_teacher` does), with
    the ``peft`` group's adapters when one is chosen."""
    available: dict[str, Any] = {"tokenizer": tokenizer, "data": data}
    if "teacher" in runtime_kwargs(cfg.model.student, {"teacher": None}):
        available["teacher"] = teacher.model()
    set_seed(cfg.seed)
    student = build(cfg.model.student, **runtime_kwargs(cfg.model.student, available))
    check_model_fits(student, "model.student", data.max_length, cfg.model.student)
    if cfg.get("peft") is not None:  # adapters on the student (peft=lora): only they train
        student = build(cfg.peft, **runtime_kwargs(cfg.peft, {"student": student}))
    return student


def make_logger(cfg: DictConfig, out: Path, ctx: dict[str, Any], distiller_name: str, run_id: str | None) -> Any:
    """The ``logger`` group's logger (continuing ``run_id`` on resume). Runs that differ only in
    their seed share a W&B group, ``<sweep>/<name without the seed>``, so W&B can average them."""
    kwargs: dict[str, Any] = {
        "dir": str(out),
        "run_config": OmegaConf.to_container(cfg, resolve=True),
        "run_id": run_id,
    }
    if "WandbLogger" in str(cfg.logger.get("_target_", "")):
        group = run_name(distiller_name, ctx["overrides"], seed=False)
        kwargs.update(
            name=cfg.logger.get("name") or run_name(distiller_name, ctx["overrides"]),
            group=cfg.logger.get("group") or (f"{ctx['sweep']}/{group}" if ctx["sweep"] else group),
            job_type=cfg.logger.get("job_type") or distiller_name,
            tags=[*(cfg.logger.get("tags") or []), *([ctx["sweep"]] if ctx["sweep"] else [])],
        )
    return build(cfg.logger, _partial_=True)(**kwargs)  # the config dict is data, not nodes


def prepare_resume(cfg: DictConfig, out: Path, resolved: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint state a resume continues from (``{}`` for a fresh start).

    Refused with one line, leaving the run's records as they were: a fresh start in a directory
    that holds checkpoints, and a resume whose config differs in a key that is not safe to change.
    """
    if not cfg.train.resume:
        if checkpoint_dirs(out):
            restore_hydra_files(out)
            raise ConfigError(
                f"{out} already holds checkpoints: continue that run with train.resume=true, "
                "or choose another hydra.run.dir"
            )
        return {}
    found = load_latest(out)
    if found is None:
        return {}
    state = found[1]
    try:
        changed = check_resume(state.get("run_config", {}), resolved, list(cfg.train.resume_allow_changes))
    except ConfigError:
        restore_hydra_files(out)
        raise
    if changed:
        log.warning("resuming with changed %s", ", ".join(changed))
    return state


def test_metrics(distiller: Any, data: TaskData) -> dict[str, Any]:
    """The student's metrics on the held-out test split (``student/test_<m>``; none without one)."""
    test = data.test_loader()
    values = distiller.validate(test) if test is not None else {}
    return {**{f"student/test_{k}": v for k, v in values.items()}, "student/params": num_parameters(distiller.student)}


def build_distiller(cfg: DictConfig) -> tuple[Any, TeacherSource, TaskData]:
    """Tokenizer, data, student, the teacher (or only its cached targets) and the distiller."""
    distiller_cls = get_class(cfg.distiller._target_)
    options = OmegaConf.to_container(cfg.distiller, resolve=True)
    needs = distiller_cls.teacher_input(options) if hasattr(distiller_cls, "teacher_input") else "model"
    tokenizer = build(cfg.model.tokenizer)
    teacher_tokenizer = build(cfg.model.teacher_tokenizer) if cfg.model.get("teacher_tokenizer") else None
    cross = options.get("cross_tokenizer")
    own = teacher_tokenizer is not None and teacher_tokenizer.get_vocab() != tokenizer.get_vocab()
    if own and cross is None and needs is not None:  # models with their own tokenizers must agree
        check_same_tokenizer(tokenizer, teacher_tokenizer)
    data = build(cfg.data, tokenizer=tokenizer)
    if teacher_tokenizer is not None and not own and getattr(distiller_cls, "writes_text", False):
        name = distiller_cls.__name__.removesuffix("Distiller").lower()
        check_same_end_of_response(tokenizer, teacher_tokenizer, data.chat, name)
    teacher_data = build(cfg.data, tokenizer=teacher_tokenizer) if own else data  # each model renders its prompts
    available: dict[str, Any] = {"tokenizer": tokenizer, "task": data.task, "max_new_tokens": data.max_new_tokens}
    if cross is not None:
        available["teacher_tokenizer"] = TokenizerBridge(
            tokenizer, teacher_data.tokenizer, teacher_chat=teacher_data.chat, student_chat=data.chat,
            prompts=prompt_pairs(data, teacher_data), max_length=teacher_data.max_length,
        )  # fmt: skip
    teacher = TeacherSource(cfg, teacher_data.tokenizer, teacher_data, fit_teacher=fit_teacher)
    available["student_model"] = build_student(cfg, tokenizer, data, teacher)
    if needs is not None:  # data.labelled_fraction < 1: the teacher labels the other prompts
        teacher.label_unlabelled(data, available.get("teacher_tokenizer"))
    elif data.has_unlabelled:
        print(f"training set: the {data.num_labelled} labelled examples (this distiller uses no teacher)")
    if needs == "targets":
        available["teacher_targets"] = ranks.main_first(teacher.targets)  # rank 0 builds, the others read
        teacher.release()
    elif needs == "model":
        available["teacher_model"] = teacher.model()
    return build(cfg.distiller, **runtime_kwargs(cfg.distiller, available)), teacher, data


def run(cfg: DictConfig, output_dir: str | Path | None = None) -> float:
    """Run the experiment ``cfg`` writing into ``output_dir`` (the Hydra run dir by default).

    Under torchrun every rank runs this; rank 0's output directory is the run's, and only rank 0
    writes. Returns the student's final ``val/<cfg.monitor>`` so a sweeper can optimise it
    (validation selects; the test split only reports).
    """
    started, ctx = time.time(), hydra_context()
    validate_config(cfg)
    ranks.init()
    out = Path(ranks.broadcast(str(output_dir or ctx["output_dir"] or "outputs/run")))
    out.mkdir(parents=True, exist_ok=True)
    threads = set_threads(cfg.train.num_threads, ctx["n_jobs"])
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resume_state = prepare_resume(cfg, out, resolved)  # type: ignore[arg-type]
    if ranks.is_main():
        record_segment(out, cfg, ctx["overrides"], resume_state.get("step", 0))
    set_seed(cfg.seed)
    distiller, teacher, data = build_distiller(cfg)
    name = ctx["distiller"] or type(distiller).__name__.removesuffix("Distiller").lower()
    train_cfg = TrainConfig(**OmegaConf.to_container(cfg.train, resolve=True), output_dir=str(out), seed=cfg.seed)
    logger = make_logger(cfg, out, ctx, name, resume_state.get("wandb_run_id")) if ranks.is_main() else NullLogger()
    try:
        loaders = (data.train_loader(seed=cfg.seed), data.val_loader())
        curve = data.test_loader() if cfg.train.eval_test else None  # test/<m> at every validation
        val = fit(distiller, *loaders, train_cfg, build(cfg.optimizer), logger, {"run_config": resolved}, curve)
        metrics: dict[str, Any] = {f"student/{k}": v for k, v in val.items()}
        metrics.update(test_metrics(distiller, data))
        metrics.update(teacher.metrics() if cfg.evaluate_teacher else {})
        metrics["wall_time_s"] = round(time.time() - started, 1)
        logger.summary(metrics)
        if ranks.is_main():
            record = {**metrics, "distiller": name, "overrides": ctx["overrides"], "threads": threads}
            (out / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
            print("\nFinal metrics (student/<m>: validation; */test_<m>: the held-out test split)")
            print(f"{format_metrics(metrics)}\nwritten to {out / 'metrics.json'}")
    except BaseException as e:
        logger.finish(exit_code=getattr(e, "exit_code", 1))
        raise
    logger.finish(0)
    return float(metrics.get(f"student/{cfg.monitor}", float("nan")))
