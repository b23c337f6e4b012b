"""Token sequences: padding, prompt + completion batches, and the positions a loss is taken on.

Conventions. A training sequence is right-padded ``prompt + response`` with ``labels`` equal to
the token ids on the response (its EOS included) and ``IGNORE_INDEX`` on the prompt and the
padding, so EOS is learnt even when pad == eos. Prompts for batched generation are left-padded.
A *completion* is what a model generated after its prompt, cut after its first EOS (kept).
"""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE_INDEX = -100


def pad(seqs: list[list[int]], value: int, left: bool = False) -> Tensor:
    """Token lists -> (B, max_len) long tensor, padded with ``value`` on the right (or left)."""
    width = max(len(s) for s in seqs)
    rows = [([value] * (width - len(s)) + s) if left else (s + [value] * (width - len(s))) for s in seqs]
    return torch.tensor(rows, dtype=torch.long)


def left_pad(seqs: list[list[int]], pad_token_id: int) -> tuple[Tensor, Tensor]:
    """Token lists -> left-padded ``(input_ids, attention_mask)``, both (B, max_len)."""
    return pad(seqs, pad_token_id, left=True), pad([[1] * len(s) for s in seqs], 0, left=True)


def unpad(input_ids: Tensor, attention_mask: Tensor) -> list[list[int]]:
    """(B, L) padded ids and mask -> the B token lists where the mask is 1."""
    return [row[m.bool()].tolist() for row, m in zip(input_ids.cpu(), attention_mask.cpu())]


def completion_mask(completion_ids: Tensor, eos_token_id: int | None) -> Tensor:
    """(B, T) generated ids -> (B, T) bool, true up to and including each row's first EOS.

    Found by position, not by ``!= pad``, so it is right when pad == eos.
    """
    if eos_token_id is None:
        return torch.ones_like(completion_ids, dtype=torch.bool)
    is_eos = (completion_ids == eos_token_id).long()
    return (is_eos.cumsum(-1) - is_eos) == 0  # no EOS strictly before the position


def truncate_at_eos(completion_ids: Tensor, eos_token_id: int | None) -> list[list[int]]:
    """(B, T) generated ids -> B completions, each cut after its first EOS (EOS kept)."""
    mask = completion_mask(completion_ids, eos_token_id)
    return [row[m].tolist() for row, m in zip(completion_ids.cpu(), mask.cpu())]


def sequence_batch(prompts: list[list[int]], completions: list[list[int]], pad_token_id: int) -> dict[str, Tensor]:
    """Right-padded ``prompt + completion`` training sequences.

    Returns ``input_ids``, ``attention_mask`` and ``labels``, each (B, L) with
    L = max(len(prompt) + len(completion)); ``labels`` is -100 on the prompt and the padding.
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
    full = [p + c for p, c in zip(prompts, completions)]
    labels = [[IGNORE_INDEX] * len(p) + c for p, c in zip(prompts, completions)]
    return {
        "input_ids": pad(full, pad_token_id),
        "attention_mask": pad([[1] * len(s) for s in full], 0),
        "labels": pad(labels, IGNORE_INDEX),
    }


def response_of(labels: list[int]) -> tuple[int | None, list[int]]:
    """One row's labels -> (where its response starts, None when it has none; the response tokens)."""
    where = [k for k, label in enumerate(labels) if label != IGNORE_INDEX]
    return (where[0] if where else None), [labels[k] for k in where]


def response_mask(labels: Tensor) -> Tensor:
    """(B, L) labels -> (B, L - 1) bool: position t counts when token t + 1 is a response token."""
    return labels[:, 1:] != IGNORE_INDEX


def at_response_positions(labels: Tensor, *per_position: Tensor) -> tuple[Tensor, ...]:
    """The shift and the response mask, in one place.

    Position t of a causal LM predicts token t + 1, so the positions that count are those whose
    next token is a response token, and the last position predicts nothing: the model runs on
    the sequence without its last token (:func:`without_last_token`). ``labels`` (B, L) and each
    tensor of ``per_position`` (B, L - 1, ...), the model's outputs on that -> ``(targets,
    *selected)``: targets (N,) and each tensor's (N, ...) rows, in row-major order, N = the number
    of response tokens.
    """
    mask = response_mask(labels)
    return labels[:, 1:][mask], *(x[mask] for x in per_position)


def without_last_token(x: Tensor) -> Tensor:
    """A causal LM's (B, L) input (ids, attention mask) cut to (B, L - 1): the last position predicts
    nothing, and, the model being causal, the outputs at the others do not depend on it."""
    return x[:, :-1]
