"""Sequence-level distillation (Kim & Rush 2016): the student learns the teacher's generated text.

Also the generation-based validation shared with the on-policy distiller: the student's greedy
outputs scored against the references and against the teacher's greedy outputs (agreement).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.config import check_options
from distill.distillers.base import Batch, Distiller, LossOutput, shared_width
from distill.distillers.supervised import task_loss
from distill.errors import ConfigError
from distill.evaluation import evaluate_model, shifted_response_mask
from distill.generation import (
    Completions,
    GenerationSettings,
    cached_generations,
    collect_prompts,
    decode_completion,
    generate_completions,
    model_fingerprint,
    sequence_batch,
    unpad,
)
from distill.losses import distillation_loss
from distill.metrics import text_metrics

log = logging.getLogger(__name__)


def default_cache_dir() -> str:
    """``$DISTILL_CACHE/generations``, by default ``~/.cache/distill/generations`` (as the configs say)."""
    return str(Path(os.environ.get("DISTILL_CACHE", "~/.cache/distill")).expanduser() / "generations")


def require_tokenizer(distiller: str, tokenizer: PreTrainedTokenizerBase | None) -> PreTrainedTokenizerBase:
    if tokenizer is None:
        raise ConfigError(f"{distiller} needs a tokenizer (pass tokenizer=...): it generates and decodes text")
    if tokenizer.pad_token_id is None:
        raise ConfigError(f"{distiller}: the tokenizer has no pad token; set tokenizer.pad_token (e.g. to its eos token)")
    return tokenizer


def check_generation_batch_size(value: int) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        raise ConfigError(f"distiller.generation_batch_size={value!r} is invalid: must be a positive integer")


class TeacherTextValidation:
    """Validation by generated text, for distillers with ``student``, ``teacher``, ``tokenizer``,
    ``max_new_tokens``, ``cache_dir`` and ``generation_batch_size``.

    ``validate`` returns ``loss`` (student cross-entropy on the reference responses),
    ``accuracy`` (final-answer match, when the data has answers), ``bleu``/``chrf`` (0-100),
    ``rougeL`` (F1, 0-1) and ``exact_match`` of the student's greedy outputs against the
    references, and the same four as ``agreement_*`` against the teacher's greedy outputs on
    the same prompts (generated once, cached on disk). ``last_samples`` holds
    prompt/reference/teacher/student rows.
    """

    student: nn.Module
    teacher: nn.Module
    tokenizer: PreTrainedTokenizerBase
    max_new_tokens: int
    cache_dir: str
    generation_batch_size: int
    last_samples: list[dict[str, str]]
    _teacher_fp: str | None = None
    _val_texts: dict[str, str] | None = None  # teacher output text per validation prompt

    def teacher_fingerprint(self) -> str:
        """Hash of the frozen teacher's config and weights, computed once."""
        if self._teacher_fp is None:
            self._teacher_fp = model_fingerprint(self.teacher)
        return self._teacher_fp

    def teacher_generations(self, prompts: dict[str, list[int]], settings: GenerationSettings, name: str) -> Completions:
        completions, _ = cached_generations(
            self.teacher, self.tokenizer, prompts, settings, self.cache_dir, name=name,
            batch_size=self.generation_batch_size, model_fp=self.teacher_fingerprint(),
        )
        return completions

    def teacher_val_texts(self, val_loader: Iterable[Batch]) -> dict[str, str]:
        """Teacher's greedy output text per validation prompt (the same budget as the student's);
        generated or read from the cache the first time a loader's prompts are seen."""
        if self._val_texts is None:
            self._val_texts = {}
        prompts = collect_prompts(val_loader)
        if not prompts.keys() <= self._val_texts.keys():
            settings = GenerationSettings(max_new_tokens=self.max_new_tokens)
            completions = self.teacher_generations(prompts, settings, "validation")
            self._val_texts.update({p: decode_completion(self.tokenizer, c[0]) for p, c in completions.items()})
        return self._val_texts

    def validate(self, val_loader: Iterable[Batch]) -> dict[str, float]:
        teacher_texts = self.teacher_val_texts(val_loader)
        metrics, samples = evaluate_model(self.student, val_loader, self.tokenizer, self.max_new_tokens)
        if not samples:
            return metrics
        student = [s["output"] for s in samples]
        references = [s["reference"] for s in samples]
        teacher = [teacher_texts[s["prompt"]] for s in samples]
        metrics.update(text_metrics(student, references))
        metrics.update(text_metrics(student, teacher, prefix="agreement_"))
        self.last_samples = [
            {"prompt": s["prompt"], "reference": s["reference"], "teacher": t, "student": s["output"]}
            for s, t in zip(samples, teacher)
        ]
        return metrics


class LanguageDistiller(TeacherTextValidation, Distiller):
    """Sequence-level KD: cross-entropy on the teacher's own generated responses.

    ``loss = alpha * ce_teacher + (1 - alpha) * ce_gt + kd_weight * kd`` where
    ``ce_teacher`` is the student's cross-entropy on ``prompt + teacher completion`` (prompt
    masked; the completion's EOS kept, also when pad == eos), ``ce_gt`` the cross-entropy on
    the dataset response, and ``kd = T^2 * D(p_T, p_S)`` a token-level divergence on the teacher
    completion (:func:`distill.losses.distillation_loss`). So ``alpha=1`` (default) is pure
    sequence-level KD and ``alpha=0`` plain supervised training.

    Teacher completions are greedy by default; with ``do_sample`` they are sampled at
    ``temperature`` with nucleus ``top_p``, ``num_samples`` per prompt (every sample is a training
    sequence: a batch of B examples trains on B * num_samples sequences). ``max_length`` is the
    teacher's budget of new tokens; a completion that reaches it has no EOS. ``temperature``
    also softens both distributions in ``kd``.

    The completions for the whole training prompt set are generated once, batched, by
    :meth:`prepare` (the loop calls it before training) and cached on disk under ``cache_dir``
    (default ``$DISTILL_CACHE/generations``, ``~/.cache/distill/generations`` without the variable),
    keyed by teacher weights, prompt set and settings, so later epochs and later runs reuse
    them. A prompt missing from them (``prepare`` not called) is generated when its batch comes.
    """

    def __init__(
        self,
        student_model: nn.Module,
        teacher_model: nn.Module,
        tokenizer: PreTrainedTokenizerBase | None = None,
        alpha: float = 1.0,
        temperature: float = 1.0,
        do_sample: bool = False,
        top_p: float = 1.0,
        max_length: int = 64,
        num_samples: int = 1,
        kd_weight: float = 0.0,
        divergence: str = "forward_kl",
        beta: float = 0.5,
        cache_dir: str | None = None,
        generation_batch_size: int = 128,
        seed: int = 0,
        max_new_tokens: int = 64,
    ) -> None:
        require_tokenizer(type(self).__name__, tokenizer)
        check_options("distiller", dict(
            alpha=alpha, temperature=temperature, top_p=top_p, max_length=max_length, num_samples=num_samples,
            divergence=divergence, beta=beta, max_new_tokens=max_new_tokens,
        ))
        if not (isinstance(kd_weight, (int, float)) and kd_weight >= 0):
            raise ConfigError(f"distiller.kd_weight={kd_weight!r} is invalid: must be >= 0")
        if num_samples > 1 and not do_sample:
            raise ConfigError(
                f"distiller.num_samples={num_samples} is invalid: greedy decoding gives one output; set do_sample=true"
            )
        check_generation_batch_size(generation_batch_size)
        super().__init__(student_model, teacher_model, tokenizer, max_new_tokens)
        self.alpha, self.kd_weight, self.temperature = alpha, kd_weight, temperature
        self.divergence, self.beta = divergence, beta
        self.settings = GenerationSettings(
            max_new_tokens=max_length, do_sample=do_sample, temperature=temperature, top_p=top_p,
            num_samples=num_samples, seed=seed,
        )
        self.cache_dir = str(Path(cache_dir or default_cache_dir()).expanduser())
        self.generation_batch_size = generation_batch_size
        self.width = shared_width(teacher_model, student_model, tokenizer) if kd_weight > 0 else None
        self.completions: Completions = {}  # prompt text -> teacher completions (token ids)

    def prepare(self, train_loader: Iterable[Batch], val_loader: Iterable[Batch] | None = None) -> None:
        """Teacher completions for every training prompt (and the validation outputs), from the
        cache or generated now in batches."""
        self.completions.update(self.teacher_generations(collect_prompts(train_loader), self.settings, "train"))
        if val_loader is not None:
            self.teacher_val_texts(val_loader)

    def teacher_batch(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The batch's prompts followed by their teacher completions: right-padded ``input_ids``,
        ``attention_mask`` and ``labels`` of shape (B * num_samples, L), prompts labelled -100."""
        prompt_ids = unpad(batch["prompt_input_ids"], batch["prompt_attention_mask"])
        missing = {p: ids for p, ids in zip(batch["prompts"], prompt_ids) if p not in self.completions}
        if missing:
            if not self.completions:
                log.warning("prepare() was not called: generating teacher completions batch by batch (not cached on disk)")
            self.completions.update(generate_completions(
                self.teacher, self.tokenizer, missing, self.settings, self.generation_batch_size, progress=False,
            ))
        prompts, completions = [], []
        for text, ids in zip(batch["prompts"], prompt_ids):
            for completion in self.completions[text]:
                prompts.append(ids)
                completions.append(completion)
        return {k: v.to(self.device) for k, v in sequence_batch(prompts, completions, self.tokenizer.pad_token_id).items()}

    def compute_loss(self, batch: Batch) -> LossOutput:
        parts: dict[str, float] = {}
        loss = torch.zeros((), device=self.device)
        if self.alpha > 0 or self.kd_weight > 0:
            seq = self.teacher_batch(batch)
            mask = shifted_response_mask(seq["labels"])
            student = self.student(input_ids=seq["input_ids"], attention_mask=seq["attention_mask"]).logits[:, :-1][mask]
            ce_teacher = F.cross_entropy(student.float(), seq["labels"][:, 1:][mask])
            loss = loss + self.alpha * ce_teacher
            parts["ce_teacher"] = float(ce_teacher.detach())
            if self.kd_weight > 0:
                with torch.no_grad():
                    teacher = self.teacher(input_ids=seq["input_ids"], attention_mask=seq["attention_mask"]).logits
                teacher = teacher[:, :-1][mask]
                kd = distillation_loss(
                    student[..., : self.width], teacher[..., : self.width],
                    divergence=self.divergence, temperature=self.temperature, beta=self.beta,
                )
                loss = loss + self.kd_weight * kd
                parts["kd"] = float(kd.detach())
        if self.alpha < 1:
            ce = task_loss(self.student_logits(batch), batch["labels"].to(self.device))
            loss = loss + (1.0 - self.alpha) * ce
            parts["ce"] = float(ce.detach())
        return LossOutput(loss, parts)
