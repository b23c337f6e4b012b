"""The benchmarks run end to end at toy sizes (slow, opt-in: ``python -m pytest -m slow``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def bench(module: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_generation_speed_prints_its_ratio():
    out = bench("generation_speed", "--prompts", "8", "--max-new-tokens", "4", "--repeats", "1")
    assert "generation speed-up:" in out and "round 1:" in out
