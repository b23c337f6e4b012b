"""Classifiers end to end: the embedded task (how many carries in a + b), local classification data (a
directory or csv data_files), pretrained checkpoints whose fresh weights are reported in one line, and
teachers that never teach from a newly initialised head (fine-tuned first when asked, else refused)."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertTokenizer,
)

from distill.core.errors import ConfigError, DataError
from distill.core.instantiate import build
from distill.data.classification import carries, make_carry_splits
from distill.data.hub import load_classification
from distill.models import from_config, pretrained, student_from_teacher
from tests.conftest import cli, compose, run_experiment

PROBLEM = re.compile(r"What is (\d+) \+ (\d+)\?\n$")
WORDS = ["the", "a", "film", "movie", "good", "bad", "great", "awful", "nice", "boring", "fun", "dull", "was", "not"]
POSITIVE = {"good", "great", "nice", "fun"}


# ----------------------------------------------------------------------------- the embedded task


@pytest.mark.parametrize(
    "a, b, expected", [(12, 3, 0), (5, 5, 1), (487, 356, 2), (55, 45, 2), (999, 1, 3), (950, 50, 2), (0, 0, 0)]
)
def test_carries_are_counted_column_by_column(a, b, expected):
    assert carries(a, b) == carries(b, a) == expected


def test_carry_splits_are_deterministic_balanced_and_held_out():
    sizes = dict(n_train=400, n_validation=80, n_test=80)
    splits = make_carry_splits(**sizes, seed=7)
    again, other = make_carry_splits(**sizes, seed=7), make_carry_splits(**sizes, seed=8)
    assert all(splits[k]["text"] == again[k]["text"] and splits[k]["label"] == again[k]["label"] for k in splits)
    assert splits["train"]["text"] != other["train"]["text"]
    problems = {}
    for name, split in splits.items():
        assert Counter(split["label"]) == dict.fromkeys(range(4), len(split) // 4), name  # balanced
        pairs = [tuple(map(int, PROBLEM.match(t).groups())) for t in split["text"]]
        assert [carries(a, b) for a, b in pairs] == split["label"]
        assert all(max(a, b) < 1000 for a, b in pairs)
        problems[name] = set(pairs)
    assert len(problems["validation"]) == 80 and len(problems["test"]) == 80  # distinct problems
    assert not problems["train"] & (problems["validation"] | problems["test"])
    assert not problems["validation"] & problems["test"]
    with pytest.raises(DataError, match=r"data\.source\.max_digits"):
        make_carry_splits(max_digits=0)


def test_a_student_of_either_kind_has_one_architecture():
    """(b) and (c) of the comparison differ only in the initialisation: model=embedded_classifier_half (or
    embedded_half) builds exactly the model that model=embedded_classifier (embedded_layers) cuts from the
    teacher, with model/student=bert_half (gpt2_half) and from_teacher."""
    from distill.data.arithmetic import build_tokenizer

    tok = build_tokenizer()
    for random_option, born_option in (("embedded_classifier_half", "embedded_classifier"),
                                       ("embedded_half", "embedded_layers")):  # fmt: skip
        cfg = compose(f"model={random_option}")
        assert compose(f"model={born_option}").model.student._target_.endswith("student_from_teacher")
        task = "classification" if "classifier" in random_option else "causal_lm"
        teacher = from_config(tokenizer=tok, task=task, **cfg.model.teacher.architecture)
        born = student_from_teacher(teacher, "every_other")
        random = build(cfg.model.student, tokenizer=tok)  # the runner's call
        assert type(random) is type(born) is type(teacher)
        shapes = [{k: v.shape for k, v in m.state_dict().items()} for m in (random, born)]
        assert shapes[0] == shapes[1]
        assert born.config.num_hidden_layers * 2 == teacher.config.num_hidden_layers


TINY_CLASSIFIER = (
    "experiment=embedded_classifier",
    "logger=none",
    "data.source.n_train=256",
    "data.source.n_validation=32",
    "data.source.n_test=32",
    "model.teacher.architecture.hidden_size=32",
    "model.teacher.architecture.intermediate_size=64",
    "model.teacher.recipe.max_steps=8",
    "train.max_steps=4",
    "train.eval_every=2",
)


def test_embedded_classifier_runs_offline_with_a_student_born_from_the_teacher(tmp_path):
    metrics = run_experiment(tmp_path, *TINY_CLASSIFIER)
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student")
    assert student.config.distill_teacher_layers == [0, 2] and student.config.model_type == "bert"
    assert 0 <= metrics["teacher/accuracy"] <= 1 and 0 <= metrics["student/test_accuracy"] <= 1
    assert metrics["student/params"] < metrics["teacher/params"]


def test_a_teacher_with_too_few_classes_is_refused_naming_num_labels(tmp_path):
    with pytest.raises(ConfigError, match=r"model.teacher.architecture.num_labels=2 is invalid: .*labels up to 3"):
        run_experiment(tmp_path, *TINY_CLASSIFIER, "model.teacher.architecture.num_labels=2")


# ----------------------------------------------------------------------------- local data and checkpoints


def bert_tokenizer() -> BertTokenizer:
    return BertTokenizer(vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])})


def write_csv(path, n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    lines = ["sentence,label"]
    for _ in range(n):
        words = [WORDS[int(i)] for i in torch.randint(len(WORDS), (6,), generator=g)]
        lines.append(f"{' '.join(words)},{int(bool(POSITIVE & set(words)))}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> dict:
    """A tiny BERT saved twice (a base model without a classification head, and a classifier), its
    tokenizer saved with each, and a directory of csv files (train.csv, validation.csv)."""
    root = tmp_path_factory.mktemp("local")
    tok = bert_tokenizer()
    config = BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=2,
    )  # fmt: skip
    for name, cls in (("base", BertForMaskedLM), ("classifier", BertForSequenceClassification)):
        torch.manual_seed(0)
        cls(config).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    (root / "data").mkdir()
    write_csv(root / "data" / "train.csv", 96, 0)
    write_csv(root / "data" / "validation.csv", 24, 1)
    return {"base": root / "base", "classifier": root / "classifier", "data": root / "data"}


def test_local_classification_data_from_a_directory_or_data_files(local):
    d = local["data"]
    from_dir = load_classification(str(d), name="sst2")  # data=sst2's name: ignored for plain files
    assert set(from_dir) == {"train", "validation"} and from_dir["train"].column_names == ["text", "label"]
    assert len(from_dir["train"]) == 96 and set(from_dir["train"]["label"]) == {0, 1}
    files = {"train": str(d / "train.csv"), "validation": str(d / "validation.csv")}
    from_files = load_classification("csv", data_files=files)
    assert from_files["validation"]["text"] == from_dir["validation"]["text"]
    with pytest.raises(DataError, match=r"split 'test'.*\n?") as err:
        load_classification(str(d), splits={"train": "train", "validation": "test"})
    assert "\n" not in str(err.value)


def test_string_labels_are_one_line_naming_the_column(tmp_path):
    (tmp_path / "train.csv").write_text("sentence,label\ngood,positive\n")
    (tmp_path / "validation.csv").write_text("sentence,label\nbad,negative\n")
    with pytest.raises(DataError, match=r"data.source.label_column='label'.*integer class ids"):
        load_classification(str(tmp_path))


def test_fresh_weights_are_one_log_line_instead_of_the_load_report(local, caplog):
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    transformers_log = logging.getLogger("transformers.modeling_utils")
    transformers_log.addHandler(handler)
    try:
        AutoModelForSequenceClassification.from_pretrained(local["base"], num_labels=2)  # the wall, unfiltered
        assert any("LOAD REPORT" in r.getMessage() for r in seen)
        seen.clear()
        with caplog.at_level(logging.WARNING, logger="distill.models"):
            model = pretrained(str(local["base"]), task="classification", num_labels=2)
    finally:
        transformers_log.removeHandler(handler)
    assert isinstance(model, BertForSequenceClassification)
    assert not any("LOAD REPORT" in r.getMessage() for r in seen)
    (line,) = [r.getMessage() for r in caplog.records if r.name.startswith("distill.models")]
    assert "initialised fresh" in line and "classifier.{bias,weight}" in line and "\n" not in line


# ----------------------------------------------------------------------------- bert_sst2 on local files


def bert_sst2(local: dict, teacher: str, out, *extra: str):
    return cli(
        "experiment=bert_sst2",
        "debug=smoke",
        "logger=none",
        "train.num_threads=1",
        f"hydra.run.dir={out}",
        f"model.teacher.name_or_path={local[teacher]}",
        f"model.tokenizer.name_or_path={local[teacher]}",
        f"data.source.path={local['data']}",
        *extra,
    )


def test_bert_sst2_runs_offline_on_a_local_classifier_and_csv(local, tmp_path):
    result = bert_sst2(local, "classifier", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0 <= metrics["student/accuracy"] <= 1 and "teacher/accuracy" in metrics
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student")
    assert student.config.distill_teacher_layers == [0, 2]  # born from the teacher, every other layer
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert any("train/hidden" in h for h in history)  # DistilBERT's cosine term is on


def test_a_base_checkpoint_as_teacher_is_refused_in_one_line(local, tmp_path):
    result = bert_sst2(local, "base", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.error_lines()
    assert "initialised fresh" in line and "classifier.{bias,weight}" in line and "model.teacher.fine_tune=true" in line
    assert not (tmp_path / "metrics.json").exists()


def test_a_base_checkpoint_is_fine_tuned_first_when_asked_and_cached(local, tmp_path, caplog):
    fine_tune = (
        "model.teacher.fine_tune=true",
        "model.teacher.recipe.max_steps=6",
        "model.teacher.recipe.batch_size=16",
    )
    result = bert_sst2(local, "base", tmp_path / "first", *fine_tune)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Fine-tuning the teacher" in result.stdout and "classifier.{bias,weight}" in result.stdout
    caplog.set_level(logging.INFO, logger="distill.teacher")
    again = bert_sst2(local, "base", tmp_path / "second", *fine_tune)
    assert again.returncode == 0 and "Fine-tuning the teacher" not in again.stdout
    first = json.loads((tmp_path / "first" / "metrics.json").read_text())
    second = json.loads((tmp_path / "second" / "metrics.json").read_text())
    assert first["teacher/accuracy"] == second["teacher/accuracy"]  # the same cached teacher
