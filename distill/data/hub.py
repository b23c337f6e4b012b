"""Hub (or local) datasets mapped onto the columns :class:`~distill.data.TaskData` expects."""

from __future__ import annotations

import re

from datasets import DatasetDict, load_dataset

from distill.data.checks import check_columns


def _load(path: str, name: str | None, splits: dict[str, str], revision: str | None) -> DatasetDict:
    return DatasetDict(
        {ours: load_dataset(path, name, split=theirs, revision=revision) for ours, theirs in splits.items()}
    )


def load_prompt_response(
    path: str,
    name: str | None = None,
    prompt_column: str = "question",
    response_column: str = "answer",
    prompt_template: str = "{prompt}\n",
    answer_regex: str | None = None,
    splits: dict[str, str] | None = None,
    revision: str | None = None,
) -> DatasetDict:
    """A prompt/response dataset (e.g. ``openai/gsm8k``) as columns prompt, response, answer.

    ``answer_regex``'s first group, searched in the response, is the checkable final answer
    (gsm8k: ``"####\\s*(.+)$"``); without it ``answer`` is the whole response.
    """
    raw = _load(path, name, dict(splits or {"train": "train", "validation": "validation"}), revision)
    check_columns(raw, tuple(raw), (prompt_column, response_column))
    pattern = re.compile(answer_regex, re.MULTILINE) if answer_regex else None

    def convert(row: dict) -> dict:
        response = row[response_column]
        match = pattern.search(response) if pattern else None
        return {
            "prompt": prompt_template.format(prompt=row[prompt_column]),
            "response": response,
            "answer": (match.group(1) if match else response).strip(),
        }

    return DatasetDict({k: v.map(convert, remove_columns=v.column_names) for k, v in raw.items()})


def load_classification(
    path: str,
    name: str | None = None,
    text_column: str = "sentence",
    label_column: str = "label",
    splits: dict[str, str] | None = None,
    revision: str | None = None,
) -> DatasetDict:
    """A text-classification dataset (e.g. ``nyu-mll/glue``/``sst2``) as columns text, label."""
    raw = _load(path, name, dict(splits or {"train": "train", "validation": "validation"}), revision)
    check_columns(raw, tuple(raw), (text_column, label_column))
    rename = {a: b for a, b in ((text_column, "text"), (label_column, "label")) if a != b}
    return DatasetDict(
        {k: v.select_columns([text_column, label_column]).rename_columns(rename) for k, v in raw.items()}
    )
