"""Logit distillation (Hinton et al. 2015), token by token for causal LMs, per example for classifiers."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn
from transformers import PreTrainedTokenizerBase

from distill.core.disk_cache import cache_dir as default_cache_dir
from distill.core.errors import ConfigError, require, require_fraction
from distill.distillers.base import Batch, LossOutput, call_with
from distill.distillers.cross_tokenizer import check_cross_options
from distill.distillers.distiller import Distiller
from distill.distillers.intermediate import IntermediateTerms, check_layer_options
from distill.losses import SPARSE_DIVERGENCES, Objective
from distill.teacher.logit_cache import (
    DEFAULT_DRAW_TEMPERATURE,
    DEFAULT_SIZE,
    CacheSettings,
    TeacherLogitCache,
    cache_for_loader,
    check_size_and_temperature,
)

log = logging.getLogger(__name__)


class LogitDistiller(Distiller):
    """``loss = alpha * kd + (1 - alpha) * ce`` with ``kd = T^2 * D(p_T, p_S)``.

    For causal LMs both terms are taken over response tokens only (prompt and padding masked,
    EOS kept); for classifiers over the class logits. ``D`` is ``divergence`` (see
    :mod:`distill.losses`); ``beta`` is JSD's mixing weight, ``skew`` the skewed KLs'. The teacher's
    logits are sliced to the width both models share.

    ``hidden_weight`` and ``attention_weight`` add intermediate-layer terms (hidden states with
    ``hidden_loss`` mse or cosine, attention maps with ``attention_loss`` kl or mse) over ``layer_map``
    (:mod:`distill.distillers.intermediate`).

    ``teacher_cache`` (``top_k`` or ``sampled``, ``teacher_cache_size`` tokens per position; a sampled
    cache draws at ``teacher_cache_temperature``, best at or above every temperature it serves; a top-k
    cache with ``teacher_cache_tail`` also keeps the teacher's mass outside its k ids at that temperature,
    one more bin for the forward KL at that temperature) replaces
    the teacher's forward pass by sparse targets computed once over the training set and kept on
    disk under ``cache_dir`` (:mod:`distill.teacher.logit_cache`; forward KL or skewed forward KL only). Pass a
    built cache as ``teacher_targets`` (what ``train.py`` does, so the teacher is never loaded), or a teacher: the
    cache is then built or reused before the first step. Other options (``chunk_size``, ...) are
    :class:`~distill.distillers.distiller.Distiller`'s.
    """

    def __init__(
        self,
        student_model: nn.Module,
        teacher_model: nn.Module | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        temperature: float = 2.0,
        alpha: float = 0.5,
        divergence: str = "forward_kl",
        beta: float = 0.5,
        skew: float = 0.1,
        hidden_weight: float = 0.0,
        hidden_loss: str = "mse",
        attention_weight: float = 0.0,
        attention_loss: str = "kl",
        layer_map: list[list[int]] | None = None,
        teacher_cache: str | None = None,
        teacher_cache_size: int = DEFAULT_SIZE,
        teacher_cache_temperature: float = DEFAULT_DRAW_TEMPERATURE,
        teacher_cache_tail: bool = False,
        cache_dir: str | None = None,
        teacher_targets: TeacherLogitCache | None = None,
        **base: Any,
    ) -> None:
        check_cross_options({"cross_tokenizer": base.get("cross_tokenizer"), "teacher_cache": teacher_cache,
                             "divergence": divergence, "hidden_weight": hidden_weight,
                             "attention_weight": attention_weight})  # fmt: skip
        self.objective = logit_objective(alpha, divergence, temperature, beta, skew)
        if alpha == 0:
            log.warning("distiller.alpha=0 turns the distillation term off: this is distiller=supervised")
        self.cache_settings = check_cache(
            teacher_cache, teacher_cache_size, teacher_cache_temperature, self.objective, teacher_targets,
            teacher_cache_tail,
        )  # fmt: skip
        warn_cache(self.cache_settings, self.objective)
        if teacher_model is None and teacher_targets is None:
            raise ConfigError("LogitDistiller needs a teacher_model (or teacher_targets, a built teacher cache)")
        self.teacher_targets = teacher_targets
        super().__init__(student_model, teacher_model, tokenizer, **base)
        require(self.cache_settings is None or self.task == "causal_lm", "distiller.teacher_cache", teacher_cache,
                "is for causal LMs (a classifier's teacher logits are cheap: leave it null)")  # fmt: skip
        if teacher_targets is not None and self.width is None:
            self.width = teacher_targets.meta["width"]
        self.cache_dir = cache_dir
        check_layer_options(hidden_weight, hidden_loss, attention_weight, attention_loss, layer_map)
        if hidden_weight > 0 or attention_weight > 0:
            require(teacher_model is not None and teacher_targets is None, "distiller.teacher_cache", teacher_cache,
                    "must be null with hidden_weight or attention_weight: they need the teacher's layers")  # fmt: skip
            self.intermediate = IntermediateTerms(
                student_model, teacher_model, hidden_weight, hidden_loss, attention_weight, attention_loss, layer_map
            )
        self.temperature, self.alpha, self.divergence, self.beta = temperature, alpha, divergence, beta

    def needs_teacher_model(self) -> bool:
        return self.teacher_targets is None

    @classmethod
    def teacher_input(cls, options: Mapping[str, Any]) -> str | None:
        return "targets" if options.get("teacher_cache") else "model"

    @classmethod
    def check_config(cls, options: Mapping[str, Any]) -> None:
        super().check_config(options)
        o = cls.with_defaults(options)
        objective = call_with(logit_objective, o)
        check_cache(o["teacher_cache"], o["teacher_cache_size"], o["teacher_cache_temperature"], objective, None,
                    o["teacher_cache_tail"])  # fmt: skip
        call_with(check_layer_options, o)

    def prepare(self, train_loader: Iterable[Batch], val_loader: Iterable[Batch] | None = None) -> None:
        """With ``teacher_cache`` and no ``teacher_targets``: build (or reuse) the cache from the teacher."""
        if self.cache_settings is None or self.teacher_targets is not None:
            return
        dataset = getattr(train_loader, "dataset", None)
        if dataset is None or "index" not in getattr(dataset, "column_names", ()):
            raise ConfigError("distiller.teacher_cache needs a DataLoader over a tokenized dataset with an 'index' "
                              "column (distill.data.TaskData's loaders have one)")  # fmt: skip
        root = default_cache_dir(self.cache_dir) if self.cache_dir else default_cache_dir(sub="teacher-logits")
        self.teacher_targets = cache_for_loader(self.teacher, train_loader, self.cache_settings, root, self.width, log)

    def compute_loss(self, batch: Batch) -> LossOutput:
        return self.loss_on(batch, self.objective)

    def teacher_forward(self, sequences: Batch, chunked: bool, extra: dict[str, bool]) -> Any:
        if self.teacher_targets is None:
            return super().teacher_forward(sequences, chunked, extra)
        return self.teacher_targets.targets(sequences["index"].tolist(), self.device)


def logit_objective(alpha: float, divergence: str, temperature: float, beta: float, skew: float = 0.1) -> Objective:
    """``alpha * kd + (1 - alpha) * ce``, checked (one line per bad value)."""
    require_fraction("distiller.alpha", alpha)
    return Objective(alpha, 1.0 - alpha, divergence, temperature, beta, skew)


def check_cache(
    mode: str | None, size: int, draw_temperature: float, objective: Objective, built: TeacherLogitCache | None,
    tail: bool = False,
) -> CacheSettings | None:  # fmt: skip
    """The cache settings, refusing what a sparse cache cannot do, in one line each (its size and draw
    temperature are checked even when no cache is on: a typo should not wait for a later run)."""
    check_size_and_temperature(size, draw_temperature)
    if mode is None and built is None:
        require(tail is False, "distiller.teacher_cache_tail", tail, "needs teacher_cache=top_k")
        return None
    settings = built.settings if mode is None else CacheSettings(mode, size, temperature=draw_temperature, tail=tail)
    divergence = objective.divergence
    if settings.tail:
        require(divergence == "forward_kl" and objective.temperature == settings.temperature,
                "distiller.teacher_cache_tail", True, f"keeps the teacher's tail at teacher_cache_temperature="
                f"{settings.temperature:g} for forward_kl: set distiller.temperature to it and divergence=forward_kl "
                f"(got {divergence} at {objective.temperature:g})")  # fmt: skip
    require(divergence in SPARSE_DIVERGENCES, "distiller.divergence", divergence,
            f"distiller.teacher_cache={settings.mode} supports forward_kl and skew_forward_kl only: a sparse "
            "cache keeps the teacher's probability of a few tokens, and the other divergences need it for every "
            "token")  # fmt: skip
    return settings


def warn_cache(settings: CacheSettings | None, objective: Objective) -> None:
    """One warning line for cache settings that work but are unlikely to be meant."""
    if settings is None:
        return
    if objective.kd_weight == 0:
        log.warning("distiller.teacher_cache with alpha=0: the cache is built but never used")
    if settings.mode == "sampled" and objective.temperature > settings.temperature:
        log.warning(
            "distiller.temperature=%g is above the sampled cache's draw temperature %g: rare draws get large "
            "weights (a noisy target); set distiller.teacher_cache_temperature >= %g",
            objective.temperature, settings.temperature, objective.temperature,
        )  # fmt: skip
