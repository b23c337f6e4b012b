"""Hub or local datasets mapped onto the columns :class:`~distill.data.TaskData` expects.

``path`` is anything ``datasets.load_dataset`` reads: a hub id (``nyu-mll/glue``), a local copy
of one, a local directory of data files (``train.csv``, ``validation.csv``, ...: splits are named
after the files), or a builder (``csv``, ``json``, ``parquet``) with ``data_files``
(``{train: a.csv, validation: b.csv}``). For a directory of plain files, which has a single
configuration, a ``name`` (such as ``sst2`` from ``data=sst2``) that is a subdirectory is read
from there, and otherwise ignored, with one log line.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, get_dataset_config_names, load_dataset

from distill.core.errors import DataError, first_line
from distill.data.checks import check_columns

log = logging.getLogger(__name__)


def _local_source(path: str, name: str | None) -> tuple[str, str | None]:
    """``(path, name)`` for ``load_dataset``: a local directory's own config, subdirectory, or no name."""
    directory = Path(path).expanduser()
    if name is None or not directory.is_dir():
        return path, name
    if (directory / name).is_dir():
        return str(directory / name), None
    configs = get_dataset_config_names(str(directory))
    if name in configs:
        return str(directory), name
    if configs == ["default"]:
        log.info("data.source.name=%r ignored: %s holds plain data files (one configuration)", name, directory)
        return str(directory), None
    raise DataError(f"data.source.name={name!r} is not a configuration of {directory}: it has {', '.join(configs)}")


def _split(path: str, name: str | None, split: str, revision: str | None, data_files: Any) -> Dataset:
    """One split, with ``datasets``' errors (missing files, unknown split, offline) as one line."""
    try:
        return load_dataset(path, name, split=split, revision=revision, data_files=data_files)
    except (FileNotFoundError, ConnectionError, ValueError) as e:
        raise DataError(f"could not load split {split!r} of dataset {path!r} (data.source): {first_line(e)}") from None


def _load(
    path: str, name: str | None, splits: dict[str, str], revision: str | None, data_files: Any = None
) -> DatasetDict:
    path, name = _local_source(path, name)
    return DatasetDict({ours: _split(path, name, theirs, revision, data_files) for ours, theirs in splits.items()})


def load_prompt_response(
    path: str,
    name: str | None = None,
    prompt_column: str = "question",
    response_column: str = "answer",
    prompt_template: str = "{prompt}\n",
    answer_regex: str | None = None,
    splits: dict[str, str] | None = None,
    revision: str | None = None,
    data_files: Any = None,
) -> DatasetDict:
    """A prompt/response dataset (e.g. ``openai/gsm8k``) as columns prompt, response, answer.

    ``answer_regex``'s first group, searched in the response, is the checkable final answer
    (gsm8k: ``"####\\s*(.+)$"``); without it ``answer`` is the whole response. ``splits`` maps our
    split names to the dataset's; ``data_files`` as in ``load_dataset`` (see the module docstring).
    """
    raw = _load(path, name, dict(splits or {"train": "train", "validation": "validation"}), revision, data_files)
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
    data_files: Any = None,
) -> DatasetDict:
    """A text-classification dataset as columns text, label: ``nyu-mll/glue``/``sst2`` from the hub, a
    local directory of csv/json/parquet files, or ``path: csv`` with ``data_files`` (module docstring).
    Labels must be integers (class ids 0 .. num_labels - 1)."""
    raw = _load(path, name, dict(splits or {"train": "train", "validation": "validation"}), revision, data_files)
    check_columns(raw, tuple(raw), (text_column, label_column))
    for split, dataset in raw.items():
        kind = dataset.features[label_column]  # Value("int64"), a ClassLabel (int64), Value("string"), ...
        if getattr(kind, "dtype", None) not in ("int8", "int16", "int32", "int64"):
            raise DataError(
                f"data.source.label_column={label_column!r} of split {split!r} holds {kind} values, e.g. "
                f"{dataset[0][label_column]!r}: classification labels must be integer class ids 0, 1, ..."
            )
    rename = {a: b for a, b in ((text_column, "text"), (label_column, "label")) if a != b}
    return DatasetDict(
        {k: v.select_columns([text_column, label_column]).rename_columns(rename) for k, v in raw.items()}
    )
