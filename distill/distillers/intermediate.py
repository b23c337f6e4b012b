"""Intermediate-layer terms (TinyBERT, DistilBERT, MiniLM): the student's hidden states and attention
maps matched to the teacher's over a layer map, added to the logit objective:

    loss = alpha * kd + (1 - alpha) * ce + hidden_weight * hidden + attention_weight * attention

on real tokens (classifiers) or on the logit loss's positions (causal LMs: position t, whose next
token is a response token). Learned projections (one Linear per layer pair when widths differ)
train with the student, live in the distiller's checkpoints, and are not part of the exported
student. The models are asked for their hidden states once per step; only mapped layers are kept.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from distill.core.errors import is_int, is_number, require
from distill.data.sequences import response_mask, without_last_token
from distill.inference.forward import Forward
from distill.losses.layer_terms import (
    ATTENTION_KINDS,
    HIDDEN_KINDS,
    HiddenProjections,
    attention_loss,
    default_layer_map,
    hidden_state_loss,
    mapped_states,
    require_attention_weights,
)
from distill.models.facts import num_layers


def token_masks(batch: dict[str, Any], task: str, device: torch.device) -> tuple[Tensor, Tensor | None]:
    """``(rows, keys)``, both (B, L') bool over the positions the models ran on (a causal LM's sequences
    without their last token, see :func:`distill.inference.forward.forward`): ``rows`` the positions the terms
    count (real tokens, or positions whose next token is a response), ``keys`` the real tokens (the
    attention mask; attention rows are distributions over them), or None without a mask."""
    keys = batch.get("attention_mask")
    keys = keys.bool().to(device) if keys is not None else None
    if task == "classification":
        return batch["attention_mask"].bool().to(device), keys
    return response_mask(batch["labels"]).to(device), None if keys is None else without_last_token(keys)


def check_layer_options(
    hidden_weight: float, hidden_loss: str, attention_weight: float, attention_loss: str, layer_map: Any
) -> None:
    """The terms' options, checked without models (one line per bad value)."""
    for key, value in (("hidden_weight", hidden_weight), ("attention_weight", attention_weight)):
        require(is_number(value) and value >= 0, f"distiller.{key}", value, "must be >= 0")
    require(hidden_loss in HIDDEN_KINDS, "distiller.hidden_loss", hidden_loss, f"must be one of {HIDDEN_KINDS}")
    require(attention_loss in ATTENTION_KINDS, "distiller.attention_loss", attention_loss,
            f"must be one of {ATTENTION_KINDS}")  # fmt: skip
    pairs = layer_map if isinstance(layer_map, (list, tuple)) else None
    ok = layer_map is None or (
        pairs is not None
        and all(isinstance(p, (list, tuple)) and len(p) == 2 and all(is_int(i) and i >= 0 for i in p) for p in pairs)
    )
    require(ok, "distiller.layer_map", layer_map,
            "must be null or a list of [student layer, teacher layer] pairs of hidden-state indices, "
            "e.g. [[1, 2], [2, 4]] (0 is the embeddings)")  # fmt: skip


class IntermediateTerms(nn.Module):
    """``hidden`` and ``attention`` losses between mapped layers of a student and its teacher.

    ``layer_map``: ``[[student layer, teacher layer], ...]`` as indices into the models' hidden-state
    tuples (0 = embeddings, k = layer k; attention maps use layer k's); null spreads the student's
    layers evenly over the teacher's, last onto last.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        hidden_weight: float,
        hidden_loss: str,
        attention_weight: float,
        attention_loss: str,
        layer_map: list[list[int]] | None,
    ) -> None:
        super().__init__()
        check_layer_options(hidden_weight, hidden_loss, attention_weight, attention_loss, layer_map)
        pairs = (
            [tuple(p) for p in layer_map] if layer_map else default_layer_map(num_layers(student), num_layers(teacher))
        )
        self.layer_map = pairs
        self.weights = {"hidden": hidden_weight, "attention": attention_weight}
        self.kinds = {"hidden": hidden_loss, "attention": attention_loss}
        self.projections = HiddenProjections.between(student, teacher, len(pairs)) if hidden_weight > 0 else None
        if attention_weight > 0:
            require(all(i > 0 and j > 0 for i, j in pairs), "distiller.layer_map", layer_map,
                    "attention maps exist for layers 1.. only (0 is the embeddings)")  # fmt: skip
            require_attention_weights(student)
            require_attention_weights(teacher)

    @property
    def request(self) -> dict[str, bool]:
        """What the forward passes must return."""
        return {"hidden_states": self.weights["hidden"] > 0, "attentions": self.weights["attention"] > 0}

    def forward(
        self, student: Forward, teacher: Forward, mask: Tensor, keys: Tensor | None = None
    ) -> dict[str, Tensor]:
        """``{"hidden", "attention"}`` for the terms whose weight is positive: over the positions of
        ``mask`` (B, L); attention rows over the keys of ``keys`` (B, L; the attention mask)."""
        terms: dict[str, Tensor] = {}
        if self.weights["hidden"] > 0:
            s, t = mapped_states(student.hidden_states, teacher.hidden_states, self.layer_map)
            terms["hidden"] = hidden_state_loss(s, t, mask, self.kinds["hidden"], self.projections)
        if self.weights["attention"] > 0:
            pairs = [(i - 1, j - 1) for i, j in self.layer_map]
            s, t = mapped_states(student.attentions, teacher.attentions, pairs)
            terms["attention"] = attention_loss(s, t, mask, self.kinds["attention"], keys)
        return terms

    def weighted(self, terms: dict[str, Tensor]) -> Tensor:
        return sum(self.weights[name] * value for name, value in terms.items())  # type: ignore[return-value]
