"""On-policy distillation (GKD, Agarwal et al. 2024): the teacher grades the student's own outputs."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.core.errors import is_number, require, require_fraction, require_int
from distill.distillers.base import Batch, LossOutput, call_with
from distill.distillers.cross_tokenizer import check_cross_options
from distill.distillers.distiller import Distiller
from distill.distillers.sources import SAMPLERS, require_tokenizer
from distill.distillers.text_validation import TextValidation
from distill.inference.generation import GenerationSettings
from distill.losses import Objective
from distill.teacher.generations import TeacherGenerations

log = logging.getLogger(__name__)
OBJECTIVES = ("gkd", "reverse_kl_reward")  # the loss on the student's samples (distiller.objective)


class OnPolicyDistiller(Distiller):
    """Generalised KD: with probability ``lmbda`` per batch, on the student's own outputs.

    On-policy batch (probability ``lmbda``): the student generates a completion of each prompt (sampled
    at ``sample_temperature``, null: ``temperature``, with nucleus ``top_p`` when ``do_sample``, else
    greedy; at most ``max_length`` new tokens, null: ``max_new_tokens``), the teacher scores it token by
    token, and the loss is taken over the generated tokens only (the prompt and everything after each
    completion's first EOS are masked, the first EOS is kept): ``objective=gkd``, ``T^2 * D(p_T, p_S)``
    with the full distributions; ``objective=reverse_kl_reward``, the reverse KL estimated from the
    sampled tokens alone, a policy gradient with per-token advantage ``A_t = log p_T(y_t) - log p_S(y_t)``
    (:mod:`distill.losses.sampled`; ``divergence`` then applies to the dataset batches only).

    Otherwise the batch is the dataset's responses and the loss is the logit distiller's,
    ``alpha * T^2 * D(p_T, p_S) + (1 - alpha) * ce`` (``alpha=1``: GKD's pure divergence).
    ``lmbda_warmup_steps`` and ``lmbda_ramp_steps`` schedule ``lmbda`` (off-policy first, then a linear
    ramp: :func:`lmbda_at`), so the student writes something gradeable before it is graded. The defaults
    (forward KL at T = 2 on samples drawn at T = 1, ``alpha=0.5``, 300 + 100 steps of warm start) are the
    measured ones (docs/language-distillation.md). ``sampler`` picks how the student writes (``hf``: transformers'
    ``generate`` with the KV cache; :data:`~distill.distillers.sources.SAMPLERS`). The coin and the
    student's sampling use torch's global generator, so a checkpoint (which saves the RNG state) resumes
    exactly. Validation compares text, as for the language distiller. Other options (``chunk_size``,
    ...) are :class:`~distill.distillers.distiller.Distiller`'s.
    """

    writes_text = True

    def __init__(
        self,
        student_model: nn.Module,
        teacher_model: nn.Module,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        lmbda: float = 0.5,
        temperature: float = 2.0,
        sample_temperature: float | None = 1.0,
        do_sample: bool = True,
        top_p: float = 1.0,
        max_length: int | None = None,
        divergence: str = "forward_kl",
        beta: float = 0.5,
        skew: float = 0.1,
        alpha: float = 0.5,
        objective: str = "gkd",
        lmbda_warmup_steps: int = 300,
        lmbda_ramp_steps: int = 100,
        sampler: str = "hf",
        cache_dir: str | None = None,
        generation_batch_size: int = 128,
        **base: Any,
    ) -> None:
        require_tokenizer(type(self).__name__, tokenizer)
        check_schedule(lmbda_warmup_steps, lmbda_ramp_steps, sampler)
        check_cross_options({"cross_tokenizer": base.get("cross_tokenizer"), "divergence": divergence,
                             "objective": objective})  # fmt: skip
        max_new_tokens = self.with_defaults(base)["max_new_tokens"]
        self.settings, self.on_samples, self.on_dataset = onpolicy_objectives(
            lmbda,
            alpha,
            divergence,
            temperature,
            beta,
            max_length,
            max_new_tokens,
            do_sample,
            top_p,
            skew,
            objective,
            sample_temperature,
        )
        if lmbda == 0 and alpha == 0:
            log.warning("distiller.lmbda=0 with alpha=0 never uses the teacher: this is distiller=supervised")
        super().__init__(student_model, teacher_model, tokenizer, **base)
        self.lmbda, self.warmup, self.ramp, self.step = lmbda, lmbda_warmup_steps, lmbda_ramp_steps, 0
        self.sample = SAMPLERS[sampler]
        self.warned_unstopped = False  # one warning line per run when samples run out of max_length
        generations = TeacherGenerations(teacher_model, tokenizer, cache_dir, generation_batch_size, self.bridge)
        self.text_validation = TextValidation(generations, self.max_new_tokens, self.task)

    @classmethod
    def check_config(cls, options: Mapping[str, Any]) -> None:
        super().check_config(options)
        o = cls.with_defaults(options)
        call_with(onpolicy_objectives, o)
        call_with(check_schedule, o)
        TeacherGenerations.check_batch_size(o["generation_batch_size"])

    def set_step(self, step: int) -> None:
        """The loop's optimizer step before each micro-batch (restored on resume): the lmbda schedule's clock."""
        self.step = step

    def compute_loss(self, batch: Batch) -> LossOutput:
        """The loss on a dataset batch or on the student's samples, with what tells them apart in the log:
        ``on_policy`` (its mean over a logging window is the on-policy share), ``kd_dataset`` or ``kd_sampled``,
        and for samples :func:`sample_stats` (their length, and the share that stopped) and the teacher's and
        the student's mean log-probability of the sampled tokens (``teacher_logprob``, ``student_logprob``)."""
        lmbda = lmbda_at(self.step, self.lmbda, self.warmup, self.ramp)
        if not bool(torch.rand(()) < lmbda):  # torch's global RNG: restored on resume
            out = self.loss_on(batch, self.on_dataset)
            out.parts.update(on_policy=0.0, kd_dataset=out.parts.get("kd", float("nan")))
            return out
        sequences = self.sample(self.student, self.tokenizer, self.settings, batch)
        out = self.loss_on(sequences, self.on_samples, names={"ce": "sample_nll"}, score_targets=True)
        stats = sample_stats(sequences["labels"], self.tokenizer.eos_token_id)
        student_logprob = -out.parts.pop("sample_nll")
        out.parts.update(on_policy=1.0, kd_sampled=out.parts.get("kd", float("nan")), student_logprob=student_logprob)
        out.parts.update(stats)
        if stats["sample_stopped"] < 1 and not self.warned_unstopped:
            log.warning("%d of %d student samples reached distiller.max_length=%d new tokens without the "
                        "end-of-response token (train/sample_stopped is the share that stopped)",
                        round((1 - stats["sample_stopped"]) * len(sequences["labels"])), len(sequences["labels"]),
                        self.settings.max_new_tokens)  # fmt: skip
            self.warned_unstopped = True
        return out


def lmbda_at(step: int, lmbda: float, warmup: int, ramp: int) -> float:
    """The on-policy probability at an optimizer step: 0 (off-policy) for the first ``warmup`` steps, then
    rising linearly to ``lmbda`` over ``ramp`` steps (0: at once), so the student writes something
    gradeable before it is graded."""
    if step < warmup:
        return 0.0
    return lmbda if ramp == 0 else lmbda * min(1.0, (step - warmup + 1) / ramp)


def check_schedule(lmbda_warmup_steps: int, lmbda_ramp_steps: int, sampler: str) -> None:
    """The lmbda schedule's steps (integers >= 0) and a known sampler, one line each."""
    require_int("distiller.lmbda_warmup_steps", lmbda_warmup_steps, minimum=0)
    require_int("distiller.lmbda_ramp_steps", lmbda_ramp_steps, minimum=0)
    require(sampler in SAMPLERS, "distiller.sampler", sampler, f"must be one of {', '.join(SAMPLERS)}")


def sample_stats(labels: torch.Tensor, eos_token_id: int | None) -> dict[str, float]:
    """Of (B, L) sample labels (-100 off the completion): ``sample_tokens``, the mean completion length,
    and ``sample_stopped``, the share of completions that end with the end-of-response token (the rest
    ran out of ``max_length``)."""
    lengths = (labels != -100).sum(-1)
    last = labels.gather(1, (labels != -100).cumsum(-1).argmax(-1, keepdim=True)).squeeze(1)
    stopped = (last == eos_token_id) & (lengths > 0) if eos_token_id is not None else torch.zeros_like(lengths).bool()
    return {"sample_tokens": float(lengths.float().mean()), "sample_stopped": float(stopped.float().mean())}


def onpolicy_objectives(
    lmbda: float, alpha: float, divergence: str, temperature: float, beta: float, max_length: int | None,
    max_new_tokens: int, do_sample: bool, top_p: float, skew: float = 0.1, objective: str = "gkd",
    sample_temperature: float | None = None,
) -> tuple[GenerationSettings, Objective, Objective]:  # fmt: skip
    """The student's sampling settings (``max_length`` new tokens, null: ``max_new_tokens``; ``sample_temperature``,
    null: ``temperature``), the objective on its samples (``objective``: ``gkd``, the divergence at
    ``temperature``; ``reverse_kl_reward``, the reverse KL estimated from the samples, at the temperature they
    were drawn at) and the one on the dataset, checked."""
    require_fraction("distiller.lmbda", lmbda)
    require_fraction("distiller.alpha", alpha)
    require(objective in OBJECTIVES, "distiller.objective", objective, f"must be one of {', '.join(OBJECTIVES)}")
    if sample_temperature is not None:
        require(is_number(sample_temperature) and sample_temperature > 0, "distiller.sample_temperature",
                sample_temperature, "must be > 0 (null: distiller.temperature)")  # fmt: skip
    drawn_at = temperature if sample_temperature is None else sample_temperature
    settings = GenerationSettings(max_new_tokens if max_length is None else max_length, do_sample, drawn_at, top_p)
    on_dataset = Objective(alpha, 1.0 - alpha, divergence, temperature, beta, skew)
    if objective == "reverse_kl_reward":
        return settings, Objective(1.0, 0.0, "reverse_kl", drawn_at, sampled=True), on_dataset
    return settings, Objective(1.0, 0.0, divergence, temperature, beta, skew), on_dataset
