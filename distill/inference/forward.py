"""Forward passes reduced to the positions that count, for students and frozen teachers.

Causal LM: the model runs on the sequences without their last token (that position predicts nothing),
and is reduced to the N response positions of the batch (the shift and the response mask of
:func:`~distill.data.sequences.at_response_positions`) and the N tokens they predict; with
``chunked``, the model runs without its full-vocabulary head (``logits_to_keep=1``) and the
positions come as :class:`~distill.losses.Hidden` (last hidden states + the head), for the
memory-bounded loss. Classifier: one position per example, its class logits and its label.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from distill.core import ranks
from distill.data.collators import MODEL_KEYS
from distill.data.sequences import at_response_positions, without_last_token
from distill.losses import Head, Hidden
from distill.models.facts import base_of, output_layer, unwrap


@dataclass
class Forward:
    """One model's outputs on a batch: ``targets`` (N,), ``outputs`` (logits (N, V) or Hidden), and,
    when asked for, every layer's hidden states and attentions as the model returns them."""

    targets: Tensor
    outputs: Tensor | Hidden
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


def model_inputs(batch: dict[str, Any], device: torch.device | str) -> dict[str, Tensor]:
    """The tensors a HF model's forward takes, moved to ``device`` (labels excluded)."""
    return {k: batch[k].to(device) for k in MODEL_KEYS if k in batch}


def output_head(model: nn.Module) -> Head | None:
    """The output layer as a :class:`Head`, or None when the logits are not a plain linear map of the
    last hidden state (soft-capped or scaled logits, as in Gemma 2 or Cohere), there is no LM head, or
    the model is sharded (FSDP2 gathers the head's weight inside its own forward only: the logits are
    then materialised per micro-batch)."""
    model = unwrap(model)
    layer = output_layer(model)
    config = getattr(model, "config", None)
    capped = getattr(config, "final_logit_softcapping", None) is not None
    scaled = getattr(config, "logit_scale", None) not in (None, 1, 1.0)
    if not isinstance(layer, nn.Linear) or capped or scaled or ranks.is_sharded(model):
        return None
    return Head(layer.weight, layer.bias)


@functools.cache
def _takes(model_type: type, keyword: str) -> bool:
    """Whether ``model_type.forward`` has the keyword argument ``keyword``."""
    return keyword in inspect.signature(model_type.forward).parameters


def forward(
    model: nn.Module,
    batch: dict[str, Any],
    task: str,
    chunked: bool = False,
    hidden_states: bool = False,
    attentions: bool = False,
) -> Forward:
    """``model`` on ``batch``, reduced to the positions that count (see the module docstring). Hidden states
    and attentions, when asked for, are a causal LM's on the sequences without their last token."""
    core = unwrap(model)
    device = next(core.parameters()).device
    inputs = model_inputs(batch, device)
    if task == "causal_lm":
        inputs = {k: without_last_token(v) for k, v in inputs.items()}
    labels = batch["labels"].to(device)
    head = output_head(core) if chunked and task == "causal_lm" else None
    options: dict[str, Any] = {"output_hidden_states": hidden_states or head is not None}
    if attentions:
        options["output_attentions"] = True
    signature = type(base_of(core))  # a peft model passes these on to the model it adapts
    if head is not None and _takes(signature, "logits_to_keep"):
        options["logits_to_keep"] = 1  # the head runs on the last position only; the loss applies it per chunk
    if _takes(signature, "use_cache"):
        options["use_cache"] = False  # one pass over whole sequences: a KV cache would only be built and dropped
    out = model(**inputs, **options)
    states = out.hidden_states if hidden_states else None
    if task == "classification":
        return Forward(labels, out.logits, states, out.attentions if attentions else None)
    if head is not None:
        targets, last = at_response_positions(labels, out.hidden_states[-1])
        return Forward(targets, Hidden(last, head), states, out.attentions if attentions else None)
    targets, logits = at_response_positions(labels, out.logits)
    return Forward(targets, logits, states, out.attentions if attentions else None)


@torch.no_grad()
def frozen_forward(teacher: nn.Module, batch: dict[str, Any], task: str, **options: bool) -> Forward:
    """The teacher's :func:`forward` in eval mode, without gradients.

    ``no_grad`` rather than ``inference_mode``: the outputs feed a loss that is backpropagated.
    """
    if teacher.training:  # .eval() walks every submodule: only when something put it back in train mode
        teacher.eval()
    out = forward(teacher, batch, task, **options)
    if ranks.is_sharded(teacher):  # FSDP2 leaves the root gathered after a forward without backward
        teacher.reshard()
    return out
