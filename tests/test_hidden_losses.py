"""Hidden-state and attention-map losses: hand-computed values, masking, projections, layer maps,
and a padded batch through a tiny BERT teacher and its every-other-layer student."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from distill.core.errors import ConfigError
from distill.losses.layer_terms import (
    HiddenProjections,
    attention_loss,
    default_layer_map,
    hidden_state_loss,
    mapped_states,
    require_attention_weights,
)
from distill.models import student_from_teacher

S = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # (B=1, L=2, H=2)
T = torch.tensor([[[1.0, 0.0], [0.0, 4.0]]])
ALL = torch.ones(1, 2, dtype=torch.bool)


def test_default_layer_map_spreads_the_student_over_the_teacher():
    assert default_layer_map(2, 4) == [(1, 2), (2, 4)]
    assert default_layer_map(6, 12) == [(i, 2 * i) for i in range(1, 7)]
    assert default_layer_map(3, 3) == [(1, 1), (2, 2), (3, 3)]
    assert default_layer_map(3, 4) == [(1, 1), (2, 3), (3, 4)]
    assert default_layer_map(1, 5) == [(1, 5)]
    assert default_layer_map(2, 4, embeddings=True) == [(0, 0), (1, 2), (2, 4)]
    with pytest.raises(ValueError, match="n_student"):
        default_layer_map(0, 4)


def test_mapped_states_selects_the_paired_states():
    student, teacher = [torch.full((1,), float(i)) for i in range(3)], [torch.full((1,), 10.0 + i) for i in range(5)]
    s, t = mapped_states(student, teacher, default_layer_map(2, 4))
    assert [x.item() for x in s] == [1.0, 2.0] and [x.item() for x in t] == [12.0, 14.0]
    with pytest.raises(ValueError, match="out of range"):
        mapped_states(student, teacher, [(3, 1)])


def test_hidden_state_loss_hand_computed():
    # token 0: ((1-1)^2 + (2-0)^2) / 2 = 2; token 1: ((3-0)^2 + (4-4)^2) / 2 = 4.5; the second pair is identical
    mse = hidden_state_loss([S, T], [T, T], ALL, "mse")
    assert mse.dtype == torch.float32
    assert mse.item() == pytest.approx((2.0 + 4.5) / 2 / 2)
    # cos((1, 2), (1, 0)) = 1 / sqrt(5); cos((3, 4), (0, 4)) = 16 / 20
    cosine = hidden_state_loss([S], [T], ALL, "cosine")
    assert cosine.item() == pytest.approx(((1 - 1 / math.sqrt(5)) + (1 - 0.8)) / 2)


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_hidden_state_loss_is_zero_for_identical_states(kind):
    torch.manual_seed(0)
    states = [torch.randn(2, 5, 8) for _ in range(3)]
    mask = torch.rand(2, 5) > 0.3
    assert hidden_state_loss(states, [s.clone() for s in states], mask, kind).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_masked_positions_are_ignored(kind):
    torch.manual_seed(0)
    s, t = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    noisy_s, noisy_t = s.clone(), t.clone()
    noisy_s[~mask], noisy_t[~mask] = float("nan"), 1e6
    expected = hidden_state_loss([s[mask][None]], [t[mask][None]], torch.ones(1, 5, dtype=torch.bool), kind)
    assert hidden_state_loss([noisy_s], [noisy_t], mask, kind).item() == pytest.approx(expected.item())
    leaf = noisy_s.clone().requires_grad_()
    hidden_state_loss([leaf], [noisy_t], mask, kind).backward()
    assert torch.isfinite(leaf.grad).all() and leaf.grad[~mask].abs().sum() == 0
    none = hidden_state_loss([s], [t], torch.zeros(2, 4, dtype=torch.bool), kind)
    assert none.item() == 0.0


def test_projections_map_student_width_to_teacher_width_and_get_gradients():
    torch.manual_seed(0)
    s, t = [torch.randn(2, 3, 4) for _ in range(2)], [torch.randn(2, 3, 6) for _ in range(2)]
    mask = torch.ones(2, 3, dtype=torch.bool)
    proj = HiddenProjections(2, 4, 6)
    assert len(proj) == 2 and all(isinstance(p, nn.Linear) and p.weight.shape == (6, 4) for p in proj)
    loss = hidden_state_loss(s, t, mask, "mse", proj)
    expected = sum((proj[k](s[k]) - t[k]).pow(2).mean() for k in range(2)) / 2
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert all(p.weight.grad is not None and p.weight.grad.abs().sum() > 0 for p in proj)
    with pytest.raises(ConfigError, match="student hidden size 4 differs from teacher hidden size 6"):
        hidden_state_loss(s, t, mask)
    same = HiddenProjections(2, 6, 6)
    assert len(same) == 0 and hidden_state_loss(t, t, mask, "mse", same).item() == 0.0
    student, teacher = (
        SimpleNamespace(config=SimpleNamespace(hidden_size=4)),
        SimpleNamespace(config=SimpleNamespace(hidden_size=6)),
    )
    assert len(HiddenProjections.between(student, teacher, 3)) == 3


def test_bad_kinds_are_config_errors():
    with pytest.raises(ConfigError, match="must be one of mse, cosine"):
        hidden_state_loss([S], [T], ALL, "l1")
    with pytest.raises(ConfigError, match="must be one of kl, mse"):
        attention_loss([S[None]], [S[None]], ALL, "cosine")


TEACHER_MAP = torch.tensor([[[[0.5, 0.5], [0.25, 0.75]]]])  # (B=1, heads=1, L=2, L=2)
STUDENT_MAP = torch.tensor([[[[0.75, 0.25], [0.5, 0.5]]]])


def test_attention_loss_hand_computed():
    row0 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    row1 = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert attention_loss([STUDENT_MAP], [TEACHER_MAP], ALL, "kl").item() == pytest.approx((row0 + row1) / 2)
    assert attention_loss([STUDENT_MAP], [TEACHER_MAP], ALL, "mse").item() == pytest.approx(0.25**2)


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_attention_loss_is_zero_for_identical_maps(kind):
    torch.manual_seed(0)
    maps = torch.softmax(torch.randn(2, 3, 5, 5), dim=-1)
    assert attention_loss([maps], [maps.clone()], torch.ones(2, 5, dtype=torch.bool), kind).item() == pytest.approx(
        0.0, abs=1e-7
    )


@pytest.mark.parametrize("kind", ["kl", "mse"])
def test_padded_keys_and_rows_give_the_unpadded_value_and_no_nan(kind):
    """Position 2 is padding: its key holds 0 (or garbage) in the valid rows, its query row is NaN."""
    padded_t, padded_s = torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3)
    padded_t[..., :2, :2], padded_s[..., :2, :2] = TEACHER_MAP, STUDENT_MAP
    padded_s[..., :2, 2] = 1e-30
    padded_s[..., 2, :], padded_t[..., 2, :] = float("nan"), float("nan")
    mask = torch.tensor([[True, True, False]])
    leaf = padded_s.clone().requires_grad_()
    loss = attention_loss([leaf], [padded_t], mask, kind)
    assert loss.item() == pytest.approx(attention_loss([STUDENT_MAP], [TEACHER_MAP], ALL, kind).item())
    loss.backward()
    assert torch.isfinite(leaf.grad).all()


def test_response_rows_attend_over_every_real_key():
    """A causal LM counts its response rows only, but each row is a distribution over all real keys
    (prompt included): cutting the keys to the counted positions cut the rows short (sums < 1), and
    the "KL" of such rows went negative in a real run."""
    torch.manual_seed(0)
    scores = torch.randn(2, 1, 4, 4, 4)  # (student/teacher, B, heads, L, L)
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    a_s, a_t = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
    rows = torch.tensor([[False, False, True, True]])  # positions 0, 1: the prompt
    keys = torch.ones(1, 4, dtype=torch.bool)
    expected = sum(
        (a_t[0, h, r] * (a_t[0, h, r].clamp_min(1e-30).log() - a_s[0, h, r].log())).nansum()
        for h in range(4)
        for r in (2, 3)
    ) / (2 * 4)
    kl = attention_loss([a_s], [a_t], rows, "kl", keys)
    assert kl.item() == pytest.approx(expected.item(), rel=1e-5)
    expected_mse = ((a_s - a_t)[0, :, 2:, :] ** 2).mean()  # 2 rows x 4 keys x 4 heads
    assert attention_loss([a_s], [a_t], rows, "mse", keys).item() == pytest.approx(expected_mse.item(), rel=1e-5)
    for seed in range(20):  # a true KL is never negative
        torch.manual_seed(seed)
        other = torch.softmax(torch.randn(1, 4, 4, 4).masked_fill(~causal, float("-inf")), dim=-1)
        assert attention_loss([other], [a_t], rows, "kl", keys).item() >= 0


def test_a_student_row_with_zero_probability_gives_a_finite_kl():
    student = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert torch.isfinite(attention_loss([student], [TEACHER_MAP], ALL)).item()


def test_head_or_length_mismatch_is_a_config_error():
    with pytest.raises(ConfigError, match="the student has 2 heads, the teacher 1"):
        attention_loss([STUDENT_MAP.repeat(1, 2, 1, 1)], [TEACHER_MAP], ALL)
    with pytest.raises(ConfigError, match="sequence length"):
        attention_loss([torch.ones(1, 1, 3, 3) / 3], [TEACHER_MAP], ALL)


def test_require_attention_weights_switches_to_eager_or_refuses():
    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    )
    model.set_attn_implementation("sdpa")
    require_attention_weights(model)
    assert model.config._attn_implementation == "eager"
    stuck = nn.Module()
    stuck.config = SimpleNamespace(_attn_implementation="sdpa")
    with pytest.raises(ConfigError, match="needs 'eager'"):
        require_attention_weights(stuck)


def test_losses_on_a_padded_batch_through_a_bert_teacher_and_its_student():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    teacher = BertForSequenceClassification(config).eval()
    require_attention_weights(teacher)
    student = student_from_teacher(teacher, "every_other")
    assert student.config._attn_implementation == "eager"
    ids = torch.tensor([[2, 5, 9, 13, 17], [2, 7, 11, 0, 0]])
    mask = ids != 0
    with torch.no_grad():
        t_out = teacher(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True, output_attentions=True)
    s_out = student(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True, output_attentions=True)
    layer_map = default_layer_map(2, 4)
    s_states, t_states = mapped_states(s_out.hidden_states, t_out.hidden_states, layer_map)
    s_attn, t_attn = mapped_states(s_out.attentions, t_out.attentions, [(i - 1, j - 1) for i, j in layer_map])
    hidden = hidden_state_loss(s_states, t_states, mask, "mse")
    attention = attention_loss(s_attn, t_attn, mask, "kl")
    assert hidden.item() > 0 and attention.item() > 0
    (hidden + attention).backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # the student's first layer is the teacher's first layer: its maps agree exactly
    assert attention_loss([s_out.attentions[0]], [t_out.attentions[0]], mask).item() == pytest.approx(0.0, abs=1e-6)
