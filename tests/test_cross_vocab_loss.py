"""The cross-vocabulary losses (ULD and the GOLD-style hybrid) against values worked out by hand, float64
references, the forward KL they must equal when the two vocabularies are one, and each other (chunked and
materialised)."""

from __future__ import annotations

import math

import pytest
import torch

from distill.losses import CrossTeacher, Head, Hidden, Objective, distillation_loss, objective_loss
from distill.losses.cross_vocab import cross_vocab_loss


def probs_logits(*rows: list[float]) -> torch.Tensor:
    """Logits whose softmax is each row (log p)."""
    return torch.tensor(rows, dtype=torch.float32).log()


def test_uld_by_hand_sorts_and_pads_the_shorter_with_zeros():
    # p_S = (0.2, 0.5, 0.3) sorted (0.5, 0.3, 0.2); p_T = (0.4, 0.6) sorted (0.6, 0.4, 0): 0.1 + 0.1 + 0.2 = 0.4
    student, teacher = probs_logits([0.2, 0.5, 0.3]), probs_logits([0.4, 0.6])
    kd = cross_vocab_loss(student, CrossTeacher(teacher, torch.tensor([True])), temperature=1.0)
    assert kd.item() == pytest.approx(0.4, abs=1e-6)
    # the teacher's vocabulary may be the larger one: p_T (0.7, 0.1, 0.1, 0.1) against p_S (0.5, 0.5): 0.2+0.4+0.2
    student, teacher = probs_logits([0.5, 0.5]), probs_logits([0.1, 0.7, 0.1, 0.1])
    kd = cross_vocab_loss(student, CrossTeacher(teacher, torch.tensor([True])), temperature=1.0)
    assert kd.item() == pytest.approx(0.8, abs=1e-6)


def test_uld_is_a_mean_over_every_position_with_unaligned_ones_adding_zero_and_scaled_by_t_squared():
    student = probs_logits([0.2, 0.5, 0.3], [0.9, 0.05, 0.05], [0.2, 0.5, 0.3])
    teacher = probs_logits([0.4, 0.6], [0.5, 0.5], [0.4, 0.6])
    aligned = torch.tensor([True, False, True])
    assert cross_vocab_loss(student, CrossTeacher(teacher, aligned), 1.0).item() == pytest.approx(0.8 / 3, abs=1e-6)
    # at T = 2 on logits 2 log p, softmax(z / 2) is p again: the same D, times T^2 = 4
    kd = cross_vocab_loss(2 * student, CrossTeacher(2 * teacher, aligned), 2.0)
    assert kd.item() == pytest.approx(4 * 0.8 / 3, abs=1e-5)


def test_hybrid_matched_part_by_hand_is_kl_over_shared_tokens_and_the_rest():
    # shared: student id 0 <-> teacher id 1, student id 1 <-> teacher id 0. p_T = (0.2, 0.5, 0.3): q = (0.5, 0.2),
    # rest 0.3; p_S = (0.4, 0.4, 0.2): (0.4, 0.4), rest 0.2.
    student, teacher = probs_logits([0.4, 0.4, 0.2]), probs_logits([0.2, 0.5, 0.3])
    shared = (torch.tensor([0, 1]), torch.tensor([1, 0]))
    cross = CrossTeacher(teacher, torch.tensor([True]), torch.tensor([True]), shared)
    expected = 0.5 * math.log(0.5 / 0.4) + 0.2 * math.log(0.2 / 0.4) + 0.3 * math.log(0.3 / 0.2)
    assert cross_vocab_loss(student, cross, 1.0).item() == pytest.approx(expected, abs=1e-6)
    # an aligned row that is not matched gets ULD: sorted (0.4, 0.4, 0.2) against (0.5, 0.3, 0.2) = 0.2
    cross = CrossTeacher(teacher, torch.tensor([True]), torch.tensor([False]), shared)
    assert cross_vocab_loss(student, cross, 1.0).item() == pytest.approx(0.2, abs=1e-6)


def test_hybrid_over_one_shared_vocabulary_is_the_forward_kl():
    torch.manual_seed(0)
    student, teacher = torch.randn(6, 9), torch.randn(6, 9)
    ids = torch.arange(9)
    cross = CrossTeacher(teacher, torch.ones(6, dtype=torch.bool), torch.ones(6, dtype=torch.bool), (ids, ids))
    for t in (1.0, 2.0):
        expected = distillation_loss(student, teacher, divergence="forward_kl", temperature=t)
        assert cross_vocab_loss(student, cross, t).item() == pytest.approx(expected.item(), abs=1e-6)


def float64_uld(student: torch.Tensor, teacher: torch.Tensor, t: float) -> torch.Tensor:
    """ULD per row written out in float64 with explicit zero padding (the reference)."""
    p = torch.softmax(student.double() / t, -1).sort(-1, descending=True).values
    q = torch.softmax(teacher.double() / t, -1).sort(-1, descending=True).values
    width = max(p.shape[1], q.shape[1])
    p = torch.cat([p, p.new_zeros(len(p), width - p.shape[1])], 1)
    q = torch.cat([q, q.new_zeros(len(q), width - q.shape[1])], 1)
    return (p - q).abs().sum(-1)


@pytest.mark.parametrize("v_s,v_t", [(11, 7), (7, 11)])
def test_uld_value_and_gradient_against_a_float64_reference(v_s, v_t):
    torch.manual_seed(1)
    student = torch.randn(5, v_s, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(5, v_t)
    aligned = torch.tensor([True, True, False, True, True])
    reference = (float64_uld(student, teacher, 2.0) * aligned).sum() / 5 * 4
    reference.backward()
    expected_grad = student.grad.clone()
    student.grad = None
    kd = cross_vocab_loss(student.float(), CrossTeacher(teacher, aligned), 2.0)
    kd.backward()
    assert kd.item() == pytest.approx(reference.item(), abs=1e-5)
    torch.testing.assert_close(student.grad, expected_grad, atol=1e-5, rtol=1e-4)


def tiny_problem(v_s: int, v_t: int, seed: int = 0):
    torch.manual_seed(seed)
    n = 9
    hidden = torch.randn(n, 6, requires_grad=True)
    head = Head(torch.randn(v_s, 6, requires_grad=True), torch.randn(v_s, requires_grad=True))
    teacher = Hidden(torch.randn(n, 5), Head(torch.randn(v_t, 5), torch.randn(v_t)))
    aligned = torch.tensor([1, 1, 0, 1, 1, 1, 0, 1, 1], dtype=torch.bool)
    matched = torch.tensor([1, 0, 0, 1, 0, 1, 0, 0, 1], dtype=torch.bool)
    shared = (torch.tensor([0, 2, 3, 5]), torch.tensor([4, 0, 1, 2]))
    return hidden, head, teacher, aligned, matched, shared, torch.randint(0, v_s, (n,))


@pytest.mark.parametrize("hybrid", [False, True])
@pytest.mark.parametrize("v_s,v_t", [(13, 8), (8, 13)])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_chunked_and_materialised_agree_to_1e5(hybrid, v_s, v_t, temperature):
    hidden, head, teacher, aligned, matched, shared, targets = tiny_problem(v_s, v_t)
    cross = CrossTeacher(teacher, aligned, matched if hybrid else None, shared if hybrid else None)
    objective = Objective(kd_weight=0.6, ce_weight=0.4, temperature=temperature)
    results = []
    for chunk_size in (None, 2):  # materialised, then 2 positions per chunk (5 chunks, the last one short)
        for x in (hidden, head.weight, head.bias):
            x.grad = None
        student = Hidden(hidden, head) if chunk_size else Hidden(hidden, head).logits()
        parts = objective_loss(student, cross, targets, objective, chunk_size=chunk_size)
        parts["loss"].backward()
        results.append([parts["loss"].item(), parts["kd"].item(), hidden.grad, head.weight.grad, head.bias.grad])
    (loss_m, kd_m, *grads_m), (loss_c, kd_c, *grads_c) = results
    assert loss_c == pytest.approx(loss_m, abs=1e-5) and kd_c == pytest.approx(kd_m, abs=1e-5)
    for a, b in zip(grads_c, grads_m):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_bad_cross_teachers_are_refused_in_one_line():
    logits = torch.randn(3, 4)
    with pytest.raises(ValueError, match="a matched row must be aligned"):
        CrossTeacher(
            logits, torch.tensor([True, False, True]), torch.tensor([False, True, False]), (torch.arange(2),) * 2
        )
    with pytest.raises(ValueError, match="matched rows need the shared ids"):
        CrossTeacher(logits, torch.ones(3, dtype=torch.bool), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="3 rows"):
        CrossTeacher(torch.randn(2, 4), torch.ones(3, dtype=torch.bool))
    hidden, head, teacher, aligned, *_ = tiny_problem(6, 5)
    cross = CrossTeacher(teacher, aligned)
    with pytest.raises(ValueError, match="forward_kl"):
        objective_loss(Hidden(hidden, head), cross, None, Objective(1.0, 0.0, "reverse_kl"), chunk_size=4)
