"""Generation for sequence-level and on-policy distillation and for evaluation: batched,
left-padded, KV cache on, model in eval mode; completions cut after their first EOS.

Sampling draws each token by the inverse CDF (:class:`InverseCdfSampling`) inside transformers' greedy
loop rather than with its ``torch.multinomial``, which on a CPU takes 145 to 155 ms a step at V = 151,936
and 32 rows (one thread) against 30 to 35 ms for the softmax, the float64 cumulative sum and the search;
the draw is exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedTokenizerBase,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from distill.core.errors import ConfigError, is_number, require, require_int
from distill.data.sequences import left_pad, truncate_at_eos, unpad
from distill.models.facts import unwrap

Completions = dict[str, list[list[int]]]  # prompt text -> num_samples completions (token ids)


@dataclass(frozen=True)
class GenerationSettings:
    """How completions are decoded: greedy unless ``do_sample`` (then ``temperature``/``top_p``).
    Checked on construction, one line naming the distiller key (``max_length`` for ``max_new_tokens``)."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    num_samples: int = 1  # completions per prompt
    seed: int = 0  # seeds sampling (in a forked RNG: the caller's random state is untouched)

    def __post_init__(self) -> None:
        require_int("distiller.max_length", self.max_new_tokens)
        require_int("distiller.num_samples", self.num_samples)
        top_p = self.top_p
        require(is_number(top_p) and 0 < top_p <= 1, "distiller.top_p", top_p, "must be in (0, 1]")  # type: ignore[operator]
        t = self.temperature
        require(is_number(t) and t > 0, "distiller.temperature", t, "must be > 0")  # type: ignore[operator]
        if self.num_samples > 1 and not self.do_sample:
            raise ConfigError(
                f"distiller.num_samples={self.num_samples} is invalid: greedy decoding gives one output; "
                "set do_sample=true"
            )

    def key_fields(self) -> dict[str, Any]:
        """The settings that shape the output: greedy decoding ignores temperature, top_p and seed; samples
        name how they were drawn (inverse CDF), so that draws made before it are not mixed with its own."""
        fields = asdict(self)
        if not self.do_sample:
            for name in ("temperature", "top_p", "seed"):
                fields.pop(name)
        else:
            fields["draw"] = "inverse_cdf"
        return fields

    def generate_kwargs(self) -> dict[str, Any]:
        """``model.generate``'s decoding options: greedy, and for sampling the warpers (temperature, nucleus)
        and :class:`InverseCdfSampling` as logits processors of the greedy loop (the prompts are repeated
        ``num_samples`` times by :func:`generate_ids`)."""
        if not self.do_sample:
            return {"do_sample": False}
        processors: list[LogitsProcessor] = []
        if self.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(self.temperature))
        if self.top_p < 1.0:
            processors.append(TopPLogitsWarper(self.top_p))
        return {"do_sample": False, "logits_processor": LogitsProcessorList([*processors, InverseCdfSampling()])}


class InverseCdfSampling(LogitsProcessor):
    """Draws each row's next token from softmax(scores) and leaves it the only finite score, so that greedy
    decoding returns the draw: one uniform u per row (torch's global RNG) and the first token whose cumulative
    probability (summed in float64) exceeds u times the total. Exact, with tokens of probability 0 never drawn."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        cdf = torch.softmax(scores.float(), dim=-1).double().cumsum_(-1)
        u = torch.rand(scores.shape[0], 1, dtype=torch.float64, device=scores.device) * cdf[:, -1:]
        ids = torch.searchsorted(cdf, u, right=True).clamp_(max=scores.shape[-1] - 1)
        return torch.full_like(scores, float("-inf")).scatter_(1, ids, 0.0)


# ----------------------------------------------------------------------------- generation


@torch.no_grad()
def generate_ids(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompt_input_ids: torch.Tensor,
    prompt_attention_mask: torch.Tensor,
    settings: GenerationSettings,
    **generate_kwargs: Any,
) -> torch.Tensor:
    """Batched generation from (B, P) left-padded prompts, model in eval mode, KV cache on.

    ``generate_kwargs`` go to ``model.generate`` as well (e.g. ``min_new_tokens``).
    Returns the generated ids only, (B * num_samples, T) with T <= max_new_tokens; the
    ``num_samples`` completions of prompt i are rows i * num_samples ... (i + 1) * num_samples - 1.
    Rows that stopped early are filled with the pad token after their EOS.
    """
    model = unwrap(model)  # DDP: generate with the replica
    device = next(model.parameters()).device
    if settings.num_samples > 1:  # row i of the prompts -> rows i * num_samples ... (i + 1) * num_samples - 1
        prompt_input_ids = prompt_input_ids.repeat_interleave(settings.num_samples, dim=0)
        prompt_attention_mask = prompt_attention_mask.repeat_interleave(settings.num_samples, dim=0)
    was_training = model.training
    model.eval()
    try:
        out = model.generate(
            input_ids=prompt_input_ids.to(device),
            attention_mask=prompt_attention_mask.to(device),
            max_new_tokens=settings.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            use_cache=True,
            **{**settings.generate_kwargs(), **generate_kwargs},
        )
    finally:
        model.train(was_training)
    return out[:, prompt_input_ids.shape[1] :]


def generate_completions(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: dict[str, list[int]],
    settings: GenerationSettings,
    batch_size: int = 64,
    desc: str = "generate",
    progress: bool = True,
) -> Completions:
    """Completions for every prompt, in batches of ``batch_size`` prompts sorted by length.

    ``prompts`` maps prompt text -> prompt token ids. Sampling runs in a forked RNG seeded
    with ``settings.seed``, so the result does not depend on, nor change, the global RNG.
    """
    order = sorted(prompts, key=lambda p: len(prompts[p]))
    out: Completions = {}
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(settings.seed)
        with tqdm(total=len(order), desc=desc, unit="prompt", disable=not progress, dynamic_ncols=True) as bar:
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                ids, mask = left_pad([prompts[p] for p in chunk], tokenizer.pad_token_id)
                rows = truncate_at_eos(generate_ids(model, tokenizer, ids, mask, settings), tokenizer.eos_token_id)
                n = settings.num_samples
                for i, prompt in enumerate(chunk):
                    out[prompt] = rows[i * n : (i + 1) * n]
                bar.update(len(chunk))
    return out


def decode_completion(tokenizer: PreTrainedTokenizerBase, completion: list[int]) -> str:
    """The text of a completion, special tokens (EOS) stripped, as generate_texts decodes."""
    return tokenizer.decode(completion, skip_special_tokens=True)


def collect_prompts(loader: Iterable[dict[str, Any]]) -> dict[str, list[int]]:
    """Every distinct prompt of a loader's dataset: prompt text -> prompt token ids.

    A torch ``DataLoader`` is read in dataset order with its collator (so a sampler's position
    or shuffling does not matter); any other iterable of batches is read once. Batches need
    ``prompts``, ``prompt_input_ids`` and ``prompt_attention_mask`` (CausalLMCollator's keys).
    """
    if isinstance(loader, DataLoader):
        loader = DataLoader(
            loader.dataset, batch_size=loader.batch_size or 64, shuffle=False, collate_fn=loader.collate_fn
        )
    prompts: dict[str, list[int]] = {}
    for batch in loader:
        for text, ids in zip(batch["prompts"], unpad(batch["prompt_input_ids"], batch["prompt_attention_mask"])):
            prompts.setdefault(text, ids)
    return prompts
