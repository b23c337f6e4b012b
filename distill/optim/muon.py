"""Muon (Jordan et al., 2024) for a model's hidden weight matrices and AdamW for its other
parameters, as one torch optimizer, so one learning-rate scheduler drives both.

A hidden matrix W (2-D, not an embedding or the output layer) with gradient G, momentum mu:

    B <- mu B + (1 - mu) G;   U = (1 - mu) G + mu B                     (Nesterov)
    O = NS5(U / ||U||_F)     five quintic Newton-Schulz steps: about the polar factor of U
    W <- W (1 - lr wd) - lr sqrt(max(1, rows / cols)) O                 (rows x cols as stored)

Every other parameter (embeddings, the output layer or classifier head, biases, norms) takes an
AdamW step with ``adamw_lr``. The update rule and coefficients are those of ``torch.optim.Muon``,
which runs the iteration in bfloat16: CPUs without bf16 matrix units do that about 50x slower than
float32 (945 ms against a few ms per step for the embedded teacher's 16 matrices on 2 cores), so
here it runs in float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.optim.adamw import adamw

from distill.models.facts import output_layer

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(update: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """About the polar factor U V^T of ``update`` (U S V^T its SVD), singular values in ~[0.5, 1.5];
    float32 inside, ``update``'s dtype out. (r, c) -> (r, c)."""
    a, b, c = NS_COEFFICIENTS
    x = update.float()
    tall = x.size(0) > x.size(1)
    if tall:  # iterate on the wide orientation: the Gram matrix is min(r, c) square
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return (x.T if tall else x).to(update.dtype)


def split_for_muon(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(matrices, others)``: trainable 2-D weights outside embeddings, the output layer and a
    classifier head (``classifier`` or ``score``), and every other trainable parameter."""
    heads = [output_layer(model)]
    heads += [getattr(model, name, None) for name in ("classifier", "score")]
    excluded = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    excluded |= {id(p) for m in heads if isinstance(m, nn.Module) for p in m.parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    matrices = [p for p in params if p.ndim == 2 and id(p) not in excluded]
    chosen = {id(p) for p in matrices}
    return matrices, [p for p in params if id(p) not in chosen]


class MuonAdamW(torch.optim.Optimizer):
    """Muon on ``matrices`` (``lr``, ``momentum``), AdamW on ``others`` (``adamw_lr``, ``betas``,
    ``eps``); ``weight_decay`` for both. Two param groups, flagged ``muon`` True / False."""

    def __init__(
        self,
        matrices: list[nn.Parameter],
        others: list[nn.Parameter],
        lr: float = 0.02,
        adamw_lr: float = 1e-3,
        momentum: float = 0.95,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        if any(p.ndim != 2 for p in matrices):
            raise ValueError("MuonAdamW: every Muon parameter must be a 2-D matrix")
        groups = [dict(params=matrices, lr=lr, muon=True), dict(params=others, lr=adamw_lr, muon=False)]
        defaults = dict(momentum=momentum, betas=betas, eps=eps, weight_decay=weight_decay)
        super().__init__([g for g in groups if g["params"]], defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            (self._muon_step if group["muon"] else self._adamw_step)(group, params)
        return loss

    def _muon_step(self, group: dict, params: list[Tensor]) -> None:
        mu, lr = group["momentum"], group["lr"]
        for p in params:
            buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
            buf.lerp_(p.grad, 1 - mu)
            update = newton_schulz(p.grad.lerp(buf, mu))
            p.mul_(1 - lr * group["weight_decay"])
            p.add_(update, alpha=-lr * math.sqrt(max(1.0, p.size(0) / p.size(1))))

    def _adamw_step(self, group: dict, params: list[Tensor]) -> None:
        for p in params:
            if not self.state[p]:
                self.state[p].update(
                    step=torch.tensor(0.0), exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p)
                )
        states = [self.state[p] for p in params]
        adamw(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [],
            [s["step"] for s in states],
            amsgrad=False,
            beta1=group["betas"][0],
            beta2=group["betas"][1],
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
        )
