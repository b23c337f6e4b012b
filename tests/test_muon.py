"""The Muon + AdamW optimizer of the teacher recipe: the update rule, the parameter split, AdamW parity."""

from __future__ import annotations

import math

import pytest
import torch

from distill.core.errors import ConfigError
from distill.data.arithmetic import build_tokenizer
from distill.models import from_config
from distill.optim.muon import MuonAdamW, newton_schulz, split_for_muon
from distill.run.teacher_fit import recipe_optimizer


def test_newton_schulz_is_about_the_polar_factor() -> None:
    torch.manual_seed(0)
    g = torch.randn(24, 40)
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    o = newton_schulz(g)
    singular = torch.linalg.svdvals(o)
    assert o.shape == g.shape
    assert singular.min() > 0.5 and singular.max() < 1.5  # the quintic's band, not exactly 1
    cosine = (o * (u @ vh)).sum() / (o.norm() * (u @ vh).norm())
    assert cosine > 0.95
    assert torch.allclose(newton_schulz(g.T), o.T, atol=1e-6)  # tall matrices iterate transposed


def test_first_muon_step_is_the_scaled_orthogonalised_gradient() -> None:
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(48, 16))  # rows / cols = 3: the step is scaled by sqrt(3)
    w0 = w.detach().clone()
    w.grad = torch.randn(48, 16)
    MuonAdamW([w], [], lr=0.02, momentum=0.95).step()
    # B = (1 - mu) G, U = (1 - mu) G + mu B: a multiple of G, which the normalisation removes
    expected = w0 - 0.02 * math.sqrt(3) * newton_schulz(w.grad)
    assert torch.allclose(w.detach(), expected, atol=1e-6)


def test_muon_follows_torch_muon_over_steps() -> None:
    """torch.optim.Muon runs Newton-Schulz in bfloat16: equal up to that rounding."""
    torch.manual_seed(0)
    ours, theirs = (torch.nn.Parameter(torch.randn(32, 64)) for _ in range(2))
    theirs.data.copy_(ours.data)
    opt_ours = MuonAdamW([ours], [], lr=0.02, momentum=0.95)
    opt_theirs = torch.optim.Muon([theirs], lr=0.02, momentum=0.95, weight_decay=0.0)
    start = ours.detach().clone()
    for _ in range(3):
        grad = torch.randn(32, 64)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        opt_ours.step()
        opt_theirs.step()
    moved = (ours.detach() - start).norm()
    assert moved > 0.05
    assert (ours.detach() - theirs.detach()).norm() < 0.02 * moved


def test_other_parameters_take_exact_adamw_steps() -> None:
    torch.manual_seed(0)
    ours, theirs = (torch.nn.Parameter(torch.randn(7)) for _ in range(2))
    theirs.data.copy_(ours.data)
    opt_ours = MuonAdamW([], [ours], adamw_lr=1e-2, weight_decay=0.1)
    opt_theirs = torch.optim.AdamW([theirs], lr=1e-2, weight_decay=0.1)
    for _ in range(4):
        grad = torch.randn(7)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        opt_ours.step()
        opt_theirs.step()
    assert torch.equal(ours.detach(), theirs.detach())


def test_split_keeps_embeddings_and_head_out_of_muon() -> None:
    model = from_config(tokenizer=build_tokenizer(), model_type="gpt2", n_layer=2, n_embd=32, n_head=2)
    matrices, others = split_for_muon(model)
    names = {id(p): n for n, p in model.named_parameters()}
    muon_names = {names[id(p)] for p in matrices}
    layers = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    assert muon_names == {f"transformer.h.{i}.{m}.weight" for i in range(2) for m in layers}
    other_names = {names[id(p)] for p in others}
    assert {"transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight"} <= other_names
    assert len(matrices) + len(others) == len(list(model.parameters()))


def test_recipe_optimizer_choices() -> None:
    model = from_config(tokenizer=build_tokenizer(), model_type="gpt2", n_layer=1, n_embd=16, n_head=2)
    assert recipe_optimizer(model, {"lr": 1e-3}) is None  # the loop's AdamW
    opt = recipe_optimizer(model, {"lr": 1e-3, "optimizer": "muon", "matrix_lr": 0.05})(list(model.parameters()))
    assert [(g["muon"], g["lr"]) for g in opt.param_groups] == [(True, 0.05), (False, 1e-3)]
    with pytest.raises(ConfigError, match=r"model\.teacher\.recipe\.optimizer='sgd' is invalid"):
        recipe_optimizer(model, {"lr": 1e-3, "optimizer": "sgd"})
