"""Evaluation of one model (student or teacher) on a loader.

Causal LMs: token-level cross-entropy on response tokens, and, when the batches carry
``answers``, exact match of the final answer under greedy decoding (``accuracy``).
Classifiers: cross-entropy and accuracy over class logits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.core import ranks
from distill.inference.forward import forward
from distill.inference.generation import GenerationSettings, generate_ids
from distill.inference.text_metrics import answer_accuracy
from distill.losses import CROSS_ENTROPY, objective_loss
from distill.models.facts import unwrap


def generate_texts(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompt_input_ids: torch.Tensor,
    prompt_attention_mask: torch.Tensor,
    max_new_tokens: int,
) -> list[str]:
    """Greedy continuations of (B, P) left-padded prompts, decoded without special tokens."""
    ids = generate_ids(model, tokenizer, prompt_input_ids, prompt_attention_mask, GenerationSettings(max_new_tokens))
    return tokenizer.batch_decode(ids, skip_special_tokens=True)


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_new_tokens: int = 64,
    task: str = "causal_lm",
    generate: bool = True,
    chunk_size: int | str | None = None,
    shard: bool = True,
) -> tuple[dict[str, float], list[dict[str, str]]]:
    """Metrics of ``model`` on ``loader`` and, for causal LMs, its generations.

    Returns ``(metrics, samples)``: ``loss`` (mean cross-entropy per response token or
    example), ``accuracy`` (classes, or final answers when the batches carry ``answers``), and
    prompt/reference/output strings for causal LMs. With ``chunk_size`` the loss goes through
    the memory-bounded path (no N x V logits), as in training. Under torchrun (``shard``) each
    rank evaluates every ``world``-th batch and the results are gathered in batch order, so every
    rank returns what one process would.
    """
    model = unwrap(model)  # DDP: the replica itself (its wrapper would sync buffers)
    shard = shard and not ranks.is_sharded(model)  # FSDP2: every rank must run every forward
    was_training = model.training
    model.eval()
    results = [_evaluate_batch(model, batch, tokenizer, max_new_tokens, task, generate, chunk_size) | {"index": i}
               for i, batch in enumerate(loader) if not shard or i % ranks.world() == ranks.rank()]  # fmt: skip
    model.train(was_training)
    if ranks.is_sharded(model):  # FSDP2 leaves the root gathered after a forward without backward
        model.reshard()
    if shard and ranks.world() > 1:
        results = sorted((r for part in ranks.gather_objects(results) for r in part), key=lambda r: r["index"])
    return _combine(results, task)


def _evaluate_batch(
    model: nn.Module, batch: dict[str, Any], tokenizer: Any, max_new_tokens: int, task: str, generate: bool,
    chunk_size: int | str | None,
) -> dict[str, Any]:  # fmt: skip
    """Summed loss, count and correct answers of one batch, and its generations (causal LMs)."""
    out = forward(model, batch, task, chunked=bool(chunk_size))
    parts = objective_loss(out.outputs, None, out.targets, CROSS_ENTROPY, reduction="sum", chunk_size=chunk_size)
    result: dict[str, Any] = {"loss_sum": float(parts["ce"]), "count": out.targets.numel(), "outputs": [],
                              "answers": [], "samples": []}  # fmt: skip
    if task == "classification":
        result["correct"] = int((out.outputs.argmax(-1) == out.targets).sum())
    elif generate and tokenizer is not None and "prompt_input_ids" in batch:
        texts = generate_texts(
            model, tokenizer, batch["prompt_input_ids"], batch["prompt_attention_mask"], max_new_tokens
        )
        result["outputs"], result["answers"] = texts, list(batch.get("answers", []))
        result["samples"] = [
            {"prompt": p, "reference": r, "output": o} for p, r, o in zip(batch["prompts"], batch["references"], texts)
        ]
    return result


def _combine(results: list[dict[str, Any]], task: str) -> tuple[dict[str, float], list[dict[str, str]]]:
    loss_sum, count = 0.0, 0
    for r in results:
        loss_sum, count = loss_sum + r["loss_sum"], count + r["count"]
    metrics = {"loss": loss_sum / max(count, 1)}
    outputs = [o for r in results for o in r["outputs"]]
    answers = [a for r in results for a in r["answers"]]
    if task == "classification":
        metrics["accuracy"] = sum(r["correct"] for r in results) / max(count, 1)
    elif answers and len(answers) == len(outputs):
        metrics["accuracy"] = answer_accuracy(outputs, answers)
    return metrics, [s for r in results for s in r["samples"]]
