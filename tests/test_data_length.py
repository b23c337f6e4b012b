"""Examples whose response ``data.max_length`` cuts away are dropped and counted; a split with none left is
refused before anything is trained or cached."""

from __future__ import annotations

import logging

import pytest
from datasets import Dataset, DatasetDict

from distill.core.errors import ConfigError
from distill.data import IGNORE_INDEX, TaskData
from tests.conftest import cli


def splits(prompts: list[str]) -> DatasetDict:
    rows = {"prompt": prompts, "response": ["7" for _ in prompts]}
    return DatasetDict({"train": Dataset.from_dict(rows), "validation": Dataset.from_dict(rows)})


def test_examples_without_a_response_token_are_dropped_and_counted(tok, caplog):
    short, long = "1+1=", "12345678901234567890+1="
    n_short = len(tok(short, add_special_tokens=False)["input_ids"])
    n_long = len(tok(long, add_special_tokens=False)["input_ids"])
    assert n_short < 10 <= n_long
    with caplog.at_level(logging.WARNING, logger="distill.data.task"):
        data = TaskData(splits([short, long, short]), tok, max_length=10, max_eval_examples=None)
    assert len(data.train) == 2 and len(data.validation) == 2
    assert all(any(label != IGNORE_INDEX for label in row) for row in data.train["labels"])
    assert data.train["index"] == [0, 1]  # the teacher cache's keys follow the kept examples
    lines = [r.getMessage() for r in caplog.records if "were dropped" in r.getMessage()]
    assert lines == [
        "1 of 3 train examples keep no response token within data.max_length=10 and were dropped",
        "1 of 3 validation examples keep no response token within data.max_length=10 and were dropped",
    ]


def test_a_split_with_no_response_token_left_is_refused_naming_the_longest_prompt(tok):
    prompts = ["123+4=", "1234567+89="]
    longest = max(len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts)
    with pytest.raises(ConfigError) as err:
        TaskData(splits(prompts), tok, max_length=3)
    assert str(err.value).startswith("data.max_length=3 is invalid") and f"longest prompt has {longest} tokens" in str(
        err.value
    )


def test_the_run_stops_before_any_teacher_is_trained(tmp_path):
    cache = tmp_path / "cache"
    result = cli("data.max_length=5", "logger=none", f"paths.cache_dir={cache}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2
    (line,) = result.error_lines()
    assert "data.max_length=5" in line and "longest prompt" in line
    assert not cache.exists() or not any(cache.iterdir())
