"""``data.labelled_fraction``: a transfer set with few labels. The first examples keep their gold responses,
the rest are prompts the teacher labels; a label-only student trains on the labelled part alone, and the
teacher itself is the same whatever the fraction."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.core.errors import ConfigError, DataError
from distill.data import IGNORE_INDEX
from distill.teacher import label_unlabelled
from tests.conftest import cli, gpt2, read_jsonl, task_data


def test_the_first_examples_are_labelled_and_the_rest_are_prompts(tok):
    full, data = task_data(tok), task_data(tok, labelled_fraction=0.25)
    assert data.num_labelled == 16 and len(data.train) == 16 and len(data.task_train) == 64
    assert data.train["input_ids"] == full.train["input_ids"][:16]
    assert data.fingerprint("task_train") == full.fingerprint("train")  # what keys a teacher trained here
    rest = full.task_train.select(range(16, 64))
    assert data.unlabelled_prompts() == dict(zip(rest["prompt"], rest["prompt_ids"]))
    assert full.train is full.task_train and full.unlabelled_prompts() == {}
    assert task_data(tok, labelled_fraction=0.001).num_labelled == 1  # never an empty training set


def test_filled_responses_replace_the_gold_ones(tok, caplog):
    data = task_data(tok, labelled_fraction=0.5)
    prompts = data.unlabelled_prompts()
    written = {p: [5, 6, tok.eos_token_id] if i % 2 else [7, 8] for i, p in enumerate(prompts)}  # half never stop
    with caplog.at_level("WARNING", logger="distill.data.task"):
        data.fill_unlabelled(written)
    assert len(data.train) == 64 and data.train["index"] == list(range(64))
    assert data.train["input_ids"][:32] == data.task_train["input_ids"][:32]  # the labelled part as it was
    for row in data.train.select(range(32, 64)):
        response = written[row["prompt"]]
        assert row["input_ids"] == row["prompt_ids"] + response
        assert row["labels"] == [IGNORE_INDEX] * len(row["prompt_ids"]) + response
        assert row["answer"] == "" and row["response"] == tok.decode(response, skip_special_tokens=True)
    unstopped = sum(1 for r in data.train.select(range(32, 64)) if written[r["prompt"]][-1] != tok.eos_token_id)
    assert f"{unstopped} of 32 filled responses never reached the end-of-response token" in caplog.text


def test_missing_responses_and_bad_fractions_are_refused(tok):
    data = task_data(tok, labelled_fraction=0.5)
    with pytest.raises(DataError, match="unlabelled prompts have no response"):
        data.fill_unlabelled({})
    for bad in (0, 1.5, "half", True):
        with pytest.raises(ConfigError, match=r"^data.labelled_fraction=.* is invalid: must be in \(0, 1\]$"):
            task_data(tok, labelled_fraction=bad)


def test_the_teacher_labels_with_its_greedy_responses_once(tok, tmp_path):
    from distill.inference.generation import GenerationSettings, generate_completions

    data, teacher = task_data(tok, n_train=24, labelled_fraction=0.5), gpt2(tok)
    prompts = data.unlabelled_prompts()
    assert label_unlabelled(data, teacher, tmp_path, progress=False) == len(prompts)
    expected = generate_completions(teacher, tok, prompts, GenerationSettings(max_new_tokens=8), 64, progress=False)
    for row in data.train.select(range(12, 24)):
        assert row["labels"][len(row["prompt_ids"]) :] == expected[row["prompt"]][0][: 64 - len(row["prompt_ids"])]
    assert len(list(tmp_path.glob("unlabelled-*.json"))) == 1  # cached: a second run reads it
    again = task_data(tok, n_train=24, labelled_fraction=0.5)
    label_unlabelled(again, teacher, tmp_path, progress=False)
    assert again.train["input_ids"] == data.train["input_ids"]


def test_runs_train_on_the_labelled_part_or_on_every_prompt_with_one_teacher(tmp_path: Path):
    """Label-only trains on 25 % of the examples; logit on all of them, the rest labelled by the same teacher
    that a full-label run uses (the teacher is trained once, on the whole labelled split)."""
    options = ("experiment=smoke", "logger=none", "train.max_steps=2", "data.labelled_fraction=0.25")
    result = cli(*options, "distiller=supervised", f"hydra.run.dir={tmp_path / 'sup'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "training set: the 128 labelled examples (this distiller uses no teacher)" in result.stdout
    result = cli(*options, f"hydra.run.dir={tmp_path / 'logit'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "training set: 128 labelled examples and 384 examples of" in result.stdout
    assert cli(*options[:3], f"hydra.run.dir={tmp_path / 'full'}").returncode == 0  # every label
    full, partial = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("full", "logit"))
    assert partial["teacher/test_accuracy"] == full["teacher/test_accuracy"]
    assert partial["teacher/loss"] == full["teacher/loss"]  # the same teacher, not one trained on 25 %


def test_classification_data_keeps_every_label():
    from distill.data import TaskData
    from distill.data.classification import make_carry_splits

    with pytest.raises(ConfigError, match="below 1 needs causal_lm data"):
        TaskData(make_carry_splits(), None, task="classification", labelled_fraction=0.5)


def test_eval_test_records_test_metrics_and_training_seconds_at_every_validation(tmp_path: Path):
    assert cli("experiment=smoke", "logger=none", "train.eval_test=true", f"hydra.run.dir={tmp_path}").returncode == 0
    history = read_jsonl(tmp_path / "history.jsonl")
    tests = [h["step"] for h in history if "test/accuracy" in h]
    vals = [h["step"] for h in history if "val/accuracy" in h]
    times = [h["time/train_s"] for h in history if "time/train_s" in h]
    assert tests == vals == [6, 12] and len(times) == 2 and 0 < times[0] < times[1]
