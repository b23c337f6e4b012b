"""The logger that logs nothing (``logger=none``), and the interface every logger has."""

from __future__ import annotations

from typing import Any


class NullLogger:
    """Logs nothing (``logger=none``)."""

    run_id: str | None = None

    def __init__(self, **_: Any) -> None:
        pass

    def log(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_samples(self, samples: list[dict[str, str]], step: int) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        pass

    def checkpoint_state(self) -> dict[str, Any]:
        return {}

    def finish(self, exit_code: int = 0) -> None:
        pass
