"""Where training sequences come from besides the dataset: the teacher's generated completions
(sequence-level KD) and the student's own samples (on-policy KD).

Both return right-padded ``input_ids``/``attention_mask``/``labels`` with the prompt labelled
-100 and each completion's first EOS kept (also when pad == eos).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.core.errors import ConfigError
from distill.data.sequences import sequence_batch, truncate_at_eos, unpad
from distill.inference.generation import (
    Completions,
    GenerationSettings,
    collect_prompts,
    generate_ids,
)
from distill.teacher.generations import TeacherGenerations

log = logging.getLogger(__name__)
Batch = dict[str, object]


def require_tokenizer(distiller: str, tokenizer: PreTrainedTokenizerBase | None) -> PreTrainedTokenizerBase:
    if tokenizer is None:
        raise ConfigError(f"{distiller} needs a tokenizer (pass tokenizer=...): it generates and decodes text")
    if tokenizer.pad_token_id is None:
        raise ConfigError(
            f"{distiller}: the tokenizer has no pad token; set tokenizer.pad_token (e.g. to its eos token)"
        )
    return tokenizer


class TeacherCompletions:
    """Training sequences: each prompt followed by the teacher's completions (``num_samples`` each)."""

    def __init__(self, generations: TeacherGenerations, settings: GenerationSettings) -> None:
        self.generations, self.settings = generations, settings
        self.completions: Completions = {}  # prompt text -> teacher completions (token ids)

    def prepare(self, train_loader: Iterable[Batch]) -> None:
        """Completions for every training prompt: from the cache, or generated now in batches."""
        self.completions.update(self.generations(collect_prompts(train_loader), self.settings, "train"))

    def sequences(self, batch: Batch, device: torch.device) -> dict[str, torch.Tensor]:
        """(B * num_samples, L) sequences of the batch's prompts and their completions; a prompt
        missing from :meth:`prepare` is generated now (not cached on disk)."""
        prompt_ids = unpad(batch["prompt_input_ids"], batch["prompt_attention_mask"])
        missing = {p: ids for p, ids in zip(batch["prompts"], prompt_ids) if p not in self.completions}
        if missing:
            if not self.completions:
                log.warning(
                    "prepare() was not called: generating teacher completions batch by batch (not cached on disk)"
                )
            self.completions.update(self.generations(missing, self.settings, "train", cached=False))
        prompts, completions = [], []
        for text, ids in zip(batch["prompts"], prompt_ids):
            for completion in self.completions[text]:
                prompts.append(ids)
                completions.append(completion)
        pad_id = self.generations.tokenizer.pad_token_id
        return {k: v.to(device) for k, v in sequence_batch(prompts, completions, pad_id).items()}


def on_policy_batch(
    prompt_input_ids: torch.Tensor,
    prompt_attention_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    eos_token_id: int | None,
    pad_token_id: int,
) -> dict[str, torch.Tensor]:
    """(B, P) left-padded prompts and (B, T) generated ids -> right-padded (B, L) sequences,
    labelled on each completion up to and including its first EOS (found by position)."""
    prompts = unpad(prompt_input_ids, prompt_attention_mask)
    return sequence_batch(prompts, truncate_at_eos(completion_ids, eos_token_id), pad_token_id)


def student_samples(
    student: nn.Module, tokenizer: PreTrainedTokenizerBase, settings: GenerationSettings, batch: Batch
) -> dict[str, torch.Tensor]:
    """The batch's prompts with completions the student generates now (torch's global RNG), batched with
    the KV cache by transformers' ``generate``."""
    prompt_ids, prompt_mask = batch["prompt_input_ids"], batch["prompt_attention_mask"]
    generated = generate_ids(student, tokenizer, prompt_ids, prompt_mask, settings)
    seq = on_policy_batch(prompt_ids, prompt_mask, generated, tokenizer.eos_token_id, tokenizer.pad_token_id)
    device = next(student.parameters()).device
    return {k: v.to(device) for k, v in seq.items()}


# The on-policy distiller's samplers (``distiller.sampler``): (student, tokenizer, settings, batch) -> right-padded
# input_ids / attention_mask / labels of the batch's prompts and the student's completions. Another engine (e.g.
# vLLM on a GPU, with the student's current weights) is one more entry; the distiller does not change.
SAMPLERS = {"hf": student_samples}
