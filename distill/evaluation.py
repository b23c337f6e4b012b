"""Evaluation of one model (student or teacher) on a validation loader.

Causal LMs: token-level cross-entropy on response tokens, and, when the batches carry
``answers``, exact match of the final answer under greedy decoding (``accuracy``).
Classifiers: cross-entropy and accuracy over class logits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.data import IGNORE_INDEX
from distill.generation import GenerationSettings, generate_ids
from distill.metrics import answer_accuracy

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def model_inputs(batch: dict[str, Any], device: torch.device | str) -> dict[str, torch.Tensor]:
    """The tensors a HF model's forward takes, moved to ``device`` (labels excluded)."""
    return {k: batch[k].to(device) for k in MODEL_KEYS if k in batch}


def shifted_response_mask(labels: torch.Tensor) -> torch.Tensor:
    """(B, L) labels -> (B, L-1) mask of positions whose *next* token is a response token.

    Logits at position t predict token t+1, so ``logits[:, :-1][mask]`` pairs with
    ``labels[:, 1:][mask]``.
    """
    return labels[:, 1:] != IGNORE_INDEX


def causal_lm_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy over response tokens and how many there were."""
    mask = shifted_response_mask(labels)
    ce = F.cross_entropy(logits[:, :-1][mask].float(), labels[:, 1:][mask], reduction="sum")
    return ce, int(mask.sum())


def generate_texts(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompt_input_ids: torch.Tensor,
    prompt_attention_mask: torch.Tensor,
    max_new_tokens: int,
) -> list[str]:
    """Greedy continuations of (B, P) left-padded prompts, decoded without special tokens
    (batched, KV cache on: :func:`distill.generation.generate_ids`)."""
    ids = generate_ids(model, tokenizer, prompt_input_ids, prompt_attention_mask, GenerationSettings(max_new_tokens))
    return tokenizer.batch_decode(ids, skip_special_tokens=True)


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_new_tokens: int = 64,
    generate: bool = True,
) -> tuple[dict[str, float], list[dict[str, str]]]:
    """Metrics of ``model`` on ``loader`` and, for causal LMs, its generations.

    The task is read off the batches: 2-D labels are token labels (causal LM), 1-D labels are
    classes. Returns ``(metrics, samples)``; ``samples`` holds prompt/reference/output strings.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum, count, correct = 0.0, 0, 0
    outputs: list[str] = []
    samples: list[dict[str, str]] = []
    answers: list[str] = []
    classification = False
    for batch in loader:
        labels = batch["labels"].to(device)
        logits = model(**model_inputs(batch, device)).logits
        classification = labels.dim() == 1
        if classification:
            loss_sum += float(F.cross_entropy(logits.float(), labels, reduction="sum"))
            correct += int((logits.argmax(-1) == labels).sum())
            count += labels.numel()
            continue
        ce, n = causal_lm_loss_sum(logits, labels)
        loss_sum, count = loss_sum + float(ce), count + n
        if generate and tokenizer is not None and "prompt_input_ids" in batch:
            texts = generate_texts(model, tokenizer, batch["prompt_input_ids"], batch["prompt_attention_mask"], max_new_tokens)
            outputs += texts
            answers += batch.get("answers", [])
            samples += [
                {"prompt": p, "reference": r, "output": o} for p, r, o in zip(batch["prompts"], batch["references"], texts)
            ]
    model.train(was_training)
    metrics = {"loss": loss_sum / max(count, 1)}
    if classification:
        metrics["accuracy"] = correct / max(count, 1)
    elif answers and len(answers) == len(outputs):
        metrics["accuracy"] = answer_accuracy(outputs, answers)
    return metrics, samples
