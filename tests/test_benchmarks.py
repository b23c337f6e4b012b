"""The benchmarks run end to end at toy sizes (slow, opt-in: ``python -m pytest -m slow``). TRL is optional:
without it step_throughput prints "TRL not installed"."""

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


def test_step_throughput_prints_its_table():
    out = bench("step_throughput", "--sizes", "tiny", "--repeats", "1", "--steps", "2")
    assert "V variant    tokens/s" in out
    assert "torch threads: 1" in out and "targets:" in out and "malloc: " in out
    for variant in ("project", "naive", "onpolicy"):
        assert f"    100 {variant} " in out
    assert "tiny: onpolicy step <= 1.5x the project's (ms/step): " in out


def test_teacher_cache_speed_prints_its_table():
    out = bench("teacher_cache_speed", "--repeats", "1", "--steps", "2", "--warmup", "1", "--train-examples", "64")
    assert "variant     step ms  vs label-only cache B/tok    build s" in out
    assert "target: top_k step" in out and "target: sampled step" in out


def test_big_vocab_memory_prints_both_peaks_and_a_trace():
    out = bench("big_vocab_memory", "--vocab", "256", "--eval-examples", "8", "--train-examples", "256", "--what-if")
    assert "variant       chunk_size  peak RSS GB" in out
    assert "chunked " in out and "materialised " in out and "target: chunked peak RSS" in out
    assert "[rss] training step 1" in out and "[rss]   evaluation: forward" in out  # the traced what-if run


def test_kd_signal_prints_entropies_and_gradient_shares():
    out = bench("kd_signal", "--steps", "2", "--batches", "1", "experiment=smoke")
    assert "teacher entropy per response position" in out and "the teacher's top token is the gold token" in out
    for when in ("at init", "after 2 steps"):
        for t in ("1", "2", "4"):
            assert f"{when}".ljust(16) + f" T = {t}: |g_KD|" in out


def test_loss_memory_prints_its_table_for_every_divergence_and_the_cross_tokenizer_losses():
    out = bench("loss_memory", "--positions", "64", "--hidden", "16", "--vocab", "500", "--teacher-vocab", "700",
                "--divergences", "forward_kl", "skew_forward_kl", "uld", "gold", "--repeats", "1")  # fmt: skip
    assert "N=64 H=16 chunk=auto threads=1" in out
    for divergence in ("forward_kl", "skew_forward_kl", "uld", "gold"):
        assert f"    500 {divergence}" in out
