"""What the chunked loss works from: an output layer (:class:`Head`) and the last hidden states of the
positions that count with the layer that turns them into logits (:class:`Hidden`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Head:
    """An output layer: logits = hidden @ weight.T (+ bias). weight (V, H), bias (V,) or None."""

    weight: Tensor
    bias: Tensor | None = None

    def logits(self, hidden: Tensor, columns: int) -> Tensor:
        """(C, columns) float32 logits of the first ``columns`` vocabulary entries; hidden (C, H)."""
        bias = None if self.bias is None else self.bias[:columns]
        return F.linear(hidden, self.weight[:columns], bias).float()


@dataclass(frozen=True)
class Hidden:
    """The last hidden states (N, H) of the positions that count, and the output layer (V, H)."""

    states: Tensor
    head: Head

    def logits(self) -> Tensor:
        """The materialised (N, V) logits."""
        return F.linear(self.states, self.head.weight, self.head.bias)
