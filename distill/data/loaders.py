"""One preprocessing path from a ``datasets.DatasetDict`` to PyTorch loaders.

Causal LM data has columns ``prompt``, ``response`` and (optionally) ``answer``. A training
example is ``prompt + response + eos``; its ``labels`` are -100 on the prompt and padding and
the token ids on the response, EOS included, so EOS is learnt even when pad == eos.
Classification data has ``text`` and ``label`` columns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch
from datasets import DatasetDict
from torch.utils.data import DataLoader, Sampler
from transformers import PreTrainedTokenizerBase

from distill.errors import DataError

log = logging.getLogger(__name__)
IGNORE_INDEX = -100


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Give a tokenizer without a pad token one: its EOS token (labels keep EOS; see module doc)."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise DataError("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token")
        log.warning("tokenizer has no pad token; using its eos token %r for padding", tokenizer.eos_token)
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_columns(source: DatasetDict, splits: tuple[str, ...], columns: tuple[str, ...]) -> None:
    """Fail with one line if a split is missing or empty, or lacks one of ``columns``."""
    for split in splits:
        if split not in source:
            raise DataError(f"dataset has no {split!r} split (has: {', '.join(source)})")
        if len(source[split]) == 0:
            raise DataError(f"dataset split {split!r} is empty")
        missing = [c for c in columns if c not in source[split].column_names]
        if missing:
            raise DataError(
                f"dataset split {split!r} lacks column(s) {', '.join(missing)} "
                f"(has: {', '.join(source[split].column_names)})"
            )


class EpochSampler(Sampler[int]):
    """Shuffles with a generator seeded by (seed, epoch) and can start mid-epoch.

    The order of epoch e is a pure function of (seed, e), so a resumed run sees exactly the
    batches the interrupted one would have seen: set ``epoch`` and ``start`` (in samples).
    """

    def __init__(self, n: int, seed: int = 0, shuffle: bool = True) -> None:
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        return iter(order[self.start :])

    def __len__(self) -> int:
        return self.n - self.start


def _pad(seqs: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    rows = [([value] * (width - len(s)) + s) if left else (s + [value] * (width - len(s))) for s in seqs]
    return torch.tensor(rows, dtype=torch.long)


class CausalLMCollator:
    """Right-padded ``input_ids``/``attention_mask``/``labels`` for training and loss, plus, for
    evaluation, left-padded ``prompt_input_ids``/``prompt_attention_mask`` (for batched
    generation) and the raw ``prompts``, ``references`` and ``answers`` strings."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad = pad_token_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        ids = [r["input_ids"] for r in rows]
        batch: dict[str, Any] = {
            "input_ids": _pad(ids, self.pad),
            "attention_mask": _pad([[1] * len(s) for s in ids], 0),
            "labels": _pad([r["labels"] for r in rows], IGNORE_INDEX),
            "prompt_input_ids": _pad([r["prompt_ids"] for r in rows], self.pad, left=True),
            "prompt_attention_mask": _pad([[1] * len(r["prompt_ids"]) for r in rows], 0, left=True),
            "prompts": [r["prompt"] for r in rows],
            "references": [r["response"] for r in rows],
        }
        if "answer" in rows[0]:
            batch["answers"] = [r["answer"] for r in rows]
        return batch


class ClassificationCollator:
    """Right-padded ``input_ids``/``attention_mask`` (and ``token_type_ids``) with class ``labels``."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        features = [{k: r[k] for k in r if k in ("input_ids", "attention_mask", "token_type_ids")} for r in rows]
        batch = dict(self.tokenizer.pad(features, return_tensors="pt"))
        batch["labels"] = torch.tensor([r["label"] for r in rows], dtype=torch.long)
        return batch


class TaskData:
    """Tokenized splits and their loaders. Built by the ``data`` config group.

    Args:
        source: a DatasetDict with ``train`` and ``validation`` splits (``test`` optional).
        tokenizer: the shared teacher/student tokenizer (a pad token is set if missing).
        task: ``causal_lm`` (columns prompt/response[/answer]) or ``classification`` (text/label).
        max_length: longer examples are truncated, with one warning that counts them.
        batch_size, eval_batch_size: loader batch sizes.
        max_eval_examples: validation examples used (generation-based metrics cost time).
        max_new_tokens: generation budget at evaluation, for causal LMs.
    """

    def __init__(
        self,
        source: DatasetDict,
        tokenizer: PreTrainedTokenizerBase,
        task: str = "causal_lm",
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int = 64,
        max_eval_examples: int | None = 256,
        max_new_tokens: int = 64,
        num_workers: int = 0,
    ) -> None:
        if task not in ("causal_lm", "classification"):
            raise DataError(f"data.task must be causal_lm or classification; got {task!r}")
        self.task, self.tokenizer = task, ensure_pad_token(tokenizer)
        self.max_length, self.max_new_tokens = max_length, max_new_tokens
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        columns = ("prompt", "response") if task == "causal_lm" else ("text", "label")
        check_columns(source, ("train", "validation"), columns)
        self.raw = source
        validation = source["validation"]
        if max_eval_examples is not None and len(validation) > max_eval_examples:
            validation = validation.select(range(max_eval_examples))
        encode = self._encode_causal if task == "causal_lm" else self._encode_classification
        self.train = self._tokenize(source["train"], encode, "train")
        self.validation = self._tokenize(validation, encode, "validation")
        self.collator = (
            CausalLMCollator(self.tokenizer.pad_token_id) if task == "causal_lm" else ClassificationCollator(self.tokenizer)
        )

    def _tokenize(self, split, encode, name: str):
        out = split.map(encode, batched=True, desc=f"tokenize {name}")
        truncated = sum(out["truncated"])
        if truncated:
            log.warning(
                "%d of %d %s examples exceed data.max_length=%d tokens and were truncated",
                truncated, len(out), name, self.max_length,
            )
        return out.remove_columns("truncated")

    def _encode_causal(self, rows: dict[str, list]) -> dict[str, list]:
        tok = self.tokenizer
        prompts = tok(rows["prompt"], add_special_tokens=False)["input_ids"]
        responses = tok(rows["response"], add_special_tokens=False)["input_ids"]
        out: dict[str, list] = {"input_ids": [], "labels": [], "prompt_ids": [], "truncated": []}
        for p, r in zip(prompts, responses):
            r = r + [tok.eos_token_id]
            ids, labels = p + r, [IGNORE_INDEX] * len(p) + r
            out["truncated"].append(len(ids) > self.max_length)
            out["input_ids"].append(ids[: self.max_length])
            out["labels"].append(labels[: self.max_length])
            out["prompt_ids"].append(p[: self.max_length - 1])
        return out

    def _encode_classification(self, rows: dict[str, list]) -> dict[str, list]:
        enc = self.tokenizer(rows["text"], truncation=False)
        out = {k: [v[: self.max_length] for v in vals] for k, vals in enc.items()}
        out["truncated"] = [len(v) > self.max_length for v in enc["input_ids"]]
        return out

    def train_loader(self, seed: int = 0) -> DataLoader:
        """Shuffled training loader whose sampler (an :class:`EpochSampler`) can be repositioned."""
        sampler = EpochSampler(len(self.train), seed=seed, shuffle=True)
        return DataLoader(
            self.train, batch_size=self.batch_size, sampler=sampler, collate_fn=self.collator,
            num_workers=self.num_workers, drop_last=False,
        )

    def val_loader(self) -> DataLoader:
        return DataLoader(self.validation, batch_size=self.eval_batch_size, shuffle=False, collate_fn=self.collator)
