"""On-policy distillation (GKD, Agarwal et al. 2024): the teacher grades the student's own outputs."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.distillers.base import Batch, Distiller, LossOutput
from distill.distillers.sources import TeacherGenerations, generation_settings, require_tokenizer, student_samples
from distill.distillers.text_validation import TextValidation
from distill.errors import require_fraction
from distill.losses import DEFAULT_CHUNK_SIZE, Objective

log = logging.getLogger(__name__)


class OnPolicyDistiller(Distiller):
    """Generalised KD: with probability ``lmbda`` per batch, on the student's own outputs.

    On-policy batch (probability ``lmbda``): the student generates a completion of each prompt
    (sampled at ``temperature`` with nucleus ``top_p`` when ``do_sample``, else greedy; at most
    ``max_length`` new tokens, null: ``max_new_tokens``), the teacher scores it token by token,
    and ``loss = T^2 * D(p_T, p_S)`` over the generated tokens only: the prompt and everything
    after each completion's first EOS are masked, the first EOS is kept.

    Otherwise the batch is the dataset's responses and the loss is the logit distiller's,
    ``alpha * T^2 * D(p_T, p_S) + (1 - alpha) * ce``; ``alpha=1`` (default) is GKD's pure
    divergence. The coin and the student's sampling use torch's global generator, so a
    checkpoint (which saves the RNG state) resumes exactly. Validation compares text, as for the
    language distiller.
    """

    def __init__(
        self,
        student_model: nn.Module,
        teacher_model: nn.Module,
        tokenizer: PreTrainedTokenizerBase | None = None,
        lmbda: float = 0.5,
        temperature: float = 1.0,
        do_sample: bool = True,
        top_p: float = 1.0,
        max_length: int | None = None,
        divergence: str = "jsd",
        beta: float = 0.5,
        alpha: float = 1.0,
        cache_dir: str | None = None,
        generation_batch_size: int = 128,
        max_new_tokens: int = 64,
        task: str | None = None,
        chunk_size: int | str | None = DEFAULT_CHUNK_SIZE,
        fast_activations: bool = True,
    ) -> None:
        require_tokenizer(type(self).__name__, tokenizer)
        require_fraction("distiller.lmbda", lmbda)
        require_fraction("distiller.alpha", alpha)
        if lmbda == 0 and alpha == 0:
            log.warning("distiller.lmbda=0 with alpha=0 never uses the teacher: this is distiller=supervised")
        self.settings = generation_settings(max_length or max_new_tokens, do_sample, temperature, top_p)
        self.on_samples = Objective(1.0, 0.0, divergence, temperature, beta)
        self.on_dataset = Objective(alpha, 1.0 - alpha, divergence, temperature, beta)
        super().__init__(student_model, teacher_model, tokenizer, max_new_tokens, task, chunk_size, fast_activations)
        self.lmbda = lmbda
        generations = TeacherGenerations(teacher_model, tokenizer, cache_dir, generation_batch_size)
        self.text_validation = TextValidation(generations, max_new_tokens, self.task)

    def compute_loss(self, batch: Batch) -> LossOutput:
        if not bool(torch.rand(()) < self.lmbda):  # torch's global RNG: restored on resume
            out = self.loss_on(batch, self.on_dataset)
            out.parts["on_policy"] = 0.0
            return out
        sequences = student_samples(self.student, self.tokenizer, self.settings, batch)
        out = self.loss_on(sequences, self.on_samples, names={"ce": ""})
        out.parts["on_policy"] = 1.0
        return out

    def validate(self, val_loader: Iterable[Batch]) -> dict[str, float]:
        metrics, self.last_samples = self.text_validation.validate(self.student, val_loader, self.chunk_size)
        return metrics
