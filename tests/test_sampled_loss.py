"""The reverse KL estimated from the student's samples (objective.sampled; the on-policy reverse-KL reward)."""

import math

import numpy as np
import pytest
import torch

from distill.core.errors import ConfigError
from distill.losses import Head, Hidden, Objective, TokenTeacher, objective_loss, token_log_probs

SAMPLED = Objective(kd_weight=1.0, ce_weight=0.0, divergence="reverse_kl", sampled=True)


def _case(seed: int = 0, n: int = 9, h: int = 6, v: int = 13):
    g = torch.Generator().manual_seed(seed)
    student = (torch.randn(n, h, generator=g), torch.randn(v, h, generator=g), torch.randn(v, generator=g))
    teacher = (torch.randn(n, h, generator=g), torch.randn(v, h, generator=g))
    return student, teacher, torch.randint(0, v, (n,), generator=g)


def _reference(s: np.ndarray, t: np.ndarray, y: np.ndarray, temperature: float) -> tuple[float, np.ndarray]:
    """float64: the estimate mean_t (log p_S(y_t) - log p_T(y_t)) and d/ds of T^2 mean_t (-A_t log p_S(y_t)),
    written out: d log p_S(y) / dz = onehot(y) - p_S, z = s / T."""
    z, u = s / temperature, t / temperature
    log_ps = z - np.log(np.exp(z).sum(-1, keepdims=True))
    log_pt = u - np.log(np.exp(u).sum(-1, keepdims=True))
    rows = np.arange(len(y))
    advantage = log_pt[rows, y] - log_ps[rows, y]
    onehot = np.eye(s.shape[1])[y]
    grad = -(advantage[:, None] * (onehot - np.exp(log_ps))) / len(y) * temperature  # T^2 * (1 / T) dz/ds
    return temperature**2 * float(np.mean(-advantage)), grad


@pytest.mark.parametrize("chunk_size", [None, 4, "auto"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_value_and_gradient_match_the_hand_computed_ones(chunk_size, temperature):
    (h, w, b), (ht, wt), y = _case()
    h.requires_grad_(True)
    logits = h @ w.T + b
    want, want_grad = _reference(logits.detach().double().numpy(), (ht @ wt.T).double().numpy(), y.numpy(), temperature)
    objective = Objective(1.0, 0.0, "reverse_kl", temperature, sampled=True)
    out = objective_loss(Hidden(h, Head(w, b)), Hidden(ht, Head(wt)), y, objective, chunk_size=chunk_size)
    out["loss"].backward()
    assert float(out["kd"].detach()) == pytest.approx(want, rel=1e-5)
    assert float(out["loss"].detach()) == pytest.approx(want, rel=1e-5)  # the logged loss is the estimate itself
    torch.testing.assert_close(h.grad.double(), torch.from_numpy(want_grad @ w.double().numpy()), rtol=1e-4, atol=1e-6)


def test_gradient_is_the_advantage_weighted_cross_entropy():
    """-mean_t A_t log p_S(y_t), A detached: the same gradient as CE with per-token weights A_t."""
    (h, w, b), (ht, wt), y = _case(1)
    s = (h @ w.T + b).requires_grad_(True)
    teacher = TokenTeacher(token_log_probs(ht @ wt.T, y))
    objective_loss(s, teacher, y, SAMPLED)["loss"].backward()
    advantage = teacher.log_probs - torch.log_softmax(s.detach(), -1).gather(1, y[:, None]).squeeze(1)
    reference = s.detach().clone().requires_grad_(True)
    (torch.nn.functional.cross_entropy(reference, y, reduction="none") * advantage).mean().backward()
    torch.testing.assert_close(s.grad, reference.grad)


def test_by_hand_two_tokens():
    """V = 2, one position, y = 0: p_S = (1/2, 1/2), p_T(0) = 3/4, so A = log(3/4) - log(1/2) = log 1.5; the
    estimate is -log 1.5 and d/ds = A (p_S - onehot(0)) = log 1.5 * (-1/2, 1/2): the sampled token is pushed up,
    because the teacher likes it more than the student does."""
    s = torch.zeros(1, 2, requires_grad=True)
    out = objective_loss(s, TokenTeacher(torch.tensor([math.log(0.75)])), torch.tensor([0]), SAMPLED)
    out["loss"].backward()
    assert float(out["kd"].detach()) == pytest.approx(-math.log(1.5))
    torch.testing.assert_close(s.grad, torch.tensor([[-0.5, 0.5]]) * math.log(1.5))


def test_the_teacher_needs_only_its_token_log_probs():
    """A TokenTeacher and the full teacher give the same loss and gradient; the teacher gets no gradient."""
    (h, w, b), (ht, wt), y = _case(2)
    grads = []
    for teacher in (Hidden(ht, Head(wt)), TokenTeacher(token_log_probs(Hidden(ht, Head(wt)), y, chunk_size=3))):
        x = h.clone().requires_grad_(True)
        objective_loss(Hidden(x, Head(w, b)), teacher, y, SAMPLED, chunk_size=4)["loss"].backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_token_log_probs_chunked_equals_materialised():
    (h, w, b), _, y = _case(3, n=300)
    full = torch.log_softmax(h @ w.T + b, -1).gather(1, y[:, None]).squeeze(1)
    for chunk in (None, 7, "auto"):
        torch.testing.assert_close(token_log_probs(Hidden(h, Head(w, b)), y, chunk), full)
    assert token_log_probs(Hidden(h[:0], Head(w, b)), y[:0], 7).shape == (0,)


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError, match="a sampled objective is reverse_kl"):
        Objective(1.0, 0.0, "forward_kl", sampled=True)
    (h, w, b), _, y = _case()
    token_teacher = TokenTeacher(torch.zeros(len(y)))
    with pytest.raises(ValueError, match="needs a sampled objective"):
        objective_loss(Hidden(h, Head(w, b)), token_teacher, y, Objective(1.0, 0.0, "reverse_kl"), chunk_size=4)
    with pytest.raises(ValueError, match="needs targets"):
        objective_loss(Hidden(h, Head(w, b)), token_teacher, None, SAMPLED, chunk_size=4)
    with pytest.raises(ValueError, match="must be \\(N,\\)"):
        TokenTeacher(torch.zeros(2, 3))
