"""objective_loss from hidden states, chunk by chunk, without materialising the (N, V) logits.

For each chunk of C positions: logits (C, V) = hidden @ W.T (+ b) in float32 -> the divergence and the
cross-entropy of the chunk -> their gradient d loss / d logits, computed in closed form during the forward
pass -> d hidden (C, H), and d W, d b accumulated. Backward only multiplies the stored gradients by
grad_output, so nothing is recomputed, and only one chunk of logits (and a few temporaries of the same
size) is alive at a time. With z = s / T, p_S = softmax(z), p_T = softmax(t / T), the gradients are:

    forward_kl  d T^2 KL(p_T || p_S) / ds = T (p_S - p_T)
    reverse_kl  d T^2 KL(p_S || p_T) / ds = T p_S (log p_S - log p_T - KL(p_S || p_T))
    jsd(beta)   d T^2 JSD / ds           = T (1 - beta) p_S (log p_S - log M - KL(p_S || M))
    tvd         d T^2 TVD / ds           = T p_S (g - <p_S, g>),  g = sign(p_S - p_T) / 2
    skew_forward_kl(s)  d T^2 KL(p_T || M) / ds = -T (1 - s) p_S (a - <p_S, a>),  M = s p_T + (1 - s) p_S, a = p_T / M
    skew_reverse_kl(s)  d T^2 KL(p_S || M) / ds = T p_S (g - <p_S, g>),  M = s p_S + (1 - s) p_T,
                        g = log p_S - log M - s p_S / M
    sparse      d T^2 KL(w || p_S) / ds  = T (p_S - sum_i w_i onehot(ids_i))
    sparse skewed  the skewed forward KL against w (see gradients.sparse_skewed_and_grad)
    sparse tail d T^2 KL / ds = T (p_S - q) on the cached ids, T p_S (1 - r / p_S(rest)) elsewhere, q = (1 - r) w
    sampled     d T^2 mean(-A log p_S(y)) / ds = T A (p_S - onehot(y)),  A = log p_T(y) - log p_S(y) detached
    cross-vocabulary  ULD and the hybrid's KL over shared tokens (see distill.losses.cross_vocab), aligned rows only
    CE          d CE / ds                = softmax(s) - onehot(target)

then divided by N for ``reduction="mean"``. Divergence gradients land on the first ``width`` columns only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from distill.losses.cross_vocab import CrossTeacher, cross_rows_and_grad
from distill.losses.gradients import (
    cross_entropy_and_grad,
    divergence_and_grad,
    sparse_skewed_and_grad,
    sparse_tail_and_grad,
)
from distill.losses.head import Head, Hidden
from distill.losses.objective import Objective
from distill.losses.sampled import TokenTeacher, sampled_rows_and_grad
from distill.losses.sparse import SPARSE_DIVERGENCES, SparseTeacher, check_tail, sparse_kl_rows

# Positions per chunk. Measured on the CPU (N = 2048, H = 896, V = 151,936, forward_kl, fp32, 1 thread; see
# benchmarks/loss_memory.py): extra peak 0.77 / 1.00 / 1.36 / 2.18 GB (d W's 0.54 GB included) and 72 / 59 / 53 /
# 60 s for chunks of 64 / 128 / 256 / 512, against ~10-12 GB for the materialised loss. Below 128 rows the
# (V, H) accumulation of d W per chunk dominates; above, memory grows with no gain in time. On a GPU (not
# measured here) 128 rows still fill the matmuls' M dimension; with memory to spare, 512-1024 cut per-chunk
# overhead (kernel launches, the d W read-modify-write) further.
AUTO_ROWS = 128
# A chunk's ~30 small ops cost the same whatever its size: with a small vocabulary, "auto" takes more rows, so
# that a chunk holds at least this many logits (4 MiB in float32). At V = 100 (the embedded task) one chunk
# instead of ~5 per batch made a training step 1.04x faster; from V = 8,192 up it changes nothing.
AUTO_MIN_VALUES = 2**20
DEFAULT_CHUNK_SIZE = "auto"


def chunk_rows(chunk_size: int | str, columns: int) -> int:
    """Positions per chunk: ``chunk_size`` (> 0), or for ``"auto"`` max(128, ceil(2^20 / columns))."""
    if chunk_size == "auto":
        return max(AUTO_ROWS, -(-AUTO_MIN_VALUES // max(columns, 1)))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be 'auto' or an integer > 0; got {chunk_size!r}")
    return chunk_size


@dataclass(frozen=True)
class _Plan:
    """Everything the chunk loop needs besides the student's hidden states and head."""

    objective: Objective
    teacher: Tensor | None  # teacher hidden (N, H_t), used with teacher_head
    teacher_head: Head | None
    sparse: tuple[Tensor, Tensor] | None  # a sparse teacher's (ids, weights(T)), both (N, k)
    tail: Tensor | None  # a top-k sparse teacher's mass outside its ids (N,)
    tokens: Tensor | None  # a TokenTeacher's log-probabilities of the targets (N,)
    cross: CrossTeacher | None  # a teacher with another vocabulary (its states and head are teacher, teacher_head)
    targets: Tensor | None
    width: int  # divergence columns
    columns: int  # student logit columns computed: V_s with targets, else width
    denominator: int  # N for reduction="mean" (1 when N = 0), 1 for "sum"
    kd_scale: float  # d loss / d (sum over positions of T^2 D) = kd_weight / denominator; 0: no gradient needed
    ce_scale: float  # d loss / d (sum over positions of CE) = ce_weight / denominator; 0: no gradient needed
    chunk_size: int
    needs: tuple[bool, bool, bool]  # gradients wanted for hidden, weight, bias

    @property
    def has_teacher(self) -> bool:
        return self.teacher is not None or self.sparse is not None or self.tokens is not None


def _kd(plan: _Plan, log_s: Tensor, rows: slice) -> tuple[Tensor, Tensor]:
    """Summed T^2 D over the chunk, and d(T^2 D)/ds = T dD/dz (C, width); log_s = log p_S (overwritten)."""
    t = plan.objective.temperature
    if plan.cross is not None:
        c, head = plan.cross, plan.teacher_head
        log_t = torch.log_softmax(head.logits(plan.teacher[rows], head.weight.shape[0]).div_(t), dim=-1)
        matched = None if c.matched is None else c.matched[rows]
        value, grad = cross_rows_and_grad(log_s, log_t, c.aligned[rows], matched, c.shared)
        return value.sum() * t**2, grad.mul_(t)
    if plan.tokens is not None:
        value, grad = sampled_rows_and_grad(log_s, plan.targets[rows], plan.tokens[rows])
        return value.sum() * t**2, grad.mul_(t)
    if plan.sparse is not None and plan.objective.divergence == "skew_forward_kl":
        value, grad = sparse_skewed_and_grad(log_s, plan.sparse[0][rows], plan.sparse[1][rows], plan.objective.skew)
        return value.sum() * t**2, grad.mul_(t)
    if plan.tail is not None:
        value, grad = sparse_tail_and_grad(log_s, plan.sparse[0][rows], plan.sparse[1][rows], plan.tail[rows])
        return value.sum() * t**2, grad.mul_(t)
    if plan.sparse is not None:  # D = sum_i w_i (log w_i - log p_S(ids_i));  dD/dz = p_S - sum_i w_i onehot(ids_i)
        ids, w = plan.sparse[0][rows], plan.sparse[1][rows]
        value = sparse_kl_rows(log_s, ids, w)
        grad = log_s.exp_().scatter_add_(1, ids, -w)  # scatter_add: pad ids may repeat (with weight 0)
    else:
        logits_t = plan.teacher_head.logits(plan.teacher[rows], plan.width).div_(t)
        log_t = torch.log_softmax(logits_t, dim=-1)
        del logits_t
        o = plan.objective
        value, grad = divergence_and_grad(log_s, log_t, o.divergence, o.beta, o.skew)
    return value.sum() * t**2, grad.mul_(t)


SPARSE_NAMES = " or ".join(SPARSE_DIVERGENCES)


def _chunk(plan: _Plan, head: Head, hidden: Tensor, rows: slice) -> tuple[Tensor, Tensor, Tensor | None]:
    """(T^2 D summed, CE summed, d loss / d logits (C, columns or width), None when no gradient) of a chunk."""
    s = head.logits(hidden, plan.columns)
    kd = ce = s.new_zeros(())
    grad = None
    if plan.targets is not None:
        ce, ce_grad = cross_entropy_and_grad(s, plan.targets[rows])
        grad = ce_grad.mul_(plan.ce_scale) if plan.ce_scale > 0 else None
        del ce_grad
    if plan.has_teacher:
        log_s = torch.log_softmax(s[:, : plan.width].div_(plan.objective.temperature), dim=-1)
        del s  # free the chunk's logits before the divergence's temporaries
        kd, kd_grad = _kd(plan, log_s, rows)
        if plan.kd_scale > 0 and grad is None:
            grad = kd_grad.mul_(plan.kd_scale)
        elif plan.kd_scale > 0:
            grad[:, : plan.width].add_(kd_grad, alpha=plan.kd_scale)
    return kd, ce, grad


def _run(plan: _Plan, hidden: Tensor, head: Head) -> tuple[Tensor, Tensor, list[Tensor | None]]:
    """(sum of T^2 D, sum of CE, float32 [d hidden (N, H), d weight (V, H), d bias (V,)]) over all chunks."""
    n, size = hidden.shape
    vocab, zeros = head.weight.shape[0], dict(dtype=torch.float32, device=hidden.device)
    grads = [
        torch.zeros(n, size, **zeros) if plan.needs[0] else None,
        torch.zeros(vocab, head.weight.shape[1], **zeros) if plan.needs[1] else None,
        torch.zeros(vocab, **zeros) if plan.needs[2] else None,
    ]
    kd_sum, ce_sum = torch.zeros((), **zeros), torch.zeros((), **zeros)
    for start in range(0, n, plan.chunk_size):
        rows = slice(start, start + plan.chunk_size)
        x = hidden[rows]
        kd, ce, grad = _chunk(plan, head, x, rows)
        kd_sum += kd
        ce_sum += ce
        if grad is None:
            continue
        columns = grad.shape[1]
        if grads[0] is not None:
            grads[0][rows] = grad.to(head.weight.dtype) @ head.weight[:columns]
        if grads[1] is not None:
            grads[1][:columns].addmm_(grad.T, x.float())
        if grads[2] is not None:
            grads[2][:columns] += grad.sum(0)
    return kd_sum, ce_sum, grads


class _ChunkedObjective(torch.autograd.Function):
    """(loss, kd, ce) from (hidden, weight, bias); gradients computed in forward, only ``loss`` differentiable."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, bias: Tensor | None, plan: _Plan) -> tuple[Tensor, Tensor, Tensor]:
        kd_sum, ce_sum, grads = _run(plan, hidden, Head(weight, bias))
        ctx.grads, ctx.dtypes = grads, (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        kd, ce = kd_sum / plan.denominator, ce_sum / plan.denominator
        terms = [
            (plan.objective.kd_weight, plan.has_teacher, kd),
            (plan.objective.ce_weight, plan.targets is not None, ce),
        ]
        loss = sum(weight * value for weight, present, value in terms if present and weight > 0)
        ctx.mark_non_differentiable(kd, ce)
        return loss, kd, ce

    @staticmethod
    def backward(ctx, grad_loss: Tensor, _grad_kd: Tensor, _grad_ce: Tensor) -> tuple[Tensor | None, ...]:
        grads, ctx.grads = ctx.grads, None
        if grads is None:
            raise RuntimeError("chunked_objective_loss: backward can run only once (its gradients are consumed)")
        return *(None if g is None else g.mul_(grad_loss).to(d) for g, d in zip(grads, ctx.dtypes)), None


def _check_inputs(
    student_hidden: Tensor, student_head: Head, teacher: Tensor | SparseTeacher | None, targets: Tensor | None,
    objective: Objective, teacher_head: Head | None, width: int | None, reduction: str,
) -> None:  # fmt: skip
    """One ValueError naming the first problem with :func:`chunked_objective_loss`'s inputs."""
    n, v_s = student_hidden.shape[0], student_head.weight.shape[0]
    dense, sparse, tokens, cross = (isinstance(teacher, t) for t in (Tensor, SparseTeacher, TokenTeacher, CrossTeacher))
    v_t = teacher_head.weight.shape[0] if dense and teacher_head is not None else v_s
    terms = [(objective.kd_weight, teacher), (objective.ce_weight, targets)]
    problems = [
        (cross and not isinstance(teacher.outputs, Hidden), "a chunked CrossTeacher needs Hidden outputs"),
        (cross and len(teacher) != n, f"the CrossTeacher must have {n} rows"),
        (cross and width is not None, "a CrossTeacher has another vocabulary: width must be None"),
        (cross and objective.divergence != "forward_kl", "a CrossTeacher's objective must name forward_kl"),
        (student_hidden.dim() != 2, f"student_hidden must be (N, H); got {tuple(student_hidden.shape)}"),
        (dense and (teacher_head is None or len(teacher) != n), f"teacher hidden states need teacher_head, {n} rows"),
        (sparse and objective.divergence not in SPARSE_DIVERGENCES, f"a SparseTeacher needs {SPARSE_NAMES}"),
        (sparse and len(teacher) != n, f"the SparseTeacher must have {n} rows"),
        (tokens and not objective.sampled, "a TokenTeacher needs a sampled objective (reverse_kl)"),
        (tokens and (targets is None or len(teacher) != n), f"a TokenTeacher needs targets and {n} rows"),
        (targets is not None and tuple(targets.shape) != (n,), f"targets must be ({n},)"),
        (width is None and v_t != v_s, f"student ({v_s}) and teacher ({v_t}) vocabularies differ: pass width"),
        (width is not None and not 0 < width <= min(v_s, v_t), f"width must be in [1, {min(v_s, v_t)}]; got {width}"),
        (reduction not in ("mean", "sum"), f"reduction must be 'mean' or 'sum'; got {reduction!r}"),
        (
            teacher is not None and not (dense or sparse or tokens or cross),
            "teacher must be hidden states (N, H_t), a SparseTeacher, a TokenTeacher, a CrossTeacher or None",
        ),
        (not any(w > 0 and x is not None for w, x in terms), f"{objective} has no term to optimise"),
    ]
    for failed, message in problems:
        if failed:
            raise ValueError(message)


def chunked_objective_loss(
    student_hidden: Tensor,
    student_head: Head,
    teacher: Tensor | SparseTeacher | None,
    targets: Tensor | None,
    objective: Objective,
    teacher_head: Head | None = None,
    width: int | None = None,
    chunk_size: int | str = DEFAULT_CHUNK_SIZE,
    reduction: str = "mean",
) -> dict[str, Tensor]:
    """:func:`~distill.losses.objective_loss` on ``student_head(student_hidden)``, ``chunk_size`` positions at a time.

    Args:
        student_hidden: (N, H_s), the last hidden states of the positions that count.
        student_head: weight (V_s, H_s) (+ bias (V_s,)); CE is over all V_s columns.
        teacher: teacher hidden states (N, H_t) used with ``teacher_head`` (run without gradients), a
            :class:`SparseTeacher` (forward_kl, skew_forward_kl), a :class:`TokenTeacher` (a sampled
            objective), a :class:`CrossTeacher` with :class:`Hidden` outputs (another vocabulary), or None.
        targets: (N,) class ids in [0, V_s), or None.
        width: the divergence is over the first ``width`` columns of both (None: all; vocabularies must match).
        chunk_size: positions per chunk (> 0), or ``"auto"`` (:func:`chunk_rows`); memory ~ chunk_size x V
            float32 values, times a small constant.
        reduction: ``mean`` over positions (0 when N = 0), or ``sum``.

    Returns ``{"loss", "kd" (with a teacher), "ce" (with targets)}`` as float32 scalars. Only ``loss``
    backpropagates, and only once; ``kd`` and ``ce`` are for logging.
    """
    n, v_s = student_hidden.shape[0], student_head.weight.shape[0]
    dense, sparse, tokens = (isinstance(teacher, t) for t in (Tensor, SparseTeacher, TokenTeacher))
    cross = teacher if isinstance(teacher, CrossTeacher) else None
    _check_inputs(student_hidden, student_head, teacher, targets, objective, teacher_head, width, reduction)
    width = v_s if width is None else width
    if sparse:
        check_tail(teacher, objective.temperature, objective.divergence)
    if sparse and n and int(teacher.ids.max()) >= width:
        raise ValueError(f"SparseTeacher ids must be below width {width}; got {int(teacher.ids.max())}")
    if tokens and n and int(targets.max()) >= width:
        raise ValueError(f"a TokenTeacher's targets must be below width {width}; got {int(targets.max())}")
    params = (student_hidden, student_head.weight, student_head.bias)
    needs = tuple(torch.is_grad_enabled() and x is not None and x.requires_grad for x in params)
    denominator = max(student_hidden.shape[0], 1) if reduction == "mean" else 1
    plan = _Plan(
        objective=objective,
        teacher=teacher if dense else cross.outputs.states if cross else None,
        teacher_head=cross.outputs.head if cross else teacher_head,
        sparse=(teacher.ids, teacher.weights(objective.temperature)) if sparse else None,
        tail=teacher.tail.float() if sparse and teacher.tail is not None else None,
        tokens=teacher.log_probs.float() if tokens else None,
        cross=cross,
        targets=targets,
        width=width,
        columns=v_s if targets is not None else width,
        denominator=denominator,
        kd_scale=objective.kd_weight / denominator if any(needs) and teacher is not None else 0.0,
        ce_scale=objective.ce_weight / denominator if any(needs) and targets is not None else 0.0,
        chunk_size=chunk_rows(chunk_size, v_s if targets is not None else width),
        needs=needs,
    )
    loss, kd, ce = _ChunkedObjective.apply(*params, plan)
    parts = {"kd": kd} if teacher is not None else {}
    if targets is not None:
        parts["ce"] = ce
    return {**parts, "loss": loss}
