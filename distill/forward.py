"""Forward passes reduced to the positions that count, for students and frozen teachers.

Causal LM: the logits of the N response positions of a batch (the shift and the response mask
of :func:`~distill.data.sequences.at_response_positions`) and the N tokens they predict.
Classifier: one position per example, its class logits and its label.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from distill.data.collators import MODEL_KEYS
from distill.data.sequences import at_response_positions


def model_inputs(batch: dict[str, Any], device: torch.device | str) -> dict[str, Tensor]:
    """The tensors a HF model's forward takes, moved to ``device`` (labels excluded)."""
    return {k: batch[k].to(device) for k in MODEL_KEYS if k in batch}


def outputs_at_targets(model: nn.Module, batch: dict[str, Any], task: str) -> tuple[Tensor, Tensor]:
    """``(targets (N,), logits (N, V))`` of ``model`` on the positions of ``batch`` that count."""
    device = next(model.parameters()).device
    logits = model(**model_inputs(batch, device)).logits
    labels = batch["labels"].to(device)
    if task == "classification":
        return labels, logits
    targets, logits = at_response_positions(labels, logits)
    return targets, logits


@torch.no_grad()
def frozen_outputs(teacher: nn.Module, batch: dict[str, Any], task: str) -> Tensor:
    """The teacher's logits (N, V) on the positions that count: eval mode, no gradients.

    ``no_grad`` rather than ``inference_mode``: the result feeds a loss that is backpropagated.
    """
    teacher.eval()
    return outputs_at_targets(teacher, batch, task)[1]
