"""TanhGELU computes GPT-2's gelu_new (values and gradients), the swap touches only tanh-GELU modules and
leaves outputs, parameters and configs as they were, and the training forward builds no KV cache."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN

from distill.distillers import LogitDistiller, SupervisedDistiller
from distill.inference.forward import forward
from distill.models.activations import TanhGELU, swap_activations, tanh_gelu
from tests.conftest import gpt2, task_data


def composite(x: torch.Tensor) -> torch.Tensor:
    """gelu_tanh written out: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def test_values_and_gradients_equal_the_composite_in_float64():
    x = torch.linspace(-12, 12, 2001, dtype=torch.float64, requires_grad=True)
    y = tanh_gelu(x)
    expected = composite(x.detach())
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad((y * torch.cos(x)).sum(), x)  # a non-constant upstream gradient
    x_ref = x.detach().clone().requires_grad_(True)
    (grad_ref,) = torch.autograd.grad((composite(x_ref) * torch.cos(x_ref)).sum(), x_ref)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(tanh_gelu, (torch.randn(6, 5, dtype=torch.float64, requires_grad=True),))


def test_a_double_backward_is_refused():
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(tanh_gelu(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        grad.sum().backward()


def test_float32_matches_torch_and_transformers_gelus():
    torch.manual_seed(0)
    x = torch.randn(64, 256) * 4
    for reference in (F.gelu(x, approximate="tanh"), ACT2FN["gelu_new"](x), ACT2FN["gelu_fast"](x)):
        torch.testing.assert_close(tanh_gelu(x), reference, rtol=1e-5, atol=2e-6)


def test_the_input_is_not_modified_and_half_precision_takes_torchs_kernel():
    x = torch.randn(10, 10)
    before = x.clone()
    tanh_gelu(x)
    assert torch.equal(x, before)
    h = torch.randn(10, 10).to(torch.bfloat16)
    assert torch.equal(tanh_gelu(h), F.gelu(h, approximate="tanh"))


@pytest.mark.parametrize("activation", ["gelu_new", "gelu_fast", "gelu_pytorch_tanh"])
def test_swap_replaces_every_tanh_gelu_and_keeps_outputs_and_state(tok, activation):
    model = gpt2(tok, n_layer=2, activation_function=activation).eval()
    ids = torch.randint(0, len(tok), (3, 11))
    before = model(input_ids=ids).logits
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert swap_activations(model) == 2  # one per block
    assert sum(isinstance(m, TanhGELU) for m in model.modules()) == 2
    torch.testing.assert_close(model(input_ids=ids).logits, before, rtol=1e-5, atol=1e-5)
    assert model.config.activation_function == activation  # saved configs reload the model's own activation
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert swap_activations(model) == 0  # idempotent


def test_other_activations_are_left_alone(tok):
    model = gpt2(tok, n_layer=1, activation_function="relu")
    exact = nn.Sequential(nn.Linear(3, 3), nn.GELU())  # the erf GELU is another function
    assert swap_activations(model) == 0 and swap_activations(exact) == 0
    assert isinstance(exact[1], nn.GELU)


def test_distillers_swap_both_models_unless_told_not_to(tok):
    student, teacher = gpt2(tok, activation_function="gelu_new"), gpt2(tok, 1, 2, activation_function="gelu_new")
    LogitDistiller(student, teacher, tok)
    assert all(any(isinstance(m, TanhGELU) for m in model.modules()) for model in (student, teacher))
    plain = gpt2(tok, activation_function="gelu_new")
    SupervisedDistiller(plain, tokenizer=tok, fast_activations=False)
    assert not any(isinstance(m, TanhGELU) for m in plain.modules())


def test_a_training_step_with_the_swap_equals_one_without(tok):
    """Same models, same batch: loss and student gradients agree to float rounding."""
    batch = next(iter(task_data(tok).train_loader(seed=0)))
    grads = []
    for fast in (False, True):
        student, teacher = gpt2(tok, n_layer=2), gpt2(tok, 1, 2, n_embd=48)
        LogitDistiller(student, teacher, tok, fast_activations=fast).train_step(batch)
        grads.append(torch.cat([p.grad.flatten() for p in student.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)


def test_the_training_forward_builds_no_kv_cache(tok):
    model = gpt2(tok)
    seen = {}
    model.register_forward_pre_hook(lambda _m, _a, kwargs: seen.update(kwargs), with_kwargs=True)
    batch = next(iter(task_data(tok).train_loader(seed=0)))
    forward(model, batch, "causal_lm", chunked=True)
    assert seen["use_cache"] is False
