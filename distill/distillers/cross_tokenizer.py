"""A teacher with another tokenizer (``distiller.cross_tokenizer``): ULD or the GOLD-style hybrid.

The teacher reads the student's sequences through a :class:`~distill.data.alignment.TokenizerBridge` (the same
text in its own tokens, positions paired by character offsets), runs frozen on them, and its outputs at the
paired positions become a :class:`~distill.losses.CrossTeacher` for the one loss function.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.core.errors import ConfigError, require
from distill.data.alignment import TokenizerBridge
from distill.inference.forward import frozen_forward, output_head
from distill.losses import CROSS_TOKENIZER, CrossTeacher, Hidden
from distill.models.facts import check_same_tokenizer, output_width

KEY = "distiller.cross_tokenizer"


def check_cross_tokenizer(mode: str | None) -> None:
    require(mode is None or mode in CROSS_TOKENIZER, KEY, mode, f"must be null or one of {', '.join(CROSS_TOKENIZER)}")


def check_cross_options(options: Mapping[str, Any]) -> None:
    """What ``cross_tokenizer`` cannot be combined with, one line each (start-up checks and constructors)."""
    mode = options.get("cross_tokenizer")
    check_cross_tokenizer(mode)
    if mode is None:
        return
    refusals = [
        ("teacher_cache", None, "a teacher-logit cache keeps the teacher's ids at the student's positions, which "
         "another tokenizer does not have: set distiller.teacher_cache=null"),
        ("divergence", "forward_kl", "the cross-tokenizer losses are ULD and the hybrid's forward KL: leave "
         "distiller.divergence=forward_kl"),
        ("hidden_weight", 0, "hidden-state terms pair the two models position by position: set them to 0"),
        ("attention_weight", 0, "attention terms pair the two models position by position: set them to 0"),
        ("objective", "gkd", "reverse_kl_reward scores the student's tokens with the teacher's probabilities of "
         "the same ids: use objective=gkd"),
    ]  # fmt: skip
    for key, allowed, why in refusals:
        value = options.get(key)
        if value is not None and value != allowed:
            raise ConfigError(f"{KEY}={mode} with distiller.{key}={value!r} is not supported: {why}")


def bridge_for(
    mode: str | None,
    tokenizer: PreTrainedTokenizerBase | None,
    teacher_tokenizer: PreTrainedTokenizerBase | TokenizerBridge | None,
) -> TokenizerBridge | None:
    """The bridge a distiller reads the teacher through (None without ``cross_tokenizer``): the runner's (it knows
    how the data renders prompts for each model), or one built from the teacher's tokenizer. Without
    ``cross_tokenizer``, a teacher tokenizer that differs from the student's is refused in one line naming it."""
    if mode is None:
        other = teacher_tokenizer.teacher_tok if isinstance(teacher_tokenizer, TokenizerBridge) else teacher_tokenizer
        if other is not None and tokenizer is not None:
            check_same_tokenizer(tokenizer, other)
        return None
    if isinstance(teacher_tokenizer, TokenizerBridge):
        return teacher_tokenizer
    if tokenizer is None or teacher_tokenizer is None:
        raise ConfigError(f"{KEY}={mode} needs both tokenizers: the student's (tokenizer=...) and the teacher's "
                          "(model.teacher_tokenizer, or teacher_tokenizer=... in Python)")  # fmt: skip
    teacher_chat = bool(getattr(teacher_tokenizer, "chat_template", None))
    return TokenizerBridge(tokenizer, teacher_tokenizer, teacher_chat=teacher_chat)


def placeholder(teacher: nn.Module, n: int, chunked: bool, device: torch.device) -> torch.Tensor | Hidden:
    """Zeros in the form the loss takes the teacher's outputs (Hidden when chunked and the head allows), for n
    positions none of which pairs (never read)."""
    head = output_head(teacher) if chunked else None
    if head is not None:
        return Hidden(torch.zeros(n, head.weight.shape[1], device=device), head)
    return torch.zeros(n, output_width(teacher), device=device)


@torch.no_grad()
def cross_teacher(
    teacher: nn.Module, bridge: TokenizerBridge, mode: str, sequences: Mapping[str, torch.Tensor],
    targets: torch.Tensor, chunked: bool,
) -> tuple[CrossTeacher, dict[str, float]]:  # fmt: skip
    """The teacher's outputs at the student's N response positions (``targets``, (N,), the student's), read
    through ``bridge``, as a :class:`CrossTeacher` for ``mode`` (``uld`` or ``gold``), and the logged shares:
    ``aligned`` (positions with a teacher partner) and, for ``gold``, ``matched`` (positions of the same token)."""
    pairing = bridge.pair(sequences)
    device = targets.device
    batch = {k: v.to(device) for k, v in pairing.teacher_batch.items()}
    partner = pairing.partner.to(device)
    if not bool((partner >= 0).any()):  # nothing pairs (no response, or all cut away): the teacher is not run
        return CrossTeacher(placeholder(teacher, len(targets), chunked, device), partner >= 0), {"aligned": 0.0}
    out = frozen_forward(teacher, batch, "causal_lm", chunked=chunked)
    aligned, rows = partner >= 0, partner.clamp_min(0)
    teacher_targets = out.targets[rows]
    values = out.outputs.states if isinstance(out.outputs, Hidden) else out.outputs  # (N_t, H_t) or (N_t, V_t)
    outputs = Hidden(values[rows], out.outputs.head) if isinstance(out.outputs, Hidden) else values[rows]
    logged = {"aligned": float(aligned.float().mean()) if len(aligned) else 0.0}
    if mode == "uld":
        return CrossTeacher(outputs, aligned), logged
    shared = tuple(ids.to(device) for ids in bridge.shared())
    table = bridge.teacher_of().to(device)  # a sampled id past the tokenizer (a padded head's rows) is in no pair
    inside = targets < len(table)
    same_token = inside & (table[targets.clamp_max(len(table) - 1)] == teacher_targets)  # the ids are a shared pair
    matched = aligned & pairing.same.to(device) & same_token
    logged["matched"] = float(matched.float().mean()) if len(matched) else 0.0
    return CrossTeacher(outputs, aligned, matched, shared), logged
