"""Per-row divergences and cross-entropy with their gradients in closed form, computed in place on one
chunk of logits (the chunked loss's inner step; formulas in :mod:`distill.losses.chunked`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from distill.losses.divergences import SKEWED
from distill.losses.sparse import log_rest, sparse_kl_rows


def masked_(p: Tensor, r: Tensor) -> Tensor:
    """p * r written into r, with 0 where p = 0 (0 log 0 = 0). Both (C, V)."""
    return r.mul_(p).masked_fill_(p == 0, 0.0)


def divergence_and_grad(
    log_s: Tensor, log_t: Tensor, divergence: str, beta: float, skew: float = 0.1
) -> tuple[Tensor, Tensor]:
    """Per row D(p_T, p_S) (C,) and dD/dz (C, V), z = s / T, from log p_S and log p_T (C, V).

    Overwrites both inputs: the in-place steps allocate at most three more (C, V) tensors.
    """
    if divergence in SKEWED:
        return skewed_and_grad(log_s, log_t, divergence, skew)
    if divergence == "forward_kl":  # D = sum p_T (log p_T - log p_S);  dD/dz = p_S - p_T
        p_t = log_t.exp()
        value = masked_(p_t, log_t.sub_(log_s)).sum(-1)
        return value, log_s.exp_().sub_(p_t)
    if divergence == "reverse_kl":  # D = sum p_S r, r = log p_S - log p_T;  dD/dz = p_S (r - D)
        p_s = log_s.exp()
        p_r = masked_(p_s, log_s.sub_(log_t))
        value = p_r.sum(-1)
        return value, p_r.sub_(p_s.mul_(value[:, None]))
    if divergence == "jsd":  # D = beta KL(p_T||M) + (1 - beta) KL(p_S||M);  dD/dz = (1 - beta) p_S (r - KL(p_S||M))
        log_m = log_t + math.log(beta)
        torch.logaddexp(log_m, log_s + math.log1p(-beta), out=log_m)  # log M
        p_t = log_t.exp()
        kl_t = masked_(p_t, log_t.sub_(log_m)).sum(-1)
        del p_t
        p_s = log_s.exp()
        p_r = masked_(p_s, log_s.sub_(log_m))  # p_S r, r = log p_S - log M
        kl_s = p_r.sum(-1)
        return beta * kl_t + (1.0 - beta) * kl_s, p_r.sub_(p_s.mul_(kl_s[:, None])).mul_(1.0 - beta)
    if divergence == "tvd":  # D = 1/2 sum |p_S - p_T|;  dD/dz = p_S (g - <p_S, g>), g = sign(p_S - p_T) / 2
        p_s = log_s.exp_()
        diff = log_t.exp_().neg_().add_(p_s)
        value = 0.5 * torch.linalg.vector_norm(diff, ord=1, dim=-1)
        g = diff.sign_().mul_(0.5)
        return value, g.sub_((g * p_s).sum(-1, keepdim=True)).mul_(p_s)
    raise ValueError(f"unknown divergence {divergence!r}")


def skewed_and_grad(log_s: Tensor, log_t: Tensor, divergence: str, skew: float) -> tuple[Tensor, Tensor]:
    """The skewed KLs per row and dD/dz, with p_S = softmax(z) and the mixture M of weight s = ``skew``:

    skew_forward_kl  D = KL(p_T || M), M = s p_T + (1 - s) p_S;  dD/dz = -(1 - s) p_S (a - <p_S, a>), a = p_T / M
    skew_reverse_kl  D = KL(p_S || M), M = s p_S + (1 - s) p_T;  dD/dz = p_S (g - <p_S, g>),
                     g = log p_S - log M - s p_S / M
    """
    p_s = log_s.exp()
    if divergence == "skew_forward_kl":
        log_m = log_t + math.log(skew)
        torch.logaddexp(log_m, log_s.add_(math.log1p(-skew)), out=log_m)  # log M; log_s is scratch from here
        log_a = log_m.neg_().add_(log_t)  # log a = log p_T - log M
        value = masked_(log_t.exp_(), log_s.copy_(log_a)).sum(-1)
        p_a = log_a.exp_().mul_(p_s)  # p_S a
        return value, p_a.sub_(p_s.mul_(p_a.sum(-1, keepdim=True))).mul_(-(1.0 - skew))
    log_m = log_s + math.log(skew)
    torch.logaddexp(log_m, log_t.add_(math.log1p(-skew)), out=log_m)  # log M; log_t is scratch from here
    r = log_s.sub_(log_m)  # log p_S - log M
    ratio = log_t.copy_(r).exp_().mul_(p_s)  # p_S^2 / M
    p_r = masked_(p_s, r)  # p_S r
    value = p_r.sum(-1)
    p_g = p_r.sub_(ratio, alpha=skew)  # p_S g
    return value, p_g.sub_(p_s.mul_(p_g.sum(-1, keepdim=True)))


def sparse_skewed_and_grad(log_s: Tensor, ids: Tensor, w: Tensor, skew: float) -> tuple[Tensor, Tensor]:
    """A sparse teacher w (C, k) on ``ids`` with the skewed forward KL, M = s w + (1 - s) p_S on the cached ids
    (w is 0 elsewhere): D = sum_i w_i (log w_i - log M_i) per row, and
    dD/dz = -(1 - s) (sum_i p_S,i a_i onehot(ids_i) - p_S c), a = w / M, c = sum_i p_S,i a_i. Overwrites log_s."""
    value = sparse_kl_rows(log_s, ids, w, skew)
    p_ids = log_s.gather(-1, ids).exp()
    p_a = torch.where(w > 0, w * p_ids / (skew * w + (1.0 - skew) * p_ids), 0.0)  # p_S a on the cached ids
    p_s = log_s.exp_()
    return value, p_s.mul_(-p_a.sum(-1, keepdim=True)).scatter_add_(1, ids, p_a).mul_(-(1.0 - skew))


def sparse_tail_and_grad(log_s: Tensor, ids: Tensor, w: Tensor, tail: Tensor) -> tuple[Tensor, Tensor]:
    """The forward KL over k + 1 bins (the cached ids, q = (1 - r) w, and the rest, r = ``tail``) per row, and
    dD/dz: p_S(j) - q_j on the cached ids, p_S(j) - r p_S(j) / p_S(rest) elsewhere (the rest of the student's
    mass scaled to the teacher's). Overwrites log_s."""
    value = sparse_kl_rows(log_s, ids, w, tail=tail)
    p_ids = log_s.gather(1, ids).exp()
    share = (log_s - log_rest(log_s, ids)[:, None]).exp_()  # p_S(j) / p_S(rest): at most 1 off the cached ids
    grad = log_s.exp_().sub_(share.mul_(tail[:, None]))
    return value, grad.scatter_(1, ids, p_ids - w * (1.0 - tail)[:, None])


def cross_entropy_and_grad(s: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Summed CE of the rows and d CE / ds = softmax(s) - onehot(targets). s (C, V), targets (C,)."""
    log_p = torch.log_softmax(s, dim=-1)
    ce = -log_p.gather(1, targets[:, None]).sum()
    grad = log_p.exp_()
    grad[torch.arange(len(targets), device=s.device), targets] -= 1.0
    return ce, grad
