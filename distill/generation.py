"""Generation helpers for sequence-level and on-policy distillation, and the on-disk cache of
teacher generations.

Conventions. A *completion* is the list of token ids a model generated after its prompt, cut
after the first EOS, which is kept; a completion that ran out of budget has no EOS. Prompts
are left-padded for batched generation (KV cache on) and the sequences a student trains on
are right-padded ``prompt + completion`` with labels -100 on the prompt and on padding, so
EOS is a label even when pad == eos.

The cache. :func:`cached_generations` stores one JSON file per (teacher, tokenizer, prompt
set, generation settings) under ``cache_dir``: the teacher is identified by a hash of its
config and weights, the prompt set by a hash of its prompts and their token ids. A file lock
makes parallel runs wait for one generation; the file is written to a temp name and renamed,
so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from distill.data import IGNORE_INDEX

log = logging.getLogger(__name__)

Completions = dict[str, list[list[int]]]  # prompt text -> num_samples completions (token ids)


@dataclass(frozen=True)
class GenerationSettings:
    """How completions are decoded: greedy unless ``do_sample`` (then ``temperature``/``top_p``)."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    num_samples: int = 1  # completions per prompt
    seed: int = 0  # seeds sampling (in a forked RNG: the caller's random state is untouched)

    def key_fields(self) -> dict[str, Any]:
        """The settings that shape the output: greedy decoding ignores temperature, top_p and seed."""
        fields = asdict(self)
        if not self.do_sample:
            for name in ("temperature", "top_p", "seed"):
                fields.pop(name)
        return fields

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"do_sample": self.do_sample, "num_return_sequences": self.num_samples}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=0)
        return kwargs


# ----------------------------------------------------------------------------- token helpers


def left_pad(seqs: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists -> left-padded ``(input_ids, attention_mask)``, both (B, max_len) long."""
    width = max(len(s) for s in seqs)
    ids = torch.tensor([[pad_token_id] * (width - len(s)) + s for s in seqs], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], dtype=torch.long)
    return ids, mask


def unpad(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[list[int]]:
    """(B, L) padded ids and mask -> the B token lists where the mask is 1."""
    return [row[m.bool()].tolist() for row, m in zip(input_ids.cpu(), attention_mask.cpu())]


def completion_mask(completion_ids: torch.Tensor, eos_token_id: int | None) -> torch.Tensor:
    """(B, T) generated ids -> (B, T) bool, true up to and including each row's first EOS.

    Found by position, not by ``!= pad``, so it is right when pad == eos.
    """
    if eos_token_id is None:
        return torch.ones_like(completion_ids, dtype=torch.bool)
    is_eos = (completion_ids == eos_token_id).long()
    eos_before = is_eos.cumsum(-1) - is_eos  # EOS tokens strictly before each position
    return eos_before == 0


def truncate_at_eos(completion_ids: torch.Tensor, eos_token_id: int | None) -> list[list[int]]:
    """(B, T) generated ids -> B completions, each cut after its first EOS (EOS kept)."""
    mask = completion_mask(completion_ids, eos_token_id)
    return [row[m].tolist() for row, m in zip(completion_ids.cpu(), mask.cpu())]


def sequence_batch(prompts: list[list[int]], completions: list[list[int]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``prompt + completion`` sequences for a forward pass and a response loss.

    Returns ``input_ids``, ``attention_mask`` and ``labels``, each (B, L) with
    L = max(len(prompt) + len(completion)); ``labels`` is -100 on the prompt and the padding
    and the completion's ids elsewhere (its EOS included).
    """
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts for {len(completions)} completions")
    width = max(len(p) + len(c) for p, c in zip(prompts, completions))
    ids, mask, labels = [], [], []
    for p, c in zip(prompts, completions):
        pad = width - len(p) - len(c)
        ids.append(p + c + [pad_token_id] * pad)
        mask.append([1] * (len(p) + len(c)) + [0] * pad)
        labels.append([IGNORE_INDEX] * len(p) + c + [IGNORE_INDEX] * pad)
    as_long = lambda rows: torch.tensor(rows, dtype=torch.long)  # noqa: E731
    return {"input_ids": as_long(ids), "attention_mask": as_long(mask), "labels": as_long(labels)}


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
    device = next(model.parameters()).device
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
        loader = DataLoader(loader.dataset, batch_size=loader.batch_size or 64, shuffle=False, collate_fn=loader.collate_fn)
    prompts: dict[str, list[int]] = {}
    for batch in loader:
        for text, ids in zip(batch["prompts"], unpad(batch["prompt_input_ids"], batch["prompt_attention_mask"])):
            prompts.setdefault(text, ids)
    return prompts


# ----------------------------------------------------------------------------- the cache


def _sha256(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def model_fingerprint(model: nn.Module) -> str:
    """sha256 of a model's config and generation config (its decoding defaults, e.g. a repetition
    penalty) and of every tensor of its state dict (names, dtypes, bytes)."""
    h = hashlib.sha256()
    for config in (getattr(model, "config", None), getattr(model, "generation_config", None)):
        if config is not None and hasattr(config, "to_json_string"):
            h.update(config.to_json_string(use_diff=False).encode())
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous().reshape(-1)  # 1-D: a dtype view needs at least one dim
        h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """sha256 of the vocabulary and the special-token ids."""
    special = {"pad": tokenizer.pad_token_id, "eos": tokenizer.eos_token_id, "bos": tokenizer.bos_token_id}
    return _sha256({"vocab": sorted(tokenizer.get_vocab().items()), "special": special})


def generation_cache_key(model_fp: str, tokenizer_fp: str, prompts: dict[str, list[int]], settings: GenerationSettings) -> str:
    """The cache key: a hash of the teacher, the tokenizer, the prompt set and the settings."""
    prompt_set = _sha256(sorted(prompts.items()))
    parts = {"model": model_fp, "tokenizer": tokenizer_fp, "prompts": prompt_set, "settings": settings.key_fields()}
    return _sha256(parts)[:20]


def cached_generations(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    prompts: dict[str, list[int]],
    settings: GenerationSettings,
    cache_dir: str | Path,
    name: str = "generations",
    batch_size: int = 64,
    model_fp: str | None = None,
    progress: bool = True,
) -> tuple[Completions, Path]:
    """The model's completions of ``prompts``: read from ``cache_dir`` or generated and stored.

    ``name`` labels the file (``<name>-<key>.json``); it is not part of the key. Pass
    ``model_fp`` (a :func:`model_fingerprint`) to skip hashing the weights again.
    Returns the completions (prompt text -> num_samples token lists) and the cache file.
    """
    model_fp = model_fp or model_fingerprint(model)
    key = generation_cache_key(model_fp, tokenizer_fingerprint(tokenizer), prompts, settings)
    root = Path(cache_dir).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}-{key}.json"
    with FileLock(str(path) + ".lock"):
        if path.exists():
            completions = json.loads(path.read_text())["completions"]
            log.info("teacher generations: using cache %s (%d prompts)", path, len(completions))
            print(f"teacher generations: using cache {path} ({len(completions)} prompts)")
            return completions, path
        log.info("teacher generations: generating %d completions per prompt for %d prompts into %s",
                 settings.num_samples, len(prompts), path)
        completions = generate_completions(
            model, tokenizer, prompts, settings, batch_size, desc=f"teacher {name}", progress=progress,
        )
        record = {"settings": asdict(settings), "model": model_fp, "completions": completions}
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(record))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return completions, path
