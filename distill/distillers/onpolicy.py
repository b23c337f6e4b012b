"""On-policy distillation (GKD, Agarwal et al. 2024): the teacher grades the student's own outputs."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.config import check_options
from distill.distillers.base import Batch, LossOutput
from distill.distillers.language import (
    TeacherTextValidation,
    check_generation_batch_size,
    default_cache_dir,
    require_tokenizer,
)
from distill.distillers.logit import LogitDistiller
from distill.evaluation import shifted_response_mask
from distill.generation import GenerationSettings, generate_ids, sequence_batch, truncate_at_eos, unpad
from distill.losses import distillation_loss


def on_policy_batch(
    prompt_input_ids: torch.Tensor,
    prompt_attention_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    eos_token_id: int | None,
    pad_token_id: int,
) -> dict[str, torch.Tensor]:
    """Training sequences from a generation: (B, P) left-padded prompts and (B, T) generated ids
    -> right-padded ``input_ids``/``attention_mask``/``labels`` (B, L).

    Labels are -100 on the prompt, on padding and on everything after a completion's first EOS;
    that first EOS is kept. The EOS is found by position, so this is right when pad == eos.
    """
    prompts = unpad(prompt_input_ids, prompt_attention_mask)
    return sequence_batch(prompts, truncate_at_eos(completion_ids, eos_token_id), pad_token_id)


class OnPolicyDistiller(TeacherTextValidation, LogitDistiller):
    """Generalised KD: with probability ``lmbda`` per batch, on the student's own outputs.

    On-policy batch (probability ``lmbda``): the student generates a completion of each prompt
    (sampled at ``temperature`` with nucleus ``top_p`` when ``do_sample``, else greedy; at most
    ``max_length`` new tokens), the teacher scores it token by token, and
    ``loss = T^2 * D(p_T, p_S)`` over the generated tokens only: the prompt and everything after
    each completion's first EOS are masked, the first EOS is kept.

    Otherwise (probability ``1 - lmbda``) the batch is the dataset's responses and the loss is
    the logit distiller's, ``alpha * T^2 * D(p_T, p_S) + (1 - alpha) * ce``; ``alpha=1``
    (default) is GKD's pure divergence. ``D`` is ``divergence`` (``beta`` for jsd), as in
    :class:`~distill.distillers.LogitDistiller`.

    The coin is drawn from torch's global generator, and so is the student's sampling, so a
    checkpoint (which saves the RNG state) resumes exactly. Validation is by generated text,
    as for the language distiller (see :class:`TeacherTextValidation`).
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
        max_length: int = 64,
        divergence: str = "jsd",
        beta: float = 0.5,
        alpha: float = 1.0,
        cache_dir: str | None = None,
        generation_batch_size: int = 128,
        max_new_tokens: int = 64,
    ) -> None:
        require_tokenizer(type(self).__name__, tokenizer)
        check_options("distiller", dict(lmbda=lmbda, top_p=top_p, max_length=max_length))
        check_generation_batch_size(generation_batch_size)
        super().__init__(student_model, teacher_model, tokenizer, temperature, alpha, divergence, beta, max_new_tokens)
        self.lmbda = lmbda
        self.settings = GenerationSettings(max_new_tokens=max_length, do_sample=do_sample, temperature=temperature, top_p=top_p)
        self.cache_dir = str(Path(cache_dir or default_cache_dir()).expanduser())
        self.generation_batch_size = generation_batch_size

    def student_batch(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The batch's prompts with completions the student generates now (see :func:`on_policy_batch`)."""
        prompt_ids, prompt_mask = batch["prompt_input_ids"], batch["prompt_attention_mask"]
        generated = generate_ids(self.student, self.tokenizer, prompt_ids, prompt_mask, self.settings)
        seq = on_policy_batch(prompt_ids, prompt_mask, generated, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id)
        return {k: v.to(self.device) for k, v in seq.items()}

    def compute_loss(self, batch: Batch) -> LossOutput:
        on_policy = bool(torch.rand(()) < self.lmbda)  # torch's global RNG: restored on resume
        if not on_policy:
            out = super().compute_loss(batch)
            out.parts["on_policy"] = 0.0
            return out
        seq = self.student_batch(batch)
        inputs = {"input_ids": seq["input_ids"], "attention_mask": seq["attention_mask"]}
        mask = shifted_response_mask(seq["labels"])
        student = self.student(**inputs).logits[:, :-1][mask]
        with torch.no_grad():
            self.teacher.eval()
            teacher = self.teacher(**inputs).logits[:, :-1][mask]
        kd = distillation_loss(
            student[..., : self.width], teacher[..., : self.width],
            divergence=self.divergence, temperature=self.temperature, beta=self.beta,
        )
        return LossOutput(kd, {"kd": float(kd.detach()), "on_policy": 1.0})
