"""``TaskData``: one preprocessing path from a ``datasets.DatasetDict`` to PyTorch loaders.

Causal LM data has columns ``prompt``, ``response`` and (optionally) ``answer``, or ``messages``
(conversations); a training example is ``prompt + response + eos`` labelled on the response (see
:mod:`distill.data.sequences`), with a chat template the rendered prompt and the assistant turn up to
its end-of-turn token (:mod:`distill.data.rendering`).
Classification data has ``text`` and ``label`` columns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from datasets import Dataset, DatasetDict, concatenate_datasets
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from distill.core.errors import ConfigError, DataError, is_number, require, require_int
from distill.core.fingerprints import dataset_fingerprint, sha256_json
from distill.data.checks import check_columns, ensure_pad_token
from distill.data.collators import CausalLMCollator, ClassificationCollator
from distill.data.rendering import end_of_turn, render, set_end_of_response, use_chat_template
from distill.data.sampler import EpochSampler
from distill.data.sequences import IGNORE_INDEX

log = logging.getLogger(__name__)
TASKS = ("causal_lm", "classification")


class TaskData:
    """Tokenized splits and their loaders. Built by the ``data`` config group.

    Args:
        source: a DatasetDict with ``train`` and ``validation`` splits and, optionally, ``test``
            (held out: used once, for the final metrics).
        tokenizer: the shared teacher/student tokenizer (a pad token is set if missing).
        task: ``causal_lm`` (columns prompt/response[/answer]) or ``classification`` (text/label).
        max_length: longer examples are truncated, with one warning that counts them; a causal example
            whose response is cut away entirely is dropped (one line counts them), and a split where
            none keeps a response token is refused, naming the longest prompt.
        batch_size, eval_batch_size: loader batch sizes.
        max_train_examples: use only the first N training examples (null: all).
        max_eval_examples: validation (and test) examples used (null: all).
        max_new_tokens: generation budget at evaluation, for causal LMs.
        num_workers: DataLoader worker processes.
        chat_template: ``auto`` (the tokenizer's chat template when it has one), ``true`` or ``false``:
            prompts rendered by the template, responses ending with its end-of-turn token
            (:mod:`distill.data.rendering`); a ``messages`` column (role/content turns) needs it.
        labelled_fraction: in (0, 1]; causal LM data only. The first ``round(f * n)`` training
            examples keep their gold response (at least one); the others are prompts only. ``train``
            (what the student learns from) is the labelled part until :meth:`fill_unlabelled` gives the
            other prompts responses (a teacher's: :func:`distill.teacher.label_unlabelled`).

    ``task_train`` is the task's whole labelled training split (what a teacher trained here learns
    from, and what keys it); ``train`` is the student's training set, the same object at
    ``labelled_fraction=1``.
    """

    def __init__(
        self,
        source: DatasetDict,
        tokenizer: PreTrainedTokenizerBase,
        task: str = "causal_lm",
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        max_train_examples: int | None = None,
        max_eval_examples: int | None = 256,
        max_new_tokens: int = 64,
        num_workers: int = 0,
        chat_template: str | bool = "auto",
        labelled_fraction: float = 1.0,
    ) -> None:
        require(task in TASKS, "data.task", task, f"must be one of {', '.join(TASKS)}")
        for key, value in [
            ("max_length", max_length),
            ("batch_size", batch_size),
            ("eval_batch_size", eval_batch_size),
            ("max_new_tokens", max_new_tokens),
        ]:
            require_int(f"data.{key}", value)
        for key, value in [("max_train_examples", max_train_examples), ("max_eval_examples", max_eval_examples)]:
            require_int(f"data.{key}", value, none_ok=True)
        f = labelled_fraction
        require(is_number(f) and 0 < f <= 1, "data.labelled_fraction", f, "must be in (0, 1]")  # type: ignore[operator]
        require(f == 1 or task == "causal_lm", "data.labelled_fraction", f, "below 1 needs causal_lm data")
        self.task, self.tokenizer = task, ensure_pad_token(tokenizer)
        self.max_length, self.max_new_tokens = max_length, max_new_tokens
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.chat = task == "causal_lm" and use_chat_template(self.tokenizer, chat_template)
        check_columns(source, ("train", "validation"), required_columns(source, task))
        if "messages" in source["train"].column_names and not self.chat:
            raise ConfigError(f"data.chat_template={chat_template!r} is invalid: a messages column needs a chat "
                              "template (the tokenizer has none, or it is switched off)")  # fmt: skip
        if self.chat:  # prompts rendered by the template; a response ends with its end-of-turn token
            source = render(source, self.tokenizer)
            set_end_of_response(self.tokenizer, end_of_turn(self.tokenizer))
        self.raw = source
        encode = self._encode_causal if task == "causal_lm" else self._encode_classification
        train = self._tokenize(_first(source["train"], max_train_examples), encode, "train")
        self.task_train = train.add_column("index", list(range(len(train))))  # the index keys the teacher cache
        self.num_labelled = max(1, round(f * len(train)))
        self.train = self.task_train if f == 1 else self.task_train.select(range(self.num_labelled))
        self.validation = self._tokenize(_first(source["validation"], max_eval_examples), encode, "validation")
        self.test = (
            self._tokenize(_first(source["test"], max_eval_examples), encode, "test") if "test" in source else None
        )
        self.collator = (
            CausalLMCollator(self.tokenizer.pad_token_id)
            if task == "causal_lm"
            else ClassificationCollator(self.tokenizer)
        )

    def _tokenize(self, split: Dataset, encode: Callable[[dict[str, list]], dict[str, list]], name: str) -> Dataset:
        out = split.map(encode, batched=True, desc=f"tokenize {name}")
        truncated = sum(out["truncated"])
        if truncated:
            log.warning(
                "%d of %d %s examples exceed data.max_length=%d tokens and were truncated",
                truncated,
                len(out),
                name,
                self.max_length,
            )
        out = out.remove_columns("truncated")
        return self._drop_empty(out, name) if "prompt_length" in out.column_names else out

    def _drop_empty(self, split: Dataset, name: str) -> Dataset:
        """Drop the examples whose response ``max_length`` cuts away entirely (one log line); refuse a split
        where none keeps a response token, naming the longest prompt."""
        lengths = split["prompt_length"]
        empty = sum(n >= self.max_length for n in lengths)
        split = split.remove_columns("prompt_length")
        if not empty:
            return split
        if empty == len(split):
            raise ConfigError(
                f"data.max_length={self.max_length} is invalid: no {name} example keeps a response token "
                f"(the longest prompt has {max(lengths)} tokens); raise data.max_length above the prompts' lengths"
            )
        log.warning("%d of %d %s examples keep no response token within data.max_length=%d and were dropped",
                    empty, len(split), name, self.max_length)  # fmt: skip
        return split.select([i for i, n in enumerate(lengths) if n < self.max_length])

    def _encode_causal(self, rows: dict[str, list]) -> dict[str, list]:
        tok = self.tokenizer
        prompts = tok(rows["prompt"], add_special_tokens=False)["input_ids"]
        responses = tok(rows["response"], add_special_tokens=False)["input_ids"]
        out: dict[str, list] = {"input_ids": [], "labels": [], "prompt_ids": [], "truncated": [], "prompt_length": []}
        for p, r in zip(prompts, responses):
            r = [*r, tok.eos_token_id]
            ids, labels = p + r, [IGNORE_INDEX] * len(p) + r
            out["truncated"].append(len(ids) > self.max_length)
            out["input_ids"].append(ids[: self.max_length])
            out["labels"].append(labels[: self.max_length])
            out["prompt_ids"].append(p[: self.max_length - 1])
            out["prompt_length"].append(len(p))
        return out

    def _encode_classification(self, rows: dict[str, list]) -> dict[str, list]:
        enc = self.tokenizer(rows["text"], truncation=False)
        out = {k: [v[: self.max_length] for v in vals] for k, vals in enc.items()}
        out["truncated"] = [len(v) > self.max_length for v in enc["input_ids"]]
        return out

    @property
    def has_unlabelled(self) -> bool:
        """Whether some training prompts have no gold response (``labelled_fraction`` < 1)."""
        return self.num_labelled < len(self.task_train)

    def unlabelled_prompts(self) -> dict[str, list[int]]:
        """The training prompts without a gold response: text -> token ids."""
        if not self.has_unlabelled:
            return {}
        rest = self.task_train.select(range(self.num_labelled, len(self.task_train)))
        return dict(zip(rest["prompt"], rest["prompt_ids"]))

    def fill_unlabelled(self, responses: dict[str, list[int]]) -> None:
        """Train the student on every training prompt: the labelled examples as they are, each other
        prompt with ``responses[prompt]`` (token ids ending with the end-of-response token when the
        writer stopped; cut at ``max_length``) as its response, whose text replaces the gold one and
        whose ``answer`` is emptied (nothing of the gold label is left in an unlabelled row)."""
        missing = self.unlabelled_prompts().keys() - responses.keys()
        if missing:
            raise DataError(f"{len(missing)} unlabelled prompts have no response, e.g. {sorted(missing)[0]!r}")
        labelled = self.task_train.select(range(self.num_labelled))
        rest = self.task_train.select(range(self.num_labelled, len(self.task_train)))
        cols, eos, unstopped = rest.to_dict(), self.tokenizer.eos_token_id, 0
        for j, (text, prompt) in enumerate(zip(cols["prompt"], cols["prompt_ids"])):
            response = list(responses[text])
            unstopped += not response or response[-1] != eos
            cols["input_ids"][j] = (prompt + response)[: self.max_length]
            cols["labels"][j] = ([IGNORE_INDEX] * len(prompt) + response)[: self.max_length]
            cols["response"][j] = self.tokenizer.decode(response, skip_special_tokens=True)
            if "answer" in cols:
                cols["answer"][j] = ""
        self.train = concatenate_datasets([labelled, Dataset.from_dict(cols, features=rest.features)])
        n = len(self.train) - self.num_labelled
        log.info("training set: %d labelled examples and %d prompts with a teacher's response", self.num_labelled, n)
        if unstopped:
            log.warning("%d of %d filled responses never reached the end-of-response token", unstopped, n)

    def fingerprint(self, split: str = "train") -> str:
        """sha256 of what a split feeds a model: task, max_length and every token and label."""
        return sha256_json(
            {"task": self.task, "max_length": self.max_length, "data": dataset_fingerprint(getattr(self, split))}
        )

    def train_loader(self, seed: int = 0, batch_size: int | None = None, split: str = "train") -> DataLoader:
        """Shuffled loader of ``split`` (``train``, or ``task_train`` for a teacher) whose sampler (an
        :class:`EpochSampler`) can be repositioned."""
        size, dataset = batch_size or self.batch_size, getattr(self, split)
        return DataLoader(
            dataset,
            batch_size=size,
            sampler=EpochSampler(len(dataset), seed=seed, batch_size=size),
            collate_fn=self.collator,
            num_workers=self.num_workers,
            drop_last=False,
        )

    def val_loader(self) -> DataLoader:
        return DataLoader(self.validation, batch_size=self.eval_batch_size, shuffle=False, collate_fn=self.collator)

    def ordered_loader(self, split: str = "train") -> DataLoader:
        """A split read once in order, in evaluation-sized batches (e.g. for one teacher pass)."""
        return DataLoader(
            getattr(self, split), batch_size=self.eval_batch_size, shuffle=False, collate_fn=self.collator
        )

    def test_loader(self) -> DataLoader | None:
        """The held-out test split, or None when the source has none."""
        if self.test is None:
            return None
        return DataLoader(self.test, batch_size=self.eval_batch_size, shuffle=False, collate_fn=self.collator)


def required_columns(source: DatasetDict, task: str) -> tuple[str, ...]:
    """The columns a split needs: prompt and response, or messages (causal LM); text and label (classifier)."""
    if task == "classification":
        return ("text", "label")
    return ("messages",) if "messages" in source["train"].column_names else ("prompt", "response")


def _first(split: Dataset, n: int | None) -> Dataset:
    return split.select(range(n)) if n is not None and len(split) > n else split
