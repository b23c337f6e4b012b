"""SIGTERM/SIGINT (SLURM preemption, Ctrl-C) become a checkpoint and a clean stop."""

from __future__ import annotations

import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

from distill.core.errors import DistillError

log = logging.getLogger(__name__)


class Interrupted(DistillError):
    """SIGTERM/SIGINT arrived; a checkpoint was written first."""

    def __init__(self, signum: int, step: int, where: Path | None) -> None:
        saved = (
            f"checkpoint saved in {where}; rerun with train.resume=true" if where else "no output_dir, nothing saved"
        )
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}: {saved}")
        self.exit_code = 128 + signum


class StopRequest:
    """Turns SIGTERM/SIGINT into a flag checked after each optimizer step; a second signal stops at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        with contextlib.suppress(ValueError):  # signals can only be set from the main thread
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        log.warning("received %s: finishing the current step and writing a checkpoint", signal.Signals(signum).name)
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
