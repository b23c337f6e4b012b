"""Where training sequences come from besides the dataset: the teacher's generated completions
(sequence-level KD) and the student's own samples (on-policy KD).

Both return right-padded ``input_ids``/``attention_mask``/``labels`` with the prompt labelled
-100 and each completion's first EOS kept (also when pad == eos).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.data.sequences import sequence_batch, truncate_at_eos, unpad
from distill.errors import ConfigError, require
from distill.fingerprints import model_fingerprint
from distill.generation import Completions, GenerationSettings, collect_prompts, generate_completions, generate_ids
from distill.generation_cache import cached_generations
from distill.settings import cache_dir as default_cache_dir

log = logging.getLogger(__name__)
Batch = dict[str, object]


def generation_settings(
    max_length: int, do_sample: bool, temperature: float, top_p: float, num_samples: int = 1, seed: int = 0
) -> GenerationSettings:
    """Checked :class:`GenerationSettings` from a distiller's options (one line per bad value)."""
    for key, value in (("max_length", max_length), ("num_samples", num_samples)):
        require(
            isinstance(value, int) and not isinstance(value, bool) and value > 0,
            f"distiller.{key}",
            value,
            "must be a positive integer",
        )
    require(isinstance(top_p, (int, float)) and 0 < top_p <= 1, "distiller.top_p", top_p, "must be in (0, 1]")
    require(
        isinstance(temperature, (int, float)) and temperature > 0, "distiller.temperature", temperature, "must be > 0"
    )
    if num_samples > 1 and not do_sample:
        raise ConfigError(
            f"distiller.num_samples={num_samples} is invalid: greedy decoding gives one output; set do_sample=true"
        )
    return GenerationSettings(max_length, do_sample, temperature, top_p, num_samples, seed)


def require_tokenizer(distiller: str, tokenizer: PreTrainedTokenizerBase | None) -> PreTrainedTokenizerBase:
    if tokenizer is None:
        raise ConfigError(f"{distiller} needs a tokenizer (pass tokenizer=...): it generates and decodes text")
    if tokenizer.pad_token_id is None:
        raise ConfigError(
            f"{distiller}: the tokenizer has no pad token; set tokenizer.pad_token (e.g. to its eos token)"
        )
    return tokenizer


class TeacherGenerations:
    """The teacher's completions of a prompt set, cached on disk under ``cache_dir``
    (default ``$DISTILL_CACHE/generations``) and keyed by its weights, the prompts and the settings."""

    def __init__(
        self,
        teacher: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        cache_dir: str | None = None,
        batch_size: int = 128,
    ) -> None:
        require(
            isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size > 0,
            "distiller.generation_batch_size",
            batch_size,
            "must be a positive integer",
        )
        self.teacher, self.tokenizer, self.batch_size = teacher, tokenizer, batch_size
        self.cache_dir = str(Path(cache_dir).expanduser()) if cache_dir else str(default_cache_dir(sub="generations"))
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        """Hash of the frozen teacher's config and weights, computed once."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.teacher)
        return self._fingerprint

    def __call__(self, prompts: dict[str, list[int]], settings: GenerationSettings, name: str) -> Completions:
        completions, _ = cached_generations(
            self.teacher,
            self.tokenizer,
            prompts,
            settings,
            self.cache_dir,
            name=name,
            batch_size=self.batch_size,
            model_fp=self.fingerprint(),
        )
        return completions


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
            g = self.generations
            self.completions.update(
                generate_completions(g.teacher, g.tokenizer, missing, self.settings, g.batch_size, progress=False)
            )
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
    """The batch's prompts with completions the student generates now (torch's global RNG)."""
    prompt_ids, prompt_mask = batch["prompt_input_ids"], batch["prompt_attention_mask"]
    generated = generate_ids(student, tokenizer, prompt_ids, prompt_mask, settings)
    seq = on_policy_batch(prompt_ids, prompt_mask, generated, tokenizer.eos_token_id, tokenizer.pad_token_id)
    device = next(student.parameters()).device
    return {k: v.to(device) for k, v in seq.items()}
