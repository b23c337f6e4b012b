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

from distill.forward import forward
from distill.generation import GenerationSettings, generate_ids
from distill.losses import Objective, objective_loss
from distill.metrics import answer_accuracy

CROSS_ENTROPY = Objective(ce_weight=1.0)


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
    chunk_size: int | None = None,
) -> tuple[dict[str, float], list[dict[str, str]]]:
    """Metrics of ``model`` on ``loader`` and, for causal LMs, its generations.

    Returns ``(metrics, samples)``: ``loss`` (mean cross-entropy per response token or
    example), ``accuracy`` (classes, or final answers when the batches carry ``answers``), and
    prompt/reference/output strings for causal LMs. With ``chunk_size`` the loss goes through
    the memory-bounded path (no N x V logits), as in training.
    """
    was_training = model.training
    model.eval()
    loss_sum, count, correct = 0.0, 0, 0
    outputs: list[str] = []
    samples: list[dict[str, str]] = []
    answers: list[str] = []
    for batch in loader:
        out = forward(model, batch, task, chunked=bool(chunk_size))
        parts = objective_loss(out.outputs, None, out.targets, CROSS_ENTROPY, reduction="sum", chunk_size=chunk_size)
        loss_sum += float(parts["ce"])
        count += out.targets.numel()
        if task == "classification":
            correct += int((out.outputs.argmax(-1) == out.targets).sum())
            continue
        if generate and tokenizer is not None and "prompt_input_ids" in batch:
            texts = generate_texts(
                model, tokenizer, batch["prompt_input_ids"], batch["prompt_attention_mask"], max_new_tokens
            )
            outputs += texts
            answers += batch.get("answers", [])
            samples += [
                {"prompt": p, "reference": r, "output": o}
                for p, r, o in zip(batch["prompts"], batch["references"], texts)
            ]
    model.train(was_training)
    metrics = {"loss": loss_sum / max(count, 1)}
    if task == "classification":
        metrics["accuracy"] = correct / max(count, 1)
    elif answers and len(answers) == len(outputs):
        metrics["accuracy"] = answer_accuracy(outputs, answers)
    return metrics, samples
