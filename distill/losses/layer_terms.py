"""Intermediate-layer losses: hidden states (TinyBERT, DistilBERT's cosine) and attention maps (TinyBERT, MiniLM).

Layer indices are into the ``hidden_states`` tuples HF returns with ``output_hidden_states=True``:
index 0 is the embedding output, index k the output of layer k (k = 1 .. n_layers). Attention
tuples (``output_attentions=True``) have one entry per layer: layer k's map is ``attentions[k - 1]``.

With a mask (B, L) of valid positions, N the number of valid positions, and P the projection of a
pair (a Linear H_s -> H_t when widths differ, else the identity); for attention maps the valid
rows are the mask's and the valid keys every real token (the attention mask, ``keys``):

    mse     1/N sum_valid 1/H_t ||P(h_s) - h_t||^2
    cosine  1/N sum_valid (1 - cos(P(h_s), h_t))
    attention kl   1/(N heads) sum_valid_rows sum_heads sum_valid_keys a_t (log a_t - log a_s)
    attention mse  mean of (a_s - a_t)^2 over heads, valid query rows and valid keys

each averaged over the mapped layer pairs. Computed in float32; 0 when no position is valid.

Attention maps need the eager attention implementation: sdpa and flash attention do not return
weights. ``require_attention_weights(model)`` switches a model to eager or raises a ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.core.errors import ConfigError, require

HIDDEN_KINDS = ("mse", "cosine")
ATTENTION_KINDS = ("kl", "mse")
EPS = 1e-12  # floor on probabilities before a log


def default_layer_map(n_student: int, n_teacher: int, embeddings: bool = False) -> list[tuple[int, int]]:
    """Uniform map (TinyBERT): student output i -> teacher output round(i * n_teacher / n_student), i = 1..n_student.

    Indices are into ``hidden_states`` (0 = embeddings), so the last student layer maps to the last
    teacher layer: (2 over 4) -> [(1, 2), (2, 4)]; equal depth -> [(i, i)]. ``embeddings=True`` adds (0, 0).
    For attention tuples use index - 1.
    """
    for name, value in (("n_student", n_student), ("n_teacher", n_teacher)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive layer count; got {value!r}")
    pairs = [(i, (2 * i * n_teacher + n_student) // (2 * n_student)) for i in range(1, n_student + 1)]
    return [(0, 0), *pairs] if embeddings else pairs


def mapped_states(
    student_states: Sequence[Tensor], teacher_states: Sequence[Tensor], layer_map: Sequence[tuple[int, int]]
) -> tuple[list[Tensor], list[Tensor]]:
    """The (student, teacher) states the map pairs, as two lists, so the full tuples can be freed."""
    for i, j in layer_map:
        if not (0 <= i < len(student_states) and 0 <= j < len(teacher_states)):
            raise ValueError(
                f"layer pair ({i}, {j}) is out of range for {len(student_states)} student and "
                f"{len(teacher_states)} teacher states"
            )
    return [student_states[i] for i, _ in layer_map], [teacher_states[j] for _, j in layer_map]


class HiddenProjections(nn.ModuleList):
    """One learned ``Linear(H_s, H_t)`` per mapped layer pair when widths differ, else empty.

    A module list, passed as ``projections`` to ``hidden_state_loss``. Train it with the student and
    keep it in the distiller's checkpoints; it is not part of the exported student.
    """

    def __init__(self, n_pairs: int, student_width: int, teacher_width: int) -> None:
        same = student_width == teacher_width
        super().__init__([] if same else [nn.Linear(student_width, teacher_width) for _ in range(n_pairs)])

    @classmethod
    def between(cls, student: nn.Module, teacher: nn.Module, n_pairs: int) -> HiddenProjections:
        """Projections sized from the models' ``config.hidden_size``."""
        return cls(n_pairs, student.config.hidden_size, teacher.config.hidden_size)


def _project(h_s: Tensor, width: int, k: int, projections: nn.ModuleList | None) -> Tensor:
    """P(h_s) for pair k in float32: projections[k] when h_s's width differs from ``width``, else h_s."""
    if h_s.shape[-1] == width:
        return h_s.float()
    if projections is None or len(projections) <= k:
        raise ConfigError(
            f"student hidden size {h_s.shape[-1]} differs from teacher hidden size {width}: "
            "hidden-state distillation needs one projection per layer pair (HiddenProjections)"
        )
    proj = projections[k]
    return proj(h_s.to(proj.weight.dtype)).float()


def hidden_state_loss(
    student_states: Sequence[Tensor],
    teacher_states: Sequence[Tensor],
    mask: Tensor,
    kind: str = "mse",
    projections: nn.ModuleList | None = None,
) -> Tensor:
    """Mean over pairs k of the per-token loss between P_k(student_states[k]) and teacher_states[k].

    states: (B, L, H_s) / (B, L, H_t), already paired (see ``mapped_states``); mask: (B, L), true where
    a position counts. kind ``mse``: mean over valid tokens of mean over features of (P(h_s) - h_t)^2;
    ``cosine``: mean over valid tokens of 1 - cos(P(h_s), h_t). Float32 scalar; 0 with no valid position.
    """
    require(kind in HIDDEN_KINDS, "hidden-state loss kind", kind, f"must be one of {', '.join(HIDDEN_KINDS)}")
    if len(student_states) != len(teacher_states) or not student_states:
        raise ValueError(
            f"need as many student as teacher states (>= 1); got {len(student_states)} and {len(teacher_states)}"
        )
    keep = mask.bool()
    losses = []
    for k, (h_s, h_t) in enumerate(zip(student_states, teacher_states)):
        if h_s.shape[:-1] != keep.shape or h_t.shape[:-1] != keep.shape:
            raise ValueError(f"states {tuple(h_s.shape)} / {tuple(h_t.shape)} do not match mask {tuple(keep.shape)}")
        s = _project(h_s[keep], h_t.shape[-1], k, projections)  # (N, H_t)
        t = h_t[keep].float()
        if s.shape[0] == 0:
            losses.append(s.sum() * 0.0)
        elif kind == "mse":
            losses.append((s - t).pow(2).mean(-1).mean())
        else:
            losses.append((1.0 - F.cosine_similarity(s, t, dim=-1)).mean())
    return torch.stack(losses).mean()


def _check_attention(a_s: Tensor, a_t: Tensor, mask: Tensor) -> None:
    """Same head count and length in both maps (B, heads, L, L), and a mask (B, L) to match."""
    if a_s.shape[1] != a_t.shape[1]:
        raise ConfigError(
            f"attention distillation needs equal head counts: the student has {a_s.shape[1]} heads, "
            f"the teacher {a_t.shape[1]}"
        )
    if a_s.shape[-2:] != a_t.shape[-2:] or a_s.shape[0] != a_t.shape[0]:
        raise ConfigError(
            f"attention maps differ in batch or sequence length: student {tuple(a_s.shape)}, teacher {tuple(a_t.shape)}"
        )
    if mask.shape != (a_s.shape[0], a_s.shape[-1]):
        raise ValueError(f"mask {tuple(mask.shape)} does not match attention maps {tuple(a_s.shape)}")


def _valid_rows(attn: Tensor, rows: Tensor, keys: Tensor) -> Tensor:
    """The counted query rows (N, heads, L) of a map (B, heads, L, L), keys outside ``keys`` set to 0
    (no NaN passes); ``rows`` and ``keys`` are (B, L) masks."""
    picked = attn.transpose(1, 2)[rows].float()  # (N, heads, L)
    valid = keys[:, None, :].expand(-1, rows.shape[1], -1)[rows]  # (N, L): the row's own sequence's keys
    return torch.where(valid[:, None, :], picked, torch.zeros_like(picked))


def attention_loss(
    student_attn: Sequence[Tensor],
    teacher_attn: Sequence[Tensor],
    mask: Tensor,
    kind: str = "kl",
    keys: Tensor | None = None,
) -> Tensor:
    """Attention-map loss on mapped layers, mean over pairs; maps (B, heads, L, L), masks (B, L).

    ``mask``: the query rows counted (a causal LM's response positions); ``keys``: the keys those
    rows attend over, every real token (the attention mask); None: the same as ``mask``. Each
    counted row then holds a whole distribution (it sums to 1 over ``keys``), so ``kl`` is >= 0.

    ``kl``: sum over valid keys of a_t (log a_t - log a_s) per query row, mean over heads and valid
    rows (MiniLM); masked keys are dropped (they hold ~0 probability), so padding gives no NaN.
    ``mse``: mean of (a_s - a_t)^2 over heads, valid query rows and valid keys (TinyBERT on maps).
    Head counts or lengths that differ raise a ``ConfigError``. Needs eager attention (module doc).
    """
    require(kind in ATTENTION_KINDS, "attention loss kind", kind, f"must be one of {', '.join(ATTENTION_KINDS)}")
    if len(student_attn) != len(teacher_attn) or not student_attn:
        raise ValueError(
            f"need as many student as teacher maps (>= 1); got {len(student_attn)} and {len(teacher_attn)}"
        )
    keep = mask.bool()
    keys = keep if keys is None else keys.bool()
    if keys.shape != keep.shape:
        raise ValueError(f"keys {tuple(keys.shape)} and mask {tuple(keep.shape)} must have one shape (B, L)")
    losses = []
    for a_s, a_t in zip(student_attn, teacher_attn):
        _check_attention(a_s, a_t, keep)
        s, t = _valid_rows(a_s, keep, keys), _valid_rows(a_t, keep, keys)  # (N, heads, L)
        if s.shape[0] == 0:
            losses.append(s.sum() * 0.0)
        elif kind == "kl":
            log_ratio = torch.log(t.clamp_min(EPS)) - torch.log(s.clamp_min(EPS))
            per_row = torch.where(t > 0, t * log_ratio, torch.zeros_like(t)).sum(-1)  # (N, heads)
            losses.append(per_row.mean())
        else:
            # sequence b has r_b counted rows of k_b valid keys: heads * sum_b r_b k_b terms in all
            n_terms = (keep.sum(-1).float() * keys.sum(-1).float()).sum() * s.shape[1]
            losses.append((s - t).pow(2).sum() / n_terms)
    return torch.stack(losses).mean()


def require_attention_weights(model: nn.Module) -> None:
    """Switch ``model`` to eager attention so ``output_attentions=True`` returns maps; else a ``ConfigError``.

    transformers 5: ``model.set_attn_implementation("eager")`` sets ``config._attn_implementation``
    (and that of sub-models); models that cannot switch keep theirs, which is checked afterwards.
    """
    config = getattr(model, "config", None)
    current = getattr(config, "_attn_implementation", None)
    if current != "eager" and hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation("eager")
        except (ValueError, ImportError) as e:
            raise ConfigError(f"{type(model).__name__} cannot switch to eager attention: {e}") from None
    current = getattr(config, "_attn_implementation", None)
    if current != "eager":
        raise ConfigError(
            f"{type(model).__name__} uses attn_implementation={current!r}; attention distillation needs 'eager' "
            "(sdpa and flash attention return no attention weights)"
        )
