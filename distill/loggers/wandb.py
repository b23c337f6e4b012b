"""The Weights & Biases logger.

W&B mode: ``logger.mode`` if set (online/offline/disabled); else ``WANDB_MODE`` from the
environment; else online when an API key is configured and offline otherwise, so the default
run needs no account. W&B failing to start never stops training: the logger warns and falls
back to offline, then to disabled.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from distill.core.errors import first_line
from distill.loggers.null import NullLogger

log = logging.getLogger(__name__)
MODES = ("online", "offline", "disabled")


def resolve_mode(mode: str | None) -> str:
    if mode:
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    return "offline"


def _fallback_line(mode: str, error: Exception, run_dir: Path) -> str:
    """One line saying why W&B did not start in ``mode`` and what happens instead."""
    reason = first_line(error)
    if mode == "online":
        return (
            f"W&B could not start online ({reason}): logging offline instead; "
            f"upload later with `wandb sync {run_dir}/wandb/offline-run-*`"
        )
    return f"W&B could not start in {mode} mode ({reason}): trying the next mode"


class WandbLogger(NullLogger):
    """A W&B run: resolved config, step axis, best-val summaries, sample tables.

    Args:
        project, entity, group, tags, notes, job_type, name: as in ``wandb.init``.
        mode: online/offline/disabled or None (see module doc).
        dir: the run directory; W&B writes its ``wandb/`` folder inside it.
        run_config: the resolved config dict (``wandb.config``).
        run_id: resume this run (``resume="allow"``), as a resumed training does.
        max_samples: rows of the prompt/teacher/student table logged at each validation.
        init_timeout: seconds to wait for the W&B server before falling back to offline.
    """

    def __init__(
        self,
        project: str = "distill",
        entity: str | None = None,
        mode: str | None = None,
        group: str | None = None,
        job_type: str | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
        notes: str | None = None,
        dir: str | Path = ".",
        run_config: dict[str, Any] | None = None,
        run_id: str | None = None,
        max_samples: int = 16,
        init_timeout: float = 10.0,
    ) -> None:
        import wandb

        self.wandb, self.max_samples = wandb, max_samples
        self.mode = resolve_mode(mode)
        Path(dir).mkdir(parents=True, exist_ok=True)
        kwargs = dict(
            project=project,
            entity=entity,
            group=group,
            job_type=job_type,
            name=name,
            tags=list(tags or []),
            notes=notes,
            dir=str(dir),
            config=run_config,
            id=run_id,
            resume="allow" if run_id else None,
        )
        self.run = None
        settings = wandb.Settings(silent=True, init_timeout=init_timeout)
        for attempt in dict.fromkeys((self.mode, "offline", "disabled")):
            try:
                self.run = wandb.init(mode=attempt, settings=settings, **kwargs)
                self.mode = attempt
                break
            except Exception as e:  # W&B must never stop training
                log.warning(_fallback_line(attempt, e, Path(dir)))
        self._defined: set[str] = set()
        self.run_id = self.run.id if self.run is not None else None

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self.run is None:
            return
        for key, value in metrics.items():
            if key in self._defined or not isinstance(value, (int, float)):
                continue
            if key.startswith("val/"):  # best-val summaries, so the runs table sorts on them
                self.run.define_metric(key, step_metric="trainer/step", summary="min" if "loss" in key else "max")
            else:
                self.run.define_metric(key, step_metric="trainer/step")
            self._defined.add(key)
        try:
            self.run.log({**metrics, "trainer/step": step}, step=step)
        except Exception as e:  # a lost network must not kill training
            log.warning("wandb.log failed at step %d: %s", step, first_line(e))

    def log_samples(self, samples: list[dict[str, str]], step: int) -> None:
        if self.run is None or not samples:
            return
        rows = samples[: self.max_samples]
        columns = list(rows[0])
        table = self.wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])
        self.log({"val/samples": table}, step)  # type: ignore[dict-item]

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def checkpoint_state(self) -> dict[str, Any]:
        return {"wandb_run_id": self.run_id} if self.run_id else {}

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            try:
                self.run.finish(exit_code=exit_code)
            except Exception as e:
                log.warning("wandb finish failed: %s", first_line(e))
            self.run = None
