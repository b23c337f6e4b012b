"""Students born from their teacher: depth pruning by copying a subset of the teacher's layers.

The student is a new model of the teacher's class and config with ``k`` of the teacher's ``N``
transformer layers. Student layer ``i`` is a copy of teacher layer ``keep[i]``; the embeddings,
final norm, LM head (tied or not) and, for encoders, pooler and classifier are copied as they are
(DistilBERT's initialisation; Minitron's depth pruning). Width pruning is out of scope.

The student is built fresh from the sliced config (``num_hidden_layers = k``, per-layer lists such
as ``layer_types`` sliced with the same indices), so each copied layer gets ``layer_idx = i`` for
the KV cache and ``save_pretrained`` / ``from_pretrained`` rebuild the same model. The selection is
recorded as ``config.distill_teacher_layers = keep`` (indices into the given teacher's layers).

Layers are found by :func:`distill.models.facts.layer_list`. Tested on BERT, GPT-2, Llama and Qwen2.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from itertools import pairwise

from torch import nn
from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from distill.core.errors import is_int, require
from distill.models.facts import layers_with_name

LAYERS_KEY = "model.student.layers"
N_KEY = "model.student.n"
STRATEGIES = ("every_other", "first_n", "last_n")
PER_LAYER_CONFIG_KEYS = ("layer_types", "mlp_layer_types")  # config lists with one entry per layer


def select_layers(n_teacher_layers: int, layers: str | list[int], n: int | None = None) -> list[int]:
    """Teacher layer indices to keep, increasing.

    ``every_other``: 0, 2, 4, ... (ceil(N / 2) layers, DistilBERT); ``first_n``: 0 .. n-1;
    ``last_n``: N-n .. N-1; or an explicit list of distinct indices in increasing order.
    ``n`` is only read by ``first_n`` / ``last_n``. Bad input raises a ``ConfigError`` naming
    ``model.student.layers`` or ``model.student.n``.
    """
    if isinstance(layers, str):
        allowed = f"must be one of {', '.join(STRATEGIES)} or a list of teacher layer indices"
        require(layers in STRATEGIES, LAYERS_KEY, layers, allowed)
        if layers == "every_other":
            return list(range(0, n_teacher_layers, 2))
        ok = is_int(n) and 1 <= n <= n_teacher_layers
        require(ok, N_KEY, n, f"{layers} needs an integer n in [1, {n_teacher_layers}] (the teacher's layer count)")
        return list(range(n)) if layers == "first_n" else list(range(n_teacher_layers - n, n_teacher_layers))
    indices = list(layers) if isinstance(layers, Iterable) else []  # a list, tuple or Hydra ListConfig
    ok = (
        bool(indices)
        and all(is_int(i) and 0 <= i < n_teacher_layers for i in indices)
        and all(a < b for a, b in pairwise(indices))
    )
    allowed = f"a list of distinct teacher layer indices in [0, {n_teacher_layers - 1}], in increasing order"
    require(ok, LAYERS_KEY, layers, allowed)
    return indices


def student_config(teacher_config: PretrainedConfig, keep: list[int]) -> PretrainedConfig:
    """A copy of the teacher's config with ``keep``'s layers: layer count, per-layer lists, the record."""
    config = copy.deepcopy(teacher_config)
    n_teacher = config.num_hidden_layers
    for key in PER_LAYER_CONFIG_KEYS:
        values = getattr(config, key, None)
        if isinstance(values, (list, tuple)) and len(values) == n_teacher:
            setattr(config, key, [values[j] for j in keep])
    config.num_hidden_layers = len(keep)
    config.distill_teacher_layers = list(keep)
    return config


def _check_position_independent(config: PretrainedConfig, keep: list[int]) -> None:
    """GPT-2's ``scale_attn_by_inverse_layer_idx`` scales attention by 1 / (layer index + 1): a layer
    moved to a new index would compute something else than it did in the teacher."""
    moved = any(i != j for i, j in enumerate(keep))
    ok = not (moved and getattr(config, "scale_attn_by_inverse_layer_idx", False))
    allowed = "the teacher has scale_attn_by_inverse_layer_idx=True, so only first_n keeps its layers' behaviour"
    require(ok, LAYERS_KEY, keep, allowed)


def student_from_teacher(
    teacher: PreTrainedModel,
    layers: str | list[int] = "every_other",
    n: int | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> PreTrainedModel:
    """A new model of the teacher's class with teacher layers ``select_layers(N, layers, n)``, weights copied.

    Student layer i = copy of teacher layer keep[i]; every other weight (embeddings, final norm, head,
    pooler/classifier) is copied unchanged; tied input/output embeddings stay tied in the student.
    No tensor is shared with the teacher, which is not modified. Same dtype and device as the teacher;
    the generation config is copied. ``tokenizer`` is accepted for the runner's uniform call (the
    student keeps the teacher's vocabulary). Hydra: ``{_target_: distill.models.student_from_teacher,
    layers: every_other}``, with ``teacher`` passed at runtime.
    """
    prefix, teacher_layers = layers_with_name(teacher)
    keep = select_layers(len(teacher_layers), layers, n)
    _check_position_independent(teacher.config, keep)
    first = next(teacher.parameters())
    student = type(teacher)._from_config(student_config(teacher.config, keep), dtype=first.dtype)
    student.to(first.device)
    student.load_state_dict(_renamed_state(teacher, prefix, keep), strict=True)
    if getattr(teacher, "generation_config", None) is not None:
        student.generation_config = copy.deepcopy(teacher.generation_config)
    return student


def _renamed_state(teacher: nn.Module, prefix: str, keep: list[int]) -> dict:
    """The teacher's state dict with ``<prefix>.<keep[i]>.*`` renamed ``<prefix>.<i>.*`` and other layers dropped."""
    position = {j: i for i, j in enumerate(keep)}
    state = {}
    for key, value in teacher.state_dict().items():
        if not key.startswith(prefix + "."):
            state[key] = value
            continue
        index, rest = key[len(prefix) + 1 :].split(".", 1)
        if int(index) in position:
            state[f"{prefix}.{position[int(index)]}.{rest}"] = value
    return state
